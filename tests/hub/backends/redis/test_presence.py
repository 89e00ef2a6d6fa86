"""Tests for wshub.hub.backends.redis.presence: several nodes, crashes and outages.

The contract (test_presence_contract.py) runs against RedisPresence too; here two stores on
one prefix are two nodes of one hub, and a relay (:mod:`.redis_proxy`) cuts the wire.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from wshub.exceptions import HubError, InvalidState
from wshub.hub.backends.redis import RedisPresence, redis_client
from wshub.hub.wire import ClientInfo
from wshub.testing import RedisServer

from .redis_proxy import RedisProxy, redis_proxy

A, B = ClientInfo("a", "alice"), ClientInfo("b", "bob", {"nick": "B"})

Nodes = Callable[..., RedisPresence]


@pytest.fixture
async def node(redis: RedisServer, prefix: str) -> AsyncIterator[Nodes]:
    """``node(url=..., **options)`` -> a RedisPresence on this test's prefix, closed at the end."""
    made: list[RedisPresence] = []

    def make(url: str = redis.url, **options: float) -> RedisPresence:
        made.append(RedisPresence(url, prefix=prefix, **options))
        return made[-1]

    yield make
    for presence in made:
        await presence.close()


@pytest.mark.redis
async def test_nodes_see_each_others_clients(node: Nodes) -> None:
    """What one node adds, every node lists; either may remove it."""
    one, two = node(), node()
    await one.add("c:x", A)
    await two.add("c:x", B)
    assert await one.get("c:x") == await two.get("c:x") == [A, B]
    assert await two.remove("c:x", "a") is True
    assert await one.get("c:x") == [B]


@pytest.mark.redis
async def test_the_clients_of_a_crashed_node_vanish(node: Nodes) -> None:
    """Entries no heartbeat rewrites expire; the live node's entries stay."""
    live = node(ttl=0.3, heartbeat_interval=0.05)
    crashed = node(ttl=0.3, heartbeat_interval=0.05)
    await live.add("c:x", A)
    await crashed.add("c:x", B)
    assert await live.get("c:x") == [A, B]
    await crashed.close()  # stops its heartbeat without removing anything: a crash
    while len(await live.get("c:x")) > 1:
        await asyncio.sleep(0.02)
    assert await live.get("c:x") == [A]


@pytest.mark.redis
async def test_the_heartbeat_rewrites_what_redis_lost(
    node: Nodes, redis: RedisServer, prefix: str
) -> None:
    """After Redis lost its data, the next heartbeat lists this node's clients again."""
    presence = node(ttl=5.0, heartbeat_interval=0.05)
    await presence.add("c:x", A)
    direct = redis_client(redis.url)
    try:
        await direct.delete(f"{prefix}:presence:c:x")
    finally:
        await direct.connection_pool.disconnect()
    while await presence.get("c:x") != [A]:
        await asyncio.sleep(0.02)


@pytest.mark.redis
async def test_add_during_an_outage_is_repaired(node: Nodes, redis: RedisServer) -> None:
    """An add that fails does not raise: the heartbeat writes it once Redis answers; an entry
    whose remove failed expires."""
    async with redis_proxy(redis.port) as proxy:
        presence = node(proxy.url, ttl=0.5, heartbeat_interval=0.05)
        reader = node()
        await presence.add("c:x", A)
        down(proxy)
        await presence.add("c:x", B)
        assert await presence.remove("c:x", "a") is True  # this node's knowledge
        with pytest.raises(HubError):
            await presence.get("c:x")
        proxy.point_to(redis.port)
        while await reader.get("c:x") != [B]:
            await asyncio.sleep(0.02)


def down(proxy: RedisProxy) -> None:
    proxy.point_to(None)
    proxy.cut()


@pytest.mark.redis
async def test_closed_store_refuses_use(node: Nodes) -> None:
    """After close the store raises InvalidState; close is idempotent."""
    presence = node()
    await presence.add("c:x", A)
    await presence.close()
    await presence.close()
    with pytest.raises(InvalidState):
        await presence.get("c:x")


def test_heartbeat_must_be_shorter_than_ttl() -> None:
    """A heartbeat slower than the expiry would drop live clients: refused."""
    with pytest.raises(ValueError):
        RedisPresence("redis://127.0.0.1:6379/0", ttl=5.0, heartbeat_interval=5.0)
