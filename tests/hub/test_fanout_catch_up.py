"""Tests for the fan-out's catch-up (wshub.hub._fanout): when the broker says it may have
missed publications (an empty payload, the Broker contract's signal after a reconnection),
the node reads history after the last position it delivered and feeds its subscribers.

The broker here is the in-memory one, and the "missed" publications are appended to the
history store without being fanned out: what another node acknowledged while this node's
broker connection was down (tests/hub/backends/redis/test_nodes.py does it on real Redis).
"""

from __future__ import annotations

import asyncio

import orjson

from wshub.hub import ChannelRegistry, NamespaceOptions

from .conftest import Client, MakeClient, demo_auth, demo_hub

REGISTRY = ChannelRegistry({"chat": NamespaceOptions(history_size=3)})


async def missed(client: Client, *values: int) -> None:
    """Append ``values`` to history as another node would, without fanning them out."""
    for value in values:
        await client.hub.history_store.append("chat:room", orjson.dumps(value), size=3, ttl=None)


async def offsets_after_catch_up(client: Client, count: int) -> list[tuple[int, object]]:
    await client.hub.broker.publish("chat:room", b"")  # the broker's "may have missed"
    while len(client.peer.pushes("pub", "chat:room")) < count:
        await asyncio.sleep(0.001)
    return [(p["offset"], p["data"]) for p in client.peer.pushes("pub", "chat:room")]


async def test_publications_missed_by_the_broker_are_delivered_in_order(
    make_client: MakeClient,
) -> None:
    async with demo_hub(registry=REGISTRY, auth=demo_auth(), expire_interval=None) as hub:
        client = await make_client(hub)
        await client.ok("subscribe", channel="chat:room")
        await hub.publish("chat:room", 1)
        await missed(client, 2, 3)
        assert await offsets_after_catch_up(client, 3) == [(1, 1), (2, 2), (3, 3)]
        # Live delivery goes on after them, and a second signal repeats nothing.
        await hub.publish("chat:room", 4)
        assert await offsets_after_catch_up(client, 4) == [(1, 1), (2, 2), (3, 3), (4, 4)]
        await hub.publish("chat:room", 5)
        pushes = client.peer.pushes("pub", "chat:room")
        assert [p["offset"] for p in pushes] == [1, 2, 3, 4, 5]


async def test_a_gap_history_cannot_fill_shows_as_an_offset_jump(make_client: MakeClient) -> None:
    """Trimmed from history: only the latest is fed, the client sees the jump (and its
    recovery from history reports what is gone)."""
    async with demo_hub(registry=REGISTRY, auth=demo_auth(), expire_interval=None) as hub:
        client = await make_client(hub)
        await client.ok("subscribe", channel="chat:room")
        await hub.publish("chat:room", 1)
        await missed(client, 2, 3, 4, 5, 6)  # history keeps 4, 5, 6: 2 and 3 are gone
        assert await offsets_after_catch_up(client, 2) == [(1, 1), (6, 6)]
