"""Tests for wshub.protocol.uri: WebSocket URIs (RFC 6455 §3)."""

from __future__ import annotations

import pytest

from wshub.exceptions import InvalidURI
from wshub.protocol.uri import WebSocketURI, parse_uri


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ws://localhost/", WebSocketURI(False, "localhost", 80, "/", None)),
        ("wss://localhost/", WebSocketURI(True, "localhost", 443, "/", None)),
        ("WS://Example.COM", WebSocketURI(False, "example.com", 80, "/", None)),
        (
            "ws://localhost:8765/a/b?x=1&y",
            WebSocketURI(False, "localhost", 8765, "/a/b?x=1&y", None),
        ),
        ("ws://localhost?x", WebSocketURI(False, "localhost", 80, "/?x", None)),
        ("ws://[::1]:9/", WebSocketURI(False, "::1", 9, "/", None)),
        ("ws://u:p%40ss@h/", WebSocketURI(False, "h", 80, "/", ("u", "p@ss"))),
        ("ws://u@h/", WebSocketURI(False, "h", 80, "/", ("u", ""))),
        ("ws://h/caf\u00e9 ok", WebSocketURI(False, "h", 80, "/caf%C3%A9%20ok", None)),
        ("ws://h/a%20b", WebSocketURI(False, "h", 80, "/a%20b", None)),
        ("ws://b\u00fccher.example/", WebSocketURI(False, "xn--bcher-kva.example", 80, "/", None)),
    ],
)
def test_parse_uri(url: str, expected: WebSocketURI) -> None:
    """Valid URIs give host, port, resource name and credentials."""
    assert parse_uri(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost/",
        "localhost:8765",
        "ws:///path",
        "ws://localhost/#frag",
        "ws://localhost/#",
        "ws://localhost:port/",
        "ws://localhost:70000/",
        "ws://[::1/",
        "ws://" + "a" * 64 + "\u00e9.example/",
    ],
)
def test_invalid_uris(url: str) -> None:
    """Other schemes, a missing host, fragments and bad ports or hosts are refused."""
    with pytest.raises(InvalidURI):
        parse_uri(url)


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("ws://h/", "h"),
        ("ws://h:80/", "h"),
        ("ws://h:81/", "h:81"),
        ("wss://h:443/", "h"),
        ("wss://h:80/", "h:80"),
        ("ws://[fe80::1]/", "[fe80::1]"),
        ("wss://[fe80::1]:8443/", "[fe80::1]:8443"),
    ],
)
def test_host_header(url: str, host: str) -> None:
    """host_header omits default ports and brackets IPv6."""
    assert parse_uri(url).host_header == host
