"""Fixtures for the chat tests: a real hub serving the chat page on loopback, and a browser.

The hub server can refuse new WebSocket connections for a while (``ChatServer.refuse``) and
drop a user's connections from the server side (``ChatServer.drop``): the faults are injected
at the transport edge; the hub, the page and ``wshub.js`` run unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest

from wshub import Request, Response
from wshub.apps.chat import DEMO_ANONYMOUS_PERMISSIONS, ChatApp, demo_config
from wshub.hub import Hub, Session
from wshub.hub.server import HubServer, start_hub
from wshub.protocol.server import is_upgrade_request
from wshub.testing import chromium_available, launch_chromium

#: Generous ceiling for what the browser waits for (reconnect backoff included); never a
#: measure of speed.
WAIT_MS = 20_000


class AppServer:
    """A hub server with an app mounted, on a free loopback port; faults at the transport.

    Users are told apart by one key of their connection's ``meta`` (``meta_key``).
    """

    meta_key = "nick"

    def __init__(self) -> None:
        self.refusing = False
        self.upgrades = 0
        self.hub_server: HubServer | None = None

    @property
    def hub(self) -> Hub:
        assert self.hub_server is not None
        return self.hub_server.hub

    @property
    def ws_url(self) -> str:
        """The hub's WebSocket URL."""
        assert self.hub_server is not None
        return f"ws://127.0.0.1:{self.hub_server.port}/ws"

    def sessions(self, nick: str) -> list[Session]:
        """The open hub sessions whose connection declared this name in its meta."""
        return [
            s
            for s in self.hub.sessions
            if isinstance(s.info.meta, dict) and s.info.meta.get(self.meta_key) == nick
        ]

    def drop(self, nick: str) -> int:
        """Abort the TCP connections of ``nick`` (the browser sees a 1006 closure)."""
        dropped = 0
        for session in self.sessions(nick):
            transport = getattr(session.peer, "transport", None)
            if transport is not None:
                transport.abort()
                dropped += 1
        return dropped

    def refuse(self, refusing: bool) -> None:
        """Answer new WebSocket upgrades with 503 (``True``) or accept them again."""
        self.refusing = refusing

    def gate(self, connection: Any, request: Request) -> Response | None:
        """An HTTP handler in front of the hub: counts upgrades, refuses them while
        ``refusing``."""
        if is_upgrade_request(request):
            self.upgrades += 1
        if self.refusing and is_upgrade_request(request):
            return Response.text(503, "Service Unavailable\n")
        return None


class ChatServer(AppServer):
    """A hub server with the chat mounted, on a free loopback port."""

    @property
    def url(self) -> str:
        """The page's URL."""
        assert self.hub_server is not None
        return f"http://127.0.0.1:{self.hub_server.port}/"

    def gate(self, connection: Any, request: Request) -> Response | None:
        """Refuses upgrades while ``refusing``; also serves ``/blank``, an empty page on the
        hub's origin from which a test imports ``/wshub.js`` and drives the client directly.
        """
        refused = super().gate(connection, request)
        if refused is not None:
            return refused
        if request.path == "/blank" and not is_upgrade_request(request):
            return Response.html(200, "<!doctype html><title>wshub.js</title>")
        return None


@asynccontextmanager
async def running_chat(**options: Any) -> AsyncIterator[ChatServer]:
    """Start a hub server with the chat mounted; ``options`` go to ``start_hub``.

    Mounted the way ``wshub serve`` mounts it: ``ChatApp`` as an HTTP handler of the hub
    server, on the hub's port, next to the WebSocket path ``/ws``.
    """
    chat = ChatServer()
    if "hub" not in options:  # a hub built by the caller has its own auth and namespaces
        options.setdefault("allow_anonymous", True)
        options.setdefault("anonymous_permissions", DEMO_ANONYMOUS_PERMISSIONS)
        options.setdefault("registry", demo_config().registry())  # the chat's namespaces
    async with await start_hub(
        "127.0.0.1",
        0,
        ephemeral=True,
        http_handlers=[chat.gate, ChatApp(ws_path="/ws")],
        close_timeout=1.0,
        **options,
    ) as hub_server:
        chat.hub_server = hub_server
        yield chat


@pytest.fixture
async def chat_server() -> AsyncIterator[ChatServer]:
    """The hub (in-memory history, anonymous connections allowed) serving the chat at ``/``."""
    async with running_chat() as chat:
        yield chat


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """Debian's chromium (a Playwright ``Browser``); each user gets its own context."""
    if not chromium_available():
        pytest.skip("chromium or playwright is not installed")
    async with launch_chromium() as context:
        yield context.browser


class Errors:
    """Uncaught page errors and CSP violations seen by the pages of a test."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def watch(self, page: Any) -> None:
        page.on("pageerror", lambda error: self.seen.append(f"pageerror: {error}"))
        page.on("console", self._console)

    def _console(self, message: Any) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            self.seen.append(f"csp: {message.text}")


@pytest.fixture
def page_errors() -> Errors:
    """Collects page errors; the test asserts there are none."""
    return Errors()


@pytest.fixture
def open_user(
    browser: Any, chat_server: ChatServer, page_errors: Errors
) -> Callable[..., AbstractAsyncContextManager[Any]]:
    """``async with open_user("Ada") as page``: a user with its own storage, joined.

    ``server`` opens the page of another hub than ``chat_server``; ``query`` is added to the
    page's address (``"?token=..."``); ``connected=False`` does not wait for the connection.
    """

    @asynccontextmanager
    async def open_user(
        nick: str,
        *,
        room: str = "",
        width: int = 1280,
        server: ChatServer | None = None,
        query: str = "",
        connected: bool = True,
    ) -> AsyncIterator[Any]:
        context = await browser.new_context(viewport={"width": width, "height": 800})
        context.set_default_timeout(WAIT_MS)
        try:
            page = await context.new_page()
            page_errors.watch(page)
            url = (server or chat_server).url + query + (f"#{room}" if room else "")
            await page.goto(url)
            await page.get_by_test_id("nickname-input").fill(nick)
            await page.get_by_test_id("join-button").click()
            if connected:
                status = page.get_by_test_id("connection-status")
                await status.filter(has_text="connected").wait_for()
            yield page
        finally:
            await context.close()

    return open_user


async def wait_until(predicate: Callable[[], bool]) -> None:
    """Poll a server-side condition without a deadline of our own (pytest-timeout has one)."""
    while not predicate():
        await asyncio.sleep(0.01)
