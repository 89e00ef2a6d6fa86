"""The Broker contract (wshub.hub.backends.base), run against every broker: memory, Redis.

Deliveries may be asynchronous (a Redis broker delivers from a reader task), so tests wait for
the expected number of messages with :class:`Inbox` instead of checking right after publish.
Add an implementation by adding a parameter to the ``broker`` fixture.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from wshub.exceptions import InvalidState
from wshub.hub.backends import Broker, MemoryBroker

from .helpers import Inbox


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def broker(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[Broker]:
    implementation: Broker
    if request.param == "redis":
        from wshub.hub.backends.redis import RedisBroker

        server = request.getfixturevalue("redis")
        implementation = RedisBroker(server.url, prefix=prefix)
    else:
        implementation = MemoryBroker()
    yield implementation
    await implementation.close()


async def test_payloads_arrive_byte_for_byte_in_order(broker: Broker) -> None:
    """Every payload, binary included, arrives unchanged and in publish order."""
    inbox = Inbox()
    await broker.subscribe("c:a", inbox)
    payloads = [b"", b"\x00\xff\n", "é".encode(), *(b"%d" % i for i in range(50))]
    for payload in payloads:
        await broker.publish("c:a", payload)
    received = await inbox.wait_for(len(payloads))
    assert received == [("c:a", p) for p in payloads]


async def test_every_subscriber_of_the_channel_receives(broker: Broker) -> None:
    """All callbacks of a channel get each payload; other channels get nothing."""
    first, second, other = Inbox(), Inbox(), Inbox()
    await broker.subscribe("c:a", first)
    await broker.subscribe("c:a", second)
    await broker.subscribe("c:b", other)
    await broker.publish("c:a", b"x")
    await broker.publish("c:b", b"y")
    assert await first.wait_for(1) == [("c:a", b"x")]
    assert await second.wait_for(1) == [("c:a", b"x")]
    assert await other.wait_for(1) == [("c:b", b"y")]


async def test_unsubscribe_stops_delivery(broker: Broker) -> None:
    """After unsubscribe, later payloads are not delivered to that callback."""
    gone, stays = Inbox(), Inbox()
    await broker.subscribe("c:a", gone)
    await broker.subscribe("c:a", stays)
    await broker.publish("c:a", b"1")
    await gone.wait_for(1)
    await broker.unsubscribe("c:a", gone)
    await broker.publish("c:a", b"2")
    await stays.wait_for(2)
    assert gone.received == [("c:a", b"1")]


async def test_double_subscribe_and_unknown_unsubscribe_are_no_ops(broker: Broker) -> None:
    """Subscribing twice delivers once; unsubscribing an unknown callback does nothing."""
    inbox, marker = Inbox(), Inbox()
    await broker.subscribe("c:a", inbox)
    await broker.subscribe("c:a", inbox)
    await broker.unsubscribe("c:zzz", inbox)
    await broker.unsubscribe("c:a", Inbox())
    await broker.subscribe("c:a", marker)
    await broker.publish("c:a", b"1")
    await broker.publish("c:a", b"2")
    await marker.wait_for(2)
    assert inbox.received == [("c:a", b"1"), ("c:a", b"2")]


async def test_a_failing_callback_does_not_stop_the_others(broker: Broker) -> None:
    """A callback that raises is isolated from the other subscribers."""
    bad, good = Inbox(fail=True), Inbox()
    await broker.subscribe("c:a", bad)
    await broker.subscribe("c:a", good)
    await broker.publish("c:a", b"1")
    await broker.publish("c:a", b"2")
    assert len(await good.wait_for(2)) == 2
    assert len(await bad.wait_for(2)) == 2


async def test_closed_broker_refuses_use(broker: Broker) -> None:
    """publish and subscribe raise InvalidState after close."""
    await broker.close()
    with pytest.raises(InvalidState):
        await broker.publish("c:a", b"1")
    with pytest.raises(InvalidState):
        await broker.subscribe("c:a", Inbox())
