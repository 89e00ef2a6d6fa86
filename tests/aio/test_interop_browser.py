"""Interoperability with a real browser: Debian's chromium, driven by Playwright.

The page is served by our server's ``process_request`` on the WebSocket port, and the
page's own ``new WebSocket(...)`` talks to our server: text, binary (ArrayBuffer), a
1 MiB message, permessage-deflate as chromium offers it, and close codes both ways.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from wshub import ConnectionClosed, Request, Response, Server, ServerConnection
from wshub.testing import chromium_available, launch_chromium, loopback_server, server_url

from . import WAIT

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not chromium_available(), reason="needs /usr/bin/chromium and playwright"),
    # One browser and one server for the module, on one loop: a browser takes a second
    # or two to start, and what is tested here does not depend on the event loop.
    pytest.mark.asyncio(loop_scope="module", loop_factories=["uvloop"]),
]

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>wshub in a browser</title>
<script>
function openSocket(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    ws.onopen = () => resolve(ws);
    ws.onerror = () => reject(new Error("WebSocket error"));
  });
}
function nextMessage(ws) {
  return new Promise((resolve) => { ws.onmessage = (event) => resolve(event.data); });
}
function closeEvent(ws) {
  return new Promise((resolve) => {
    ws.onclose = (e) => resolve({code: e.code, reason: e.reason, wasClean: e.wasClean});
  });
}
function sameBytes(a, b) {
  if (a.byteLength !== b.byteLength) return false;
  const x = new Uint8Array(a), y = new Uint8Array(b);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}
function randomBytes(n) {
  const bytes = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(bytes.subarray(i, i + 65536));
  return bytes;
}
window.wshub = {openSocket, nextMessage, closeEvent, sameBytes, randomBytes};
</script>
<p>wshub browser interoperability page</p>
"""


class Site:
    """The server the page and its WebSockets talk to, and what its handlers saw."""

    def __init__(self) -> None:
        self.closes: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
        self.origins: asyncio.Queue[str | None] = asyncio.Queue()
        self.server: Server | None = None

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path == "/":
            return Response.html(200, PAGE)
        return None

    async def handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        path = ws.request.path
        await self.origins.put(ws.request.headers.get("Origin"))
        if path == "/echo":
            async for message in ws:
                await ws.send(message)
        elif path == "/server-closes":
            await ws.recv()
            await ws.close(4001, "bye from the server")
        elif path == "/client-closes":
            try:
                await ws.recv()
            except ConnectionClosed as exc:
                await self.closes.put((exc.code, exc.reason))

    @property
    def http_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.port}/"

    def ws_url(self, path: str) -> str:
        assert self.server is not None
        return server_url(self.server, path)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site() -> AsyncIterator[Site]:
    site = Site()
    async with loopback_server(
        site.handler, process_request=site.process_request, close_timeout=2.0
    ) as server:
        site.server = server
        yield site


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def page(site: Site) -> AsyncIterator[Any]:
    async with launch_chromium() as browser:
        page = await browser.new_page()
        response = await page.goto(site.http_url)
        assert response is not None and response.status == 200
        assert await page.title() == "wshub in a browser"
        yield page


async def run_js(page: Any, script: str, *args: Any) -> Any:
    """Evaluate an async JavaScript function in the page; fail instead of hanging."""
    return await asyncio.wait_for(page.evaluate(script, list(args)), WAIT)


async def test_text_echo(page: Any, site: Site) -> None:
    """A text message from the page comes back as a string, unchanged."""
    result = await run_js(
        page,
        """async ([url]) => {
            const ws = await wshub.openSocket(url);
            ws.send("héllo wörld ✓");
            const reply = await wshub.nextMessage(ws);
            ws.close();
            return {type: typeof reply, reply};
        }""",
        site.ws_url("/echo"),
    )
    assert result == {"type": "string", "reply": "héllo wörld ✓"}
    assert await site.origins.get() == site.http_url.rstrip("/")


async def test_binary_echo(page: Any, site: Site) -> None:
    """An ArrayBuffer from the page comes back as an ArrayBuffer with the same bytes."""
    result = await run_js(
        page,
        """async ([url]) => {
            const ws = await wshub.openSocket(url);
            const sent = new Uint8Array(256).map((_, i) => i);
            ws.send(sent.buffer);
            const reply = await wshub.nextMessage(ws);
            ws.close();
            const bytes = Array.from(new Uint8Array(reply));
            return {isBuffer: reply instanceof ArrayBuffer, bytes};
        }""",
        site.ws_url("/echo"),
    )
    assert result == {"isBuffer": True, "bytes": list(range(256))}


async def test_one_mebibyte_messages(page: Any, site: Site) -> None:
    """1 MiB of text and 1 MiB of random binary make the round trip intact."""
    result = await run_js(
        page,
        """async ([url]) => {
            const ws = await wshub.openSocket(url);
            const text = "x".repeat(1 << 20);
            ws.send(text);
            const textReply = await wshub.nextMessage(ws);
            const bytes = wshub.randomBytes(1 << 20);
            ws.send(bytes.buffer);
            const binaryReply = await wshub.nextMessage(ws);
            ws.close();
            return {
                textOk: textReply === text,
                binaryOk: wshub.sameBytes(bytes.buffer, binaryReply),
                binaryLength: binaryReply.byteLength,
            };
        }""",
        site.ws_url("/echo"),
    )
    assert result == {"textOk": True, "binaryOk": True, "binaryLength": 2**20}


async def test_permessage_deflate_is_negotiated(page: Any, site: Site) -> None:
    """Chromium offers permessage-deflate and our server accepts it."""
    extensions = await run_js(
        page,
        """async ([url]) => {
            const ws = await wshub.openSocket(url);
            ws.send("compress me ".repeat(1000));
            await wshub.nextMessage(ws);
            const extensions = ws.extensions;
            ws.close();
            return extensions;
        }""",
        site.ws_url("/echo"),
    )
    assert extensions.startswith("permessage-deflate")


async def test_no_compression_when_the_server_declines(page: Any) -> None:
    """With ``compression=None`` the page gets no extension and messages still flow."""

    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async with loopback_server(echo, compression=None) as plain:
        result = await run_js(
            page,
            """async ([url]) => {
                const ws = await wshub.openSocket(url);
                ws.send("plain");
                const reply = await wshub.nextMessage(ws);
                const extensions = ws.extensions;
                ws.close();
                return {reply, extensions};
            }""",
            server_url(plain, "/"),
        )
    assert result == {"reply": "plain", "extensions": ""}


async def test_chromium_inflates_after_the_server_released_its_compressor(page: Any) -> None:
    """A quiet connection drops its compressor at a keepalive ping; chromium, which keeps
    its inflate window (context takeover), still reads what the new compressor sends."""
    released: list[bool] = []

    async def echo_after_release(ws: ServerConnection) -> None:
        first = await ws.recv()
        await ws.send(first)
        deflate = ws._core._deflate  # type: ignore[union-attr]
        assert deflate is not None
        while deflate._compressor is not None:  # type: ignore[attr-defined]
            await asyncio.sleep(0.02)  # a keepalive ping or two (chromium answers them)
        released.append(True)
        async for message in ws:
            await ws.send(message)

    async with loopback_server(echo_after_release, ping_interval=0.05) as server:
        result = await run_js(
            page,
            """async ([url]) => {
                const ws = await wshub.openSocket(url);
                const text = "the same words again and again, ".repeat(40);
                const replies = [];
                for (const message of [text, text, text + "!"]) {
                    ws.send(message);
                    replies.push(await wshub.nextMessage(ws));
                }
                const extensions = ws.extensions;
                ws.close();
                return {same: replies[0] === text && replies[1] === text
                              && replies[2] === text + "!", extensions};
            }""",
            server_url(server, "/"),
        )
    assert released == [True]
    assert result["extensions"].startswith("permessage-deflate")
    assert result["same"] is True


async def test_server_close_code_and_reason_reach_onclose(page: Any, site: Site) -> None:
    """The page's ``onclose`` sees our close code and reason, and a clean close."""
    event = await run_js(
        page,
        """async ([url]) => {
            const ws = await wshub.openSocket(url);
            const closed = wshub.closeEvent(ws);
            ws.send("close me");
            return await closed;
        }""",
        site.ws_url("/server-closes"),
    )
    assert event == {"code": 4001, "reason": "bye from the server", "wasClean": True}


async def test_page_close_code_and_reason_reach_the_server(page: Any, site: Site) -> None:
    """``ws.close(4000, reason)`` in the page ends our ``recv`` with that code and reason."""
    event = await run_js(
        page,
        """async ([url]) => {
            const ws = await wshub.openSocket(url);
            const closed = wshub.closeEvent(ws);
            ws.close(4000, "page is leaving");
            return await closed;
        }""",
        site.ws_url("/client-closes"),
    )
    assert event["code"] == 4000 and event["wasClean"] is True
    assert await asyncio.wait_for(site.closes.get(), WAIT) == (4000, "page is leaving")
