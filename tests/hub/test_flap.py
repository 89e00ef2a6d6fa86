"""The flap test: HubClients keep every publication exactly once while their links flap.

Several clients publish to and read from shared channels while a chaos task kills their TCP
connections at random moments, at the transport edge (the client's socket or the hub's side
of it), for a fixed number of rounds. Afterwards every client must have read every
publication of its channels exactly once, in offset order, and the hub's history must hold
exactly one publication per ``publish()`` call, at the offset that call returned.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import orjson
import pytest

from wshub.hub import ChannelRegistry, HubLimits, NamespaceOptions
from wshub.hub.client import ClientState, HubClient, Publication, Subscription
from wshub.hub.server import HubServer

from .conftest import start_demo_hub

CLIENTS = 4
CHANNELS = ("flap:a", "flap:b")
PUBLISHES = 40  # per client, alternating between the channels
ROUNDS = 30  # connections killed
PER_CHANNEL = CLIENTS * PUBLISHES // len(CHANNELS)


@pytest.fixture
async def server() -> AsyncIterator[HubServer]:
    """A hub whose ``flap`` namespace keeps enough history to recover anything missed."""
    registry = ChannelRegistry({"flap": NamespaceOptions(history_size=10_000, persistent=False)})
    hub_server = await start_demo_hub(
        "127.0.0.1",
        0,
        ephemeral=True,
        allow_anonymous=True,
        anonymous_permissions=("flap:*:spr",),
        registry=registry,
        limits=HubLimits(command_rate=None, publish_rate=None),
        compression=None,
    )
    try:
        yield hub_server
    finally:
        await hub_server.close()


async def read(sub: Subscription, count: int, into: list[Publication], *, slow: bool) -> None:
    """Read ``count`` publications (the subscription raises on any gap it cannot fill).

    A slow reader stops now and then, so that its small buffer overflows and the client
    has to fill the gap from history while connections keep dropping.
    """
    while len(into) < count:
        into.append(await sub.get())
        if slow and len(into) % 16 == 0:
            await asyncio.sleep(0.02)


async def publish(
    client: HubClient, index: int, rng: random.Random, acks: dict[tuple[str, int], object]
) -> None:
    for seq in range(PUBLISHES):
        channel = CHANNELS[seq % len(CHANNELS)]
        data = {"client": index, "seq": seq}
        offset = await client.publish(channel, data, message_id=f"c{index}-{seq}")
        assert (channel, offset) not in acks, "two publishes got the same offset"
        acks[channel, offset] = data
        await asyncio.sleep(rng.uniform(0, 0.004))


async def chaos(server: HubServer, clients: list[HubClient], rng: random.Random) -> int:
    """Kill a random connected client's TCP connection, ROUNDS times; returns the kills."""
    kills = 0
    doomed: set[object] = set()  # transports already killed (or about to be)
    while kills < ROUNDS:
        await asyncio.sleep(rng.uniform(0, 0.01))
        client = rng.choice(clients)
        ws = client.connection
        if client.state is not ClientState.CONNECTED or ws is None or not ws.open:
            continue
        transport = ws.transport
        if transport is None or transport in doomed:
            continue
        doomed.add(transport)
        sessions = [s for s in server.hub.sessions if s.client_id == client.client_id]
        fault = rng.randrange(3)
        if fault == 0 and sessions:
            sessions[0].peer.transport.abort()  # the hub's side drops
        elif fault == 1:
            # Replies stop arriving, then the link drops: publishes in flight lose their
            # acknowledgement although the hub may have accepted them.
            transport.pause_reading()
            asyncio.get_running_loop().call_later(rng.uniform(0, 0.01), transport.abort)
        else:
            transport.abort()  # the client's side drops
        kills += 1
    return kills


@pytest.mark.parametrize("seed", [1, 2])
async def test_flap(server: HubServer, seed: int) -> None:
    """Every client sees every publication of its channels exactly once, in order."""
    rng = random.Random(seed)
    # Client 0 reads slowly through a small buffer; the others keep up.
    clients = [
        HubClient(
            server.url(), backoff_initial=0.005, max_delay=0.05, queue_size=8 if i == 0 else 64
        )
        for i in range(CLIENTS)
    ]
    received: list[dict[str, list[Publication]]] = []
    try:
        readers = []
        for index, client in enumerate(clients):
            await client.connect()
            lists: dict[str, list[Publication]] = {}
            for channel in CHANNELS:
                sub = await client.subscribe(channel)
                lists[channel] = []
                reader = read(sub, PER_CHANNEL, lists[channel], slow=index == 0)
                readers.append(asyncio.create_task(reader))
            received.append(lists)
        acks: dict[tuple[str, int], object] = {}
        publishers = [
            publish(client, index, random.Random(seed * 100 + index), acks)
            for index, client in enumerate(clients)
        ]
        *_, kills = await asyncio.gather(*publishers, chaos(server, clients, rng))
        await asyncio.gather(*readers)
        for client in clients:
            await client.ping()  # waits for a reconnection still in progress

        assert kills == ROUNDS
        assert sum(client.reconnects for client in clients) == kills
        assert len(acks) == CLIENTS * PUBLISHES
        for channel in CHANNELS:
            stored, position = await server.hub.history(channel, limit=1000)
            assert position.offset == PER_CHANNEL
            expected = [(p.offset, orjson.loads(p.data)) for p in stored]
            assert expected == [(n, acks[channel, n]) for n in range(1, PER_CHANNEL + 1)]
            for lists in received:
                got = lists[channel]
                assert [(p.offset, p.data) for p in got] == expected
                assert {p.epoch for p in got} == {position.epoch}
        for client in clients:
            for sub in client.subscriptions.values():
                assert sub.recovered in (None, True)
                assert sub.statistics().unrecovered == 0
    finally:
        for client in clients:
            await client.close()
