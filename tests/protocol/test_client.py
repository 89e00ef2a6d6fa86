"""Tests for wshub.protocol.client: the client side of the opening handshake (RFC 6455 §4.1)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wshub.exceptions import InvalidHandshake, InvalidResponse, NegotiationError
from wshub.protocol.client import ClientHandshake, frame_message_masked
from wshub.protocol.connection import Connection, Side
from wshub.protocol.events import Message
from wshub.protocol.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)
from wshub.protocol.frames import build_frame
from wshub.protocol.headers import Headers
from wshub.protocol.http11 import RequestParser, Response, ResponseParser
from wshub.protocol.server import accept_key, accept_request
from wshub.protocol.uri import parse_uri

RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def handshake(url: str = "ws://server.example.com/chat", **kwargs: object) -> ClientHandshake:
    return ClientHandshake(parse_uri(url), key=RFC_KEY, **kwargs)  # type: ignore[arg-type]


def switching(*extra: tuple[str, str], key: str = RFC_KEY) -> Response:
    headers = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", accept_key(key)),
        *extra,
    ]
    return Response(101, "", headers)


def test_request_matches_rfc() -> None:
    """The request carries the headers of RFC 6455 §4.1 and parses back."""
    client = handshake(origin="http://example.com", subprotocols=["chat", "superchat"])
    raw = client.request_bytes()
    assert raw.startswith(b"GET /chat HTTP/1.1\r\n")
    request = RequestParser().feed(raw)
    assert request == client.request
    headers = request.headers
    assert headers["Host"] == "server.example.com"
    assert headers["Upgrade"] == "websocket"
    assert headers["Connection"] == "Upgrade"
    assert headers["Sec-WebSocket-Key"] == RFC_KEY
    assert headers["Sec-WebSocket-Version"] == "13"
    assert headers["Origin"] == "http://example.com"
    assert headers["Sec-WebSocket-Protocol"] == "chat, superchat"
    assert headers["User-Agent"] == "wshub/0.1"
    assert "Sec-WebSocket-Extensions" not in headers


def test_random_key_is_16_bytes() -> None:
    """The default key is 16 random bytes in base64, new for each handshake (§4.1)."""
    keys = {ClientHandshake(parse_uri("ws://h/")).key for _ in range(10)}
    assert len(keys) == 10
    assert all(len(base64.b64decode(key, validate=True)) == 16 for key in keys)


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("ws://example.com/", "example.com"),
        ("ws://example.com:80/", "example.com"),
        ("wss://example.com:443/", "example.com"),
        ("ws://example.com:443/", "example.com:443"),
        ("wss://example.com:80/", "example.com:80"),
        ("ws://[::1]/", "[::1]"),
        ("ws://[::1]:8765/", "[::1]:8765"),
        ("ws://127.0.0.1:8765/", "127.0.0.1:8765"),
    ],
)
def test_host_header(url: str, host: str) -> None:
    """Host omits the default port and brackets IPv6 addresses."""
    assert handshake(url).request.headers["Host"] == host


def test_user_info_becomes_basic_auth() -> None:
    """Credentials in the URI are sent as Basic authorization."""
    request = handshake("ws://al%20ice:s3cr%3At@h/").request
    expected = base64.b64encode(b"al ice:s3cr:t").decode()
    assert request.headers["Authorization"] == f"Basic {expected}"


def test_additional_headers_replace_ours() -> None:
    """Additional headers are added; Host, Origin, User-Agent, Authorization replace ours."""
    request = handshake(
        "ws://u:p@h/",
        origin="http://a",
        additional_headers={"Host": "other", "X-Token": "t", "user-agent": "me"},
    ).request
    assert request.headers.get_all("Host") == ["other"]
    assert request.headers.get_all("User-Agent") == ["me"]
    assert request.headers["X-Token"] == "t"
    assert request.headers["Origin"] == "http://a"
    assert "Authorization" in request.headers
    pairs = handshake(additional_headers=[("X-A", "1"), ("X-A", "2")], user_agent=None).request
    assert pairs.headers.get_all("x-a") == ["1", "2"]
    assert "User-Agent" not in pairs.headers


def test_additional_headers_are_validated() -> None:
    """Header injection through additional headers is refused."""
    with pytest.raises(ValueError):
        handshake(additional_headers=[("X", "a\r\nEvil: 1")])


def test_extension_offers() -> None:
    """Each factory makes one offer, in order, in one header."""
    client = handshake(
        extensions=[
            ClientPerMessageDeflateFactory(server_max_window_bits=10),
            ClientPerMessageDeflateFactory(),
        ]
    )
    assert client.request.headers["Sec-WebSocket-Extensions"] == (
        "permessage-deflate; server_max_window_bits=10; client_max_window_bits, "
        "permessage-deflate; client_max_window_bits"
    )


def test_validate_against_our_server() -> None:
    """A client and our server agree on subprotocol and extensions."""
    client = handshake(
        subprotocols=["v2", "v1"],
        extensions=[ClientPerMessageDeflateFactory(client_no_context_takeover=True)],
    )
    request = RequestParser().feed(client.request_bytes())
    assert request is not None
    server = accept_request(
        request, subprotocols=["v1"], extensions=[ServerPerMessageDeflateFactory()]
    )
    accepted = client.validate(server.response)
    assert accepted.response is server.response
    assert accepted.subprotocol == "v1"
    (client_ext,) = accepted.extensions
    (server_ext,) = server.extensions
    assert isinstance(client_ext, PerMessageDeflate)
    assert client_ext.local_no_context_takeover
    assert server_ext.decompress(client_ext.compress(b"ping" * 50), fin=True, max_size=None) == (
        b"ping" * 50
    )


def test_non_101_is_refused_with_its_status() -> None:
    """Any status but 101 raises InvalidResponse carrying that status."""
    with pytest.raises(InvalidResponse) as exc_info:
        handshake().validate(Response.text(403, "no"))
    assert exc_info.value.status == 403


@pytest.mark.parametrize(
    "response",
    [
        Response(
            101, "", [("Connection", "Upgrade"), ("Sec-WebSocket-Accept", accept_key(RFC_KEY))]
        ),
        Response(
            101, "", [("Upgrade", "websocket"), ("Sec-WebSocket-Accept", accept_key(RFC_KEY))]
        ),
        Response(101, "", [("Upgrade", "websocket"), ("Connection", "Upgrade")]),
        switching(key="AAAAAAAAAAAAAAAAAAAAAA=="),
        switching(("Sec-WebSocket-Accept", accept_key(RFC_KEY))),
        switching(("Sec-WebSocket-Extensions", "permessage-deflate;;")),
    ],
    ids=["no-upgrade", "no-connection", "no-accept", "wrong-accept", "two-accepts", "bad-ext"],
)
def test_invalid_101_is_refused(response: Response) -> None:
    """A 101 without the right Upgrade, Connection or accept value is refused."""
    with pytest.raises(InvalidResponse) as exc_info:
        handshake(extensions=[ClientPerMessageDeflateFactory()]).validate(response)
    assert exc_info.value.status == 101


def test_tokens_are_case_insensitive() -> None:
    """Upgrade and Connection values match case-insensitively."""
    response = Response(
        101,
        "",
        [
            ("Upgrade", "WebSocket"),
            ("Connection", "keep-alive, upgrade"),
            ("Sec-WebSocket-Accept", accept_key(RFC_KEY)),
        ],
    )
    assert handshake().validate(response).subprotocol is None


@pytest.mark.parametrize(
    ("offered", "answered"),
    [([], "chat"), (["chat"], "other"), (["a", "b"], "a, b")],
)
def test_subprotocol_must_be_one_we_offered(offered: list[str], answered: str) -> None:
    """A subprotocol we did not offer, or several, fail negotiation."""
    client = handshake(subprotocols=offered)
    with pytest.raises(NegotiationError):
        client.validate(switching(("Sec-WebSocket-Protocol", answered)))


def test_no_subprotocol_is_allowed() -> None:
    """A server may select no subprotocol; the caller decides whether that is fine."""
    assert handshake(subprotocols=["chat"]).validate(switching()).subprotocol is None


@pytest.mark.parametrize(
    "answer",
    [
        "x-unknown",
        "permessage-deflate, permessage-deflate",
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; foo=1",
    ],
)
def test_extensions_must_match_our_offers(answer: str) -> None:
    """Unoffered, repeated or unacceptable extensions fail negotiation."""
    client = handshake(extensions=[ClientPerMessageDeflateFactory()])
    with pytest.raises(NegotiationError):
        client.validate(switching(("Sec-WebSocket-Extensions", answer)))


def test_extension_without_offer_is_refused() -> None:
    """An extension in the response when we offered none fails negotiation."""
    with pytest.raises(NegotiationError):
        handshake().validate(switching(("Sec-WebSocket-Extensions", "permessage-deflate")))


def test_answer_matches_second_offer() -> None:
    """With two offers of one extension, the factory that accepts the answer is used."""
    client = handshake(
        extensions=[
            ClientPerMessageDeflateFactory(server_no_context_takeover=True),
            ClientPerMessageDeflateFactory(),
        ]
    )
    accepted = client.validate(switching(("Sec-WebSocket-Extensions", "permessage-deflate")))
    (extension,) = accepted.extensions
    assert isinstance(extension, PerMessageDeflate)
    assert not extension.remote_no_context_takeover


def test_response_headers_type() -> None:
    """validate returns the response it was given."""
    response = switching()
    accepted = handshake().validate(response)
    assert accepted.response is response
    assert isinstance(accepted.response.headers, Headers)


def test_websockets_server_accepts_us() -> None:
    """Our client completes the handshake with an independent server (websockets')."""
    ws_server = pytest.importorskip("websockets.server")
    ws_deflate = pytest.importorskip("websockets.extensions.permessage_deflate")
    protocol = ws_server.ServerProtocol(
        subprotocols=["v1"],
        extensions=[ws_deflate.ServerPerMessageDeflateFactory(server_max_window_bits=11)],
    )
    client = ClientHandshake(
        parse_uri("ws://localhost:8765/path?q=1"),
        subprotocols=["v2", "v1"],
        extensions=[ClientPerMessageDeflateFactory()],
        origin="http://localhost:8765",
    )
    protocol.receive_data(client.request_bytes())
    (their_request,) = protocol.events_received()
    assert their_request.path == "/path?q=1"
    protocol.send_response(protocol.accept(their_request))
    parser = ResponseParser()
    response = parser.feed(b"".join(protocol.data_to_send()))
    assert response is not None
    accepted = client.validate(response)
    assert accepted.subprotocol == "v1"
    (extension,) = accepted.extensions
    assert isinstance(extension, PerMessageDeflate)
    assert extension.remote_max_window_bits == 11
    assert parser.leftover == b""


def test_websockets_server_refusal() -> None:
    """An independent server's refusal surfaces as InvalidResponse with its status."""
    ws_server = pytest.importorskip("websockets.server")
    protocol = ws_server.ServerProtocol(origins=["https://only.example"])
    client = handshake(origin="https://other.example")
    protocol.receive_data(client.request_bytes())
    (their_request,) = protocol.events_received()
    protocol.send_response(protocol.accept(their_request))
    response = ResponseParser().feed(b"".join(protocol.data_to_send()))
    assert response is not None
    with pytest.raises(InvalidResponse) as exc_info:
        client.validate(response)
    assert exc_info.value.status == 403


@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "Upgrade",
                    "Connection",
                    "Sec-WebSocket-Accept",
                    "Sec-WebSocket-Protocol",
                    "Sec-WebSocket-Extensions",
                ]
            ),
            st.sampled_from(
                [
                    "websocket",
                    "upgrade",
                    accept_key(RFC_KEY),
                    "chat",
                    "chat, x",
                    "",
                    "permessage-deflate",
                    "permessage-deflate; server_max_window_bits=9",
                    "permessage-deflate; x",
                    "permessage-deflate;;",
                    "other",
                ]
            ),
        ),
        max_size=8,
    ),
    st.sampled_from([101, 200, 301, 426]),
)
def test_any_response_is_accepted_or_refused(headers: list[tuple[str, str]], status: int) -> None:
    """A response either completes the handshake or raises InvalidHandshake."""
    client = handshake(subprotocols=["chat"], extensions=[ClientPerMessageDeflateFactory()])
    try:
        accepted = client.validate(Response(status, "", headers))
    except InvalidHandshake:
        pass
    else:
        assert status == 101
        assert accepted.subprotocol in (None, "chat")


# -- frame_message_masked: the client's send path without extensions ---------------------------


@given(
    message=st.text(max_size=300)
    | st.binary(max_size=300)
    | st.sampled_from([b"x" * 125, b"x" * 126, b"x" * 65535, b"x" * 65536, "é" * 70000])
    | st.binary(max_size=200).map(bytearray)
)
def test_masked_message_frame_is_what_the_core_sends(message: str | bytes) -> None:
    """The frame is the core's frame for the same key, and a server reads the message back."""
    frame = frame_message_masked(message)
    length = frame[1] & 0x7F
    key_at = 2 if length < 126 else (4 if length == 126 else 10)
    key = frame[key_at : key_at + 4]
    opcode = 0x1 if isinstance(message, str) else 0x2
    payload = message.encode() if isinstance(message, str) else bytes(message)
    assert frame == build_frame(opcode, payload, mask=key)
    server = Connection(Side.SERVER, max_size=None)
    server.receive_data(frame)
    received = server.events_received()
    assert received == [Message(message if isinstance(message, str) else bytes(message))]


def test_masked_message_frames_have_fresh_keys() -> None:
    """Every frame gets its own masking key (RFC 6455 §5.3)."""
    keys = {frame_message_masked(b"same")[2:6] for _ in range(64)}
    assert len(keys) > 1
