"""A Redis outage seen from the clients: nothing is lost for good, and the log stays readable.

One hub node runs on a real redis-server reached through a relay (``redis_proxy``), so that
a test can make Redis unreachable and bring it back (the same server, or an empty one).
The node's stores are built here with short timeouts (subscribe, heartbeat), so that the
outage shows within a fraction of a second instead of the production defaults' seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import orjson
import pytest

from wshub.aio import connect
from wshub.exceptions import HubError
from wshub.hub import ChannelRegistry, Hub, NamespaceOptions
from wshub.hub.backends.redis import RedisHistory, RedisPresence
from wshub.hub.backends.redis.connection import close_client, redis_client
from wshub.hub.client import ClientState, HubClient, Subscription
from wshub.hub.server import HubServer, start_hub
from wshub.hub.wire import SUBPROTOCOL, ErrorReply, parse_message
from wshub.testing import RedisServer, redis_server

from .backends.redis.outage_node import down, redis_node
from .backends.redis.redis_proxy import RedisProxy, redis_proxy
from .conftest import API_KEY, http

pytestmark = pytest.mark.redis

REGISTRY = ChannelRegistry(
    {"room": NamespaceOptions(history_size=1000, presence=True, join_leave=True)}
)
PREFIX = "outage"


@contextlib.contextmanager
def fresh_redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture
async def proxy() -> AsyncIterator[tuple[RedisProxy, contextlib.ExitStack, RedisServer]]:
    """A relay to a redis-server that the test may stop (``stack.close()``)."""
    with contextlib.ExitStack() as stack:
        first = stack.enter_context(fresh_redis())
        async with redis_proxy(first.port) as relay:
            yield relay, stack, first


@contextlib.asynccontextmanager
async def node(url: str) -> AsyncIterator[HubServer]:
    async with redis_node(url, REGISTRY, ("room:*:spr",), prefix=PREFIX) as server:
        yield server


async def until(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(60):  # fails instead of hanging
        while not predicate():
            await asyncio.sleep(0.01)


async def publish_until_accepted(server: HubServer, data: object, message_id: str) -> int:
    """Publish (with a message id, so a retry is never a second publication) until Redis
    answers again; returns the offset."""
    while True:
        try:
            result = await server.hub.publish("room:x", data, message_id=message_id)
        except HubError as exc:
            assert exc.code == 100 and exc.temporary
            await asyncio.sleep(0.01)
        else:
            return result.position.offset


async def read(sub: Subscription, count: int) -> list[tuple[int, object]]:
    got: list[tuple[int, object]] = []
    try:
        async with asyncio.timeout(30):  # a missing publication fails instead of hanging
            while len(got) < count:
                pub = await sub.get()
                got.append((pub.offset, pub.data))
    except TimeoutError:
        pytest.fail(f"{len(got)} of {count} publications, the last ones: {got[-5:]}")
    return got


def kill_connection(client: HubClient) -> None:
    ws = client.connection
    assert ws is not None and ws.transport is not None
    ws.transport.abort()


# -- 1. a subscribe refused while Redis is down is temporary ------------------------------------


async def test_a_subscribe_refused_while_redis_is_down_says_it_is_temporary(
    proxy: tuple[RedisProxy, contextlib.ExitStack, RedisServer],
) -> None:
    """The wire: error 100 with ``temporary: true``; a permanent refusal has no flag."""
    relay, _, _ = proxy
    async with node(relay.url) as server, connect(server.url(), subprotocols=[SUBPROTOCOL]) as ws:
        await ws.send(orjson.dumps({"id": 1, "cmd": "connect"}).decode())
        await ws.recv()
        down(relay)
        await ws.send(orjson.dumps({"id": 2, "cmd": "subscribe", "channel": "room:x"}).decode())
        reply = orjson.loads(await ws.recv())
        assert reply == {
            "id": 2,
            "error": {"code": 100, "message": "internal error", "temporary": True},
        }
        parsed = parse_message(orjson.dumps(reply))
        assert isinstance(parsed, ErrorReply) and parsed.temporary
        await ws.send(orjson.dumps({"id": 3, "cmd": "subscribe", "channel": "nope:x"}).decode())
        assert orjson.loads(await ws.recv()) == {
            "id": 3,
            "error": {"code": 108, "message": "unknown namespace"},
        }


async def test_a_client_cut_while_redis_is_down_keeps_its_subscription_and_recovers(
    proxy: tuple[RedisProxy, contextlib.ExitStack, RedisServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Cut while Redis is down: the client reconnects, is refused for now, retries with
    backoff, and once Redis is back gets exactly what was published meanwhile."""
    relay, _, first = proxy
    async with node(relay.url) as server:
        client = HubClient(server.url(), backoff_initial=0.02, max_delay=0.2, compression=None)
        async with client:
            sub = await client.subscribe("room:x")
            await server.hub.publish("room:x", 1)
            assert await read(sub, 1) == [(1, 1)]

            down(relay)
            with caplog.at_level(logging.WARNING, logger="wshub.hub.client"):
                kill_connection(client)
                # Reconnected, the subscribe refused (temporary): a retry is pending.
                await until(
                    lambda: (
                        client.state is ClientState.CONNECTED and not sub.active and not sub.waiting
                    )
                )
                reconnects = client.reconnects
                await asyncio.sleep(0.5)  # a few refusals in a row, each retried
            assert "room:x refused for now" in caplog.text
            assert not sub.ended and client.subscriptions["room:x"] is sub
            assert client.reconnects == reconnects  # retried on the same connection

            relay.point_to(first.port)
            offsets = [await publish_until_accepted(server, n, f"m{n}") for n in range(2, 7)]
            assert offsets == [2, 3, 4, 5, 6]
            assert await read(sub, 5) == [(n, n) for n in range(2, 7)]
            assert sub.active and sub.recovered is not False
            await server.hub.publish("room:x", 7)
            assert await read(sub, 1) == [(7, 7)]  # no duplicate before it
            assert sub.statistics().buffered == 0
            assert sub.statistics().unrecovered == 0


async def test_a_permanent_refusal_still_ends_the_subscription(
    proxy: tuple[RedisProxy, contextlib.ExitStack, RedisServer],
) -> None:
    relay, _, _ = proxy
    async with node(relay.url) as server, HubClient(server.url(), compression=None) as client:
        with pytest.raises(HubError) as refused:
            await client.subscribe("nope:x")
        assert refused.value.code == 108 and not refused.value.temporary
        assert "nope:x" not in client.subscriptions


# -- 2. the log during an outage, and presence after it -----------------------------------------


async def test_disconnects_during_an_outage_log_once_and_presence_catches_up(
    proxy: tuple[RedisProxy, contextlib.ExitStack, RedisServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No ``ERROR ... leaving <channel> failed`` per disconnect: one warning when Redis
    goes, one info when it is back; the clients that left are gone from presence then."""
    relay, _, first = proxy
    async with node(relay.url) as server, HubClient(server.url(), compression=None) as stays:
        await stays.subscribe("room:x")
        leaving = [HubClient(server.url(), compression=None) for _ in range(3)]
        for client in leaving:
            await client.connect()
            await client.subscribe("room:x")
        assert len(await server.hub.presence("room:x")) == 4
        with caplog.at_level(logging.DEBUG, logger="wshub"):
            down(relay)
            for client in leaving:
                await client.close()
            await until(lambda: len(server.hub.sessions) == 1)
            relay.point_to(first.port)
            presence = server.hub.presence_store
            await until(lambda: "presence: Redis available again" in caplog.text)
            await presence.refresh()  # what the heartbeat does
            clients = await server.hub.presence("room:x")
        assert [c.client for c in clients] == [stays.client_id]
    records = [
        r for r in caplog.records if r.name.startswith("wshub.hub") or r.name == "wshub.broker"
    ]
    assert not [r for r in records if r.levelno >= logging.ERROR]
    assert "leaving room:x failed" not in caplog.text
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert sum("presence: Redis unavailable" in m for m in warnings) == 1
    assert sum("broker: Redis unavailable" in m for m in warnings) <= 1
    infos = [r.getMessage() for r in records if r.levelno == logging.INFO]
    assert sum("presence: Redis available again" in m for m in infos) == 1


async def test_presence_reports_redis_back_only_after_a_real_round_trip(
    proxy: tuple[RedisProxy, contextlib.ExitStack, RedisServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A refresh with no local entries used to report recovery without asking Redis."""
    relay, _, first = proxy
    client = redis_client(relay.url, connect_timeout=0.5, command_timeout=0.5)
    presence = RedisPresence(client, prefix=PREFIX, heartbeat_interval=5.0)
    try:
        with caplog.at_level(logging.INFO, logger="wshub.hub"):
            await presence.refresh()  # nothing to write, Redis up: nothing to say
            down(relay)
            with pytest.raises(HubError) as failed:
                await presence.get("room:x")
            assert failed.value.code == 100 and failed.value.temporary
            with pytest.raises(HubError):
                await presence.refresh()  # still down: no "available again"
            assert "available again" not in caplog.text
            relay.point_to(first.port)
            await presence.refresh()
        messages = [r.getMessage() for r in caplog.records]
        assert messages == [
            f"presence: Redis unavailable: {failed.value.__cause__}",
            "presence: Redis available again",
        ]
    finally:
        await presence.close()
        await close_client(client)


# -- 3. Redis back empty: the new epoch from its first publication ------------------------------


async def test_after_redis_came_back_empty_the_new_epoch_is_delivered_from_its_start(
    proxy: tuple[RedisProxy, contextlib.ExitStack, RedisServer],
) -> None:
    """A 116 marks the loss, then the client fetches the new epoch's first publications
    from history (they used to be skipped: the client jumped to the current offset)."""
    relay, stack, _ = proxy
    async with node(relay.url) as server:
        client = HubClient(server.url(), backoff_initial=0.02, max_delay=0.2, compression=None)
        async with client:
            sub = await client.subscribe("room:x")
            await server.hub.publish("room:x", "old")
            assert await read(sub, 1) == [(1, "old")]
            old_epoch = sub.position.epoch if sub.position else ""

            down(relay)
            stack.close()  # the first redis-server stops; its data is gone
            kill_connection(client)
            with redis_server() as second:
                relay.point_to(second.port)
                for n in range(1, 4):
                    assert await publish_until_accepted(server, f"new{n}", f"n{n}") == n
                with pytest.raises(HubError) as lost:
                    await sub.get()
                assert lost.value.code == 116
                assert await read(sub, 3) == [(1, "new1"), (2, "new2"), (3, "new3")]
                assert sub.position is not None and sub.position.epoch != old_epoch
                await server.hub.publish("room:x", "live")
                assert await read(sub, 1) == [(4, "live")]
                assert sub.statistics().unrecovered == 1
                assert sub.statistics().buffered == 0
                await server.close()  # while Redis still runs


async def test_a_live_push_in_a_new_epoch_after_a_lost_one_fetches_the_epoch_from_its_start(
    proxy: tuple[RedisProxy, contextlib.ExitStack, RedisServer],
) -> None:
    """Redis flushed under a live subscriber, and the new epoch's first push lost (stored
    but never fanned out): the second push reveals the new epoch, the first is fetched."""
    relay, _, first = proxy
    async with node(relay.url) as server:
        client = HubClient(server.url(), compression=None)
        async with client:
            sub = await client.subscribe("room:x")
            await server.hub.publish("room:x", "old")
            assert await read(sub, 1) == [(1, "old")]
            flusher = redis_client(first.url)
            try:
                await flusher.flushall()
            finally:
                await close_client(flusher)
            lost = await server.hub.history_store.append("room:x", b'"new1"', size=1000, ttl=None)
            assert lost.position.offset == 1
            await server.hub.publish("room:x", "new2")
            with pytest.raises(HubError) as gap:
                await sub.get()
            assert gap.value.code == 116
            assert await read(sub, 2) == [(1, "new1"), (2, "new2")]
            stats = sub.statistics()
            assert stats.repaired == 2 and stats.buffered == 0  # from history, not twice


# -- 4. publishing through a short outage -------------------------------------------------------


@pytest.mark.xfail(
    strict=False,
    reason="found by this test, not fixed yet: about 1 run in 5 under load, after the outage "
    "the node's subscribers receive nothing more (the acks are complete, one offset each, "
    "in order); the same symptom as test_sentinel's kill -9 xfail",
)
async def test_publishes_during_a_short_outage_are_retried_and_neither_lost_nor_doubled(
    proxy: tuple[RedisProxy, contextlib.ExitStack, RedisServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two clients publish without pause while Redis goes away for 2 s: the publishes refused
    for now are retried with their message ids; afterwards each subscriber has every
    acknowledged publication exactly once, in order, at the offset its publisher was told."""
    relay, _, first = proxy
    options: dict[str, Any] = {"backoff_initial": 0.02, "max_delay": 0.2, "compression": None}
    async with node(relay.url) as server, contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(HubClient(server.url(), **options)) for _ in range(5)
        ]
        subs = [await client.subscribe("room:x") for client in clients]  # 2 publish as well
        acks: list[tuple[int, object]] = []
        stop = asyncio.Event()

        async def publish(client: HubClient, k: int) -> None:
            n = 0
            while not stop.is_set():
                data = [k, n]
                acks.append((await client.publish("room:x", data, message_id=f"{k}-{n}"), data))
                n += 1

        with caplog.at_level(logging.DEBUG, logger="wshub.hub.client"):
            publishers = [asyncio.create_task(publish(c, k)) for k, c in enumerate(clients[:2])]
            await until(lambda: len(acks) >= 20)
            down(relay)
            await asyncio.sleep(2.0)  # the outage (what it does is checked below)
            during = len(acks)
            relay.point_to(first.port)
            await until(lambda: len(acks) >= during + 20)
            stop.set()
            await asyncio.gather(*publishers)
        assert "publish to room:x refused for now" in caplog.text
        acks.sort(key=lambda ack: ack[0])
        assert [offset for offset, _ in acks] == list(range(1, len(acks) + 1))
        for sub in subs:
            assert await read(sub, len(acks)) == acks
        end = await server.hub.publish("room:x", "end")
        for sub in subs:
            assert await read(sub, 1) == [(end.position.offset, "end")]  # nothing twice
            assert sub.statistics().buffered == 0
        stored, _ = await server.hub.history("room:x", limit=1000)
        assert [p.offset for p in stored] == list(range(1, len(acks) + 2))


async def test_a_publish_redis_stored_but_whose_reply_was_lost_is_not_made_twice(
    proxy: tuple[RedisProxy, contextlib.ExitStack, RedisServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The history script ran, its reply never came back: the hub answers "refused for now",
    the client sends the publish again with its message id, and gets the first offset."""
    relay, _, first = proxy
    options: dict[str, Any] = {"backoff_initial": 0.02, "max_delay": 0.2, "compression": None}
    async with (
        node(relay.url) as server,
        HubClient(server.url(), **options) as subscriber,
        HubClient(server.url(), **options) as publisher,
    ):
        sub = await subscriber.subscribe("room:x")
        await publisher.subscribe("room:x")
        assert await publisher.publish("room:x", "first") == 1  # the script is loaded now
        direct = RedisHistory(first.url, prefix=PREFIX)  # Redis itself, not through the relay
        try:
            with caplog.at_level(logging.WARNING):
                relay.lose_replies()
                publishing = asyncio.create_task(
                    publisher.publish("room:x", "once", message_id="m1")
                )
                await until(lambda: "history: Redis unavailable" in caplog.text)
            assert (await direct.position("room:x")).offset == 2  # the script ran
            relay.lose_replies(False)
            assert await publishing == 2
            assert (await direct.position("room:x")).offset == 2  # the retry made nothing
        finally:
            await direct.close()
        await server.hub.publish("room:x", "next")
        assert await read(sub, 3) == [(1, "first"), (2, "once"), (3, "next")]
        assert sub.statistics().buffered == 0


async def test_a_publish_refused_for_longer_than_publish_retry_time_raises(
    proxy: tuple[RedisProxy, contextlib.ExitStack, RedisServer],
) -> None:
    relay, _, _ = proxy
    async with node(relay.url) as server:
        client = HubClient(
            server.url(), backoff_initial=0.02, max_delay=0.05, publish_retry_time=0.3
        )
        async with client:
            await client.subscribe("room:x")
            down(relay)
            with pytest.raises(HubError) as refused:
                await client.publish("room:x", "lost", message_id="m1")
            assert refused.value.code == 100 and refused.value.temporary
        with pytest.raises(ValueError, match="publish_retry_time"):
            HubClient(server.url(), publish_retry_time=-1)


# -- 5. the HTTP API during an outage -----------------------------------------------------------


@contextlib.asynccontextmanager
async def with_api(hub: Hub) -> AsyncIterator[HubServer]:
    async with await start_hub("127.0.0.1", 0, hub=hub, compression=None, api_key=API_KEY) as s:
        yield s


async def test_the_http_api_answers_503_with_retry_after_while_redis_is_down(
    proxy: tuple[RedisProxy, contextlib.ExitStack, RedisServer],
) -> None:
    """Not a 500: the caller is told to try again (same message_id: not made twice)."""
    relay, _, first = proxy
    body = {"channel": "room:x", "data": "once", "message_id": "h1"}
    async with redis_node(relay.url, REGISTRY, (), prefix=PREFIX, start=with_api) as server:
        down(relay)
        status, headers, reply = await http(server, "POST", "/api/publish", body)
        assert status == 503 and headers["Retry-After"] == "1"
        assert reply == {"error": {"code": 100, "message": "internal error", "temporary": True}}
        status, _, _ = await http(server, "POST", "/api/publish", {"channel": "nope:x", "data": 1})
        assert status == 400  # a permanent refusal is unchanged
        relay.point_to(first.port)
        while (answer := await http(server, "POST", "/api/publish", body))[0] == 503:
            await asyncio.sleep(0.05)
        assert answer[0] == 200 and answer[2]["offset"] == 1
        status, _, again = await http(server, "POST", "/api/publish", body)
        assert status == 200 and again["offset"] == 1


async def test_a_subscribe_retried_during_the_handshake_is_not_sent_twice(
    proxy: tuple[RedisProxy, contextlib.ExitStack, RedisServer],
) -> None:
    """A retry timer that fires while the reconnection still waits for other subscribe
    replies sends that subscribe; the handshake must not send it again (the hub would say
    109 ``already subscribed`` and the client end the subscription for good)."""
    relay, _, first = proxy
    channels = [f"room:r{n}" for n in range(4)]
    async with node(relay.url) as server:
        client = HubClient(server.url(), backoff_initial=0.001, max_delay=0.005, compression=None)
        async with client:
            subs = [await client.subscribe(channel) for channel in channels]
            down(relay)
            for _ in range(3):
                kill_connection(client)
                await until(lambda: client.state is ClientState.CONNECTED)
                await asyncio.sleep(0.3)  # refusals retried every few ms meanwhile
            relay.point_to(first.port)
            await until(lambda: all(sub.active or sub.ended for sub in subs))
            assert [sub.ended for sub in subs] == [False] * len(subs)
            for n, channel in enumerate(channels):
                await server.hub.publish(channel, n)
            for n, sub in enumerate(subs):
                assert [data for _, data in await read(sub, 1)] == [n]


async def test_the_history_expiry_sweep_logs_an_outage_once(
    proxy: tuple[RedisProxy, contextlib.ExitStack, RedisServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The sweep runs every ``expire_interval``: during an outage it fails each time, but
    says so once (a warning, no traceback), and again only after it worked in between."""
    relay, _, first = proxy
    client = redis_client(relay.url, connect_timeout=0.2, command_timeout=0.2)
    history = RedisHistory(client, prefix="expiry")
    hub = Hub(history=history, expire_interval=0.05)
    try:
        with caplog.at_level(logging.WARNING, logger="wshub.hub"):
            async with hub:
                await asyncio.sleep(0.2)  # a few sweeps that work
                down(relay)
                await asyncio.sleep(1.0)  # several sweeps that fail
                failed = [r for r in caplog.records if "history expiry failed" in r.message]
                assert len(failed) == 1
                assert failed[0].levelno == logging.WARNING and failed[0].exc_info is None
                relay.point_to(first.port)
                await asyncio.sleep(0.5)  # works again
                down(relay)
                await asyncio.sleep(0.5)
                failed = [r for r in caplog.records if "history expiry failed" in r.message]
                assert len(failed) == 2
    finally:
        await history.close()
        await close_client(client)
