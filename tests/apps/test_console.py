"""Tests for wshub.apps.console: the console's files, served by a real hub on loopback."""

from __future__ import annotations

import re

import pytest

from wshub import Request
from wshub.apps.console import ConsoleApp, console_routes
from wshub.hub.server import start_hub
from wshub.protocol.http11 import Headers


def get(app: ConsoleApp, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    response = app.handle(Request(method, path, Headers()))
    assert response is not None
    return response.status, dict(response.headers), response.body


def test_page_and_assets_are_served_with_a_strict_csp() -> None:
    """/console is the page (CSP, no-cache), its assets are versioned; other paths pass."""
    app = ConsoleApp()
    status, headers, body = get(app, "/console")
    assert status == 200 and headers["Cache-Control"] == "no-cache"
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert "'unsafe-inline'" not in csp
    page = body.decode()
    for name in ("console.js", "console.css"):
        found = re.search(rf'"(/console/{name}\?v=[0-9a-f]+)"', page)
        assert found, name
        status, headers, _ = get(app, found.group(1))
        assert status == 200 and "immutable" in headers["Cache-Control"]
    for hook in ("console-api-key", "console-login", "console-connections", "connection-status"):
        assert f'data-testid="{hook}"' in page
    assert app.handle(Request("GET", "/api/nodes", Headers())) is None
    assert app.handle(Request("GET", "/", Headers())) is None
    status, headers, _ = get(app, "/console", "POST")
    assert (status, headers["Allow"]) == (405, "GET, HEAD")


def test_path_is_checked() -> None:
    """A path that is not absolute, or would break the HTML, is refused at start."""
    assert "/ops/console.js" in console_routes(path="/ops")
    for bad in ("console", "/con sole", '/"x'):
        with pytest.raises(ValueError):
            ConsoleApp(path=bad)


async def test_the_page_holds_no_data_without_the_key() -> None:
    """The page is public but empty: every figure comes from the API, refused without a key."""
    async with await start_hub(
        "127.0.0.1", 0, ephemeral=True, api_key="k", http_handlers=[ConsoleApp()]
    ) as server:
        page = await server.process_request(None, Request("GET", "/console", Headers()))
        assert page is not None and page.status == 200
        for path in ("/api/nodes", "/api/channels"):
            answer = await server.process_request(None, Request("GET", path, Headers()))
            assert answer is not None and answer.status == 401
