"""Tests for wshub.hub.client.reconnect: when and how soon the client reconnects."""

from __future__ import annotations

import asyncio

import pytest

from wshub.exceptions import (
    HubError,
)
from wshub.hub import HubLimits
from wshub.hub.client import (
    HubClient,
)
from wshub.hub.server import HubServer, start_hub

from .conftest import SECRET, Gate, MakeClient, cut_off, server_side, take, token


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


async def test_hub_restart_changes_epoch(server: HubServer) -> None:
    """The hub restarts with empty memory: the client reconnects and reports the loss."""
    port = server.port
    client = HubClient(server.url(), backoff_initial=0.01, max_delay=0.05)
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
