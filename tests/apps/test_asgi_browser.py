"""wshub.js in chromium against the hub mounted in a Starlette app on uvicorn (wshub.hub.asgi).

The app serves a blank page and ``/wshub.js`` itself, and mounts the hub at ``/hub``; the
page imports the client and connects to ``/hub/ws``, as a web application's page would.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route

from wshub.hub import Authenticator, ChannelRegistry, Hub, NamespaceOptions
from wshub.hub.asgi import HubASGIApp
from wshub.testing import UvicornServer

from .conftest import WAIT_MS

_LOOP = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_factories=[_LOOP])]

# Records what the client reports in window.log, for the test to read.
HARNESS = """
async () => {
  const wshub = await import("/wshub.js");
  const url = new URL("/hub/ws", location.href);
  url.protocol = "ws:";
  const log = { states: [], pubs: [], recovered: [], resets: [] };
  const client = new wshub.HubClient(url.href, {
    meta: { nick: "Ada" }, minReconnectDelay: 50, maxReconnectDelay: 400,
  });
  client.addEventListener("state", (e) => log.states.push(e.detail.state));
  client.addEventListener("recovered", (e) => log.recovered.push(e.detail));
  window.client = client;
  window.log = log;
  window.subscribe = (channel) => client.subscribe(channel, {
    onPublication: (pub) => log.pubs.push({ offset: pub.offset, data: pub.data }),
    onReset: (event) => log.resets.push(event),
  });
  client.connect();
}
"""


class MountedHub:
    """A Starlette app on uvicorn: its own page and /wshub.js, and the hub at /hub."""

    def __init__(self) -> None:
        self.hub = Hub(
            registry=ChannelRegistry({"chat": NamespaceOptions(history_size=100, presence=True)}),
            auth=Authenticator(allow_anonymous=True, anonymous_permissions=["chat:*:spr"]),
        )
        script = importlib.resources.files("wshub.hub").joinpath("js/wshub.js").read_bytes()

        async def blank(request: Any) -> HTMLResponse:
            return HTMLResponse("<!doctype html><title>an app with a hub</title>")

        async def client_script(request: Any) -> Response:
            return Response(script, media_type="text/javascript")

        app = Starlette(
            routes=[
                Route("/blank", blank),
                Route("/wshub.js", client_script),
                Mount("/hub", app=HubASGIApp(self.hub)),
            ]
        )
        self.server = UvicornServer(app)


@pytest.fixture
async def mounted() -> AsyncIterator[MountedHub]:
    app = MountedHub()
    async with app.hub, app.server:
        yield app


@pytest.fixture
async def page(browser: Any, mounted: MountedHub) -> AsyncIterator[Any]:
    """A page of the app with the harness loaded and connected."""
    context = await browser.new_context()
    context.set_default_timeout(WAIT_MS)
    try:
        page = await context.new_page()
        await page.goto(mounted.server.url + "blank")
        await page.evaluate(HARNESS)
        await until(page, "client.state === 'connected'")
        yield page
    finally:
        await context.close()


async def js(page: Any, expression: str) -> Any:
    return await page.evaluate(f"async () => {expression}")


async def until(page: Any, condition: str) -> None:
    await page.wait_for_function(f"() => {condition}", timeout=WAIT_MS)


async def test_subscribe_and_publish_through_the_mounted_hub(page: Any) -> None:
    """A publish resolves to its offset and comes back as a publication, presence sees us."""
    await js(page, "window.subscribe('chat:room')")
    assert await js(page, "client.publish('chat:room', {text: 'hi'})") == 1
    await until(page, "log.pubs.length === 1")
    assert await js(page, "log.pubs") == [{"offset": 1, "data": {"text": "hi"}}]
    clients = await js(page, "client.presence('chat:room')")
    assert [c["meta"] for c in clients] == [{"nick": "Ada"}]


async def test_recovers_after_a_uvicorn_restart(page: Any, mounted: MountedHub) -> None:
    """uvicorn stops (1012) and comes back on the same hub: exactly the missed publications."""
    await js(page, "window.subscribe('chat:room')")
    await mounted.hub.publish("chat:room", {"n": 1})
    await until(page, "log.pubs.length === 1")
    await mounted.server.stop()
    await until(page, "client.state === 'reconnecting'")
    for n in (2, 3, 4):
        await mounted.hub.publish("chat:room", {"n": n})
    await mounted.server.start()
    await until(page, "log.recovered.length === 1")
    assert await js(page, "log.recovered") == [
        {"channel": "chat:room", "recovered": True, "missed": 3}
    ]
    assert [p["data"]["n"] for p in await js(page, "log.pubs")] == [1, 2, 3, 4]
    assert await js(page, "log.resets") == []
    await mounted.hub.publish("chat:room", {"n": 5})
    await until(page, "log.pubs.length === 5")
