"""The operator console in a real browser against a real hub: the key, live figures from the
HTTP API, channels, publishing, disconnecting, a phone screen, and a hub restart."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from playwright.async_api import expect

from wshub.apps.chat import DEMO_ANONYMOUS_PERMISSIONS, demo_config
from wshub.apps.console import ConsoleApp
from wshub.hub.auth import make_token
from wshub.hub.client import HubClient
from wshub.hub.server import HubServer, start_hub
from wshub.hub.wire import DisconnectCode
from wshub.testing import RedisServer

from .conftest import WAIT_MS, Errors, wait_until

_LOOP = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_factories=[_LOOP])]

API_KEY = "console-test-key"
SECRET = "console-browser-tests-secret-0123456789"


async def start(port: int = 0) -> HubServer:
    """A hub with the console mounted the way ``wshub serve`` mounts it."""
    return await start_hub(
        "127.0.0.1",
        port,
        registry=demo_config().registry(),
        anonymous_permissions=DEMO_ANONYMOUS_PERMISSIONS,
        ephemeral=True,
        allow_anonymous=True,
        secret=SECRET,
        api_key=API_KEY,
        http_handlers=[ConsoleApp(ws_path="/ws")],
        close_timeout=1.0,
    )


@pytest.fixture
async def hub() -> AsyncIterator[HubServer]:
    server = await start()
    try:
        yield server
    finally:
        await server.close()


@asynccontextmanager
async def console_page(browser: Any, server: HubServer, errors: Errors, **viewport: int) -> Any:
    size = {"width": 1280, "height": 900, **viewport}
    context = await browser.new_context(viewport=size)
    context.set_default_timeout(WAIT_MS)
    try:
        page = await context.new_page()
        errors.watch(page)
        await page.goto(f"http://127.0.0.1:{server.port}/console")
        yield page
    finally:
        await context.close()


async def sign_in(page: Any, key: str = API_KEY) -> None:
    await page.get_by_test_id("console-api-key").fill(key)
    await page.get_by_test_id("console-login").click()


def status(page: Any) -> Any:
    return page.get_by_test_id("connection-status")


def channel_row(page: Any, channel: str) -> Any:
    return page.locator(f'[data-testid=console-channel][data-channel="{channel}"]')


async def test_refused_without_the_key_and_with_a_wrong_one(
    browser: Any, hub: HubServer, page_errors: Errors
) -> None:
    """Nothing is shown before the API accepts the key; a wrong key says "wrong key" and is
    not kept; the right one is kept in sessionStorage only, and survives a reload."""
    async with console_page(browser, hub, page_errors) as page:
        await expect(page.get_by_test_id("console-api-key")).to_be_visible()
        await expect(page.get_by_test_id("console-connections")).to_be_hidden()
        await expect(status(page)).to_have_text("offline")
        await sign_in(page, "not-the-key")
        await expect(page.get_by_test_id("console-login-error")).to_have_text("wrong key")
        await expect(page.get_by_test_id("console-node")).to_have_count(0)
        assert await page.evaluate("sessionStorage.length + localStorage.length") == 0
        await sign_in(page)
        await expect(page.get_by_test_id("console-node")).to_have_count(1)
        await expect(status(page)).to_have_text("connected")
        stored = await page.evaluate("Object.values(sessionStorage)")
        assert stored == [API_KEY]
        assert await page.evaluate("localStorage.length + document.cookie.length") == 0
        # The key is never written into the page.
        assert API_KEY not in await page.content()
        await page.reload()
        await expect(page.get_by_test_id("console-node")).to_have_count(1)
        # A key that stops working (the hub's key changed) sends the page back to sign in.
        await page.evaluate("sessionStorage.setItem('wshub.console.apiKey', 'stale')")
        await page.reload()
        await expect(page.get_by_test_id("console-login-error")).to_have_text("wrong key")
    assert page_errors.seen == []


async def test_live_figures_channels_publish_and_disconnect(
    browser: Any, hub: HubServer, page_errors: Errors
) -> None:
    """With the key: the node shows, connections follow real HubClients as they come and go,
    channel rows carry their subscriber counts, a publication from the console reaches a
    subscriber, and disconnecting a user closes its connection (4008, not retried)."""
    token = make_token(SECRET, "dave", channels=["chat:*:sp"])
    async with console_page(browser, hub, page_errors) as page:
        await sign_in(page)
        node = page.get_by_test_id("console-node")
        await expect(node).to_have_count(1)
        await expect(node).to_contain_text(f":{hub.port}")
        await expect(node).to_contain_text("version")
        connections = page.get_by_test_id("console-connections")
        await expect(connections).to_have_text("0")
        async with HubClient(hub.url()) as one, HubClient(hub.url(), token) as dave:
            await expect(connections).to_have_text("2")
            sub = await one.subscribe("chat:ops")
            await dave.subscribe("chat:ops")
            await one.subscribe("chat:other")
            await expect(channel_row(page, "chat:ops")).to_have_attribute("data-subscribers", "2")
            await expect(channel_row(page, "chat:other")).to_have_attribute("data-subscribers", "1")
            # The filter keeps the rows that match.
            await page.get_by_test_id("console-channel-filter").fill("ops")
            await expect(page.get_by_test_id("console-channel")).to_have_count(1)
            await page.get_by_test_id("console-channel-filter").fill("")
            await expect(page.get_by_test_id("console-channel")).to_have_count(2)

            await page.get_by_test_id("console-publish-channel").fill("chat:ops")
            await page.get_by_test_id("console-publish-data").fill('{"text": "from ops"}')
            await page.get_by_test_id("console-publish-button").click()
            pub = await sub.get()
            assert pub.data == {"text": "from ops"}
            await expect(page.get_by_test_id("console-publish-result")).to_contain_text(
                f"offset {pub.offset}"
            )
            await expect(channel_row(page, "chat:ops")).to_have_attribute(
                "data-offset", str(pub.offset)
            )

            # One channel's presence and latest publications, picked with the keyboard.
            await channel_row(page, "chat:ops").locator("button").focus()
            await page.keyboard.press("Enter")
            await expect(page.get_by_test_id("console-presence").locator("li")).to_have_count(2)
            await expect(page.get_by_test_id("console-presence")).to_contain_text("dave")
            await expect(page.get_by_test_id("console-publications")).to_contain_text("from ops")

            await page.get_by_test_id("console-disconnect-id").fill("dave")
            await page.get_by_test_id("console-disconnect-button").click()
            await wait_until(lambda: dave.closed)
            assert getattr(dave.error, "code", None) == DisconnectCode.DISCONNECTED
            await expect(page.get_by_test_id("console-disconnect-result")).to_contain_text(
                "1 connection"
            )
            await expect(connections).to_have_text("1")
            await expect(channel_row(page, "chat:ops")).to_have_attribute("data-subscribers", "1")
        await expect(connections).to_have_text("0")
        # The charts draw the figures they were given (publications went through).
        line = page.locator("[data-chart=connections] path.line")
        await expect(line).to_have_attribute("d", re.compile(r"^M.+L"))
    assert page_errors.seen == []


async def test_refused_publication_is_said_and_phone_layout(
    browser: Any, hub: HubServer, page_errors: Errors
) -> None:
    """A refused publish shows the API's reason; on a phone-sized screen nothing overflows
    sideways and the figures are still there."""
    async with console_page(browser, hub, page_errors, width=375, height=740) as page:
        await sign_in(page)
        await expect(page.get_by_test_id("console-node")).to_have_count(1)
        await page.get_by_test_id("console-publish-channel").fill("nope:x")
        await page.get_by_test_id("console-publish-data").fill("plain words")
        await page.get_by_test_id("console-publish-button").click()
        await expect(page.get_by_test_id("console-publish-result")).to_contain_text(
            "unknown namespace"
        )
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        await expect(page.get_by_test_id("console-connections")).to_be_visible()
    assert page_errors.seen == []


async def test_hub_restart_goes_reconnecting_then_connected(
    browser: Any, page_errors: Errors
) -> None:
    """The hub stops: the status leaves "connected"; it restarts on the same port: the
    status comes back to connected and the figures resume from the new node."""
    server = await start()
    port = server.port
    try:
        async with console_page(browser, server, page_errors) as page:
            await sign_in(page)
            await expect(status(page)).to_have_text("connected")
            first = await page.get_by_test_id("console-node").get_attribute("data-node")
            await server.close()
            await expect(status(page)).to_have_text(re.compile("reconnecting|offline"))
            server = await start(port)
            await expect(status(page)).to_have_text("connected")
            node = page.get_by_test_id("console-node")
            await expect(node).not_to_have_attribute("data-node", first or "")
            async with HubClient(server.url()):
                await expect(page.get_by_test_id("console-connections")).to_have_text("1")
    finally:
        await server.close()
    # The failed polls while the hub was down are network errors, not page errors.
    assert [e for e in page_errors.seen if "pageerror" in e] == []


@pytest.mark.redis
async def test_redis_mode_shows_every_node(
    browser: Any, redis: RedisServer, page_errors: Errors
) -> None:
    """Two nodes on one redis-server: the console served by one shows both nodes, and the
    connections of the other count in the total."""
    options = {
        "redis_url": redis.url,
        "redis_prefix": "console-test",
        "api_key": API_KEY,
        "allow_anonymous": True,
        "registry": demo_config().registry(),
        "anonymous_permissions": DEMO_ANONYMOUS_PERMISSIONS,
    }
    handlers = [ConsoleApp(ws_path="/ws")]
    async with (
        await start_hub("127.0.0.1", 0, http_handlers=handlers, **options) as one,
        await start_hub("127.0.0.1", 0, **options) as two,
        console_page(browser, one, page_errors) as page,
    ):
        await sign_in(page)
        nodes = page.get_by_test_id("console-node")
        await expect(nodes).to_have_count(2)
        await expect(nodes.nth(1)).to_contain_text(f":{two.port}")
        async with HubClient(two.url()) as client:
            await client.subscribe("chat:far")
            await expect(page.get_by_test_id("console-connections")).to_have_text("1")
            await expect(channel_row(page, "chat:far")).to_have_attribute("data-subscribers", "1")
    assert page_errors.seen == []
