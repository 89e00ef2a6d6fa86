"""Tests for wshub.hub.client.subscription: order, buffers, gaps and callbacks on a real hub."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from wshub.exceptions import (
    AuthError,
    HubError,
    InvalidState,
)
from wshub.hub.client import (
    ChannelEvent,
    HubClient,
    Position,
    Publication,
    Subscription,
)
from wshub.hub.wire import ClientInfo

from .conftest import MakeClient, take, token


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
    """on_event receives join and leave of other clients, with their info, one event per
    member of each presence_diff (bob and carol join in one diff: two join events)."""
    events: list[ChannelEvent] = []
    changed = asyncio.Event()

    def on_event(event: ChannelEvent) -> None:
        events.append(event)
        changed.set()

    def of(client: HubClient) -> list[tuple[str, ClientInfo | None]]:
        return [(e.kind, e.info) for e in events if e.info and e.info.client == client.client_id]

    async def until(predicate: Callable[[], bool]) -> None:
        while not predicate():
            changed.clear()
            await changed.wait()

    alice = await make_client()
    await alice.subscribe("chat:ev", on_event=on_event)
    bob = await make_client(meta={"nick": "Bob"})
    carol = await make_client()
    await asyncio.gather(bob.subscribe("chat:ev"), carol.subscribe("chat:ev"))
    await until(lambda: bool(of(bob) and of(carol)))  # then their joins are in a diff
    await bob.unsubscribe("chat:ev")
    await until(lambda: len(of(bob)) == 2)
    bob_info = ClientInfo(bob.client_id or "", "", {"nick": "Bob"})
    assert of(bob) == [("join", bob_info), ("leave", bob_info)]
    assert of(carol) == [("join", ClientInfo(carol.client_id or "", ""))]


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
