"""The chat app's HTTP side (wshub.apps.chat.app): its four files, their headers, nothing else."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re

import pytest

import wshub
from wshub import Request, Response
from wshub.apps.chat import ChatApp, chat_routes
from wshub.protocol.http11 import ResponseParser
from wshub.testing import loopback_server


async def http(
    port: int, method: str, path: str, headers: dict[str, str] | None = None
) -> Response:
    """Send one HTTP/1.1 request over a real socket and read the response."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        request = Request(method, path, [("Host", f"127.0.0.1:{port}"), *(headers or {}).items()])
        writer.write(request.serialize())
        # The server closes the connection after one response: read it all.
        data = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    if method == "HEAD":
        # A HEAD response announces a length but has no body: parse the head alone.
        head, _, body = data.partition(b"\r\n\r\n")
        assert body == b""
        lines = head.decode("latin-1").split("\r\n")
        fields = [tuple(line.split(": ", 1)) for line in lines[1:]]
        return Response(int(lines[0].split()[1]), headers=fields)
    response = ResponseParser(max_response_size=None).feed(data)
    assert response is not None, "incomplete response"
    return response


@pytest.fixture
async def port() -> int:
    """A wshub server whose only HTTP handler is the chat app (on its default paths)."""
    async with loopback_server(process_request=ChatApp()) as server:
        yield server.port


@pytest.mark.parametrize(
    ("path", "content_type", "marker"),
    [
        ("/", "text/html; charset=utf-8", b"<!doctype html>"),
        ("/chat.js", "text/javascript; charset=utf-8", b'from "wshub"'),
        ("/chat.css", "text/css; charset=utf-8", b"--accent"),
        ("/wshub.js", "text/javascript; charset=utf-8", b"export class HubClient"),
    ],
)
async def test_serves_each_file_with_its_content_type(
    port: int, path: str, content_type: str, marker: bytes
) -> None:
    """GET of each chat path answers 200 with the right Content-Type, a length and the file."""
    response = await http(port, "GET", path)
    assert response.status == 200
    assert response.headers["Content-Type"] == content_type
    assert response.headers["Content-Length"] == str(len(response.body))
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert marker in response.body


async def test_page_names_the_websocket_path_and_versioned_assets() -> None:
    """The page carries the hub's WebSocket path and ?v=<hash> URLs of the current assets,
    the shared ui.css and ui.js included."""
    routes = chat_routes(prefix="/chat/", ws_path="/hub/ws")
    page = routes["/chat/"].body.decode()
    assert '<meta name="wshub-ws-path" content="/hub/ws">' in page
    for name in ("chat.js", "chat.css", "ui.css", "ui.js", "wshub.js"):
        assert f"/chat/{name}?v={routes['/chat/' + name].version}" in page
    assert "%" + "WS_PATH%" not in page
    assert sorted(routes) == [
        "/chat/",
        "/chat/chat.css",
        "/chat/chat.js",
        "/chat/ui.css",
        "/chat/ui.js",
        "/chat/wshub.js",
    ]


async def test_page_csp_allows_its_import_map_by_hash() -> None:
    """The page's Content-Security-Policy lists the hash of its only inline script."""
    page = chat_routes()["/"]
    inline = re.search(rb'<script type="importmap">(.*?)</script>', page.body)
    assert inline is not None
    digest = base64.b64encode(hashlib.sha256(inline.group(1)).digest()).decode()
    csp = dict(page.headers)["Content-Security-Policy"]
    assert f"script-src 'self' 'sha256-{digest}'" in csp
    assert "default-src 'none'" in csp


async def test_versioned_asset_is_cached_for_good(port: int) -> None:
    """An asset requested with its current ?v= hash is immutable; without it, revalidated."""
    version = chat_routes()["/chat.js"].version
    fresh = await http(port, "GET", f"/chat.js?v={version}")
    assert fresh.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    stale = await http(port, "GET", "/chat.js?v=0123456789ab")
    assert stale.headers["Cache-Control"] == "no-cache"
    page = await http(port, "GET", "/")
    assert page.headers["Cache-Control"] == "no-cache"


async def test_etag_revalidation_answers_304(port: int) -> None:
    """A request with a matching If-None-Match gets 304 without a body."""
    first = await http(port, "GET", "/")
    etag = first.headers["ETag"]
    again = await http(port, "GET", "/", {"If-None-Match": f'W/"other", {etag}'})
    assert again.status == 304
    assert again.body == b""
    changed = await http(port, "GET", "/", {"If-None-Match": '"other"'})
    assert changed.status == 200


async def test_head_has_headers_but_no_body(port: int) -> None:
    """HEAD announces the length of the file and sends no content."""
    response = await http(port, "HEAD", "/wshub.js")
    assert response.status == 200
    assert response.headers["Content-Length"] == str(len(chat_routes()["/wshub.js"].body))


async def test_other_methods_are_refused(port: int) -> None:
    """POST on a chat path gets 405 with an Allow header."""
    response = await http(port, "POST", "/chat.css")
    assert response.status == 405
    assert response.headers["Allow"] == "GET, HEAD"


def test_other_paths_and_upgrades_go_on() -> None:
    """Unknown paths, and WebSocket upgrades even on a chat path, are left to the hub."""
    app = ChatApp()
    assert app.handle(Request("GET", "/ws")) is None
    assert app.handle(Request("GET", "/api/channels")) is None
    assert app.handle(Request("GET", "/chat.js/x")) is None
    upgrade = Request("GET", "/", [("Connection", "keep-alive, Upgrade"), ("Upgrade", "websocket")])
    assert app.handle(upgrade) is None
    response = app(None, Request("GET", "/"))
    assert response is not None and response.status == 200


async def test_websocket_upgrade_passes_through_on_a_shared_path() -> None:
    """With the chat in front, a WebSocket client still reaches the handler on the page's path."""

    async def echo(ws: wshub.ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async with (
        loopback_server(echo, process_request=ChatApp()) as server,
        wshub.connect(f"ws://127.0.0.1:{server.port}/") as ws,
    ):
        await ws.send("ping")
        assert await ws.recv() == "ping"


@pytest.mark.parametrize(
    ("prefix", "ws_path"),
    [("chat/", "/ws"), ("/chat", "/ws"), ("/", "ws"), ("/", "/ws?x"), ("/", '/w"s')],
)
def test_bad_paths_are_refused(prefix: str, ws_path: str) -> None:
    """prefix and ws_path must be absolute paths that fit in HTML unescaped."""
    with pytest.raises(ValueError):
        ChatApp(prefix=prefix, ws_path=ws_path)
