"""The server side of the opening handshake (RFC 6455 §4.2).

:func:`accept_request` checks a parsed upgrade request and builds the 101 response, or
raises :class:`~wshub.exceptions.InvalidRequest` with the status to answer with;
:func:`reject_response` turns that refusal into the response to send. Nothing here does
I/O: the transport parses the request with :class:`~wshub.protocol.http11.RequestParser`,
calls these functions and writes the bytes.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from wshub.exceptions import InvalidRequest
from wshub.protocol.extensions.base import Extension, ServerExtensionFactory
from wshub.protocol.headers import Headers, parse_extensions, parse_tokens, serialize_extension
from wshub.protocol.http11 import Request, Response, _assemble

__all__ = [
    "GUID",
    "Accepted",
    "accept_key",
    "accept_request",
    "accept_request_bytes",
    "is_upgrade_request",
    "reject_response",
]

#: The GUID appended to the key before hashing (RFC 6455 §1.3).
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

_SWITCHING = "Switching Protocols"
# The 101 response with its fixed lines; only the accept value varies in the usual case.
_ACCEPT_HEAD = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: "
)
_ACCEPT_TAIL = b"\r\nServer: wshub\r\n\r\n"
_KEY_RE = re.compile(r"[A-Za-z0-9+/]{22}==")

# The headers that tell a client which upgrade and version we speak (RFC 6455 §4.2.2,
# RFC 9110 §15.5.22 for 426).
_UPGRADE_REQUIRED_HEADERS = [
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Version", "13"),
]


@dataclass(frozen=True, slots=True)
class Accepted:
    """The outcome of a successful handshake, on either side.

    Attributes:
        response: the 101 response (built by the server, received by the client).
        subprotocol: the negotiated subprotocol, or ``None``.
        extensions: the negotiated extension instances, in the order they apply to
            outgoing data (the order of the response header, RFC 6455 §9.1).
    """

    response: Response
    subprotocol: str | None
    extensions: list[Extension]


def accept_key(key: str) -> str:
    """Compute ``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key`` (RFC 6455 §4.2.2).

    It proves that the server read the key, so that a non-WebSocket server cannot be
    tricked into accepting a connection.
    """
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def _has_token(headers: Headers, name: str, token: str) -> bool:
    # parse_tokens, unrolled for the usual single-element value ("websocket", "Upgrade").
    for value in headers._index.get(name.lower(), ()):
        value = value.strip(" \t").lower()
        if value == token:
            return True
        if "," in value and any(element.strip(" \t") == token for element in value.split(",")):
            return True
    return False


def is_upgrade_request(request: Request) -> bool:
    """Tell whether ``request`` asks for a WebSocket upgrade (``Upgrade: websocket``).

    The transport uses it to tell plain HTTP requests from upgrades; it does not
    validate the upgrade (:func:`accept_request` does).
    """
    return _has_token(request.headers, "Upgrade", "websocket")


def _check_key(headers: Headers) -> str:
    keys = headers.get_all("Sec-WebSocket-Key")
    if len(keys) != 1:
        raise InvalidRequest(400, "missing or repeated Sec-WebSocket-Key")
    key = keys[0].strip()
    # RFC 6455 §4.1: the key is 16 random bytes, base64-encoded: 22 digits and "==" is
    # the only spelling that strict base64 decodes to 16 bytes.
    if _KEY_RE.fullmatch(key) is None:
        raise InvalidRequest(400, "invalid Sec-WebSocket-Key")
    return key


def _check_origin(headers: Headers, origins: Sequence[str | None]) -> None:
    values = headers.get_all("Origin")
    if len(values) > 1:
        raise InvalidRequest(400, "repeated Origin header")
    origin = values[0] if values else None
    # RFC 6455 §10.2: the Origin header is what lets a server refuse pages of other sites.
    if origin not in origins:
        raise InvalidRequest(403, "origin not allowed")


def _select_subprotocol(headers: Headers, subprotocols: Sequence[str] | None) -> str | None:
    if not subprotocols:
        return None
    offered = set(parse_tokens(headers.get_all("Sec-WebSocket-Protocol")))
    # Server preference order; with no match, send no header and let the client decide
    # whether to go on without a subprotocol (RFC 6455 §4.2.2).
    for subprotocol in subprotocols:
        if subprotocol in offered:
            return subprotocol
    return None


def _negotiate_extensions(
    headers: Headers, factories: Sequence[ServerExtensionFactory]
) -> tuple[list[str], list[Extension]]:
    values = headers.get_all("Sec-WebSocket-Extensions")
    if not values or not factories:
        return [], []
    try:
        offers = parse_extensions(values)
    except ValueError:
        raise InvalidRequest(400, "invalid Sec-WebSocket-Extensions header") from None
    accepted_headers: list[str] = []
    accepted: list[Extension] = []
    for factory in factories:
        # RFC 6455 §9.1: the client lists offers in preference order; the first one this
        # factory can accept wins, and an unacceptable one falls through to the next.
        for name, params in offers:
            if name != factory.name:
                continue
            result = factory.accept(params)
            if result is not None:
                response_params, extension = result
                accepted_headers.append(serialize_extension(name, response_params))
                accepted.append(extension)
                break
    return accepted_headers, accepted


def _negotiate(
    request: Request,
    subprotocols: Sequence[str] | None,
    origins: Sequence[str | None] | None,
    extensions: Sequence[ServerExtensionFactory],
) -> tuple[str, str | None, str | None, list[Extension]]:
    """Validate an upgrade request; return the accept value, subprotocol and extensions."""
    headers = request.headers
    if request.method != "GET":
        raise InvalidRequest(405, "method not allowed", [("Allow", "GET")])
    if request.version != "HTTP/1.1":
        # §4.1: the opening handshake is an HTTP/1.1 request; in HTTP/1.0, Upgrade is not
        # a hop-by-hop field a proxy would drop, so RFC 9110 §7.8 says to ignore it.
        # §4.2.1 names 400 as the answer to a request that is not a valid handshake.
        raise InvalidRequest(400, "WebSocket upgrade needs HTTP/1.1")
    if not _has_token(headers, "Upgrade", "websocket"):
        raise InvalidRequest(426, "upgrade required", list(_UPGRADE_REQUIRED_HEADERS))
    if not _has_token(headers, "Connection", "upgrade"):
        raise InvalidRequest(400, "missing Connection: Upgrade")
    index = headers._index
    if len(index.get("host", ())) != 1:
        raise InvalidRequest(400, "missing or repeated Host header")
    # The version is checked before the key so that a client of another version learns
    # which one we speak (RFC 6455 §4.2.2 item 4).
    if index.get("sec-websocket-version") != ["13"]:
        raise InvalidRequest(
            426, "unsupported WebSocket version", [("Sec-WebSocket-Version", "13")]
        )
    key = _check_key(headers)
    if origins is not None:
        _check_origin(headers, origins)
    subprotocol = _select_subprotocol(headers, subprotocols)
    extension_headers, accepted = _negotiate_extensions(headers, extensions)
    extension_header = ", ".join(extension_headers) if extension_headers else None
    return accept_key(key), subprotocol, extension_header, accepted


def accept_request(
    request: Request,
    *,
    subprotocols: Sequence[str] | None = None,
    origins: Sequence[str | None] | None = None,
    extensions: Sequence[ServerExtensionFactory] = (),
    server_header: str | None = "wshub",
) -> Accepted:
    """Validate an upgrade request and build the 101 response (RFC 6455 §4.2.1-§4.2.2).

    Args:
        request: the parsed request.
        subprotocols: subprotocols we speak, in our order of preference; ``None`` or
            empty to negotiate none.
        origins: allowed ``Origin`` values; ``None`` allows any. Put ``None`` in the list
            to allow requests without ``Origin`` (non-browser clients).
        extensions: extension factories in our order of preference.
        server_header: value of the ``Server`` header; ``None`` to omit it.

    Returns:
        The 101 response with the negotiated subprotocol and extensions.

    Raises:
        InvalidRequest: the request cannot be upgraded; ``status`` says why: 405 not a
            GET, 400 an HTTP/1.0 request, 426 no ``Upgrade: websocket`` or an
            unsupported version, 400 a missing or malformed header, 403 an origin not
            allowed.
    """
    accept, subprotocol, extension_header, accepted = _negotiate(
        request, subprotocols, origins, extensions
    )
    response = _switching(accept, subprotocol, extension_header, server_header)
    return Accepted(response, subprotocol, accepted)


def accept_request_bytes(
    request: Request,
    *,
    subprotocols: Sequence[str] | None = None,
    origins: Sequence[str | None] | None = None,
    extensions: Sequence[ServerExtensionFactory] = (),
    server_header: str | None = "wshub",
) -> tuple[bytes, str | None, list[Extension]]:
    """Like :func:`accept_request`, with the 101 response already serialized.

    A transport that only writes the response skips building a :class:`Response`: the
    bytes come from a template where only the accept value and the optional
    subprotocol and extension lines vary. They are exactly what ``accept_request(...)
    .response.serialize()`` gives.

    Returns:
        The serialized 101 response, the negotiated subprotocol and the extensions.

    Raises:
        InvalidRequest: as :func:`accept_request`.
    """
    accept, subprotocol, extension_header, accepted = _negotiate(
        request, subprotocols, origins, extensions
    )
    if subprotocol is None and extension_header is None and server_header == "wshub":
        return b"".join((_ACCEPT_HEAD, accept.encode(), _ACCEPT_TAIL)), None, accepted
    response = _switching(accept, subprotocol, extension_header, server_header)
    return response.serialize(), subprotocol, accepted


def _switching(
    accept: str, subprotocol: str | None, extension_header: str | None, server_header: str | None
) -> Response:
    """The 101 response. The subprotocol is one the client offered (a valid field value)
    and the extension header was serialized from tokens, so only ``server_header``, the
    caller's, is checked."""
    items = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", accept)]
    if subprotocol is not None:
        items.append(("Sec-WebSocket-Protocol", subprotocol))
    if extension_header is not None:
        items.append(("Sec-WebSocket-Extensions", extension_header))
    headers = Headers._adopt(items)
    if server_header is not None:
        headers.add("Server", server_header)
    return _assemble(Response, 101, _SWITCHING, headers, b"")


def reject_response(error: InvalidRequest, *, server_header: str | None = "wshub") -> Response:
    """Build the response for a refused request.

    The body is the short fixed reason carried by ``error``, never internal details.
    ``Connection: close`` is added unless ``error`` brings its own ``Connection`` header
    (a 426 names the upgrade), since the transport closes after a refusal.
    """
    headers = Headers(error.headers)
    if "Connection" not in headers:
        headers.add("Connection", "close")
    if server_header is not None:
        headers.add("Server", server_header)
    return Response.text(error.status, error.reason + "\n", headers)
