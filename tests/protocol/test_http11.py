"""Tests for wshub.protocol.http11: messages and the incremental HTTP/1.1 parsers."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wshub.exceptions import InvalidRequest, InvalidResponse, InvalidState
from wshub.protocol.headers import Headers
from wshub.protocol.http11 import (
    Request,
    RequestParser,
    Response,
    ResponseParser,
    parse_request_head,
)

UPGRADE = (
    b"GET /chat HTTP/1.1\r\n"
    b"Host: server.example.com\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"\r\n"
)

SWITCHING = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    b"\r\n"
)


def feed_bytewise(parser: RequestParser | ResponseParser, data: bytes) -> object:
    result = None
    for i in range(len(data)):
        result = parser.feed(data[i : i + 1])
        if result is not None:
            assert i == len(data) - 1, "message completed early"
    return result


# Requests.


def test_request_in_one_chunk() -> None:
    """The RFC 6455 §1.3 upgrade request parses in one feed."""
    parser = RequestParser()
    request = parser.feed(UPGRADE)
    assert request is not None
    assert request.method == "GET"
    assert request.path == "/chat"
    assert request.headers["sec-websocket-key"] == "dGhlIHNhbXBsZSBub25jZQ=="
    assert request.body == b""
    assert parser.leftover == b""


def test_request_byte_by_byte() -> None:
    """Feeding one byte at a time gives the same request, only at the last byte."""
    parser = RequestParser()
    request = feed_bytewise(parser, UPGRADE)
    assert request == RequestParser().feed(UPGRADE)


def test_leftover_is_kept() -> None:
    """Bytes after the request are kept, and leftover is empty before completion."""
    parser = RequestParser()
    assert parser.feed(UPGRADE[:10]) is None
    assert parser.leftover == b""
    assert parser.feed(UPGRADE[10:] + b"\x81\x85frame") is not None
    assert parser.leftover == b"\x81\x85frame"


def test_body_with_content_length() -> None:
    """A Content-Length body is read, byte by byte too, and the rest is leftover."""
    raw = b"POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
    parser = RequestParser()
    request = feed_bytewise(parser, raw)
    assert isinstance(request, Request)
    assert request.body == b"hello"
    parser = RequestParser()
    request = parser.feed(raw + b"GET")
    assert request is not None and request.body == b"hello"
    assert parser.leftover == b"GET"


def test_header_values_are_trimmed_and_may_be_empty() -> None:
    """OWS around values is removed; an empty value is kept."""
    request = RequestParser().feed(b"GET / HTTP/1.1\r\nA: \t x y \t\r\nB:\r\n\r\n")
    assert request is not None
    assert list(request.headers) == [("A", "x y"), ("B", "")]


def test_obs_text_in_values_is_latin1() -> None:
    """Bytes 0x80-0xFF in a value decode as latin-1 and serialize back unchanged."""
    raw = b"GET / HTTP/1.1\r\nX: caf\xe9\r\n\r\n"
    request = RequestParser().feed(raw)
    assert request is not None
    assert request.headers["X"] == "caf\u00e9"
    assert request.serialize() == raw


def test_http10_is_accepted() -> None:
    """HTTP/1.0 plain requests are parsed."""
    assert RequestParser().feed(b"GET / HTTP/1.0\r\n\r\n") is not None


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET /\r\n\r\n", 400),
        (b"GET  / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1 \r\n\r\n", 400),
        (b"G\x00T / HTTP/1.1\r\n\r\n", 400),
        (b"GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1x\r\n\r\n", 400),
        (b"GET / http/1.1\r\n\r\n", 400),
        (b"GET / HTTP/2\r\n\r\n", 400),
        (b"\r\nGET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"GET / HTTP/0.9\r\n\r\n", 505),
        (b"GET / HTTP/1.2\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n: empty\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\tfolded\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nH\xc3\xb6st: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX: a\nInjected: b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX: a\x7fb\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nContent-Length: \r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
    ],
)
def test_malformed_requests(raw: bytes, status: int) -> None:
    """Each malformed request is refused with its status, fed at once or byte by byte."""
    with pytest.raises(InvalidRequest) as exc_info:
        RequestParser().feed(raw)
    assert exc_info.value.status == status
    with pytest.raises(InvalidRequest) as exc_info:
        feed_bytewise(RequestParser(), raw)
    assert exc_info.value.status == status


def test_chunked_refusal_reason() -> None:
    """Transfer-Encoding gets 501 with a fixed, short reason."""
    with pytest.raises(InvalidRequest) as exc_info:
        RequestParser().feed(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert exc_info.value.reason == "chunked request bodies are not supported"


def test_request_line_too_long_is_414_before_crlf() -> None:
    """A request line over max_line_size is refused with 414 without waiting for CRLF."""
    parser = RequestParser(max_line_size=100)
    assert parser.feed(b"GET /" + b"a" * 95) is None  # exactly 100 bytes
    with pytest.raises(InvalidRequest) as exc_info:
        parser.feed(b"a")
    assert exc_info.value.status == 414


def test_request_line_at_limit_is_accepted() -> None:
    """A request line of exactly max_line_size bytes passes."""
    line = b"GET /" + b"a" * 86 + b" HTTP/1.1"
    assert len(line) == 100
    assert RequestParser(max_line_size=100).feed(line + b"\r\n\r\n") is not None


HEADERS_20 = b"GET / HTTP/1.1\r\n" + b"X: 12345678\r\n" * 20


@pytest.mark.parametrize(
    ("limits", "raw", "status"),
    [
        ({"max_line_size": 20}, b"GET /" + b"a" * 30 + b" HTTP/1.1\r\n", 414),
        ({"max_line_size": 50}, b"GET / HTTP/1.1\r\nX: " + b"a" * 100, 431),
        ({"max_line_size": 50}, b"GET / HTTP/1.1\r\nX: " + b"a" * 100 + b"\r\n", 431),
        ({"max_headers": 2}, b"GET / HTTP/1.1\r\n" + b"X: 1\r\n" * 3 + b"\r\n", 431),
        ({"max_request_size": 100}, HEADERS_20, 431),
        ({"max_request_size": 100}, HEADERS_20 + b"\r\n", 431),
        ({"max_request_size": 500}, b"POST / HTTP/1.1\r\nContent-Length: 1000\r\n\r\n", 413),
    ],
    ids=["request-line", "partial-header", "header", "count", "head", "full-head", "body"],
)
def test_limits(limits: dict[str, int], raw: bytes, status: int) -> None:
    """Each limit is enforced with its status: 414 request line, 431 head, 413 body.

    The body limit applies as soon as Content-Length announces it, before any byte of it.
    """
    with pytest.raises(InvalidRequest) as exc_info:
        RequestParser(**limits).feed(raw)  # type: ignore[arg-type]
    assert exc_info.value.status == status


def test_limits_are_inclusive() -> None:
    """Exactly max_headers fields and exactly max_request_size bytes are accepted."""
    raw = b"GET / HTTP/1.1\r\n" + b"X: 1\r\n" * 3 + b"\r\n"
    assert RequestParser(max_headers=3, max_request_size=len(raw)).feed(raw) is not None


def test_partial_head_over_max_request_size_is_431() -> None:
    """A head that grows past max_request_size is refused before its line ends."""
    parser = RequestParser(max_request_size=100)
    assert parser.feed(b"GET / HTTP/1.1\r\nX: " + b"a" * 80) is None
    with pytest.raises(InvalidRequest) as exc_info:
        parser.feed(b"a" * 10)
    assert exc_info.value.status == 431


def test_no_total_limit() -> None:
    """max_request_size=None accepts large requests."""
    raw = b"POST / HTTP/1.1\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100000
    request = RequestParser(max_request_size=None).feed(raw)
    assert request is not None and len(request.body) == 100000


def test_errors_are_sticky() -> None:
    """After a refusal the parser keeps raising the same error."""
    parser = RequestParser()
    with pytest.raises(InvalidRequest) as first:
        parser.feed(b"BAD\r\n")
    with pytest.raises(InvalidRequest) as second:
        parser.feed(b"GET / HTTP/1.1\r\n\r\n")
    assert second.value is first.value


def test_feed_after_completion_is_misuse() -> None:
    """Feeding a completed parser is local misuse: InvalidState."""
    parser = RequestParser()
    assert parser.feed(UPGRADE) is not None
    with pytest.raises(InvalidState):
        parser.feed(b"more")


def test_crlf_split_across_feeds() -> None:
    """A CRLF split between two feeds is found."""
    parser = RequestParser()
    assert parser.feed(b"GET / HTTP/1.1\r") is None
    assert parser.feed(b"\nHost: x\r") is None
    assert parser.feed(b"\n\r") is None
    request = parser.feed(b"\n")
    assert request is not None and request.headers["Host"] == "x"


def test_large_request_byte_by_byte() -> None:
    """A 60 KB request fed byte by byte parses (the search is linear, not quadratic)."""
    raw = b"GET / HTTP/1.1\r\n" + b"X-Filler: " + b"a" * 8000 + b"\r\n"
    raw += b"Y: " + b"b" * 100 + b"\r\n"
    raw += b"".join(b"H%d: %s\r\n" % (i, b"c" * 400) for i in range(120)) + b"\r\n"
    parser = RequestParser()
    request = feed_bytewise(parser, raw)
    assert isinstance(request, Request)
    assert len(request.headers) == 122


# Request and Response values.


def test_request_serialize() -> None:
    """A request serializes as HTTP/1.1, with Content-Length for a body."""
    assert Request("GET", "/", [("Host", "x")]).serialize() == b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    assert (
        Request("POST", "/f", Headers([("Host", "x")]), b"abc").serialize()
        == b"POST /f HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
    )
    explicit = Request("POST", "/f", [("content-length", "3")], b"abc")
    assert explicit.serialize().count(b"ength") == 1


def test_request_copies_headers() -> None:
    """The request owns its headers: changing the caller's Headers does not leak in."""
    headers = Headers([("Host", "x")])
    request = Request("GET", "/", headers)
    headers.add("X", "1")
    assert "X" not in request.headers


@pytest.mark.parametrize(
    ("method", "path"), [("G T", "/"), ("", "/"), ("GET", "/a b"), ("GET", "")]
)
def test_request_refuses_unsendable_values(method: str, path: str) -> None:
    """A request that could not be put on a request line cannot be built."""
    with pytest.raises(ValueError):
        Request(method, path)


def test_response_default_reason() -> None:
    """The reason defaults to the standard phrase, or empty for unknown statuses."""
    assert Response(101).reason == "Switching Protocols"
    assert Response(404).reason == "Not Found"
    assert Response(599).reason == ""
    assert Response(200, "Fine").reason == "Fine"


@pytest.mark.parametrize(("status", "reason"), [(99, ""), (1000, ""), (200, "a\r\nb")])
def test_response_refuses_invalid_values(status: int, reason: str) -> None:
    """Statuses outside 100..999 and reasons with line breaks are refused."""
    with pytest.raises(ValueError):
        Response(status, reason)


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (Response(101), b"HTTP/1.1 101 Switching Protocols\r\n\r\n"),
        (Response(100), b"HTTP/1.1 100 Continue\r\n\r\n"),
        (Response(204), b"HTTP/1.1 204 No Content\r\n\r\n"),
        (Response(304), b"HTTP/1.1 304 Not Modified\r\n\r\n"),
        (Response(200), b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        (Response(404, body=b"no"), b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno"),
        (
            Response(200, headers=[("Content-Length", "2")], body=b"ok"),
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        ),
    ],
)
def test_response_serialize_content_length(response: Response, expected: bytes) -> None:
    """Content-Length is added when missing, except for 1xx, 204 and 304 without a body."""
    assert response.serialize() == expected


def test_response_helpers() -> None:
    """text/json/html/bytes set the body, Content-Type and Content-Length."""
    text = Response.text(200, "h\u00e9")
    assert text.body == "h\u00e9".encode()
    assert text.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert text.headers["Content-Length"] == "3"
    data = Response.json(201, {"a": [1, 2], "b": "\u00e9"}, headers=[("X", "1")])
    assert data.body == '{"a":[1,2],"b":"\u00e9"}'.encode()
    assert json.loads(data.body) == {"a": [1, 2], "b": "\u00e9"}
    assert data.headers["Content-Type"] == "application/json"
    assert data.headers["X"] == "1"
    html = Response.html(200, "<p>hi</p>")
    assert html.headers["content-type"] == "text/html; charset=utf-8"
    raw = Response.bytes(200, b"\x89PNG", "image/png", {"Cache-Control": "no-cache"})
    assert raw.headers["Content-Type"] == "image/png"
    assert raw.headers["Cache-Control"] == "no-cache"
    custom = Response.text(200, "x", headers=[("Content-Type", "text/csv")])
    assert custom.headers.get_all("Content-Type") == ["text/csv"]
    assert raw.serialize().count(b"Content-Length") == 1


def test_response_json_refuses_unserializable() -> None:
    """Objects json cannot encode raise TypeError."""
    with pytest.raises(TypeError):
        Response.json(200, object())


# Responses.


def test_101_with_frames_in_the_same_segment() -> None:
    """Bytes after a 101 are frames: they stay in leftover, never in a body."""
    parser = ResponseParser()
    response = parser.feed(SWITCHING + b"\x81\x05hello")
    assert response is not None
    assert response.status == 101
    assert response.reason == "Switching Protocols"
    assert response.body == b""
    assert response.headers["Sec-WebSocket-Accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert parser.leftover == b"\x81\x05hello"


def test_101_with_content_length_has_no_body() -> None:
    """Even with a Content-Length, a 101 has no body."""
    parser = ResponseParser()
    response = parser.feed(b"HTTP/1.1 101 OK\r\nContent-Length: 3\r\n\r\nabc")
    assert response is not None and response.body == b""
    assert parser.leftover == b"abc"


def test_response_byte_by_byte() -> None:
    """Feeding a response one byte at a time gives it only at the last byte."""
    raw = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\n\r\nforbidden"
    response = feed_bytewise(ResponseParser(), raw)
    assert isinstance(response, Response)
    assert (response.status, response.body) == (403, b"forbidden")


@pytest.mark.parametrize(
    ("raw", "body", "leftover"),
    [
        (b"HTTP/1.1 204 No Content\r\nContent-Length: 2\r\n\r\nxx", b"", b"xx"),
        (b"HTTP/1.1 304 Not Modified\r\n\r\n", b"", b""),
        (b"HTTP/1.1 100 Continue\r\n\r\n", b"", b""),
        (b"HTTP/1.1 200 OK\r\n\r\nuntil close", b"", b"until close"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab", b"", b"2\r\nab"),
        (b"HTTP/1.0 500 Oops\r\nContent-Length: 2\r\n\r\nab", b"ab", b""),
    ],
)
def test_response_bodies(raw: bytes, body: bytes, leftover: bytes) -> None:
    """Only a Content-Length body of a status that allows one is read."""
    parser = ResponseParser()
    response = parser.feed(raw)
    assert response is not None
    assert response.body == body
    assert parser.leftover == leftover


def test_status_line_without_reason() -> None:
    """A status line with no reason phrase (even without the SP) is tolerated."""
    response = ResponseParser().feed(b"HTTP/1.1 101\r\n\r\n")
    assert response is not None and response.status == 101
    response = ResponseParser().feed(b"HTTP/1.1 599 \r\n\r\n")
    assert response is not None and (response.status, response.reason) == (599, "")


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"HTTP/2 101\r\n\r\n", 0),
        (b"HTTP/1.1 10 Short\r\n\r\n", 0),
        (b"HTTP/1.1 099 Low\r\n\r\n", 0),
        (b"ICY 200 OK\r\n\r\n", 0),
        (b"HTTP/1.1 101 Switching\x00\r\n\r\n", 0),
        (b"HTTP/1.1 101 OK\r\nBad Header: x\r\n\r\n", 101),
        (b"HTTP/1.1 404 No\r\nContent-Length: x\r\n\r\n", 404),
    ],
)
def test_malformed_responses(raw: bytes, status: int) -> None:
    """Malformed responses raise InvalidResponse with the status read so far."""
    with pytest.raises(InvalidResponse) as exc_info:
        ResponseParser().feed(raw)
    assert exc_info.value.status == status


def test_response_limits() -> None:
    """Response line, header count and total size limits raise InvalidResponse."""
    with pytest.raises(InvalidResponse, match="line too long"):
        ResponseParser(max_line_size=10).feed(b"HTTP/1.1 101 Switching Protocols\r\n")
    with pytest.raises(InvalidResponse, match="too many"):
        ResponseParser(max_headers=1).feed(b"HTTP/1.1 101 OK\r\nA: 1\r\nB: 2\r\n\r\n")
    with pytest.raises(InvalidResponse, match="response header fields too large"):
        ResponseParser(max_response_size=20).feed(b"HTTP/1.1 101 OK\r\nA: 1234567890\r\n\r\n")
    with pytest.raises(InvalidResponse, match="content too large") as exc_info:
        ResponseParser(max_response_size=100).feed(
            b"HTTP/1.1 500 Error\r\nContent-Length: 1000\r\n\r\n"
        )
    assert exc_info.value.status == 500


# Round trips.

tchar = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
names = st.text(alphabet=tchar, min_size=1, max_size=20).filter(
    lambda n: n.lower() not in ("content-length", "transfer-encoding")
)
values = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=30,
).map(lambda v: v.strip())
header_lists = st.lists(st.tuples(names, values), max_size=20)
targets = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1)


@given(
    method=st.text(alphabet=tchar, min_size=1, max_size=10),
    path=targets,
    headers=header_lists,
    body=st.binary(max_size=100),
    chunk=st.integers(min_value=1, max_value=50),
)
def test_request_round_trip(
    method: str, path: str, headers: list[tuple[str, str]], body: bytes, chunk: int
) -> None:
    """Serializing a request and parsing it back, in any chunking, gives it back."""
    request = Request(method, path, headers, body)
    raw = request.serialize()
    parser = RequestParser()
    parsed = None
    for i in range(0, len(raw), chunk):
        assert parsed is None
        parsed = parser.feed(raw[i : i + chunk])
    expected_headers = list(headers)
    if body:
        expected_headers.append(("Content-Length", str(len(body))))
    assert parsed == Request(method, path, expected_headers, body)


@given(
    status=st.integers(min_value=100, max_value=599),
    headers=header_lists,
    body=st.binary(max_size=100),
    trailing=st.binary(max_size=20),
)
def test_response_round_trip(
    status: int, headers: list[tuple[str, str]], body: bytes, trailing: bytes
) -> None:
    """Serializing a response with a Content-Length and parsing it back gives it back."""
    if status < 200 or status in (204, 304):
        body = b""
    all_headers = [*headers, ("Content-Length", str(len(body)))]
    response = Response(status, "", all_headers, body)
    parser = ResponseParser()
    assert parser.feed(response.serialize() + trailing) == response
    assert parser.leftover == trailing


request_like = st.lists(
    st.sampled_from(
        [
            b"GET / HTTP/1.1\r\n",
            b"Host: x\r\n",
            b"Content-Length: 3\r\n",
            b"\r\n",
            b"\r",
            b"\n",
            b" ",
            b":",
            b"\x00",
            b"\xff",
            b"abc",
            b"HTTP/1.1 101 OK\r\n",
            b"Transfer-Encoding: x\r\n",
        ]
    )
    | st.binary(max_size=8),
    max_size=30,
).map(b"".join)


@given(data=request_like, chunk=st.integers(min_value=1, max_value=16))
def test_garbage_only_raises_refusals(data: bytes, chunk: int) -> None:
    """Whatever the peer sends, the parsers return, wait, or refuse: nothing else escapes."""
    for parser, refusal in (
        (RequestParser(max_line_size=64), InvalidRequest),
        (ResponseParser(max_line_size=64), InvalidResponse),
    ):
        try:
            for i in range(0, len(data), chunk):
                if parser.feed(data[i : i + chunk]) is not None:
                    break
        except refusal:
            pass


# The one-pass request parser (parse_request_head) against the careful one.

BROWSER_UPGRADE = (
    b"GET /chat?room=1 HTTP/1.1\r\n"
    b"Host: example.com:8765\r\n"
    b"Connection: Upgrade\r\n"
    b"Pragma: no-cache\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0.0.0 Safari/537.36\r\n"
    b"Upgrade: websocket\r\n"
    b"Origin: https://example.com\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"Accept-Language: en-US,en;q=0.9\r\n"
    b"Cookie: session=abc; theme=dark\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    b"\r\n"
)


def parse(data: bytes | bytearray, **limits: int | None) -> tuple[str, object, bytes]:
    """What RequestParser makes of ``data`` fed at once: the one-pass path for ``bytes``
    when it applies, the line-by-line path always for a ``bytearray`` (see ``careful``)."""
    parser = RequestParser(**limits)  # type: ignore[arg-type]
    try:
        request = parser.feed(data)  # type: ignore[arg-type]
    except InvalidRequest as exc:
        return "refused", (exc.status, exc.reason), b""
    if request is None:
        return "incomplete", None, b""
    shape = (request.method, request.path, request.headers.items(), request.body)
    return "request", shape, parser.leftover


def careful(data: bytes, **limits: int | None) -> tuple[str, object, bytes]:
    """The line-by-line parser's result: the one-pass path only takes ``bytes``."""
    return parse(bytearray(data), **limits)


def whole(data: bytes, **limits: int | None) -> tuple[str, object, bytes]:
    """RequestParser's result for ``data`` in one ``bytes`` feed."""
    return parse(data, **limits)


@pytest.mark.parametrize("data", [UPGRADE, BROWSER_UPGRADE, b"GET / HTTP/1.0\r\n\r\n"])
def test_plain_requests_take_the_one_pass_path(data: bytes) -> None:
    """Usual upgrade requests parse in one pass, to what the careful parser gives."""
    parsed = parse_request_head(data + b"\x81\x80")
    assert parsed is not None
    request, end = parsed
    assert end == len(data)
    assert careful(data + b"\x81\x80") == (
        "request",
        (request.method, request.path, request.headers.items(), b""),
        b"\x81\x80",
    )


@pytest.mark.parametrize(
    ("data", "limits"),
    [
        (UPGRADE[:-2], {}),  # incomplete
        (b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi", {}),  # a body
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", {}),
        (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", {}),  # space before the colon
        (b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", {}),
        (b"GET / HTTP/1.1\r\nHost: x\x00\r\n\r\n", {}),
        (b"GET / HTTP/1.1\r\nHost: x\ny: z\r\n\r\n", {}),  # bare LF
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", {}),
        (b"GET  / HTTP/1.1\r\n\r\n", {}),
        (b"G\xc9T / HTTP/1.1\r\n\r\n", {}),
        (b"GET /\xff HTTP/1.1\r\n\r\n", {}),
        (UPGRADE, {"max_headers": 3}),
        (UPGRADE, {"max_line_size": 20}),
        (UPGRADE, {"max_request_size": 100}),
    ],
)
def test_unusual_requests_are_left_to_the_careful_parser(
    data: bytes, limits: dict[str, int]
) -> None:
    """Anything but a complete, plain, bodiless head within the limits is not taken."""
    assert parse_request_head(data, **limits) is None
    assert whole(data, **limits) == careful(data, **limits)


_request_lines = st.sampled_from(
    [
        b"GET / HTTP/1.1",
        b"GET /chat?x=1&y=%20 HTTP/1.1",
        b"POST /p HTTP/1.0",
        b"get /a HTTP/1.1",
        b"GET / HTTP/1.2",
        b"GET / HTTP/2.0",
        b"GET  / HTTP/1.1",
        b"GET / HTTP/1.1 ",
        b"G(T / HTTP/1.1",
        b"GET /\x7f HTTP/1.1",
        b"GET /\xe9 HTTP/1.1",
        b"GET",
        b"",
    ]
)
_names = st.sampled_from(
    [
        b"Host",
        b"Upgrade",
        b"connection",
        b"Sec-WebSocket-Key",
        b"X-A!#$%&'*+-.^_`|~0",
        b"Content-Length",
        b"Transfer-Encoding",
        b"",
        b"Bad Name",
        b"Bad\x00",
        b"N\xe9",
        b" Host",
        b"\tHost",
        b"Host ",
    ]
) | st.binary(min_size=1, max_size=6)
_values = st.sampled_from(
    [
        b" websocket",
        b"Upgrade",
        b" 3",
        b" a, b ,c",
        b"  padded \t ",
        b" \t",
        b"",
        b" caf\xe9",
        b" x\x7fy",
        b" x\ry",
        b" x\ny",
        b" tab\there",
        b": colon",
        b" 12345678901234567890",
    ]
) | st.binary(max_size=10)
_fields = st.lists(st.tuples(_names, st.sampled_from([b":", b"", b"::"]), _values), max_size=8)


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    line = draw(_request_lines)
    fields = b"".join(name + sep + value + b"\r\n" for name, sep, value in draw(_fields))
    end = draw(st.sampled_from([b"\r\n", b"\r\n", b"\n", b""]))
    tail = draw(st.sampled_from([b"", b"abc", b"\x81\x80\x00\x00\x00\x00", b"\r\n\r\n"]))
    return line + b"\r\n" + fields + end + tail


_plain_values = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=12
).map(lambda text: text.encode("latin-1"))


@st.composite
def near_plain_requests(draw: st.DrawFn) -> bytes:
    """Plain requests (the one-pass path's own), some with one byte changed or inserted."""
    method = draw(st.sampled_from([b"GET", b"POST", b"OPTIONS"]))
    path = draw(st.sampled_from([b"/", b"/chat?room=1", b"*", b"/a%20b"]))
    version = draw(st.sampled_from([b"1.1", b"1.0"]))
    fields = draw(
        st.lists(
            st.tuples(
                st.sampled_from([b"Host", b"Upgrade", b"X-Y", b"Sec-WebSocket-Key", b"a.b~c"]),
                st.sampled_from([b": ", b": ", b":", b":\t", b" :"]),
                _plain_values,
                st.sampled_from([b"", b"", b" ", b"\t "]),
            ),
            max_size=6,
        )
    )
    data = b"%s %s HTTP/%s\r\n" % (method, path, version)
    data += b"".join(n + sep + v + trail + b"\r\n" for n, sep, v, trail in fields) + b"\r\n"
    if draw(st.integers(min_value=0, max_value=2)) == 0:
        at = draw(st.integers(min_value=0, max_value=len(data)))
        byte = draw(st.sampled_from([b"\r", b"\n", b" ", b"\t", b":", b"\x00", b"\x7f", b"\xe9"]))
        data = data[:at] + byte + data[at + draw(st.integers(min_value=0, max_value=1)) :]
    return data + draw(st.sampled_from([b"", b"\x81\x80abcd"]))


_limits = st.fixed_dictionaries(
    {},
    optional={
        "max_line_size": st.integers(min_value=0, max_value=300),
        "max_headers": st.integers(min_value=0, max_value=8),
        "max_request_size": st.none() | st.integers(min_value=0, max_value=400),
    },
)


@given(data=requests() | near_plain_requests(), limits=_limits)
def test_one_pass_and_careful_parsers_agree(data: bytes, limits: dict[str, int | None]) -> None:
    """Both paths give the same result, refusal or request, whichever input they get."""
    assert whole(data, **limits) == careful(data, **limits)


@given(data=requests() | near_plain_requests(), limits=_limits)
def test_one_pass_parser_only_accepts_what_the_careful_one_accepts(
    data: bytes, limits: dict[str, int | None]
) -> None:
    """Whatever parse_request_head returns is exactly the careful parser's request."""
    parsed = parse_request_head(data, **limits)  # type: ignore[arg-type]
    if parsed is not None:
        request, end = parsed
        shape = (request.method, request.path, request.headers.items(), request.body)
        assert careful(data, **limits) == ("request", shape, data[end:])
