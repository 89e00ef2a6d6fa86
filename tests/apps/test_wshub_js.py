"""wshub.js, the browser client, driven in chromium against a real hub (docs/protocol.md)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
from collections.abc import AsyncIterator
from typing import Any

import pytest

from wshub.hub.auth import make_token
from wshub.hub.client import HubClient

from .conftest import WAIT_MS, ChatServer, running_chat

_LOOP = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_factories=[_LOOP])]

# Loaded into a blank page of the hub's origin: imports the client and records everything it
# reports in window.log, so that the test reads what the application would have seen.
HARNESS = """
async (options) => {
  const wshub = await import("/wshub.js");
  const url = new URL("/ws", location.href);
  url.protocol = "ws:";
  const log = { states: [], pubs: [], recovered: [], resets: [], joins: [], errors: [],
                subscribed: [] };
  const tokens = options.tokens || null;
  let tokenCalls = 0;
  const client = new wshub.HubClient(url.href, {
    meta: options.meta,
    token: options.token,
    getToken: tokens ? async () => tokens[Math.min(tokenCalls++, tokens.length - 1)] : undefined,
    minReconnectDelay: 50,
    maxReconnectDelay: 400,
  });
  client.addEventListener("state", (e) => log.states.push(e.detail.state));
  client.addEventListener("recovered", (e) => log.recovered.push(e.detail));
  client.addEventListener("error", (e) => {
    e.preventDefault();
    log.errors.push(e.detail.error.code ?? String(e.detail.error));
  });
  window.wshub = wshub;
  window.client = client;
  window.log = log;
  window.tokenCalls = () => tokenCalls;
  window.subscribe = (channel, extra = {}) =>
    client.subscribe(channel, {
      ...extra,
      onPublication: (pub) => log.pubs.push({ channel: pub.channel, offset: pub.offset,
                                              data: pub.data, info: pub.info }),
      onReset: (event) => log.resets.push(event),
      onJoin: (info) => log.joins.push(info),
      onSubscribe: (event) => log.subscribed.push(event),
    });
  client.connect();
}
"""


@pytest.fixture
async def page(browser: Any, chat_server: ChatServer) -> AsyncIterator[Any]:
    """A blank page on the hub's origin with the harness loaded and connected anonymously."""
    async with harness(browser, chat_server, meta={"nick": "Ada"}) as page:
        await page.wait_for_function("() => window.client.state === 'connected'")
        yield page


class harness:
    """``async with harness(browser, server, **options) as page``: a page running HARNESS."""

    def __init__(self, browser: Any, server: ChatServer, **options: Any) -> None:
        self.browser = browser
        self.server = server
        self.options = options

    async def __aenter__(self) -> Any:
        self.context = await self.browser.new_context()
        self.context.set_default_timeout(WAIT_MS)
        page = await self.context.new_page()
        await page.goto(self.server.url + "blank")
        await page.evaluate(HARNESS, self.options)
        return page

    async def __aexit__(self, *exc_info: object) -> None:
        await self.context.close()


async def js(page: Any, expression: str) -> Any:
    return await page.evaluate(f"async () => {expression}")


async def until(page: Any, condition: str) -> None:
    await page.wait_for_function(f"() => {condition}", timeout=WAIT_MS)


async def cut_off(page: Any, server: ChatServer) -> None:
    """Drop the page's connection from the server side and refuse it until ``refuse(False)``."""
    server.refuse(True)
    assert server.drop("Ada") == 1
    await until(page, "client.state === 'reconnecting'")


async def test_subscribe_publish_presence_history(page: Any, chat_server: ChatServer) -> None:
    """The basic commands: a publish resolves to its offset and comes back as a publication."""
    await js(page, "window.subscribe('chat:room', {recent: 10})")
    offset = await js(page, "client.publish('chat:room', {text: 'hi'})")
    assert offset == 1
    await until(page, "log.pubs.length === 1")
    pub = (await js(page, "log.pubs"))[0]
    assert pub["offset"] == 1
    assert pub["data"] == {"text": "hi"}
    assert pub["info"]["meta"] == {"nick": "Ada"}
    assert pub["info"]["client"] == await js(page, "client.clientId")

    clients = await js(page, "client.presence('chat:room')")
    assert [c["meta"] for c in clients] == [{"nick": "Ada"}]
    history = await js(page, "client.history('chat:room', {limit: 5})")
    assert [p["data"] for p in history["publications"]] == [{"text": "hi"}]
    since = await js(page, "client.history('chat:room', {since: log.subscribed[0]})")
    assert [p["offset"] for p in since["publications"]] == [1]
    await until(page, "log.joins.length === 1")


async def test_recent_publications_come_first(page: Any, chat_server: ChatServer) -> None:
    """subscribe with recent delivers the latest stored publications, then live ones."""
    for n in range(5):
        await chat_server.hub.publish("chat:room", {"n": n})
    await js(page, "window.subscribe('chat:room', {recent: 3})")
    assert [p["data"]["n"] for p in await js(page, "log.pubs")] == [2, 3, 4]
    await chat_server.hub.publish("chat:room", {"n": 5})
    await until(page, "log.pubs.length === 4")
    assert [p["offset"] for p in await js(page, "log.pubs")] == [3, 4, 5, 6]
    event = (await js(page, "log.subscribed"))[0]
    assert event["offset"] == 5 and event["recoverable"] is True and event["resubscribed"] is False


async def test_reconnect_recovers_exactly_the_missed_publications(
    page: Any, chat_server: ChatServer
) -> None:
    """After the server drops the connection, the client resubscribes with since: no gap, no dup."""
    await js(page, "window.subscribe('chat:room')")
    await chat_server.hub.publish("chat:room", {"n": 1})
    await until(page, "log.pubs.length === 1")
    first_client = await js(page, "client.clientId")

    await cut_off(page, chat_server)
    for n in (2, 3, 4):
        await chat_server.hub.publish("chat:room", {"n": n})
    chat_server.refuse(False)
    await until(page, "log.recovered.length === 1")

    assert await js(page, "log.recovered") == [
        {"channel": "chat:room", "recovered": True, "missed": 3}
    ]
    assert [p["data"]["n"] for p in await js(page, "log.pubs")] == [1, 2, 3, 4]
    assert await js(page, "log.resets") == []
    states = await js(page, "log.states")
    assert states[:2] == ["connecting", "connected"]
    assert states[2] == "reconnecting" and states[-1] == "connected"
    assert await js(page, "client.clientId") != first_client
    assert await js(page, "client.clientIds.size") == 2
    # and live again
    await chat_server.hub.publish("chat:room", {"n": 5})
    await until(page, "log.pubs.length === 5")


async def test_unrecoverable_position_resets_the_subscription(
    page: Any, chat_server: ChatServer
) -> None:
    """When history no longer reaches back, onReset runs and the recent publications follow."""
    await js(page, "window.subscribe('chat:room', {recent: 2})")
    await chat_server.hub.publish("chat:room", {"n": 0})
    await until(page, "log.pubs.length === 1")
    await cut_off(page, chat_server)
    # The chat namespace keeps 100 publications: 150 more trim the client's position away.
    for n in range(1, 151):
        await chat_server.hub.publish("chat:room", {"n": n})
    chat_server.refuse(False)
    await until(page, "log.recovered.length === 1")
    assert await js(page, "log.recovered") == [
        {"channel": "chat:room", "recovered": False, "missed": None}
    ]
    assert await js(page, "log.resets") == [{"channel": "chat:room", "reason": "unrecovered"}]
    assert [p["data"]["n"] for p in await js(page, "log.pubs")] == [0, 149, 150]


async def test_publish_in_flight_is_retried_with_its_message_id(
    page: Any, chat_server: ChatServer
) -> None:
    """A publish whose reply is lost with the connection is resent once, and stored once."""
    await js(page, "window.subscribe('chat:room')")
    offset = await js(
        page,
        """{
          const sent = client.publish('chat:room', {text: 'once'});
          // The command is on the wire; a closing socket drops the reply that follows.
          client._ws.close(4100);
          return await sent;
        }""",
    )
    assert offset == 1
    assert chat_server.hub.stats.duplicates == 1
    history, _ = await chat_server.hub.history("chat:room")
    assert [p.offset for p in history] == [1]
    await until(page, "log.pubs.length === 1")
    assert await js(page, "log.pubs.map((p) => p.data.text)") == ["once"]


async def test_publishes_wait_for_the_connection(page: Any, chat_server: ChatServer) -> None:
    """Publishes made while reconnecting are sent after the resubscribe, in call order."""
    await js(page, "window.subscribe('chat:room')")
    await cut_off(page, chat_server)
    await js(page, "window.sent = [1, 2, 3].map((n) => client.publish('chat:room', {n}))")
    ephemeral = await js(
        page,
        "client.publish('chat:room', {typing: true}, {ephemeral: true}).catch((e) => e.name)",
    )
    assert ephemeral == "DisconnectedError"
    chat_server.refuse(False)
    assert await js(page, "Promise.all(window.sent)") == [1, 2, 3]
    await until(page, "log.pubs.length === 3")
    assert [p["data"]["n"] for p in await js(page, "log.pubs")] == [1, 2, 3]


async def test_errors_reject_with_the_hub_code(page: Any) -> None:
    """Error replies reject with HubError carrying the protocol's code."""
    codes = await js(
        page,
        """Promise.all([
          client.publish('nope:room', 1).catch((e) => [e.name, e.code]),
          client.subscribe('bad channel').catch((e) => [e.name, e.code]),
          client.presence('chat:room').then(() => 'ok'),
          client.publish('chat:room', 1).catch((e) => e.code),
        ])""",
    )
    assert codes == [["HubError", 108], ["HubError", 107], "ok", 110]
    await js(page, "window.subscribe('chat:room')")
    duplicate = await js(page, "window.subscribe('chat:room').catch((e) => e.code)")
    assert duplicate == 109


async def test_unsubscribe_stops_delivery(page: Any, chat_server: ChatServer) -> None:
    """After unsubscribe, nothing of the channel is delivered and the hub forgot us."""
    await js(page, "window.subscribe('chat:room')")
    await js(page, "window.subscribe('chat:other')")
    await js(page, "client.unsubscribe('chat:room')")
    await chat_server.hub.publish("chat:room", {"n": 1})
    await chat_server.hub.publish("chat:other", {"n": 2})
    await until(page, "log.pubs.length === 1")
    assert [p["channel"] for p in await js(page, "log.pubs")] == ["chat:other"]
    assert await chat_server.hub.presence("chat:room") == []


async def test_close_fails_what_is_pending_and_stays_offline(page: Any) -> None:
    """close() is final: state offline, queued and later commands reject."""
    result = await js(
        page,
        """{
          client.close();
          const late = await client.publish('chat:room', 1).catch((e) => e.name);
          return [client.state, late];
        }""",
    )
    assert result == ["offline", "DisconnectedError"]


async def test_refused_token_without_get_token_goes_offline(browser: Any) -> None:
    """A token the hub refuses (close 4001) ends the client: retrying cannot help."""
    async with (
        running_chat(secret="s" * 32, allow_anonymous=False) as server,
        harness(browser, server, token="not-a-token") as page,
    ):
        await until(page, "client.state === 'offline'")
        assert 4001 in await js(page, "log.errors")


async def test_get_token_is_asked_again_after_a_refusal(browser: Any) -> None:
    """With getToken, a refused token is replaced and the client connects."""
    secret = "s" * 32
    good = make_token(secret, "alice", ttl=3600, channels=["chat:*:spr"])
    async with (
        running_chat(secret=secret, allow_anonymous=False) as server,
        harness(browser, server, tokens=["bad", good]) as page,
    ):
        await until(page, "client.state === 'connected'")
        assert await js(page, "client.user") == "alice"
        assert await js(page, "window.tokenCalls()") == 2


async def test_presence_diffs_call_on_join_and_on_leave_per_client(
    page: Any, chat_server: ChatServer
) -> None:
    """Clients that join in one presence_diff each reach onJoin, those that leave onLeave;
    the list kept from them equals the hub's presence."""
    await js(
        page,
        """(async () => {
          window.members = new Map();
          window.kinds = [];
          await client.subscribe('chat:big', {
            onJoin: (info, push) => { members.set(info.client, info); kinds.push(push.push); },
            onLeave: (info, push) => { members.delete(info.client); kinds.push(push.push); },
          });
        })()""",
    )
    async with contextlib.AsyncExitStack() as stack:
        bots = [
            await stack.enter_async_context(HubClient(chat_server.ws_url, meta={"nick": f"B{i}"}))
            for i in range(5)
        ]
        await asyncio.gather(*(bot.subscribe("chat:big") for bot in bots))
        await until(page, "members.size === 6")
        await asyncio.gather(*(bot.close() for bot in bots[:2]))
        await until(page, "members.size === 4")
        hub = chat_server.hub_server
        assert hub is not None
        present = {info.client for info in await hub.hub.presence("chat:big")}
        assert set(await js(page, "[...members.keys()]")) == present
        assert {bot.client_id for bot in bots[2:]} < present
        kinds = await js(page, "kinds")
        assert set(kinds) == {"presence_diff"} and len(kinds) == 8
