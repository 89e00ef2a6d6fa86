"""Tests for wshub.hub.client: HubClient against a real hub server on loopback.

Faults are injected at the transport edge: a test aborts the client's TCP connection
(``client.connection.transport.abort()``) or the hub's side of it, or pauses reading so that
a reply is lost with the connection. Where a test needs the client to stay disconnected for a
while, its token is a callable that waits for the test to let it reconnect.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest

import wshub
from wshub.exceptions import (
    AuthError,
    ConnectionClosedOK,
    HubError,
    InvalidState,
    InvalidURI,
    NegotiationError,
)
from wshub.hub import HubLimits, make_token
from wshub.hub.client import (
    ChannelEvent,
    ClientState,
    HubClient,
    Position,
    Publication,
    Subscription,
    hub_error,
)
from wshub.hub.server import HubServer, start_hub
from wshub.hub.wire import ClientInfo

SECRET = "hub-client-tests-secret-0123456789abcdef"
ALL = ["*:spr"]

MakeClient = Callable[..., Awaitable[HubClient]]


@pytest.fixture
async def server() -> AsyncIterator[HubServer]:
    """A hub on a free loopback port: memory history, anonymous allowed, no rate limits."""
    hub_server = await start_hub(
        "127.0.0.1",
        0,
        ephemeral=True,
        allow_anonymous=True,
        secret=SECRET,
        limits=HubLimits(command_rate=None, publish_rate=None),
        compression=None,
    )
    try:
        yield hub_server
    finally:
        await hub_server.close()


@pytest.fixture
async def make_client(server: HubServer) -> AsyncIterator[MakeClient]:
    """``await make_client(token=None, **options)``: a connected client, closed afterwards."""
    clients: list[HubClient] = []

    async def make(token: Any = None, **options: Any) -> HubClient:
        options.setdefault("backoff_initial", 0.01)
        client = HubClient(server.url(), token, **options)
        clients.append(client)
        await client.connect()
        return client

    yield make
    for client in clients:
        await client.close()


def token(user: str = "alice", channels: list[str] = ALL, ttl: float = 600) -> str:
    return make_token(SECRET, user, ttl, channels)


class Gate:
    """A token source that makes the client wait at the door until the test opens it."""

    def __init__(self, user: str = "gated") -> None:
        self.user = user
        self.open = asyncio.Event()
        self.open.set()
        self.calls = 0

    async def __call__(self) -> str:
        await self.open.wait()
        self.calls += 1
        return token(self.user)


def cut_off(client: HubClient, gate: Gate) -> None:
    """Drop the client's TCP connection; it reconnects only once the gate opens again."""
    gate.open.clear()
    assert client.connection is not None and client.connection.transport is not None
    client.connection.transport.abort()


async def take(sub: Subscription, count: int) -> list[Publication]:
    return [await sub.get() for _ in range(count)]


def server_side(server: HubServer, client: HubClient) -> Any:
    """The hub's connection object for ``client``'s current connection."""
    (session,) = [s for s in server.hub.sessions if s.client_id == client.client_id]
    return session.peer


# --- values -----------------------------------------------------------------------------


def test_publication_parse_reads_push_fields() -> None:
    """A pub push becomes a Publication with seconds, decoded data and ClientInfo."""
    obj = {
        "offset": 7,
        "time": 1718000000123,
        "data": {"text": "hi"},
        "info": {"client": "c1", "user": "bob", "meta": {"nick": "B"}},
    }
    pub = Publication.parse(obj, "chat:x", "ep")
    assert (pub.channel, pub.offset, pub.epoch, pub.data) == ("chat:x", 7, "ep", {"text": "hi"})
    assert pub.info == ClientInfo("c1", "bob", {"nick": "B"})
    assert pub.time == pytest.approx(1718000000.123)
    assert pub.position == Position(7, "ep")
    assert Publication.parse({"offset": 1}, "chat:x", "ep").info is None
    with pytest.raises(TypeError):
        Publication.parse({"offset": "1"}, "chat:x", "ep")


@pytest.mark.parametrize(
    ("code", "cls"),
    [(103, AuthError), (104, AuthError), (113, AuthError), (107, HubError), (116, HubError)],
)
def test_error_codes_map_to_exceptions(code: int, cls: type[HubError]) -> None:
    """Token and permission codes become AuthError, the others HubError, with code and text."""
    exc = hub_error({"code": code, "message": "why"}, "chat:x")
    assert type(exc) is cls
    assert (exc.code, exc.message, exc.channel) == (code, "why", "chat:x")


def test_bad_options_are_refused() -> None:
    """Limits that cannot work fail at construction."""
    with pytest.raises(ValueError):
        HubClient("ws://127.0.0.1:1/ws", queue_size=1)
    with pytest.raises(ValueError):
        HubClient("ws://127.0.0.1:1/ws", max_pending=0)
    with pytest.raises(ValueError):
        HubClient("ws://127.0.0.1:1/ws", backoff_initial=5, backoff_max=1)


# --- connecting -------------------------------------------------------------------------


async def test_connect_anonymous(make_client: MakeClient) -> None:
    """An anonymous client gets a client id, user "" and no expiry."""
    client = await make_client(meta={"nick": "Anon"})
    assert client.state is ClientState.CONNECTED
    assert client.client_id is not None and len(client.client_id) == 32
    assert (client.user, client.expires) == ("", None)
    assert client.connection is not None and client.connection.subprotocol == "wshub.v1"


async def test_connect_with_token_and_context_manager(server: HubServer) -> None:
    """``async with`` connects with the token's user and closes on exit."""
    async with HubClient(server.url(), token("alice")) as client:
        assert client.user == "alice"
        assert client.expires is not None
        assert await client.ping() >= 0
    assert client.closed and client.error is None
    with pytest.raises(InvalidState):
        await client.publish("chat:x", 1)


@pytest.mark.parametrize(
    ("bad", "code"),
    [("not-a-jwt", 103), (make_token("another-secret-0123456789abcdef-0123", "eve"), 103)],
)
async def test_refused_token_raises_auth_error(server: HubServer, bad: str, code: int) -> None:
    """A forged or malformed token fails connect() with AuthError 103; no retry."""
    client = HubClient(server.url(), bad)
    with pytest.raises(AuthError) as info:
        await client.connect()
    assert info.value.code == code
    assert client.closed


async def test_expired_token_raises_113(server: HubServer) -> None:
    """A correctly signed but expired token fails with 113."""
    client = HubClient(server.url(), make_token(SECRET, "old", ttl=-10))
    with pytest.raises(AuthError) as info:
        await client.connect()
    assert info.value.code == 113


async def test_unreachable_hub_fails_fast() -> None:
    """The first connection is not retried: a wrong port raises OSError at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = HubClient(f"ws://127.0.0.1:{port}/ws")
    with pytest.raises(OSError):
        await client.connect()
    assert client.closed


async def test_calls_before_connect_and_twice(server: HubServer) -> None:
    """Using a client before connect(), or connecting twice, is our misuse."""
    client = HubClient(server.url())
    with pytest.raises(InvalidState):
        await client.publish("chat:x", 1)
    await client.connect()
    try:
        with pytest.raises(InvalidState):
            await client.connect()
    finally:
        await client.close()


# --- commands ---------------------------------------------------------------------------


async def test_publish_and_iterate(make_client: MakeClient) -> None:
    """Publish returns consecutive offsets; the subscriber reads every field in order."""
    alice = await make_client(token("alice"))
    bob = await make_client(meta={"nick": "Bob"})
    sub = await alice.subscribe("chat:room")
    await bob.subscribe("chat:room")
    offsets = [await bob.publish("chat:room", {"n": n}) for n in range(3)]
    assert offsets == [1, 2, 3]
    pubs = await take(sub, 3)
    assert [p.offset for p in pubs] == offsets
    assert [p.data for p in pubs] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert {p.channel for p in pubs} == {"chat:room"}
    assert len({p.epoch for p in pubs}) == 1
    assert pubs[0].info == ClientInfo(bob.client_id or "", "", {"nick": "Bob"})
    assert sub.position == pubs[-1].position
    assert sub.recoverable is True and sub.recovered is None
    assert sub.statistics().accepted == 3


async def test_subscribe_with_recent(make_client: MakeClient) -> None:
    """``recent`` delivers the latest publications first, then live ones."""
    bob = await make_client()
    await bob.subscribe("chat:recent")
    for n in range(5):
        await bob.publish("chat:recent", n)
    alice = await make_client()
    sub = await alice.subscribe("chat:recent", recent=2)
    await bob.publish("chat:recent", 5)
    assert [p.data for p in await take(sub, 3)] == [3, 4, 5]


async def test_callbacks_plain_and_async(make_client: MakeClient) -> None:
    """Plain and coroutine callbacks both get every publication in order."""
    client = await make_client()
    plain: list[int] = []
    done = asyncio.Event()
    coro: list[int] = []

    async def on_pub(pub: Publication) -> None:
        coro.append(pub.data)
        if len(coro) == 4:
            done.set()

    sub = await client.subscribe("chat:cb", lambda pub: plain.append(pub.data))
    await client.subscribe("chat:cb2", on_pub)
    for n in range(4):
        await client.publish("chat:cb", n)
        await client.publish("chat:cb2", n)
    await done.wait()
    await client.ping()  # every push sent before this reply has been handled
    assert plain == coro == [0, 1, 2, 3]
    with pytest.raises(InvalidState):
        await sub.get()


async def test_events_join_leave(make_client: MakeClient) -> None:
    """on_event receives join and leave of other clients, with their info."""
    events: list[ChannelEvent] = []
    left = asyncio.Event()

    def on_event(event: ChannelEvent) -> None:
        events.append(event)
        if event.kind == "leave":
            left.set()

    alice = await make_client()
    await alice.subscribe("chat:ev", on_event=on_event)
    bob = await make_client(meta={"nick": "Bob"})
    await bob.subscribe("chat:ev")
    await bob.unsubscribe("chat:ev")
    await left.wait()
    others = [(e.kind, e.info) for e in events if e.info and e.info.client == bob.client_id]
    assert others == [
        ("join", ClientInfo(bob.client_id or "", "", {"nick": "Bob"})),
        ("leave", ClientInfo(bob.client_id or "", "", {"nick": "Bob"})),
    ]


async def test_presence(make_client: MakeClient) -> None:
    """presence lists the subscribed clients with their meta."""
    alice = await make_client(token("alice"), meta={"nick": "A"})
    bob = await make_client(meta={"nick": "B"})
    await alice.subscribe("chat:p")
    await bob.subscribe("chat:p")
    clients = await alice.presence("chat:p")
    assert sorted((c.user, c.meta["nick"]) for c in clients) == [("", "B"), ("alice", "A")]


async def test_history_latest_and_since(make_client: MakeClient) -> None:
    """history returns the latest ``limit``, or pages on after ``since``."""
    client = await make_client()
    await client.subscribe("chat:h")
    for n in range(6):
        await client.publish("chat:h", n)
    latest = await client.history("chat:h", limit=2)
    assert [p.data for p in latest.publications] == [4, 5]
    assert latest.position.offset == 6
    page = await client.history("chat:h", since=Position(1, latest.position.epoch), limit=3)
    assert [p.offset for p in page.publications] == [2, 3, 4]
    with pytest.raises(HubError) as info:
        await client.history("chat:h", since=Position(1, "other-epoch"))
    assert info.value.code == 116


async def test_unsubscribe_ends_iteration(make_client: MakeClient) -> None:
    """After unsubscribe the buffer is read out, then iteration stops; 110 when absent."""
    client = await make_client()
    sub = await client.subscribe("chat:u")
    await client.publish("chat:u", "last")
    await client.ping()
    await client.unsubscribe("chat:u")
    assert [p.data async for p in sub] == ["last"]
    assert sub.ended and "chat:u" not in client.subscriptions
    with pytest.raises(HubError) as info:
        await client.unsubscribe("chat:u")
    assert info.value.code == 110


@pytest.mark.parametrize(
    ("call", "code", "cls"),
    [
        (lambda c: c.subscribe("no colon"), 107, HubError),
        (lambda c: c.subscribe("nowhere:x"), 108, HubError),
        (lambda c: c.publish("chat:not-subscribed", 1), 110, HubError),
        (lambda c: c.publish("ticker:AAPL", 1), 104, AuthError),
        (lambda c: c.presence("ticker:AAPL"), 115, HubError),
        (lambda c: c.publish("chat:big", "x" * 70000), 114, HubError),
    ],
)
async def test_hub_errors(
    make_client: MakeClient, call: Callable[[HubClient], Awaitable[Any]], code: int, cls: type
) -> None:
    """Refusals raise HubError/AuthError carrying the hub's code."""
    client = await make_client(token("alice", ALL), max_size=2**20)
    await client.subscribe("chat:big")
    with pytest.raises(HubError) as info:
        await call(client)
    assert type(info.value) is cls
    assert info.value.code == code
    assert client.state is ClientState.CONNECTED


async def test_subscribe_without_permission_and_twice(make_client: MakeClient) -> None:
    """No ``s`` permission: AuthError 104; subscribing twice: 109, without a round trip."""
    client = await make_client(token("alice", ["chat:*:p"]))
    with pytest.raises(AuthError) as info:
        await client.subscribe("chat:x")
    assert info.value.code == 104
    assert "chat:x" not in client.subscriptions
    anon = await make_client()
    await anon.subscribe("chat:x")
    with pytest.raises(HubError) as again:
        await anon.subscribe("chat:x")
    assert again.value.code == 109


async def test_refresh(make_client: MakeClient) -> None:
    """refresh swaps the token (new expiry); another user's token is refused with 103."""
    client = await make_client(token("alice", ttl=60))
    first = client.expires
    assert first is not None
    assert await client.refresh(token("alice", ttl=3600)) == client.expires
    assert client.expires is not None and client.expires > first
    with pytest.raises(AuthError) as info:
        await client.refresh(token("mallory"))
    assert info.value.code == 103
    assert client.state is ClientState.CONNECTED


async def test_refresh_that_drops_a_permission_ends_the_subscription(
    make_client: MakeClient,
) -> None:
    """The hub's unsubscribe push ends iteration with AuthError 104."""
    client = await make_client(token("alice", ["chat:*:spr"]))
    sub = await client.subscribe("chat:vip")
    await client.refresh(token("alice", ["ticker:*:s"]))
    with pytest.raises(AuthError) as info:
        await sub.get()
    assert (info.value.code, info.value.channel) == (104, "chat:vip")
    assert sub.ended and "chat:vip" not in client.subscriptions


# --- reconnecting and recovering --------------------------------------------------------


async def test_reconnect_recovers_missed_publications(make_client: MakeClient) -> None:
    """Publications made while the subscriber was cut off arrive exactly once, in order."""
    gate = Gate()
    reader = await make_client(gate)
    writer = await make_client()
    sub = await reader.subscribe("chat:rec")
    await writer.subscribe("chat:rec")
    offsets = [await writer.publish("chat:rec", n) for n in range(3)]
    assert [p.offset for p in await take(sub, 3)] == offsets

    cut_off(reader, gate)
    offsets += [await writer.publish("chat:rec", n) for n in range(3, 8)]
    gate.open.set()

    pubs = await take(sub, 5)
    assert [p.offset for p in pubs] == offsets[3:]
    assert [p.data for p in pubs] == list(range(3, 8))
    assert sub.recovered is True
    assert reader.reconnects == 1 and sub.statistics().subscribes == 2
    await writer.publish("chat:rec", "live")
    assert (await sub.get()).data == "live"


async def test_server_side_abort_recovers(server: HubServer, make_client: MakeClient) -> None:
    """The hub's side of the TCP connection dropped: same recovery."""
    gate = Gate()
    reader = await make_client(gate)
    writer = await make_client()
    sub = await reader.subscribe("chat:srv")
    await writer.subscribe("chat:srv")
    gate.open.clear()
    server_side(server, reader).transport.abort()
    offsets = [await writer.publish("chat:srv", n) for n in range(4)]
    gate.open.set()
    assert [p.offset for p in await take(sub, 4)] == offsets
    assert sub.recovered is True


async def test_unacknowledged_publish_is_retried_once(make_client: MakeClient) -> None:
    """A publish whose reply was lost is resent with its message id: one publication."""
    observer = await make_client()
    publisher = await make_client(Gate())
    seen = await observer.subscribe("chat:once")
    own = await publisher.subscribe("chat:once")
    assert publisher.connection is not None
    publisher.connection.transport.pause_reading()  # the reply will never be read
    task = asyncio.create_task(publisher.publish("chat:once", "once", message_id="m-1"))
    first = await seen.get()  # the hub accepted it
    publisher.connection.transport.abort()
    assert await task == first.offset
    await publisher.publish("chat:once", "after")
    second = await seen.get()
    assert (second.offset, second.data) == (first.offset + 1, "after")
    assert [p.data for p in await take(own, 2)] == ["once", "after"]
    page = await observer.history("chat:once")
    assert [p.data for p in page.publications] == ["once", "after"]
    assert publisher.reconnects == 1


async def test_calls_wait_for_the_reconnection(make_client: MakeClient) -> None:
    """Publishing while disconnected waits, then goes out after the re-subscription."""
    gate = Gate()
    client = await make_client(gate)
    sub = await client.subscribe("chat:wait")
    cut_off(client, gate)
    task = asyncio.create_task(client.publish("chat:wait", "queued"))
    late = asyncio.create_task(client.subscribe("chat:late"))
    await asyncio.sleep(0)
    assert not task.done()
    gate.open.set()
    assert await task == 1
    assert (await sub.get()).data == "queued"
    assert (await late).channel == "chat:late"


async def test_close_fails_waiting_calls(make_client: MakeClient) -> None:
    """close() while a call waits for a reconnection: ConnectionClosedOK; iteration stops."""
    gate = Gate()
    client = await make_client(gate)
    sub = await client.subscribe("chat:bye")
    cut_off(client, gate)
    task = asyncio.create_task(client.publish("chat:bye", 1))
    await asyncio.sleep(0)
    await client.close()
    with pytest.raises(ConnectionClosedOK):
        await task
    assert [p async for p in sub] == []


async def test_recovery_failure_is_raised_at_the_gap(make_client: MakeClient) -> None:
    """A ``since`` the hub cannot honour: 116 first, recovered False, then live data."""
    writer = await make_client()
    await writer.subscribe("chat:gap")
    await writer.publish("chat:gap", "before")
    reader = await make_client()
    sub = await reader.subscribe("chat:gap", since=Position(1, "stale-epoch"), recent=1)
    assert sub.recovered is False
    with pytest.raises(HubError) as info:
        await sub.get()
    assert (info.value.code, info.value.channel) == (116, "chat:gap")
    assert (await sub.get()).data == "before"  # the ``recent`` reload
    await writer.publish("chat:gap", "after")
    assert (await sub.get()).data == "after"
    assert sub.statistics().unrecovered == 1


async def test_since_resumes_a_saved_position(make_client: MakeClient) -> None:
    """A position saved from one subscription resumes exactly after it in another client."""
    first = await make_client()
    sub = await first.subscribe("chat:resume")
    for n in range(3):
        await first.publish("chat:resume", n)
    await take(sub, 2)
    saved = Position(2, sub.position.epoch if sub.position else "")
    await first.close()
    second = await make_client()
    again = await second.subscribe("chat:resume", since=saved)
    assert again.recovered is True
    assert [p.data for p in await take(again, 1)] == [2]


async def test_hub_restart_changes_epoch(server: HubServer) -> None:
    """The hub restarts with empty memory: the client reconnects and reports the loss."""
    port = server.port
    client = HubClient(server.url(), backoff_initial=0.01, backoff_max=0.05)
    await client.connect()
    try:
        sub = await client.subscribe("chat:restart")
        await client.publish("chat:restart", "old")
        assert (await sub.get()).data == "old"
        await server.close()  # 1001 to the client
        async with await start_hub("127.0.0.1", port, ephemeral=True, allow_anonymous=True):
            with pytest.raises(HubError) as info:
                await sub.get()
            assert info.value.code == 116 and sub.recovered is False
            assert await client.publish("chat:restart", "new") == 1
            assert (await sub.get()).data == "new"
    finally:
        await client.close()


# --- bounded buffers --------------------------------------------------------------------


async def test_full_buffer_is_refilled_from_history(make_client: MakeClient) -> None:
    """A reader that falls behind still gets every publication once, in order."""
    client = await make_client()
    sub = await client.subscribe("chat:slow", queue_size=4)
    offsets = [await client.publish("chat:slow", n) for n in range(20)]
    await client.ping()
    assert sub.statistics().buffered <= 4
    pubs = await take(sub, 20)
    assert [p.offset for p in pubs] == offsets
    assert [p.data for p in pubs] == list(range(20))
    assert sub.statistics().repaired > 0


async def test_full_buffer_without_fill_gaps_keeps_the_newest(make_client: MakeClient) -> None:
    """``fill_gaps=False``: the oldest publications are dropped and counted."""
    client = await make_client()
    sub = await client.subscribe("chat:ticker", queue_size=4, fill_gaps=False)
    for n in range(10):
        await client.publish("chat:ticker", n)
    await client.ping()
    assert [p.data for p in await take(sub, 4)] == [6, 7, 8, 9]
    assert sub.statistics().skipped == 6


# --- callbacks and events ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["plain", "async"])
async def test_callbacks_hear_of_a_gap_through_on_error(make_client: MakeClient, kind: str) -> None:
    """With a callback, the 116 of a failed recovery goes to on_error, in stream order."""
    writer = await make_client()
    await writer.subscribe("chat:cbgap")
    await writer.publish("chat:cbgap", "before")
    seen: list[object] = []
    done = asyncio.Event()

    def note(item: object) -> None:
        seen.append(item)
        if item == "after":
            done.set()

    def plain(pub: Publication) -> None:
        note(pub.data)

    async def coro(pub: Publication) -> None:
        note(pub.data)

    def on_error(sub: Subscription, exc: HubError) -> None:
        note(exc.code)

    reader = await make_client()
    await reader.subscribe(
        "chat:cbgap",
        plain if kind == "plain" else coro,
        since=Position(9, "stale"),
        recent=1,
        on_error=on_error,
    )
    await writer.publish("chat:cbgap", "after")
    await done.wait()
    assert seen == [116, "before", "after"]


async def test_ephemeral_publications_are_events(make_client: MakeClient) -> None:
    """publish_ephemeral reaches subscribers as an "ephemeral" event, with no offset."""
    events: list[ChannelEvent] = []
    got = asyncio.Event()

    def on_event(event: ChannelEvent) -> None:
        if event.kind == "ephemeral":
            events.append(event)
            got.set()

    alice = await make_client()
    sub = await alice.subscribe("chat:typing", on_event=on_event)
    bob = await make_client()
    await bob.subscribe("chat:typing")
    await bob.publish_ephemeral("chat:typing", {"typing": True})
    await got.wait()
    assert events[0].data == {"typing": True}
    assert events[0].info is not None and events[0].info.client == bob.client_id
    assert sub.statistics().accepted == 0
    assert (await bob.history("chat:typing")).publications == []


# --- giving up --------------------------------------------------------------------------


async def test_too_many_connections_on_reconnect_ends_the_client() -> None:
    """A reconnection refused with 112 (then 4006) is final: calls and iteration raise it."""
    limited = await start_hub(
        "127.0.0.1",
        0,
        ephemeral=True,
        secret=SECRET,
        limits=HubLimits(max_connections_per_user=1),
    )
    try:
        gate = Gate("solo")
        first = HubClient(limited.url(), gate, backoff_initial=0.01)
        await first.connect()
        sub = await first.subscribe("chat:solo")
        old_id = first.client_id
        cut_off(first, gate)
        while any(s.client_id == old_id for s in limited.hub.sessions):
            await asyncio.sleep(0.001)  # until the hub counted the old connection out
        async with HubClient(limited.url(), token("solo")):
            gate.open.set()
            with pytest.raises(HubError) as info:
                await sub.get()
            assert info.value.code == 112
            assert first.closed and first.error is info.value
            with pytest.raises(HubError):
                await first.publish("chat:solo", 1)
    finally:
        await limited.close()


async def test_no_reply_to_connect_times_out() -> None:
    """A server that never answers connect: connect() raises TimeoutError."""

    async def silent(ws: wshub.ServerConnection) -> None:
        async for _ in ws:
            pass

    async with wshub.serve(silent, "127.0.0.1", 0, subprotocols=["wshub.v1"]) as ws_server:
        client = HubClient(f"ws://127.0.0.1:{ws_server.port}/ws", open_timeout=0.05)
        with pytest.raises(TimeoutError):
            await client.connect()
        assert client.closed


async def test_a_server_without_the_subprotocol_is_refused() -> None:
    """No wshub.v1 in the handshake: NegotiationError, no retry."""

    async def plain(ws: wshub.ServerConnection) -> None:
        await ws.wait_closed()

    async with wshub.serve(plain, "127.0.0.1", 0) as ws_server:
        client = HubClient(f"ws://127.0.0.1:{ws_server.port}/ws")
        with pytest.raises(NegotiationError):
            await client.connect()


async def test_garbage_from_the_hub_is_logged_and_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A message that is not wshub.v1 does not break the connection."""

    async def odd_hub(ws: wshub.ServerConnection) -> None:
        async for message in ws:
            command = orjson.loads(message)
            await ws.send("this is not JSON")
            await ws.send("[1, 2]")
            await ws.send(orjson.dumps({"id": command["id"], "result": {"client": "c"}}).decode())

    async with (
        wshub.serve(odd_hub, "127.0.0.1", 0, subprotocols=["wshub.v1"]) as ws_server,
        HubClient(f"ws://127.0.0.1:{ws_server.port}/ws") as client,
    ):
        assert await client.ping() >= 0
        assert client.state is ClientState.CONNECTED
    assert sum("not wshub.v1" in r.message for r in caplog.records) >= 2


async def test_a_failing_token_source_is_retried(make_client: MakeClient) -> None:
    """The token callable fails once during a reconnection: the client tries again."""
    calls = 0

    def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("token service down")
        return token("flaky")

    client = await make_client(flaky)
    sub = await client.subscribe("chat:flaky")
    assert client.connection is not None and client.connection.transport is not None
    client.connection.transport.abort()
    assert await client.publish("chat:flaky", "back") == 1
    assert (await sub.get()).data == "back"
    assert (calls, client.reconnects) == (3, 1)


def test_a_wrong_url_fails_at_once() -> None:
    """The URL is checked when the client is made."""
    with pytest.raises(InvalidURI):
        HubClient("http://127.0.0.1/ws")
