"""Hub nodes sharing one Redis (wshub.hub.backends.open_stores), end to end.

Two hub servers run in the test process (``start_demo_hub(redis_url=...)`` on two ports, one key
prefix) and real HubClients talk to them over loopback. The Redis restart test puts a relay
in front of Redis and swaps the redis-server behind it, so that the nodes see the same
address go away and come back empty.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from wshub.exceptions import HubError
from wshub.hub import ChannelRegistry, HubLimits, NamespaceOptions
from wshub.hub.backends import AppendResult, open_stores
from wshub.hub.backends.redis import RedisBroker
from wshub.hub.client import HubClient, Subscription
from wshub.hub.server import HubServer
from wshub.hub.wire import Position
from wshub.testing import RedisServer, redis_server

from ...conftest import start_demo_hub
from .redis_proxy import redis_proxy

pytestmark = pytest.mark.redis

REGISTRY = ChannelRegistry(
    {
        "room": NamespaceOptions(history_size=1000, presence=True, join_leave=True),
        # In a node's memory without Redis; shared through Redis with it.
        "tick": NamespaceOptions(history_size=10, persistent=False, publish="any"),
    }
)

StartNode = Callable[[str], Awaitable[HubServer]]


@pytest.fixture
async def start_node(prefix: str) -> AsyncIterator[StartNode]:
    """``await start_node(redis_url)`` -> a hub server on a free port, closed at the end."""
    servers: list[HubServer] = []

    async def start(url: str) -> HubServer:
        server = await start_demo_hub(
            "127.0.0.1",
            0,
            redis_url=url,
            redis_prefix=prefix,
            allow_anonymous=True,
            anonymous_permissions=("room:*:spr", "tick:*:spr"),
            registry=REGISTRY,
            limits=HubLimits(command_rate=None, publish_rate=None),
            compression=None,
        )
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
async def nodes(start_node: StartNode, redis: RedisServer) -> list[HubServer]:
    return [await start_node(redis.url), await start_node(redis.url)]


@contextlib.asynccontextmanager
async def client(server: HubServer) -> AsyncIterator[HubClient]:
    hub_client = HubClient(server.url(), backoff_initial=0.01, max_delay=0.05, compression=None)
    async with hub_client:
        yield hub_client


async def read(sub: Subscription, count: int) -> list[tuple[int, object]]:
    return [((pub := await sub.get()).offset, pub.data) for _ in range(count)]


async def test_a_publication_on_node_b_reaches_a_subscriber_on_node_a(
    nodes: list[HubServer],
) -> None:
    """Delivered across nodes exactly once, in order, without any gap to repair."""
    a, b = nodes
    async with client(a) as reader, client(b) as writer:
        sub = await reader.subscribe("room:x")
        await writer.subscribe("room:x")
        for i in range(30):
            await writer.publish("room:x", {"n": i})
        assert await read(sub, 30) == [(i + 1, {"n": i}) for i in range(30)]
        assert sub.statistics().repaired == 0
        assert sub.statistics().buffered == 0


async def test_a_client_moving_from_node_a_to_node_b_recovers_exactly_what_it_missed(
    nodes: list[HubServer],
) -> None:
    """since= on the other node returns exactly the publications made while away."""
    a, b = nodes
    async with client(a) as first:
        sub = await first.subscribe("room:x")
        for i in range(3):
            await a.hub.publish("room:x", i)
        assert await read(sub, 3) == [(1, 0), (2, 1), (3, 2)]
        seen = sub.position
    assert seen is not None
    for i in range(3, 8):
        await b.hub.publish("room:x", i)  # while the client is away
    async with client(b) as second:
        resumed = await second.subscribe("room:x", since=seen)
        assert resumed.recovered is True
        assert await read(resumed, 5) == [(4, 3), (5, 4), (6, 5), (7, 6), (8, 7)]
        await a.hub.publish("room:x", "live")
        assert await read(resumed, 1) == [(9, "live")]
        assert resumed.statistics().buffered == 0


async def test_concurrent_publishes_from_both_nodes_get_distinct_consecutive_offsets(
    nodes: list[HubServer],
) -> None:
    """Offsets come from Redis: two nodes publishing at once never share or skip one."""
    a, b = nodes
    count = 40
    async with client(a) as on_a, client(b) as on_b, client(a) as reader:
        sub = await reader.subscribe("room:x")
        await on_a.subscribe("room:x")
        await on_b.subscribe("room:x")
        offsets = await asyncio.gather(
            *(on_a.publish("room:x", {"a": i}) for i in range(count)),
            *(on_b.publish("room:x", {"b": i}) for i in range(count)),
        )
        assert sorted(offsets) == list(range(1, 2 * count + 1))
        received = await read(sub, 2 * count)
        assert [offset for offset, _ in received] == list(range(1, 2 * count + 1))
        by_offset = dict(received)
        assert by_offset == {
            offset: ({"a": i} if i < count else {"b": i - count})
            for i, offset in enumerate(offsets)
        }


async def test_presence_and_join_events_span_the_nodes(nodes: list[HubServer]) -> None:
    """A client on each node: both are present everywhere, and each sees the other join."""
    a, b = nodes
    joined: list[str] = []
    async with client(a) as alice, client(b) as bob:
        await alice.subscribe("room:x", on_event=lambda event: joined.append(event.kind))
        await bob.subscribe("room:x")
        present = {info.client for info in await alice.presence("room:x")}
        assert present == {alice.client_id, bob.client_id}
        assert {info.client for info in await b.hub.presence("room:x")} == present
        while joined.count("join") < 2:  # alice's own join, then bob's
            await asyncio.sleep(0.005)


async def test_in_memory_namespaces_are_shared_too(nodes: list[HubServer]) -> None:
    """persistent=False namespaces keep one stream in Redis, not one per node."""
    a, b = nodes
    first = await a.hub.publish("tick:x", 1)
    second = await b.hub.publish("tick:x", 2)
    assert first.position.epoch == second.position.epoch
    assert (first.position.offset, second.position.offset) == (1, 2)


async def test_a_publication_made_while_a_node_resubscribes_reaches_its_subscribers(
    start_node: StartNode, redis: RedisServer
) -> None:
    """What a Sentinel kill -9 failover showed: another node's publish succeeds while this
    node's subscriber connection is still coming back, and no publication follows. The node
    catches up from history once subscribed again: the last publication is not lost."""
    async with redis_proxy(redis.port) as proxy:
        a, b = await start_node(proxy.url), await start_node(redis.url)
        broker = a.hub.broker
        assert isinstance(broker, RedisBroker)
        async with client(a) as reader:
            sub = await reader.subscribe("room:x")
            await b.hub.publish("room:x", "before")
            assert await read(sub, 1) == [(1, "before")]
            proxy.point_to(None)  # node a loses Redis, node b does not
            proxy.cut()
            while broker.connected:
                await asyncio.sleep(0.005)
            await b.hub.publish("room:x", "meanwhile")  # acknowledged, never heard by a
            await b.hub.publish("room:x", "last")
            proxy.point_to(redis.port)
            assert await read(sub, 2) == [(2, "meanwhile"), (3, "last")]
            assert broker.statistics().reconnects >= 1


async def test_a_redis_restart_is_a_new_epoch_never_a_silent_gap(
    start_node: StartNode,
) -> None:
    """Redis restarts empty: the brokers reconnect, live delivery resumes, and the lost
    history shows as a new epoch (116 in the stream) and as recovered=False."""
    with contextlib.ExitStack() as first_redis:
        first = first_redis.enter_context(redis_server())
        async with redis_proxy(first.port) as proxy:
            a, b = await start_node(proxy.url), await start_node(proxy.url)
            async with client(a) as reader:
                sub = await reader.subscribe("room:x")
                before = await b.hub.publish("room:x", "before")
                assert await read(sub, 1) == [(1, "before")]

                # Stop the redis-server, start an empty one behind the same address.
                proxy.point_to(None)
                proxy.cut()
                first_redis.close()
                with redis_server() as second:
                    proxy.point_to(second.port)
                    broker = a.hub.broker  # the node with a subscriber
                    assert isinstance(broker, RedisBroker)
                    while not (broker.connected and broker.statistics().reconnects >= 1):
                        await asyncio.sleep(0.01)
                    after = await publish_until_accepted(b, "room:x", "after")
                    assert after.position.epoch != before.position.epoch
                    with pytest.raises(HubError) as gap:
                        await sub.get()
                    assert gap.value.code == 116
                    assert sub.recovered is False
                    assert await read(sub, 1) == [(1, "after")]

                    async with client(b) as late:
                        old = Position(1, before.position.epoch)
                        resumed = await late.subscribe("room:x", since=old, recent=10)
                        assert resumed.recovered is False
                        with pytest.raises(HubError) as lost:
                            await resumed.get()  # the client is told before the reload
                        assert lost.value.code == 116
                        assert await read(resumed, 1) == [(1, "after")]
                    await a.close()  # while Redis still runs: the nodes leave cleanly
                    await b.close()


async def publish_until_accepted(server: HubServer, channel: str, data: object) -> AppendResult:
    """Publish with a message id, retrying while Redis is still coming back."""
    while True:
        try:
            return await server.hub.publish(channel, data, message_id="once")
        except HubError:
            await asyncio.sleep(0.01)


async def test_start_hub_refuses_conflicting_or_unreachable_redis() -> None:
    """redis_url replaces data_dir/ephemeral; an unreachable Redis fails at start-up."""
    with pytest.raises(ValueError):
        await start_demo_hub("127.0.0.1", 0, redis_url="redis://127.0.0.1:1/0", ephemeral=True)
    async with redis_proxy(None) as dead:
        with pytest.raises(ConnectionError):
            await start_demo_hub("127.0.0.1", 0, redis_url=dead.url)


async def test_open_stores_closes_what_it_opened(redis: RedisServer, prefix: str) -> None:
    """open_stores checks Redis; close() stops the broker and the stores."""
    stores = await open_stores(redis_url=redis.url, redis_prefix=prefix)
    assert stores.location == f"redis://127.0.0.1:{redis.port}/0"
    await stores.history.append("c:x", b"1", size=1, ttl=None)
    await stores.close()
    assert isinstance(stores.broker, RedisBroker)
    assert not stores.broker.connected


async def test_every_namespace_keeps_its_history_in_redis(nodes: list[HubServer]) -> None:
    """The registry is the hub's, unchanged; persistent=False namespaces use Redis anyway."""
    a, _ = nodes
    assert a.hub.registry is REGISTRY
    tick = a.hub.registry.options("tick:y")
    assert not tick.persistent and tick.history_size == 10 and tick.publish == "any"
    with pytest.raises(HubError):
        a.hub.registry.options("nope:x")
    await a.hub.publish("tick:y", 1)
    await a.hub.publish("room:y", 2)
    assert {"tick:y", "room:y"} <= set(await a.hub.history_store.channels())
    assert [c["channel"] for c in await a.hub.channels()].count("tick:y") == 1
