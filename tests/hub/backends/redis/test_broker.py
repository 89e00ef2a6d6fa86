"""Tests for wshub.hub.backends.redis.broker: nodes, reconnection, failures, on a real Redis.

The Broker contract itself runs in test_broker_contract.py; here the brokers talk to Redis
through a relay (:mod:`.redis_proxy`) so that the tests can cut, silence or redirect the
wire. Waits are for conditions (a delivery, a reconnection), bounded by pytest's timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from wshub.exceptions import HubError, InvalidState
from wshub.hub.backends.redis import RedisBroker
from wshub.testing import RedisServer

from ..helpers import Inbox
from .redis_proxy import RedisProxy, redis_proxy

pytestmark = pytest.mark.redis

FAST = {"backoff_initial": 0.01, "backoff_max": 0.05}


@pytest.fixture
async def proxy(redis: RedisServer) -> AsyncIterator[RedisProxy]:
    async with redis_proxy(redis.port) as relay:
        yield relay


@pytest.fixture
async def publisher(redis: RedisServer, prefix: str) -> AsyncIterator[RedisBroker]:
    """Another node, connected to Redis directly (never cut)."""
    broker = RedisBroker(redis.url, prefix=prefix)
    yield broker
    await broker.close()


async def wait_until_connected(broker: RedisBroker, reconnects: int = 0) -> None:
    while not (broker.connected and broker.statistics().reconnects >= reconnects):
        await asyncio.sleep(0.005)


async def deliver(publisher: RedisBroker, channel: str, inbox: Inbox, payload: bytes) -> None:
    """Publish ``payload`` until ``inbox`` got it (publications during an outage are lost)."""
    while (channel, payload) not in inbox.received:
        await publisher.publish(channel, payload)
        await asyncio.sleep(0.01)


async def test_a_publication_reaches_the_other_node(
    publisher: RedisBroker, redis: RedisServer, prefix: str
) -> None:
    """Brokers with the same prefix are nodes of one hub; another prefix is another hub."""
    node, stranger = RedisBroker(redis.url, prefix=prefix), RedisBroker(redis.url, prefix="other")
    try:
        inbox, elsewhere = Inbox(), Inbox()
        await node.subscribe("c:a", inbox)
        await stranger.subscribe("c:a", elsewhere)
        await publisher.publish("c:a", b"1")
        assert await inbox.wait_for(1) == [("c:a", b"1")]
        await stranger.publish("c:a", b"x")
        assert await elsewhere.wait_for(1) == [("c:a", b"x")]
        assert inbox.received == [("c:a", b"1")]
        stats = node.statistics()
        assert (stats.connected, stats.channels, stats.delivered) == (True, 1, 1)
    finally:
        await node.close()
        await stranger.close()


async def test_reconnects_and_resubscribes_after_the_connection_drops(
    proxy: RedisProxy, publisher: RedisBroker, prefix: str
) -> None:
    """Cut wires: the broker reconnects with backoff and its channels are delivered again."""
    broker = RedisBroker(proxy.url, prefix=prefix, **FAST)
    try:
        first, second = Inbox(), Inbox()
        await broker.subscribe("c:a", first)
        await broker.subscribe("c:b", second)
        for round_ in range(1, 4):
            proxy.cut()
            await wait_until_connected(broker, reconnects=round_)
            await deliver(publisher, "c:a", first, b"a%d" % round_)
            await deliver(publisher, "c:b", second, b"b%d" % round_)
        assert broker.statistics().reconnects == 3
    finally:
        await broker.close()


async def test_a_reconnection_tells_the_callbacks_they_may_have_missed_publications(
    proxy: RedisProxy, publisher: RedisBroker, prefix: str
) -> None:
    """Once a channel is delivered again after a cut, its callbacks get one empty payload
    (the Broker contract's "catch up" signal), before anything published after it; a
    first subscription gets none."""
    broker = RedisBroker(proxy.url, prefix=prefix, **FAST)
    try:
        inbox = Inbox()
        await broker.subscribe("c:a", inbox)
        await deliver(publisher, "c:a", inbox, b"1")
        assert ("c:a", b"") not in inbox.received
        proxy.cut()
        await wait_until_connected(broker, reconnects=1)
        await deliver(publisher, "c:a", inbox, b"2")
        assert inbox.received.count(("c:a", b"")) == 1
        assert inbox.received.index(("c:a", b"")) < inbox.received.index(("c:a", b"2"))
    finally:
        await broker.close()


async def test_subscribe_while_redis_is_down_waits_for_the_reconnection(
    proxy: RedisProxy, publisher: RedisBroker, prefix: str
) -> None:
    """A subscribe made during an outage returns once Redis is back and the channel is live."""
    broker = RedisBroker(proxy.url, prefix=prefix, **FAST)
    try:
        await broker.subscribe("c:a", Inbox())
        port = proxy.port
        proxy.point_to(None)
        proxy.cut()
        while broker.connected:
            await asyncio.sleep(0.005)
        inbox = Inbox()
        pending = asyncio.ensure_future(broker.subscribe("c:b", inbox))
        while proxy.accepted < 3:  # the broker is trying to reconnect
            await asyncio.sleep(0.005)
        assert not pending.done()
        proxy.point_to(port)
        await pending
        await publisher.publish("c:b", b"1")
        assert await inbox.wait_for(1) == [("c:b", b"1")]
    finally:
        await broker.close()


async def test_subscribe_fails_with_100_when_redis_stays_down(prefix: str) -> None:
    """Without Redis, subscribe gives up after subscribe_timeout and leaves nothing behind."""
    async with redis_proxy(None) as dead:
        broker = RedisBroker(dead.url, prefix=prefix, subscribe_timeout=0.2, **FAST)
        try:
            with pytest.raises(HubError) as caught:
                await broker.subscribe("c:a", Inbox())
            assert caught.value.code == 100
            assert broker.statistics().channels == 0
            with pytest.raises(HubError):
                await broker.publish("c:a", b"1")
        finally:
            await broker.close()


async def test_a_cancelled_subscribe_leaves_nothing_behind(prefix: str) -> None:
    """A subscribe cancelled while it waits for Redis takes its callback back."""
    async with redis_proxy(None) as dead:
        broker = RedisBroker(dead.url, prefix=prefix, **FAST)
        try:
            pending = asyncio.ensure_future(broker.subscribe("c:a", Inbox()))
            while dead.accepted < 2:
                await asyncio.sleep(0.005)
            pending.cancel()
            with pytest.raises(asyncio.CancelledError):
                await pending
            assert broker.statistics().channels == 0
        finally:
            await broker.close()


async def test_a_silent_connection_is_replaced(
    proxy: RedisProxy, publisher: RedisBroker, prefix: str
) -> None:
    """A connection that stops answering (half-open) fails its PING and is made again."""
    broker = RedisBroker(proxy.url, prefix=prefix, ping_interval=0.05, ping_timeout=0.05, **FAST)
    try:
        inbox = Inbox()
        await broker.subscribe("c:a", inbox)
        proxy.freeze()
        await wait_until_connected(broker, reconnects=1)
        await deliver(publisher, "c:a", inbox, b"after")
    finally:
        await broker.close()


async def test_resubscribing_a_channel_while_its_unsubscribe_is_in_flight(
    publisher: RedisBroker, redis: RedisServer, prefix: str
) -> None:
    """Unsubscribe then subscribe at once: subscribe returns only when Redis delivers again."""
    broker = RedisBroker(redis.url, prefix=prefix)
    try:
        first, second = Inbox(), Inbox()
        await broker.subscribe("c:a", first)
        for _ in range(20):
            await broker.unsubscribe("c:a", first)
            await broker.subscribe("c:a", first)
        await broker.subscribe("c:a", second)
        await publisher.publish("c:a", b"1")
        assert await second.wait_for(1) == [("c:a", b"1")]
        assert await first.wait_for(1) == [("c:a", b"1")]
    finally:
        await broker.close()


async def test_closed_broker(redis: RedisServer, prefix: str) -> None:
    """After close: publish and subscribe raise InvalidState, unsubscribe and close are no-ops."""
    broker = RedisBroker(redis.url, prefix=prefix)
    inbox = Inbox()
    await broker.subscribe("c:a", inbox)
    await broker.close()
    await broker.close()
    await broker.unsubscribe("c:a", inbox)
    with pytest.raises(InvalidState):
        await broker.subscribe("c:b", inbox)
    assert not broker.connected


@pytest.mark.parametrize(
    "options",
    [
        {"subscribe_timeout": 0},
        {"ping_timeout": 0},
        {"ping_interval": 0},
        {"backoff_initial": 2.0, "backoff_max": 1.0},
    ],
)
def test_invalid_options(options: dict[str, float]) -> None:
    """Out-of-range timeouts and delays are refused at construction."""
    with pytest.raises(ValueError):
        RedisBroker("redis://127.0.0.1:6379/0", **options)
