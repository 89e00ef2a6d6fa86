"""Tests for wshub.protocol.server: the server side of the opening handshake (RFC 6455 §4.2)."""

from __future__ import annotations

import binascii
from base64 import b64decode, b64encode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wshub.exceptions import InvalidRequest
from wshub.protocol.extensions.permessage_deflate import (
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)
from wshub.protocol.headers import Headers, parse_tokens
from wshub.protocol.http11 import (
    Request,
    RequestParser,
    Response,
    ResponseParser,
    parse_request_head,
)
from wshub.protocol.server import (
    Accepted,
    accept_key,
    accept_request,
    accept_request_bytes,
    is_upgrade_request,
    reject_response,
)

# RFC 6455 §1.3.
RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

BASE = [
    ("Host", "server.example.com"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", RFC_KEY),
    ("Sec-WebSocket-Version", "13"),
]


def make_request(
    replace: dict[str, str | None] | None = None,
    add: list[tuple[str, str]] | None = None,
    method: str = "GET",
) -> Request:
    """The RFC 6455 §1.3 request with some headers replaced (None removes one)."""
    replace = replace or {}
    headers = [(n, replace.get(n, v)) for n, v in BASE]
    return Request(method, "/chat", [(n, v) for n, v in headers if v is not None] + list(add or []))


def refusal(request: Request, **kwargs: object) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as exc_info:
        accept_request(request, **kwargs)  # type: ignore[arg-type]
    return exc_info.value


def test_accept_key_rfc_example() -> None:
    """The §1.3 example key gives the §1.3 accept value."""
    assert accept_key(RFC_KEY) == RFC_ACCEPT


def test_rfc_example_handshake() -> None:
    """The §1.3 request is answered with a 101 carrying the §1.3 accept value."""
    raw = (
        b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Origin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    request = RequestParser().feed(raw)
    assert request is not None
    accepted = accept_request(request, subprotocols=["chat"])
    assert isinstance(accepted, Accepted)
    assert accepted.subprotocol == "chat"
    assert accepted.extensions == []
    response = ResponseParser().feed(accepted.response.serialize())
    assert response is not None
    assert response.status == 101
    assert list(response.headers) == [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", RFC_ACCEPT),
        ("Sec-WebSocket-Protocol", "chat"),
        ("Server", "wshub"),
    ]


def test_tokens_are_case_insensitive_and_in_lists() -> None:
    """Upgrade and Connection tokens match case-insensitively inside lists."""
    request = make_request({"Upgrade": "WebSocket", "Connection": "keep-alive, UPGRADE"})
    assert accept_request(request).response.status == 101


def test_server_header_can_be_omitted() -> None:
    """server_header=None sends no Server header."""
    response = accept_request(make_request(), server_header=None).response
    assert "Server" not in response.headers
    assert accept_request(make_request(), server_header="x/1").response.headers["Server"] == "x/1"


def test_method_must_be_get() -> None:
    """A non-GET upgrade is refused with 405 and Allow: GET."""
    error = refusal(make_request(method="POST"))
    assert error.status == 405
    assert error.headers == [("Allow", "GET")]


def test_http_1_0_upgrade_is_refused_with_400() -> None:
    """§4.1: the handshake is an HTTP/1.1 request; an HTTP/1.0 one is refused, never 101."""
    request = Request("GET", "/chat", BASE, version="HTTP/1.0")
    error = refusal(request)
    assert error.status == 400
    assert "HTTP/1.1" in error.reason
    with pytest.raises(InvalidRequest):
        accept_request_bytes(request)
    assert reject_response(error).status == 400


@pytest.mark.parametrize("parse", ["careful", "one-pass"])
def test_http_1_0_upgrade_from_the_wire_is_refused(parse: str) -> None:
    """The version read from the request line reaches the handshake, on both parsers."""
    head = Request("GET", "/chat", BASE, version="HTTP/1.0").serialize()
    assert head.startswith(b"GET /chat HTTP/1.0\r\n")
    if parse == "careful":
        request = RequestParser().feed(head)
    else:
        parsed = parse_request_head(head)
        assert parsed is not None
        request = parsed[0]
    assert request is not None
    assert request.version == "HTTP/1.0"
    assert is_upgrade_request(request)
    assert refusal(request).status == 400


def test_request_version_is_checked() -> None:
    """Only HTTP/1.1 and HTTP/1.0 requests can be built."""
    assert Request("GET", "/").version == "HTTP/1.1"
    with pytest.raises(ValueError, match="version"):
        Request("GET", "/", version="HTTP/2.0")


@pytest.mark.parametrize("upgrade", [None, "h2c", "websocket2", ""])
def test_upgrade_must_be_websocket(upgrade: str | None) -> None:
    """Without Upgrade: websocket the answer is 426 naming what we speak."""
    error = refusal(make_request({"Upgrade": upgrade}))
    assert error.status == 426
    assert ("Upgrade", "websocket") in error.headers
    assert ("Connection", "Upgrade") in error.headers
    assert ("Sec-WebSocket-Version", "13") in error.headers


@pytest.mark.parametrize("connection", [None, "keep-alive", "upgrade-please"])
def test_connection_must_contain_upgrade(connection: str | None) -> None:
    """Without the Connection: Upgrade token the answer is 400."""
    assert refusal(make_request({"Connection": connection})).status == 400


def test_host_is_required_once() -> None:
    """A missing or repeated Host is refused with 400."""
    assert refusal(make_request({"Host": None})).status == 400
    assert refusal(make_request(add=[("Host", "other")])).status == 400


@pytest.mark.parametrize("version", [None, "8", "12", "13, 8", " 14"])
def test_version_must_be_13(version: str | None) -> None:
    """Any version but 13 gets 426 with Sec-WebSocket-Version: 13 (§4.2.2)."""
    error = refusal(make_request({"Sec-WebSocket-Version": version}))
    assert error.status == 426
    assert error.headers == [("Sec-WebSocket-Version", "13")]


def test_repeated_version_is_refused() -> None:
    """Two version headers are refused like a wrong version."""
    assert refusal(make_request(add=[("Sec-WebSocket-Version", "13")])).status == 426


@pytest.mark.parametrize(
    "key",
    [
        None,
        "",
        "not base64!",
        "dGhlIHNhbXBsZSBub25jZQ",  # missing padding
        "c2hvcnQ=",  # 5 bytes
        "dGhlIHNhbXBsZSBub25jZSEh",  # 18 bytes
        "dGhlIHNhbXBsZSBub25jZQ==\u00e9",
    ],
)
def test_key_must_be_16_bytes_of_base64(key: str | None) -> None:
    """A missing or malformed key is refused with 400."""
    assert refusal(make_request({"Sec-WebSocket-Key": key})).status == 400


def test_repeated_key_is_refused() -> None:
    """Two keys are refused with 400."""
    assert refusal(make_request(add=[("Sec-WebSocket-Key", RFC_KEY)])).status == 400


def test_origin_allowlist() -> None:
    """Origins outside the allowlist get 403; None in the list allows no Origin."""
    good = make_request(add=[("Origin", "https://good.example")])
    bad = make_request(add=[("Origin", "https://evil.example")])
    none = make_request()
    assert accept_request(good, origins=["https://good.example"]).response.status == 101
    assert refusal(bad, origins=["https://good.example"]).status == 403
    assert refusal(none, origins=["https://good.example"]).status == 403
    assert accept_request(none, origins=[None]).response.status == 101
    assert accept_request(bad).response.status == 101  # no allowlist: anything goes
    repeated = make_request(add=[("Origin", "https://good.example")] * 2)
    assert refusal(repeated, origins=["https://good.example"]).status == 400


def test_subprotocol_server_preference() -> None:
    """The first of the server's subprotocols that the client offered is selected."""
    request = make_request(
        add=[("Sec-WebSocket-Protocol", "a, b"), ("Sec-WebSocket-Protocol", "c")]
    )
    assert accept_request(request, subprotocols=["c", "b"]).subprotocol == "c"
    assert accept_request(request, subprotocols=["x", "b", "a"]).subprotocol == "b"


def test_no_subprotocol_match_sends_no_header() -> None:
    """Without a match, no Sec-WebSocket-Protocol is sent and the client decides."""
    request = make_request(add=[("Sec-WebSocket-Protocol", "a")])
    accepted = accept_request(request, subprotocols=["x"])
    assert accepted.subprotocol is None
    assert "Sec-WebSocket-Protocol" not in accepted.response.headers
    assert accept_request(request).subprotocol is None
    assert accept_request(make_request(), subprotocols=["x"]).subprotocol is None


def test_extension_negotiated() -> None:
    """A permessage-deflate offer is answered in Sec-WebSocket-Extensions."""
    request = make_request(add=[("Sec-WebSocket-Extensions", "permessage-deflate")])
    accepted = accept_request(request, extensions=[ServerPerMessageDeflateFactory()])
    assert accepted.response.headers["Sec-WebSocket-Extensions"] == "permessage-deflate"
    assert len(accepted.extensions) == 1
    assert isinstance(accepted.extensions[0], PerMessageDeflate)


def test_extension_falls_back_to_next_offer() -> None:
    """An unacceptable offer falls through to the client's next one."""
    offers = (
        "permessage-deflate; unknown_param, x-other, permessage-deflate; server_max_window_bits=10"
    )
    request = make_request(add=[("Sec-WebSocket-Extensions", offers)])
    accepted = accept_request(request, extensions=[ServerPerMessageDeflateFactory()])
    assert (
        accepted.response.headers["Sec-WebSocket-Extensions"]
        == "permessage-deflate; server_max_window_bits=10"
    )


def test_offers_may_span_several_headers() -> None:
    """Offers are collected from every Sec-WebSocket-Extensions header."""
    request = make_request(
        add=[
            ("Sec-WebSocket-Extensions", "permessage-deflate; bogus"),
            ("Sec-WebSocket-Extensions", "permessage-deflate; client_no_context_takeover"),
        ]
    )
    accepted = accept_request(request, extensions=[ServerPerMessageDeflateFactory()])
    assert (
        accepted.response.headers["Sec-WebSocket-Extensions"]
        == "permessage-deflate; client_no_context_takeover"
    )


def test_no_acceptable_offer_means_no_extension() -> None:
    """When no offer is acceptable, the connection goes on without the extension."""
    request = make_request(add=[("Sec-WebSocket-Extensions", "permessage-deflate; x=1, foo")])
    accepted = accept_request(request, extensions=[ServerPerMessageDeflateFactory()])
    assert accepted.extensions == []
    assert "Sec-WebSocket-Extensions" not in accepted.response.headers


def test_extensions_ignored_without_factories() -> None:
    """Offers are ignored, even malformed ones, when we support no extension."""
    request = make_request(add=[("Sec-WebSocket-Extensions", "permessage-deflate;;")])
    assert accept_request(request).extensions == []


def test_malformed_extensions_header_is_400() -> None:
    """A malformed Sec-WebSocket-Extensions header is refused with 400."""
    request = make_request(add=[("Sec-WebSocket-Extensions", "permessage-deflate;;")])
    assert refusal(request, extensions=[ServerPerMessageDeflateFactory()]).status == 400


def test_is_upgrade_request() -> None:
    """Only requests with the websocket upgrade token are upgrades."""
    assert is_upgrade_request(make_request())
    assert is_upgrade_request(make_request({"Upgrade": "HTTP/2.0, WebSocket"}))
    assert not is_upgrade_request(make_request({"Upgrade": None}))
    assert not is_upgrade_request(Request("GET", "/", [("Host", "x")]))


def test_reject_response() -> None:
    """A refusal becomes a short text response with its status and headers."""
    response = reject_response(InvalidRequest(403, "origin not allowed"))
    assert isinstance(response, Response)
    assert response.status == 403
    assert response.body == b"origin not allowed\n"
    assert response.headers["Connection"] == "close"
    assert response.headers["Server"] == "wshub"
    upgrade = reject_response(
        InvalidRequest(426, "upgrade required", [("Connection", "Upgrade")]), server_header=None
    )
    assert upgrade.headers.get_all("Connection") == ["Upgrade"]
    assert "Server" not in upgrade.headers
    assert isinstance(upgrade.headers, Headers)


def test_websockets_client_is_accepted() -> None:
    """An independent client (websockets' sans-I/O one) completes the handshake with us."""
    ws_client = pytest.importorskip("websockets.client")
    ws_uri = pytest.importorskip("websockets.uri")
    ws_deflate = pytest.importorskip("websockets.extensions.permessage_deflate")
    protocol = ws_client.ClientProtocol(
        ws_uri.parse_uri("ws://localhost:8765/chat?room=1"),
        origin="http://localhost:8765",
        subprotocols=["superchat", "chat"],
        extensions=[ws_deflate.ClientPerMessageDeflateFactory(client_max_window_bits=True)],
    )
    protocol.send_request(protocol.connect())
    request = RequestParser().feed(b"".join(protocol.data_to_send()))
    assert request is not None
    assert is_upgrade_request(request)
    accepted = accept_request(
        request,
        subprotocols=["chat"],
        origins=["http://localhost:8765"],
        extensions=[ServerPerMessageDeflateFactory(client_max_window_bits=10)],
    )
    protocol.receive_data(accepted.response.serialize())
    assert protocol.handshake_exc is None
    assert protocol.subprotocol == "chat"
    (their_extension,) = protocol.extensions
    assert their_extension.local_max_window_bits == 10
    (our_extension,) = accepted.extensions
    assert isinstance(our_extension, PerMessageDeflate)
    assert our_extension.remote_max_window_bits == 10


header_names = st.sampled_from(
    [
        "Host",
        "Upgrade",
        "Connection",
        "Sec-WebSocket-Key",
        "Sec-WebSocket-Version",
        "Sec-WebSocket-Protocol",
        "Sec-WebSocket-Extensions",
        "Origin",
    ]
)
header_values = st.sampled_from(
    [
        "",
        "websocket",
        "Upgrade",
        "13",
        RFC_KEY,
        "chat, x",
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; server_max_window_bits=8,",
        "permessage-deflate;;",
        'x-ext; a="b"',
        "http://a",
        "\u00e9",
    ]
)


@given(st.lists(st.tuples(header_names, header_values), max_size=12))
def test_any_request_is_accepted_or_refused(headers: list[tuple[str, str]]) -> None:
    """A request either upgrades or is refused with a 4xx; nothing else escapes."""
    try:
        accepted = accept_request(
            Request("GET", "/", headers),
            subprotocols=["chat"],
            origins=["http://a", None],
            extensions=[ServerPerMessageDeflateFactory()],
        )
    except InvalidRequest as exc:
        assert 400 <= exc.status < 500
    else:
        assert accepted.response.status == 101


@given(
    headers=st.lists(st.tuples(header_names, header_values), max_size=12),
    server_header=st.sampled_from(["wshub", None, "other/1.0"]),
)
def test_serialized_accept_is_the_response_serialized(
    headers: list[tuple[str, str]], server_header: str | None
) -> None:
    """accept_request_bytes refuses what accept_request refuses and gives its bytes otherwise."""
    settings: dict[str, object] = {
        "subprotocols": ["chat"],
        "origins": ["http://a", None],
        "extensions": [ServerPerMessageDeflateFactory()],
        "server_header": server_header,
    }
    request = Request("GET", "/", BASE + headers)
    try:
        accepted = accept_request(request, **settings)  # type: ignore[arg-type]
    except InvalidRequest as exc:
        with pytest.raises(InvalidRequest) as again:
            accept_request_bytes(request, **settings)  # type: ignore[arg-type]
        assert (again.value.status, again.value.reason) == (exc.status, exc.reason)
        return
    raw, subprotocol, extensions = accept_request_bytes(request, **settings)  # type: ignore[arg-type]
    assert raw == accepted.response.serialize()
    assert subprotocol == accepted.subprotocol
    assert [repr(e) for e in extensions] == [repr(e) for e in accepted.extensions]


def test_serialized_accept_of_the_rfc_example() -> None:
    """The usual 101 (no subprotocol, no extension) is the fixed template with §1.3's value."""
    raw, subprotocol, extensions = accept_request_bytes(make_request())
    assert raw == (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nServer: wshub\r\n\r\n"
    )
    assert (subprotocol, extensions) == (None, [])


def test_invalid_server_header_is_refused_locally() -> None:
    """A server header that could split the response raises ValueError, never reaches bytes."""
    with pytest.raises(ValueError):
        accept_request_bytes(make_request(), server_header="x\r\nSet-Cookie: a=b")


_base64ish = st.text(
    st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ \t\u00a0"),
    min_size=20,
    max_size=26,
)


@given(key=_base64ish | st.binary(min_size=16, max_size=16).map(lambda b: b64encode(b).decode()))
def test_key_check_is_strict_base64_of_16_bytes(key: str) -> None:
    """A key is accepted exactly when strict base64 decodes it to 16 bytes (RFC 6455 §4.1)."""
    try:
        valid = len(b64decode(key.strip().encode("ascii"), validate=True)) == 16
    except (binascii.Error, UnicodeEncodeError):
        valid = False
    try:
        accept_request(make_request({"Sec-WebSocket-Key": key}))
    except InvalidRequest as exc:
        assert not valid
        assert exc.status == 400
    else:
        assert valid


_token_values = st.lists(
    st.sampled_from(["Upgrade", "upgrade", "UPGRADE", "keep-alive", " ", "", ",", "\t"]), max_size=5
).map("".join)


@given(values=st.lists(_token_values, max_size=3))
def test_connection_tokens_are_found_in_any_list_form(values: list[str]) -> None:
    """Connection: upgrade is found as parse_tokens would find it, in any list and case."""
    expected = any(token.lower() == "upgrade" for token in parse_tokens(values))
    request = make_request(
        {"Connection": None}, add=[("Connection", value) for value in values if value.strip()]
    )
    try:
        accept_request(request)
    except InvalidRequest as exc:
        assert not expected
        assert exc.reason == "missing Connection: Upgrade"
    else:
        assert expected
