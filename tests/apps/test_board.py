"""The board app's HTTP side (wshub.apps.board.app): its four files, the numbers written into
the page, and the arguments it refuses."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator

import pytest

from wshub import Request
from wshub.apps.board import BoardApp, board_routes
from wshub.apps.chat import ChatApp
from wshub.testing import loopback_server

from .test_chat import http


@pytest.fixture
async def port() -> AsyncIterator[int]:
    """A wshub server whose HTTP handlers are the chat and the board, as ``wshub serve`` has."""
    apps = [ChatApp(), BoardApp()]

    def handlers(connection: object, request: Request) -> object:
        for app in apps:
            response = app(connection, request)
            if response is not None:
                return response
        return None

    async with loopback_server(process_request=handlers) as server:
        yield server.port


@pytest.mark.parametrize(
    ("path", "content_type", "marker"),
    [
        ("/board", "text/html; charset=utf-8", b'data-testid="board-canvas"'),
        ("/board?name=team", "text/html; charset=utf-8", b'data-testid="board-presence"'),
        ("/board/board.js", "text/javascript; charset=utf-8", b'from "wshub"'),
        ("/board/board.css", "text/css; charset=utf-8", b"touch-action: none"),
        ("/board/wshub.js", "text/javascript; charset=utf-8", b"export class HubClient"),
    ],
)
async def test_serves_each_file_with_its_content_type(
    port: int, path: str, content_type: str, marker: bytes
) -> None:
    """GET of each board path answers 200 with the right type, a length and the file."""
    response = await http(port, "GET", path)
    assert response.status == 200
    assert response.headers["Content-Type"] == content_type
    assert response.headers["Content-Length"] == str(len(response.body))
    assert marker in response.body


async def test_chat_and_board_share_the_port(port: int) -> None:
    """Next to the chat, the board's page and the chat's page are both served."""
    chat = await http(port, "GET", "/")
    board = await http(port, "GET", "/board")
    assert b"wshub chat" in chat.body and b"wshub board" in board.body
    missing = await http(port, "GET", "/board/other.js")
    assert missing.status != 200


def test_page_carries_the_hub_settings_and_versioned_assets() -> None:
    """The page names the WebSocket path, the history size, the publication limit and the
    ?v=<hash> URLs of the current assets, with no marker left."""
    routes = board_routes(
        path="/draw", ws_path="/hub/ws", history_size=200, max_publication_size=8192
    )
    page = routes["/draw"].body.decode()
    assert '<meta name="wshub-ws-path" content="/hub/ws">' in page
    assert '<meta name="board-history-size" content="200">' in page
    assert '<meta name="board-max-publication-size" content="8192">' in page
    for name in ("board.js", "board.css", "wshub.js"):
        assert f"/draw/{name}?v={routes['/draw/' + name].version}" in page
    assert not re.search(r"%[A-Z_]+%", page)
    assert sorted(routes) == [
        "/draw",
        "/draw/board.css",
        "/draw/board.js",
        "/draw/ui.css",
        "/draw/ui.js",
        "/draw/wshub.js",
    ]
    assert f"/draw/ui.css?v={routes['/draw/ui.css'].version}" in page


def test_page_has_a_strict_csp_allowing_only_its_import_map() -> None:
    """The Content-Security-Policy allows the page's one inline script by its hash."""
    page = board_routes()["/board"]
    inline = re.search(rb'<script type="importmap">(.*?)</script>', page.body)
    assert inline is not None
    digest = base64.b64encode(hashlib.sha256(inline.group(1)).digest()).decode()
    headers = dict(page.headers)
    assert f"script-src 'self' 'sha256-{digest}'" in headers["Content-Security-Policy"]
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"


def test_page_links_the_other_pages() -> None:
    """The header links the chat, the ticker and the console."""
    page = board_routes()["/board"].body.decode()
    for href in ('href="/"', 'href="/ticker"', 'href="/console"'):
        assert href in page


def test_other_paths_methods_and_upgrades() -> None:
    """Unknown paths and upgrades go on to the hub; POST gets 405."""
    app = BoardApp()
    assert app.handle(Request("GET", "/ws")) is None
    assert app.handle(Request("GET", "/board/")) is None
    upgrade = Request("GET", "/board", [("Connection", "Upgrade"), ("Upgrade", "websocket")])
    assert app.handle(upgrade) is None
    refused = app.handle(Request("POST", "/board"))
    assert refused is not None and refused.status == 405


@pytest.mark.parametrize(
    "options",
    [
        {"path": "board"},
        {"path": "/board/"},
        {"ws_path": "ws"},
        {"path": "/bo ard"},
        {"history_size": 3},
        {"max_publication_size": 1000},
    ],
)
def test_bad_arguments_are_refused(options: dict[str, object]) -> None:
    """Paths must be absolute (the page's without a trailing '/'); the history must hold at
    least 4 publications and a publication at least 4096 bytes."""
    with pytest.raises(ValueError):
        BoardApp(**options)  # type: ignore[arg-type]
