"""The small subset of HTTP/1.1 that a WebSocket endpoint needs (RFC 9112).

A server reads one request — the upgrade, or a plain request answered by
``process_request`` — and a client reads one response. Both parsers are incremental:
feed them bytes as they arrive, in any split, and they return the message once it is
complete. Work is linear in the input: each line is searched for its CRLF once, from
where the previous search stopped.

Every limit is a keyword argument with a safe default, and breaking one is refused with
the status RFC 9110 assigns to it (414, 431, 413) before the parser buffers much more
than the limit.

Bytes that arrive after the message are kept in ``leftover``: a server may send its
first frames in the same segment as the 101 response, and they must not be lost.
"""

from __future__ import annotations

import builtins
import json as _json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Generic, TypeVar

from wshub.exceptions import InvalidRequest, InvalidResponse, InvalidState
from wshub.protocol.headers import Headers

__all__ = [
    "HeadersLike",
    "Request",
    "RequestParser",
    "Response",
    "ResponseParser",
    "parse_request_head",
]

#: What the message constructors accept as headers.
HeadersLike = Headers | Iterable[tuple[str, str]] | Mapping[str, str]

_TOKEN_RE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_STR_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET_RE = re.compile(r"[\x21-\x7e]+")
_VALUE_RE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
_REASON_RE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
# RFC 9112 §3: request-line = method SP request-target SP HTTP-version
_REQUEST_LINE_RE = re.compile(rb"([^ ]+) ([^ ]+) ([^ ]+)")
_VERSION_RE = re.compile(rb"HTTP/([0-9])\.([0-9])")
# RFC 9112 §4: status-line = HTTP-version SP status-code SP [ reason-phrase ]
# (a missing SP before an empty reason is tolerated: some servers omit it).
_STATUS_LINE_RE = re.compile(rb"HTTP/1\.[01] ([1-9][0-9][0-9])(?: ([\t\x20-\x7e\x80-\xff]*))?")
_DIGITS_RE = re.compile(rb"[0-9]{1,18}")
# The versions a request may have; other 1.x and 2+ are refused with 505 by the parser.
_VERSIONS = ("HTTP/1.1", "HTTP/1.0")

# The one-pass parser of a whole request head (parse_request_head): a request line whose
# parts are already in their final form, then header lines that are each a token, a
# colon and field-value characters. Every byte class is disjoint from the next
# delimiter, so matching is linear. Anything else goes to the careful parser.
_PLAIN_REQUEST_LINE_RE = re.compile(
    rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21-\x7e]+) (HTTP/1\.[01])\r\n"
)
_PLAIN_FIELDS_RE = re.compile(rb"(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*\r\n)*")

# Statuses whose responses never carry content (RFC 9110 §6.4.1).
_NO_CONTENT = frozenset({204, 304})


def _to_headers(headers: HeadersLike) -> Headers:
    return headers.copy() if isinstance(headers, Headers) else Headers(headers)


def _serialize_head(start_line: str, headers: Headers, extra: list[tuple[str, str]]) -> bytes:
    lines = [start_line]
    lines.extend(f"{name}: {value}\r\n" for name, value in headers)
    lines.extend(f"{name}: {value}\r\n" for name, value in extra)
    lines.append("\r\n")
    # Header values may hold obs-text (U+0080..U+00FF), which is one byte each in latin-1.
    return "".join(lines).encode("latin-1")


@dataclass(frozen=True, slots=True, init=False)
class Request:
    """An HTTP request: the client's upgrade request or a plain request.

    Attributes:
        method: the request method, e.g. ``"GET"``.
        path: the request-target as sent (path and query).
        headers: the header fields.
        body: the content, read when the request had a ``Content-Length``.
        version: ``"HTTP/1.1"`` or ``"HTTP/1.0"``, from the request line; an upgrade
            needs 1.1 (RFC 6455 §4.1), so the handshake refuses a 1.0 request.
    """

    method: str
    path: str
    headers: Headers
    body: bytes
    version: str

    def __init__(
        self,
        method: str,
        path: str,
        headers: HeadersLike = (),
        body: builtins.bytes = b"",
        *,
        version: str = "HTTP/1.1",
    ) -> None:
        """Build a request; ``headers`` may be a :class:`Headers` or pairs (copied).

        Raises:
            ValueError: the method is not a token, the path has spaces, controls or
                non-ASCII characters (it could not be sent on a request line), or the
                version is neither ``"HTTP/1.1"`` nor ``"HTTP/1.0"``.
        """
        if _STR_TOKEN_RE.fullmatch(method) is None:
            raise ValueError(f"invalid method: {method!r}")
        if _TARGET_RE.fullmatch(path) is None:
            raise ValueError(f"invalid request target: {path!r}")
        if version not in _VERSIONS:
            raise ValueError(f"unsupported HTTP version: {version!r}")
        object.__setattr__(self, "method", method)
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "headers", _to_headers(headers))
        object.__setattr__(self, "body", builtins.bytes(body))
        object.__setattr__(self, "version", version)

    def serialize(self) -> builtins.bytes:
        """Encode the request with its version, adding ``Content-Length`` for a body."""
        extra = []
        if self.body and "Content-Length" not in self.headers:
            extra.append(("Content-Length", str(len(self.body))))
        head = _serialize_head(f"{self.method} {self.path} {self.version}\r\n", self.headers, extra)
        return head + self.body


@dataclass(frozen=True, slots=True, init=False)
class Response:
    """An HTTP response: the server's 101, a refusal, or a plain page.

    Attributes:
        status: the status code.
        reason: the reason phrase (the standard phrase when built with ``""``).
        headers: the header fields.
        body: the content.
    """

    status: int
    reason: str
    headers: Headers
    body: bytes

    def __init__(
        self,
        status: int,
        reason: str = "",
        headers: HeadersLike = (),
        body: builtins.bytes = b"",
    ) -> None:
        """Build a response; ``headers`` may be a :class:`Headers` or pairs (copied).

        Raises:
            ValueError: the status is not in 100..999 or the reason has control chars.
        """
        if not 100 <= status <= 999:
            raise ValueError(f"invalid status: {status}")
        if not reason:
            try:
                reason = HTTPStatus(status).phrase
            except ValueError:
                reason = ""
        elif _REASON_RE.fullmatch(reason) is None:
            raise ValueError("invalid reason phrase")
        object.__setattr__(self, "status", status)
        object.__setattr__(self, "reason", reason)
        object.__setattr__(self, "headers", _to_headers(headers))
        object.__setattr__(self, "body", builtins.bytes(body))

    def serialize(self) -> builtins.bytes:
        """Encode the response as HTTP/1.1.

        ``Content-Length`` is added when it is missing and the response has a body or a
        status that allows one, so that the client knows where the message ends. A 101
        gets nothing: the bytes after it are WebSocket frames.
        """
        extra = []
        if "Content-Length" not in self.headers and (
            self.body or (self.status >= 200 and self.status not in _NO_CONTENT)
        ):
            extra.append(("Content-Length", str(len(self.body))))
        start = f"HTTP/1.1 {self.status} {self.reason}\r\n"
        return _serialize_head(start, self.headers, extra) + self.body

    @classmethod
    def text(cls, status: int, text: str, headers: HeadersLike = ()) -> Response:
        """A ``text/plain`` UTF-8 response."""
        return cls._with_body(status, text.encode(), "text/plain; charset=utf-8", headers)

    @classmethod
    def html(cls, status: int, html: str, headers: HeadersLike = ()) -> Response:
        """A ``text/html`` UTF-8 response."""
        return cls._with_body(status, html.encode(), "text/html; charset=utf-8", headers)

    @classmethod
    def json(cls, status: int, obj: Any, headers: HeadersLike = ()) -> Response:
        """An ``application/json`` response, serialized compactly with the stdlib.

        Raises:
            TypeError: ``obj`` is not JSON-serializable.
        """
        body = _json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
        return cls._with_body(status, body, "application/json", headers)

    @classmethod
    def bytes(
        cls, status: int, body: builtins.bytes, content_type: str, headers: HeadersLike = ()
    ) -> Response:
        """A response with ``body`` as content of type ``content_type``."""
        return cls._with_body(status, body, content_type, headers)

    @classmethod
    def _with_body(
        cls, status: int, body: builtins.bytes, content_type: str, headers: HeadersLike
    ) -> Response:
        merged = _to_headers(headers)
        if "Content-Type" not in merged:
            merged.add("Content-Type", content_type)
        merged.add("Content-Length", str(len(body)))
        return cls(status, "", merged, body)


_M = TypeVar("_M", Request, Response)


def _assemble(cls: type[_M], *values: Any) -> _M:
    """Make a message from field values already validated (headers are taken, not copied).

    For the parsers and the handshake, which check bytes before decoding them: the
    constructors would check and copy everything again. Values come in field order.
    """
    message = object.__new__(cls)
    for name, value in zip(cls.__slots__, values, strict=True):
        object.__setattr__(message, name, value)
    return message


def parse_request_head(
    data: builtins.bytes,
    *,
    max_line_size: int = 8192,
    max_headers: int = 128,
    max_request_size: int | None = 65536,
) -> tuple[Request, int] | None:
    """Parse, in one pass, a request whose whole head is in ``data`` and that has no body.

    This is the common case of an upgrade: one segment holding the request. It gives
    exactly the request that :class:`RequestParser` gives for the same bytes and limits,
    at a fraction of the cost, because the head is checked by two regular expressions
    and split once instead of line by line. It only ever accepts: when the head is
    incomplete, announces a body, comes near a limit or is anything but plain, it
    returns ``None`` and the careful parser decides, with its exact refusals.

    Returns:
        The request and the offset in ``data`` where the head ends (the bytes after it
        are the client's first frames), or ``None``.
    """
    end = data.find(b"\r\n\r\n")
    # Lines are never longer than the head; a head within max_line_size and
    # max_request_size breaks neither limit.
    if (
        end < 0
        or end > max_line_size
        or (max_request_size is not None and end + 4 > max_request_size)
    ):
        return None
    line = _PLAIN_REQUEST_LINE_RE.match(data, 0, end + 2)
    if line is None:
        return None
    start = line.end()
    if start > end:
        items: list[tuple[str, str]] = []
    else:
        if _PLAIN_FIELDS_RE.fullmatch(data, start, end + 2) is None:
            return None
        items = []
        for field in data[start:end].decode("latin-1").split("\r\n"):
            name, _, value = field.partition(":")
            items.append((name, value.strip(" \t")))
        if len(items) > max_headers:
            return None
    headers = Headers._adopt(items)
    index = headers._index
    if "content-length" in index or "transfer-encoding" in index:
        return None
    method, path, version = line.group(1, 2, 3)
    request = _assemble(
        Request, method.decode("ascii"), path.decode("ascii"), headers, b"", version.decode()
    )
    return request, end + 4


class _MessageParser(Generic[_M]):
    """The incremental machinery shared by :class:`RequestParser` and :class:`ResponseParser`.

    Subclasses parse the start line, decide the body length and build errors.
    """

    __slots__ = (
        "_body_length",
        "_buf",
        "_error",
        "_head_end",
        "_headers",
        "_line_start",
        "_max_headers",
        "_max_line_size",
        "_max_size",
        "_message",
        "_scan",
        "_started",
    )

    def __init__(self, *, max_line_size: int, max_headers: int, max_size: int | None) -> None:
        self._max_line_size = max_line_size
        self._max_headers = max_headers
        self._max_size = max_size
        self._buf = bytearray()
        self._line_start = 0  # where the line being read starts
        self._scan = 0  # where the next CRLF search starts
        self._started = False  # the start line has been parsed
        self._headers = Headers()
        self._head_end = -1  # end of the empty line closing the head, once seen
        self._body_length = 0
        self._message: _M | None = None
        self._error: Exception | None = None

    @property
    def leftover(self) -> builtins.bytes:
        """Bytes received after the complete message (empty before it is complete)."""
        if self._message is None:
            return b""
        return builtins.bytes(self._buf)

    # Hooks.

    def _parse_whole(self, data: builtins.bytes) -> _M | None:
        """The one-pass path for a message that arrives whole (``None``: not taken)."""
        return None

    def _fail(self, status: int, reason: str) -> Exception:  # pragma: no cover - abstract
        raise NotImplementedError

    def _start_line(self, line: builtins.bytes) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _line_too_long(self) -> Exception:  # pragma: no cover - abstract
        raise NotImplementedError

    def _body_size(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _build(self, body: builtins.bytes) -> _M:  # pragma: no cover - abstract
        raise NotImplementedError

    # Machinery.

    def feed(self, data: builtins.bytes) -> _M | None:
        """Add received bytes; return the message once it is complete, else ``None``.

        Raises:
            InvalidRequest: (:class:`RequestParser`) the request is malformed or breaks a
                limit; the exception carries the status to answer with.
            InvalidResponse: (:class:`ResponseParser`) the response is malformed or breaks
                a limit.
            InvalidState: the message was already returned (read ``leftover`` instead).
        """
        if self._error is not None:
            raise self._error
        if self._message is not None:
            raise InvalidState("the message is complete; read the rest from leftover")
        if not self._buf and not self._started and type(data) is builtins.bytes:
            message = self._parse_whole(data)
            if message is not None:
                return message
        self._buf += data
        try:
            return self._parse()
        except (InvalidRequest, InvalidResponse) as exc:
            self._error = exc
            self._buf.clear()
            raise

    def _parse(self) -> _M | None:
        buf = self._buf
        max_line = self._max_line_size
        max_size = self._max_size
        while self._head_end < 0:
            crlf = buf.find(b"\r\n", self._scan)
            if crlf < 0:
                # Only the last byte may be the CR of a CRLF split across two feeds.
                self._scan = max(self._line_start, len(buf) - 1)
                if len(buf) - self._line_start > max_line:
                    raise self._line_too_long()
                if max_size is not None and len(buf) > max_size:
                    raise self._fail(431, "request header fields too large")
                return None
            line = builtins.bytes(buf[self._line_start : crlf])
            self._line_start = self._scan = crlf + 2
            if len(line) > max_line:
                raise self._line_too_long()
            if max_size is not None and crlf + 2 > max_size:
                raise self._fail(431, "request header fields too large")
            if not self._started:
                self._start_line(line)
                self._started = True
            elif line:
                self._header_line(line)
            else:
                self._head_end = crlf + 2
                self._body_length = self._body_size()
                if max_size is not None and self._head_end + self._body_length > max_size:
                    raise self._fail(413, "content too large")
        end = self._head_end + self._body_length
        if len(buf) < end:
            return None
        body = builtins.bytes(buf[self._head_end : end])
        del buf[:end]
        self._message = self._build(body)
        return self._message

    def _header_line(self, line: builtins.bytes) -> None:
        # RFC 9112 §5.2: obs-fold is refused (a server may reject it with 400).
        if line[0] in b" \t":
            raise self._fail(400, "obsolete line folding is not supported")
        colon = line.find(b":")
        # RFC 9112 §5.1: no whitespace is allowed between the field name and the colon;
        # the token check catches it together with empty and non-ASCII names.
        if colon <= 0 or _TOKEN_RE.fullmatch(line, 0, colon) is None:
            raise self._fail(400, "invalid header line")
        value = line[colon + 1 :].strip(b" \t")
        if _VALUE_RE.fullmatch(value) is None:
            raise self._fail(400, "invalid header value")
        if len(self._headers) >= self._max_headers:
            raise self._fail(431, "too many header fields")
        self._headers._add_unchecked(line[:colon].decode("ascii"), value.decode("latin-1"))

    def _content_length(self) -> int | None:
        values = self._headers.get_all("Content-Length")
        if not values:
            return None
        if len(values) != 1 or _DIGITS_RE.fullmatch(values[0].encode("latin-1")) is None:
            raise self._fail(400, "invalid Content-Length")
        return int(values[0])


class RequestParser(_MessageParser[Request]):
    """Incremental parser of one HTTP/1.1 request, for the server side.

    Example::

        parser = RequestParser()
        request = None
        while request is None:
            request = parser.feed(await read())
        frames = parser.leftover

    Every refusal is an :class:`~wshub.exceptions.InvalidRequest` that carries the status
    to answer with; after one, the parser keeps raising it.
    """

    __slots__ = ("_method", "_path", "_version")

    def __init__(
        self,
        *,
        max_line_size: int = 8192,
        max_headers: int = 128,
        max_request_size: int | None = 65536,
    ) -> None:
        """Set the limits.

        Args:
            max_line_size: longest request line or header line in bytes, CRLF excluded;
                8 KiB is what common servers and proxies accept. Over it: 414 for the
                request line, 431 for a header line.
            max_headers: most header fields; browsers send about 15, so 128 leaves room
                for cookies and proxies while bounding work. Over it: 431.
            max_request_size: most bytes for the head plus the body; 64 KiB is plenty for
                an upgrade or a small form. Over it: 431 for the head, 413 for the body.
                ``None`` means no limit on the total (line limits still apply).
        """
        super().__init__(
            max_line_size=max_line_size, max_headers=max_headers, max_size=max_request_size
        )
        self._method = ""
        self._path = ""
        self._version = ""

    def _fail(self, status: int, reason: str) -> Exception:
        return InvalidRequest(status, reason)

    def _line_too_long(self) -> Exception:
        if self._started:
            return InvalidRequest(431, "request header fields too large")
        return InvalidRequest(414, "URI too long")

    def _start_line(self, line: builtins.bytes) -> None:
        match = _REQUEST_LINE_RE.fullmatch(line)
        if match is None:
            raise InvalidRequest(400, "invalid request line")
        method, target, version = match.groups()
        if (
            _TOKEN_RE.fullmatch(method) is None
            or _TARGET_RE.fullmatch(target.decode("latin-1")) is None
        ):
            raise InvalidRequest(400, "invalid request line")
        version_match = _VERSION_RE.fullmatch(version)
        if version_match is None:
            raise InvalidRequest(400, "invalid request line")
        # HTTP/1.0 is let through for plain requests; the upgrade itself needs 1.1
        # (RFC 6455 §4.1), which the handshake checks (wshub.protocol.server).
        if version_match.groups() not in ((b"1", b"1"), (b"1", b"0")):
            raise InvalidRequest(505, "HTTP version not supported")
        self._method = method.decode("ascii")
        self._path = target.decode("ascii")
        self._version = version.decode("ascii")

    def _body_size(self) -> int:
        # RFC 9112 §6.3: chunked bodies would need a second parser; no WebSocket
        # client sends one, and a plain endpoint on the same port has no need.
        if "Transfer-Encoding" in self._headers:
            raise InvalidRequest(501, "chunked request bodies are not supported")
        return self._content_length() or 0

    def _parse_whole(self, data: builtins.bytes) -> Request | None:
        parsed = parse_request_head(
            data,
            max_line_size=self._max_line_size,
            max_headers=self._max_headers,
            max_request_size=self._max_size,
        )
        if parsed is None:
            return None
        request, end = parsed
        self._buf += data[end:]
        self._started = True
        self._message = request
        return request

    def _build(self, body: builtins.bytes) -> Request:
        # The headers were validated line by line and the parser is done with them.
        return _assemble(Request, self._method, self._path, self._headers, body, self._version)


class ResponseParser(_MessageParser[Response]):
    """Incremental parser of one HTTP/1.1 response, for the client side.

    A 101 never has a body: what follows it belongs to the WebSocket and stays in
    ``leftover``. Other responses have the body announced by ``Content-Length`` (none
    when it is missing or the body is chunked: the client refuses them anyway, and only
    the status matters).

    Every refusal is an :class:`~wshub.exceptions.InvalidResponse`.
    """

    __slots__ = ("_reason", "_status")

    def __init__(
        self,
        *,
        max_line_size: int = 8192,
        max_headers: int = 128,
        max_response_size: int | None = 65536,
    ) -> None:
        """Set the limits.

        Args:
            max_line_size: longest status or header line in bytes, CRLF excluded.
            max_headers: most header fields.
            max_response_size: most bytes for the head plus the body; ``None`` means no
                limit on the total.
        """
        super().__init__(
            max_line_size=max_line_size, max_headers=max_headers, max_size=max_response_size
        )
        self._status = 0
        self._reason = ""

    def _fail(self, status: int, reason: str) -> Exception:
        # The request-side wording is kept readable on this side too.
        return InvalidResponse(reason.replace("request", "response"), self._status)

    def _line_too_long(self) -> Exception:
        return InvalidResponse("response line too long", self._status)

    def _start_line(self, line: builtins.bytes) -> None:
        match = _STATUS_LINE_RE.fullmatch(line)
        if match is None:
            raise InvalidResponse("invalid status line")
        self._status = int(match.group(1))
        self._reason = (match.group(2) or b"").decode("latin-1")

    def _body_size(self) -> int:
        status = self._status
        if status < 200 or status in _NO_CONTENT or "Transfer-Encoding" in self._headers:
            return 0
        return self._content_length() or 0

    def _build(self, body: builtins.bytes) -> Response:
        reason = self._reason
        if not reason:
            # An empty reason reads as the standard phrase, as for a built response.
            return Response(self._status, "", self._headers, body)
        return _assemble(Response, self._status, reason, self._headers, body)
