"""wshub.js in chromium against a hub node whose Redis goes away (docs/protocol.md §6).

The hub runs on a real redis-server behind a relay (tests/hub/backends/redis), serving
``/wshub.js`` and a blank page the way the chat tests do; the page runs the same harness.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hub.backends.redis.outage_node import down, redis_node
from hub.backends.redis.redis_proxy import RedisProxy, redis_proxy
from wshub.exceptions import HubError
from wshub.hub import ChannelRegistry, NamespaceOptions
from wshub.testing import redis_server

from .conftest import ChatServer, running_chat
from .test_wshub_js import harness, js, until

_LOOP = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
pytestmark = [pytest.mark.browser, pytest.mark.redis, pytest.mark.asyncio(loop_factories=[_LOOP])]

REGISTRY = ChannelRegistry({"room": NamespaceOptions(history_size=1000)})


@contextlib.asynccontextmanager
async def chat_on(relay: RedisProxy) -> AsyncIterator[ChatServer]:
    async with redis_node(
        relay.url, REGISTRY, ("room:*:spr",), prefix="jsoutage", start=running_chat
    ) as chat:
        yield chat  # type: ignore[misc]


async def publish_until_accepted(chat: ChatServer, data: object, message_id: str) -> int:
    while True:
        try:
            return (await chat.hub.publish("room:x", data, message_id=message_id)).position.offset
        except HubError as exc:
            assert exc.temporary  # Redis is still coming back
            await asyncio.sleep(0.01)


async def test_a_temporary_refusal_is_retried_and_the_subscription_recovers(
    browser: Any,
) -> None:
    """Cut while Redis is down: the subscribe is refused for now, retried with backoff, and
    once Redis is back the publications made meanwhile arrive, none twice."""
    with redis_server() as first:
        async with (
            redis_proxy(first.port) as relay,
            chat_on(relay) as chat,
            harness(browser, chat, meta={"nick": "Ada"}) as page,
        ):
            await until(page, "client.state === 'connected'")
            await js(
                page,
                "(window.retries = [], client.addEventListener('retrying', "
                "(e) => retries.push(e.detail)), 0)",
            )
            await js(page, "window.subscribe('room:x')")
            await chat.hub.publish("room:x", {"n": 1})
            await until(page, "log.pubs.length === 1")

            down(relay)
            assert chat.drop("Ada") == 1
            await until(page, "retries.length >= 2")
            retry = (await js(page, "retries"))[0]
            assert retry["channel"] == "room:x" and retry["code"] == 100

            relay.point_to(first.port)
            for n in range(2, 5):
                assert await publish_until_accepted(chat, {"n": n}, f"m{n}") == n
            await until(page, "log.pubs.length === 4")
            await chat.hub.publish("room:x", {"n": 5})
            await until(page, "log.pubs.length === 5")
            pubs = await js(page, "log.pubs")
            assert [p["offset"] for p in pubs] == [1, 2, 3, 4, 5]
            assert [p["data"]["n"] for p in pubs] == [1, 2, 3, 4, 5]
            assert await js(page, "log.resets") == []


async def test_a_new_epoch_is_delivered_from_its_first_publication(browser: Any) -> None:
    """Redis came back empty: onReset, then the new epoch's publications from offset 1."""
    with contextlib.ExitStack() as stack:
        first = stack.enter_context(redis_server())
        async with (
            redis_proxy(first.port) as relay,
            chat_on(relay) as chat,
            harness(browser, chat, meta={"nick": "Ada"}) as page,
        ):
            await until(page, "client.state === 'connected'")
            await js(page, "window.subscribe('room:x')")
            await chat.hub.publish("room:x", "old")
            await until(page, "log.pubs.length === 1")

            down(relay)
            stack.close()
            assert chat.drop("Ada") == 1
            with redis_server() as second:
                relay.point_to(second.port)
                for n in range(1, 4):
                    assert await publish_until_accepted(chat, f"new{n}", f"n{n}") == n
                await until(page, "log.pubs.length === 4")
                await chat.hub.publish("room:x", "live")
                await until(page, "log.pubs.length === 5")
                pubs = await js(page, "log.pubs")
                assert [(p["offset"], p["data"]) for p in pubs] == [
                        (1, "old"), (1, "new1"), (2, "new2"), (3, "new3"), (4, "live"),
                    ]  # fmt: skip
                assert await js(page, "log.resets.length") == 1
                assert chat.hub_server is not None
                await chat.hub_server.close()  # while Redis still runs


PUBLISHER = """
(window.acks = [], window.stop = false, window.publishing = (async () => {
  for (let n = 0; !window.stop; n++) {
    acks.push([await client.publish("room:x", n, { messageId: "js-" + n }), n]);
  }
})(), 0)
"""


async def test_publishes_refused_during_a_short_outage_are_retried_with_their_ids(
    browser: Any,
) -> None:
    """The page publishes without pause while Redis is away for 2 s: the publishes refused
    for now are sent again with their message ids; every one is acknowledged once, at the
    offset it was stored at, and delivered once, in order."""
    with redis_server() as first:
        async with (
            redis_proxy(first.port) as relay,
            chat_on(relay) as chat,
            harness(browser, chat, meta={"nick": "Ada"}) as page,
        ):
            await until(page, "client.state === 'connected'")
            await js(page, "window.subscribe('room:x')")
            await js(page, PUBLISHER)
            await until(page, "acks.length >= 10")
            down(relay)
            before = await js(page, "acks.length")
            await asyncio.sleep(2.0)  # the outage
            during = await js(page, "acks.length")
            assert during - before <= 1  # at most the one in flight when Redis went away
            relay.point_to(first.port)
            await until(page, f"acks.length >= {during + 10}")
            await js(page, "(window.stop = true, window.publishing)")
            acks = [tuple(ack) for ack in await js(page, "acks")]
            assert acks == [(n + 1, n) for n in range(len(acks))]
            await until(page, f"log.pubs.length >= {len(acks)}")
            pubs = await js(page, "log.pubs")
            assert [(p["offset"], p["data"]) for p in pubs] == acks
            stored, _ = await chat.hub.history("room:x", limit=1000)
            assert [p.offset for p in stored] == [offset for offset, _ in acks]
            assert chat.hub_server is not None
            await chat.hub_server.close()  # while Redis still runs
