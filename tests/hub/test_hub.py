"""Tests for wshub.hub.hub: fan-out, slow consumers, recovery without gaps or duplicates."""

from __future__ import annotations

import ast
import asyncio
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wshub.exceptions import HubError, InvalidState
from wshub.hub import (
    Authenticator,
    ChannelRegistry,
    Hub,
    MemoryBroker,
    MemoryHistory,
    MemoryPresence,
    NamespaceOptions,
    Position,
    SQLiteHistory,
)
from wshub.hub._outbox import POS

from .conftest import Client, MakeClient, demo_hub

EVERYTHING = Authenticator(allow_anonymous=True, anonymous_permissions=["*:spr"])


def registry(**namespaces: NamespaceOptions) -> ChannelRegistry:
    return ChannelRegistry(namespaces)


def slow_registry() -> ChannelRegistry:
    return registry(
        d=NamespaceOptions(history_size=100, queue_size=3),
        o=NamespaceOptions(history_size=100, queue_size=3, slow_consumer="drop-oldest"),
        l=NamespaceOptions(
            history_size=100,
            queue_size=3,
            slow_consumer="latest",
            join_leave=True,
            join_leave_interval=None,
        ),
    )


def offsets(client: Client, channel: str) -> list[int]:
    return [p["offset"] for p in client.pubs(channel)]


async def slow_subscriber(make_client: MakeClient, hub: Hub, channel: str) -> Client:
    """A client subscribed to ``channel`` whose connection then stops draining."""
    client = await make_client(hub)
    await client.ok("subscribe", channel=channel)
    client.peer.writable = False
    return client


# --- fan-out ---------------------------------------------------------------------------------


async def test_each_publication_is_encoded_once(make_client: MakeClient) -> None:
    """All subscribers receive the very same string object: encoded once per channel."""
    async with demo_hub(auth=EVERYTHING, expire_interval=None) as hub:
        clients = [await make_client(hub) for _ in range(3)]
        for client in clients:
            await client.ok("subscribe", channel="chat:a")
        await hub.publish("chat:a", {"n": 1})
        last = [client.peer.sent[-1] for client in clients]
        assert all(message is last[0] for message in last)
        assert '"offset":1' in last[0]


async def test_server_publish_broadcast_and_ephemeral(make_client: MakeClient) -> None:
    """Hub.publish/broadcast/publish_ephemeral reach subscribers; bad input is a HubError."""
    async with demo_hub(auth=EVERYTHING, expire_interval=None) as hub:
        client = await make_client(hub)
        await client.ok("subscribe", channel="chat:a")
        await client.ok("subscribe", channel="chat:b")
        result = await hub.publish("chat:a", {"x": 1}, info={"by": "backend"}, message_id="k")
        assert result.position.offset == 1 and not result.duplicate
        assert (await hub.publish("chat:a", {"x": 1}, message_id="k")).duplicate
        results = await hub.broadcast(["chat:a", "chat:b"], "all")
        assert [r.position.offset for r in results] == [2, 1]
        await hub.publish_ephemeral("chat:b", "blink")
        assert client.pubs("chat:a")[0]["info"] == {"by": "backend"}
        assert offsets(client, "chat:a") == [1, 2] and offsets(client, "chat:b") == [1]
        assert client.peer.pushes("ephemeral", "chat:b")[0]["data"] == "blink"
        with pytest.raises(HubError) as bad:
            await hub.publish("chat:a", {1, 2})
        assert bad.value.code == 101
        with pytest.raises(HubError) as nowhere:
            await hub.broadcast(["chat:a", "nope:b"], 1)
        assert nowhere.value.code == 108
        assert offsets(client, "chat:a") == [1, 2]  # nothing published by the refused broadcast


async def test_channels_exist_while_subscribed_or_with_history(make_client: MakeClient) -> None:
    """channels() lists channels with subscribers or history, and forgets empty ones."""
    reg = registry(live=NamespaceOptions(), kept=NamespaceOptions(history_size=5))
    async with demo_hub(registry=reg, auth=EVERYTHING, expire_interval=None) as hub:
        client = await make_client(hub)
        await client.ok("subscribe", channel="live:x")
        await hub.publish("kept:y", 1)
        listed = await hub.channels()
        assert [(c["channel"], c["subscribers"], c["offset"]) for c in listed] == [
            ("kept:y", 0, 1),
            ("live:x", 1, 0),
        ]
        await client.ok("unsubscribe", channel="live:x")
        await asyncio.sleep(0)  # let the broker teardown run
        assert [c["channel"] for c in await hub.channels()] == ["kept:y"]
        assert list(hub.subscribers("live:x")) == []


async def test_closed_hub_refuses_sessions() -> None:
    """A closed hub cannot open sessions; close is idempotent."""
    hub = demo_hub(expire_interval=None)
    await hub.close()
    await hub.close()
    with pytest.raises(InvalidState):
        Client(hub)


class SweptHistory(MemoryHistory):
    """Records the expiry sweeps it receives."""

    def __init__(self) -> None:
        super().__init__()
        self.swept = asyncio.Event()

    async def expire(self) -> int:
        self.swept.set()
        return await super().expire()


async def test_expiry_sweep_runs_in_background() -> None:
    """start() runs the history expiry sweep every expire_interval."""
    history = SweptHistory()
    async with demo_hub(history=history, expire_interval=0.0):
        await history.swept.wait()
    assert history.swept.is_set()


# --- slow consumers --------------------------------------------------------------------------


async def test_slow_consumer_disconnect_4004(make_client: MakeClient) -> None:
    """A full queue with policy disconnect closes 4004; publishers and others are not held up."""
    async with demo_hub(registry=slow_registry(), auth=EVERYTHING, expire_interval=None) as hub:
        slow, fast = await make_client(hub), await make_client(hub)
        await slow.ok("subscribe", channel="d:x")
        await fast.ok("subscribe", channel="d:x")
        slow.peer.writable = False
        for i in range(4):
            await hub.publish("d:x", i)  # returns although `slow` reads nothing
        await slow.peer.closed.wait()
        assert (slow.peer.close_code, slow.peer.close_reason) == (4004, "slow consumer")
        assert offsets(fast, "d:x") == [1, 2, 3, 4]
        assert hub.stats.slow_consumer_disconnects == 1
        await slow.session.connection_lost()
        assert hub.stats.subscriptions == 1


async def test_queued_messages_flow_when_writable_again(make_client: MakeClient) -> None:
    """Below the bound nothing is lost: queued pushes are written in order after drain."""
    async with demo_hub(registry=slow_registry(), auth=EVERYTHING, expire_interval=None) as hub:
        client = await slow_subscriber(make_client, hub, "d:x")
        await hub.publish("d:x", 1)
        await hub.publish("d:x", 2)
        answer = client.session.handle('{"id": 50, "cmd": "ping"}')
        await answer
        assert offsets(client, "d:x") == []
        client.peer.writable = True
        await client.peer.wait_until(lambda: len(offsets(client, "d:x")) == 2)
        assert offsets(client, "d:x") == [1, 2]
        # Replies go before queued pushes.
        ids = [m.get("id", m.get("offset")) for m in client.peer.messages()[-3:]]
        assert ids == [50, 1, 2]


async def test_drop_oldest_keeps_the_newest_and_shows_the_gap(make_client: MakeClient) -> None:
    """drop-oldest: the newest `queue_size` survive; drops are counted; offsets show the gap."""
    async with demo_hub(registry=slow_registry(), auth=EVERYTHING, expire_interval=None) as hub:
        client = await slow_subscriber(make_client, hub, "o:x")
        for i in range(10):
            await hub.publish("o:x", i)
        assert client.peer.close_code is None
        client.peer.writable = True
        await client.peer.wait_until(lambda: len(offsets(client, "o:x")) == 3)
        assert offsets(client, "o:x") == [8, 9, 10]
        assert hub.stats.drops == 7


async def test_latest_conflates(make_client: MakeClient) -> None:
    """latest: only the newest publication waits; events are kept."""
    async with demo_hub(registry=slow_registry(), auth=EVERYTHING, expire_interval=None) as hub:
        client = await slow_subscriber(make_client, hub, "l:x")
        other = await make_client(hub)
        await other.ok("subscribe", channel="l:x")  # a join event, queued for `client`
        for i in range(10):
            await hub.publish("l:x", i)
        client.peer.writable = True
        await client.peer.wait_until(lambda: len(offsets(client, "l:x")) == 1)
        assert [p["data"] for p in client.pubs("l:x")] == [9]
        assert len(client.peer.pushes("join", "l:x")) == 2
        assert hub.stats.drops == 9


async def test_ephemeral_is_dropped_first_and_never_disconnects(make_client: MakeClient) -> None:
    """A full disconnect-policy queue drops ephemeral pushes instead of closing."""
    async with demo_hub(registry=slow_registry(), auth=EVERYTHING, expire_interval=None) as hub:
        client = await slow_subscriber(make_client, hub, "d:x")
        for _ in range(3):
            await hub.publish_ephemeral("d:x", "typing")
        await hub.publish("d:x", "kept")  # evicts one ephemeral push
        await hub.publish_ephemeral("d:x", "typing")  # queue full: dropped
        assert client.peer.close_code is None
        assert hub.stats.drops == 2
        client.peer.writable = True
        await client.peer.wait_until(lambda: len(offsets(client, "d:x")) == 1)
        assert len(client.peer.pushes("ephemeral")) == 2


async def test_reply_backlog_over_limit_closes_4004() -> None:
    """A client that sends commands but reads nothing is a slow consumer too."""
    from wshub.hub import HubLimits

    async with demo_hub(limits=HubLimits(max_pending_replies=3), expire_interval=None) as hub:
        client = Client(hub)
        await client.ok("connect")
        client.peer.writable = False
        for i in range(4):
            await client.send(f'{{"id": {i + 10}, "cmd": "ping"}}')
        await client.peer.closed.wait()
        assert client.peer.close_code == 4004


async def test_dead_connection_during_write_cleans_up(make_client: MakeClient) -> None:
    """A write that fails (connection gone) ends the session and its subscriptions."""
    async with demo_hub(auth=EVERYTHING, expire_interval=None) as hub:
        client, other = await make_client(hub), await make_client(hub)
        await client.ok("subscribe", channel="chat:a")
        await other.ok("subscribe", channel="chat:a")
        client.peer.dead = True
        await hub.publish("chat:a", 1)
        await client.session.connection_lost()
        assert offsets(other, "chat:a") == [1]
        assert [c.client for c in await hub.presence("chat:a")] == [other.session.client_id]


# --- recovery --------------------------------------------------------------------------------


async def test_recovery_after_reconnect(make_client: MakeClient) -> None:
    """subscribe since the last seen position delivers exactly the missed, then live."""
    async with demo_hub(auth=EVERYTHING, expire_interval=None) as hub:
        first = await make_client(hub)
        await first.ok("subscribe", channel="chat:a")
        await hub.publish("chat:a", "a")
        last = first.pubs("chat:a")[-1]
        await first.lost()
        await hub.publish("chat:a", "b")
        await hub.publish("chat:a", "c")
        second = await make_client(hub)
        since = {"offset": last["offset"], "epoch": last["epoch"]}
        result = await second.ok("subscribe", channel="chat:a", since=since)
        assert result["recovered"] is True
        assert [(p["offset"], p["data"]) for p in result["publications"]] == [(2, "b"), (3, "c")]
        assert result["offset"] == 3
        await hub.publish("chat:a", "d")
        assert offsets(second, "chat:a") == [4]


async def test_unrecoverable_positions(make_client: MakeClient) -> None:
    """Another epoch, a trimmed gap, or too many missed → recovered false (+ recent)."""
    from wshub.hub import HubLimits

    reg = registry(c=NamespaceOptions(history_size=3))
    async with demo_hub(
        registry=reg, auth=EVERYTHING, limits=HubLimits(max_recovery=2), expire_interval=None
    ) as hub:
        for i in range(5):
            await hub.publish("c:x", i)
        epoch = (await hub.history("c:x"))[1].epoch
        client = await make_client(hub)
        for channel, since in [
            ("c:x", {"offset": 4, "epoch": "old"}),
            ("c:x", {"offset": 1, "epoch": epoch}),  # trimmed
            ("c:x", {"offset": 2, "epoch": epoch}),  # 3 missed > max_recovery
            ("c:x", {"offset": 9, "epoch": epoch}),  # beyond the top
        ]:
            result = await client.ok("subscribe", channel=channel, since=since, recent=2)
            assert result["recovered"] is False
            assert [p["offset"] for p in result["publications"]] == [4, 5]
            await client.ok("unsubscribe", channel=channel)
        result = await client.ok("subscribe", channel="c:x", since={"offset": 3, "epoch": epoch})
        assert result["recovered"] is True and len(result["publications"]) == 2


class PausingHistory(MemoryHistory):
    """A store that can hold a read before or after it happens (latency at the storage edge)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.gate.set()
        self.reading = asyncio.Event()
        self.after = False

    async def since(self, channel: str, offset: int, epoch: str, *, limit: int) -> Any:
        if not self.after:
            self.reading.set()
            await self.gate.wait()
        result = await super().since(channel, offset, epoch, limit=limit)
        if self.after:
            self.reading.set()
            await self.gate.wait()
        return result


@pytest.mark.parametrize("after", [False, True], ids=["before-read", "after-read"])
async def test_publications_during_recovery_are_neither_lost_nor_doubled(
    make_client: MakeClient, after: bool
) -> None:
    """Publications racing a recovery are delivered once, in order, whenever they land."""
    history = PausingHistory()
    async with demo_hub(history=history, auth=EVERYTHING, expire_interval=None) as hub:
        for i in range(3):
            await hub.publish("chat:a", i)
        epoch = (await hub.history("chat:a"))[1].epoch
        client = Client(hub)
        await client.ok("connect")
        history.gate.clear()
        history.after = after
        subscribing = asyncio.ensure_future(
            client.ok("subscribe", channel="chat:a", since={"offset": 1, "epoch": epoch})
        )
        await history.reading.wait()
        await hub.publish("chat:a", 3)
        await hub.publish("chat:a", 4)
        history.gate.set()
        result = await subscribing
        await hub.publish("chat:a", 5)
        assert result["recovered"] is True
        delivered = [p["offset"] for p in result["publications"]] + offsets(client, "chat:a")
        assert delivered == [2, 3, 4, 5, 6]


async def test_idempotent_retry_across_reconnect(make_client: MakeClient) -> None:
    """A publish retried after a reconnect with its message_id is stored and delivered once."""
    async with demo_hub(auth=EVERYTHING, expire_interval=None) as hub:
        watcher = await make_client(hub)
        await watcher.ok("subscribe", channel="chat:a")
        sender = await make_client(hub)
        await sender.ok("subscribe", channel="chat:a")
        first = await sender.ok("publish", channel="chat:a", data="hello", message_id="mid-1")
        await sender.lost()  # suppose the ack was lost with the connection
        again = await make_client(hub)
        await again.ok("subscribe", channel="chat:a", since={"offset": 0, "epoch": first["epoch"]})
        retry = await again.ok("publish", channel="chat:a", data="hello", message_id="mid-1")
        assert retry["offset"] == first["offset"] and retry["duplicate"] is True
        assert [p["data"] for p in watcher.pubs("chat:a")] == ["hello"]


async def test_history_survives_a_hub_restart(tmp_path: Path, make_client: MakeClient) -> None:
    """With SQLite, a client recovers across a restart of the hub, same epoch."""
    path = tmp_path / "hub.db"
    store = SQLiteHistory(path)
    async with demo_hub(history=store, auth=EVERYTHING, expire_interval=None) as hub:
        client = await make_client(hub)
        await client.ok("subscribe", channel="chat:a")
        for i in range(3):
            await hub.publish("chat:a", i)
        last = client.pubs("chat:a")[-1]
    await store.close()

    store = SQLiteHistory(path)
    async with demo_hub(history=store, auth=EVERYTHING, expire_interval=None) as hub:
        await hub.publish("chat:a", 3)
        client = await make_client(hub)
        since = {"offset": last["offset"] - 1, "epoch": last["epoch"]}
        result = await client.ok("subscribe", channel="chat:a", since=since)
        assert result["recovered"] is True
        assert [p["data"] for p in result["publications"]] == [2, 3]
    await store.close()


async def test_two_nodes_share_broker_history_and_presence(make_client: MakeClient) -> None:
    """Hubs sharing a broker and stores act as one: fan-out, presence, recovery across nodes."""
    broker, history, presence = MemoryBroker(), MemoryHistory(), MemoryPresence()
    shared: dict[str, Any] = {"broker": broker, "history": history, "presence": presence}
    async with (
        demo_hub(auth=EVERYTHING, expire_interval=None, **shared) as one,
        demo_hub(auth=EVERYTHING, expire_interval=None, **shared) as two,
    ):
        alice = await make_client(one)
        bob = await make_client(two)
        await alice.ok("subscribe", channel="chat:a")
        await bob.ok("subscribe", channel="chat:a")
        await bob.ok("publish", channel="chat:a", data="from two")
        assert offsets(alice, "chat:a") == [1]
        assert len(await one.presence("chat:a")) == 2
        last = alice.pubs("chat:a")[-1]
        one.flush_presence("chat:a")  # the diffs of node one reach node two's subscribers
        await bob.peer.wait_until(lambda: len(bob.peer.pushes("presence_diff", "chat:a")) == 1)
        (joined,) = bob.peer.pushes("presence_diff", "chat:a")[0]["joins"]
        assert joined["client"] == alice.session.client_id
        await alice.lost()
        one.flush_presence("chat:a")
        diffs = lambda: bob.peer.pushes("presence_diff", "chat:a")  # noqa: E731
        await bob.peer.wait_until(lambda: any(diff["leaves"] for diff in diffs()))
        (leaves,) = [diff["leaves"] for diff in diffs() if diff["leaves"]]
        assert leaves[0]["client"] == alice.session.client_id
        await one.publish("chat:a", "missed")
        back = await make_client(two)
        result = await back.ok(
            "subscribe", channel="chat:a", since={"offset": last["offset"], "epoch": last["epoch"]}
        )
        assert [p["data"] for p in result["publications"]] == ["missed"]
    await broker.close()


# --- property: no gap, no duplicate ----------------------------------------------------------


class YieldingHistory(MemoryHistory):
    """A memory store that yields to the event loop a random number of times around every
    operation, so that concurrent publishes and subscribes interleave in many orders."""

    def __init__(self, rnd: random.Random) -> None:
        super().__init__()
        self._rnd = rnd

    async def _yield(self) -> None:
        for _ in range(self._rnd.randint(0, 3)):
            await asyncio.sleep(0)

    async def append(self, channel: str, data: bytes, **kw: Any) -> Any:
        await self._yield()
        result = await super().append(channel, data, **kw)
        await self._yield()
        return result

    async def since(self, channel: str, offset: int, epoch: str, *, limit: int) -> Any:
        await self._yield()
        result = await super().since(channel, offset, epoch, limit=limit)
        await self._yield()
        return result

    async def position(self, channel: str) -> Position:
        await self._yield()
        result = await super().position(channel)
        await self._yield()
        return result


class Reader:
    """One user of the model: a sequence of connections, each checked when it ends."""

    def __init__(self, history_size: int) -> None:
        self.client: Client | None = None
        self.last: dict[str, Any] | None = None
        self.seen: list[Any] = []
        self.busy = False
        self.history_size = history_size
        self.reloads = 0

    def check(self, client: Client, since: dict[str, Any] | None) -> None:
        """The connection's stream continues exactly where the previous one stopped."""
        messages = client.peer.messages()
        reply = next(m["result"] for m in messages if m.get("id") == 2)
        if since is not None and reply["recovered"]:
            expected = since["offset"]
        else:
            if since is not None:
                missed = reply["offset"] - since["offset"]
                assert missed > self.history_size, "recoverable but not recovered"
                self.reloads += 1
            expected = reply["offset"]
            assert reply["publications"] == []
        stream = reply["publications"] + [m for m in messages if m.get("push") == "pub"]
        for pub in stream:
            expected += 1
            assert pub["offset"] == expected, "gap or duplicate"
            self.seen.append(pub["data"])
        self.last = {"offset": expected, "epoch": reply["epoch"]}


async def scenario(
    batches: list[list[tuple[str, int]]], history_size: int, rnd: random.Random
) -> None:
    reg = registry(c=NamespaceOptions(history_size=history_size, publish="any"))
    async with demo_hub(
        registry=reg, history=YieldingHistory(rnd), auth=EVERYTHING, expire_interval=None
    ) as hub:
        readers = [Reader(history_size) for _ in range(3)]
        sinces: dict[int, dict[str, Any] | None] = {}

        async def connect(reader: Reader) -> None:
            client = Client(hub)
            await client.ok("connect")
            sinces[id(client)] = reader.last
            fields: dict[str, Any] = {"channel": "c:x"}
            if reader.last is not None:
                fields["since"] = reader.last
            await client.ok("subscribe", **fields)
            reader.client = client

        async def lose(reader: Reader) -> None:
            client = reader.client
            assert client is not None
            await client.lost()
            reader.client = None
            reader.check(client, sinces[id(client)])

        async def run(op: str, arg: int) -> None:
            if op == "pub":
                await hub.publish("c:x", f"m{arg}", message_id=f"m{arg}")
                return
            reader = readers[arg]
            if reader.busy:
                return
            reader.busy = True
            try:
                if op == "connect" and reader.client is None:
                    await connect(reader)
                elif op == "lose" and reader.client is not None:
                    await lose(reader)
            finally:
                reader.busy = False

        for batch in batches:
            await asyncio.gather(*(run(op, arg) for op, arg in batch))
        published = {f"m{arg}" for batch in batches for op, arg in batch if op == "pub"}
        for reader in readers:
            if reader.client is not None:
                await lose(reader)
            await connect(reader)
            await lose(reader)
            top = (await hub.history("c:x", limit=1))[1].offset
            assert reader.last is not None and reader.last["offset"] == top
            assert len(reader.seen) == len(set(reader.seen)), "a message was delivered twice"
            if reader.reloads == 0 and reader.seen:
                # Never reloaded: it has seen every publication since its first subscription.
                assert set(reader.seen) <= published
        assert top == len(published)


_ops = st.one_of(
    st.tuples(st.just("pub"), st.integers(0, 9)),
    st.tuples(st.sampled_from(["connect", "lose"]), st.integers(0, 2)),
)
_batches = st.lists(st.lists(_ops, min_size=1, max_size=4), max_size=20)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_batches, st.randoms(use_true_random=False))
def test_random_interleavings_never_gap_or_duplicate(
    batches: list[list[tuple[str, int]]], rnd: random.Random
) -> None:
    """Random concurrent publish / disconnect / reconnect+since: every stream is contiguous."""
    asyncio.run(scenario(batches, 1000, rnd))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_batches, st.randoms(use_true_random=False))
def test_small_history_reports_every_loss(
    batches: list[list[tuple[str, int]]], rnd: random.Random
) -> None:
    """With a tiny history, recovery fails only when too much was missed, and says so."""
    asyncio.run(scenario(batches, 2, rnd))


# --- publications that cross nodes out of order ------------------------------------------------


class SwappingBroker(MemoryBroker):
    """Delivers each pair of publications in reverse order, as two nodes racing through
    Redis can; ``drop`` names envelopes (by offset) that never arrive at all."""

    def __init__(self, drop: frozenset[int] = frozenset()) -> None:
        super().__init__()
        self.drop = drop
        self.waiting: tuple[str, bytes] | None = None

    async def publish(self, channel: str, payload: bytes) -> None:
        kind, offset_field, _ = payload.split(b" ", 2)
        if int(kind) != POS:
            await super().publish(channel, payload)  # join/leave and ephemeral: no offset
            return
        offset = int(offset_field)
        if offset in self.drop:
            return
        if self.waiting is None:
            self.waiting = (channel, payload)
            return
        held, self.waiting = self.waiting, None
        await super().publish(channel, payload)
        await super().publish(*held)


async def test_out_of_order_broker_deliveries_are_put_back_in_order(
    make_client: MakeClient,
) -> None:
    """A publication that overtakes its predecessor waits for it: subscribers see 1, 2, 3..."""
    async with demo_hub(auth=EVERYTHING, broker=SwappingBroker(), expire_interval=None) as hub:
        client = await make_client(hub)
        await client.ok("subscribe", channel="chat:race")
        for n in range(6):
            await hub.publish("chat:race", {"n": n})
        assert offsets(client, "chat:race") == [1, 2, 3, 4, 5, 6]
        assert [p["data"]["n"] for p in client.pubs("chat:race")] == list(range(6))


async def test_a_publication_that_never_arrives_leaves_a_visible_gap(
    make_client: MakeClient,
) -> None:
    """After the reorder window the held publications go on; the gap shows in the offsets."""
    broker = SwappingBroker(drop=frozenset({3}))
    async with demo_hub(auth=EVERYTHING, broker=broker, expire_interval=None) as hub:
        client = await make_client(hub)
        await client.ok("subscribe", channel="chat:lost")
        for n in range(5):
            await hub.publish("chat:lost", {"n": n})
        # 1 and 2 arrive (swapped, then reordered); 4 waits for 3, which never comes.
        assert offsets(client, "chat:lost") == [1, 2]
        for _ in range(100):
            if offsets(client, "chat:lost") != [1, 2]:
                break
            await asyncio.sleep(0.02)
        assert offsets(client, "chat:lost")[:3] == [1, 2, 4]


# --- the layout: parts that can be read one at a time -----------------------------------------

HUB_SRC = Path(__file__).resolve().parents[2] / "src/wshub/hub"
OWN_MODULES = [
    "hub.py",
    "session.py",
    "subscription.py",
    "host.py",
    "limits.py",
    "_fanout.py",
    "_outbox.py",
]


def test_hub_is_the_session_host() -> None:
    """Hub implements the SessionHost protocol that sessions depend on."""
    from wshub.hub.host import SessionHost

    assert isinstance(demo_hub(expire_interval=None), SessionHost)


def test_session_does_not_import_the_hub() -> None:
    """session.py depends on SessionHost, never on wshub.hub.hub (no import cycle)."""
    tree = ast.parse((HUB_SRC / "session.py").read_text())
    imported = {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert "wshub.hub.hub" not in imported
    tree = ast.parse((HUB_SRC / "hub.py").read_text())
    from_session = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "wshub.hub.session"
        for alias in node.names
    }
    assert from_session <= {"Peer", "Session"}


@pytest.mark.parametrize(
    "module", [*OWN_MODULES, *(f"wire/{p.name}" for p in (HUB_SRC / "wire").glob("*.py"))]
)
def test_no_module_reaches_into_private_attributes(module: str) -> None:
    """Only ``self`` (or ``cls``) is followed by a private attribute."""
    tree = ast.parse((HUB_SRC / module).read_text())
    reaching = [
        f"{ast.unparse(node)} (line {node.lineno})"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
    ]
    assert reaching == []


@pytest.mark.parametrize("module", OWN_MODULES)
def test_modules_stay_small(module: str) -> None:
    """A newcomer can hold each in their head: well under 600 lines."""
    assert len((HUB_SRC / module).read_text().splitlines()) < 560


# --- presence diffs ---------------------------------------------------------------------------


def diff_registry(interval: float | None = 3600.0) -> ChannelRegistry:
    """``room``: presence with join/leave batched over ``interval`` (an hour: only an explicit
    flush sends a diff, so that a test decides what one batch holds)."""
    room = NamespaceOptions(presence=True, join_leave=True, join_leave_interval=interval)
    return registry(room=room)


def clients_of(infos: list[dict[str, Any]]) -> set[str]:
    return {info["client"] for info in infos}


async def test_joins_of_one_interval_are_one_diff_per_subscriber(make_client: MakeClient) -> None:
    """n clients join: each member gets one presence_diff listing all of them (n pushes in
    all, not n(n+1)/2), a join and leave in one interval cancel out, and the diffs agree with
    the presence query."""
    async with demo_hub(registry=diff_registry(), auth=EVERYTHING, expire_interval=None) as hub:
        members = [await make_client(hub) for _ in range(6)]
        for member in members:
            await member.ok("subscribe", channel="room:x")
        gone = await make_client(hub)
        await gone.ok("subscribe", channel="room:x")
        await gone.lost()  # joined and left within the interval: in no diff
        assert [m.peer.pushes(channel="room:x") for m in members] == [[]] * 6
        hub.flush_presence("room:x")
        await members[0].peer.wait_until(lambda: len(members[-1].peer.pushes()) == 1)
        ids = {m.session.client_id for m in members}
        for member in members:
            (diff,) = member.peer.pushes("presence_diff", "room:x")
            assert clients_of(diff["joins"]) == ids and diff["leaves"] == []
        assert {info.client for info in await hub.presence("room:x")} == ids
        assert (hub.stats.presence_diffs, hub.stats.join_leave_pushes) == (1, 0)
        assert hub.stats.deliveries == 6
        for member in members[:2]:
            await member.lost()
        hub.flush_presence("room:x")
        await members[2].peer.wait_until(lambda: len(members[-1].peer.pushes()) == 2)
        left = {m.session.client_id for m in members[:2]}
        for member in members[2:]:
            diff = member.peer.pushes("presence_diff", "room:x")[-1]
            assert diff["joins"] == [] and clients_of(diff["leaves"]) == left
        assert {info.client for info in await hub.presence("room:x")} == ids - left
        assert hub.stats.presence_diffs == 2


async def test_a_leave_and_rejoin_in_one_interval_sends_nothing(make_client: MakeClient) -> None:
    """Unsubscribing and subscribing again within the interval is no change: no diff."""
    async with demo_hub(registry=diff_registry(), auth=EVERYTHING, expire_interval=None) as hub:
        watcher, flapper = await make_client(hub), await make_client(hub)
        await watcher.ok("subscribe", channel="room:x")
        await flapper.ok("subscribe", channel="room:x")
        hub.flush_presence("room:x")
        await watcher.peer.wait_until(lambda: len(watcher.peer.pushes()) == 1)
        await flapper.ok("unsubscribe", channel="room:x")
        await flapper.ok("subscribe", channel="room:x")
        hub.flush_presence("room:x")
        hub.flush_presence("room:x")  # nothing pending: a no-op
        await hub.publish_ephemeral("room:x", "after")  # goes through the same broker path
        await watcher.peer.wait_until(lambda: len(watcher.peer.pushes()) == 2)
        assert [p["push"] for p in watcher.peer.pushes()] == ["presence_diff", "ephemeral"]
        assert hub.stats.presence_diffs == 1
        assert len(await hub.presence("room:x")) == 2


async def test_the_interval_timer_sends_the_diff(make_client: MakeClient) -> None:
    """Without a flush the diff goes when the interval ends."""
    async with demo_hub(registry=diff_registry(0.01), auth=EVERYTHING, expire_interval=None) as hub:
        watcher, joiner = await make_client(hub), await make_client(hub)
        await watcher.ok("subscribe", channel="room:x")
        await joiner.ok("subscribe", channel="room:x")
        await watcher.peer.wait_until(
            lambda: (
                joiner.session.client_id
                in {i["client"] for p in watcher.peer.pushes("presence_diff") for i in p["joins"]}
            )
        )
        assert watcher.peer.pushes("join") == []


async def test_pending_diffs_are_dropped_when_the_hub_closes(make_client: MakeClient) -> None:
    """Closing the hub cancels the timers of pending diffs: nothing is sent after close."""
    hub = demo_hub(registry=diff_registry(0.01), auth=EVERYTHING, expire_interval=None)
    client = await make_client(hub)
    await client.ok("subscribe", channel="room:x")
    await hub.close()
    await asyncio.sleep(0.03)
    assert hub.stats.presence_diffs == 0
    assert client.peer.pushes("presence_diff") == []
