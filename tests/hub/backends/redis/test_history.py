"""Tests for wshub.hub.backends.redis.history: what only Redis can share or break.

The contract (test_history_contract.py) runs against RedisHistory too; here two stores on one
key prefix are two nodes of one hub, and a plain client looks at or damages what they keep.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from wshub.exceptions import HubError
from wshub.hub.backends import HistoryStore
from wshub.hub.backends.redis import RedisHistory, redis_client
from wshub.testing import RedisServer

from ..helpers import Clock, Factory, append, redis_history

pytestmark = pytest.mark.redis


@pytest.fixture
def factory(redis: RedisServer, prefix: str) -> Factory:
    return redis_history(redis.url, prefix)


@pytest.fixture
async def client(redis: RedisServer) -> AsyncIterator[Redis]:
    """A plain client, to look at or damage what the store keeps."""
    direct = redis_client(redis.url)
    yield direct
    await direct.connection_pool.disconnect()


@pytest.fixture
async def nodes(factory: Factory, clock: Clock) -> AsyncIterator[list[HistoryStore]]:
    """Two stores on the same keys, as two hub nodes have."""
    stores = [factory(clock), factory(clock)]
    yield stores
    for history in stores:
        await history.close()


async def test_nodes_share_offsets_epochs_and_publications(nodes: list[HistoryStore]) -> None:
    """What one node appends, the other reads, at the same position."""
    a, b = nodes
    first = await a.append("c:x", b"1", size=10, ttl=None)
    second = await b.append("c:x", b"2", size=10, ttl=None)
    assert (first.position.offset, second.position.offset) == (1, 2)
    assert first.position.epoch == second.position.epoch == (await b.position("c:x")).epoch
    recovery = await a.since("c:x", 0, first.position.epoch, limit=10)
    assert recovery.complete
    assert [p.data for p in recovery.publications] == [b"1", b"2"]


async def test_concurrent_appends_from_two_nodes_get_distinct_consecutive_offsets(
    nodes: list[HistoryStore],
) -> None:
    """Offsets are assigned atomically in Redis: no two appends share one, none is skipped."""
    a, b = nodes
    results = await asyncio.gather(
        *(node.append("c:x", b"%d" % i, size=1000, ttl=None) for i in range(100) for node in (a, b))
    )
    assert sorted(r.position.offset for r in results) == list(range(1, 201))
    pubs, position = await a.latest("c:x", limit=1000)
    assert [p.offset for p in pubs] == list(range(1, 201))
    assert position.offset == 200


async def test_message_id_is_a_duplicate_on_every_node(nodes: list[HistoryStore]) -> None:
    """A message id accepted by one node is a no-op on the other, with the first offset."""
    a, b = nodes
    first = await a.append("c:x", b"1", message_id="m", size=10, ttl=None)
    again = await b.append("c:x", b"1", message_id="m", size=10, ttl=None)
    assert again.duplicate and again.position == first.position
    pubs, _ = await b.latest("c:x", limit=10)
    assert len(pubs) == 1


async def test_times_never_go_back_across_nodes(factory: Factory) -> None:
    """A node whose clock is behind reuses the last time: trimming by age leaves no hole."""
    ahead, behind = Clock(), Clock()
    behind.now -= 100
    a, b = factory(ahead), factory(behind)
    try:
        await a.append("c:x", b"1", size=10, ttl=50.0)
        late = await b.append("c:x", b"2", size=10, ttl=50.0)
        assert late.publication is not None and late.publication.time == ahead.now
        pubs, _ = await b.latest("c:x", limit=10)
        assert [p.data for p in pubs] == [b"1", b"2"]
    finally:
        await a.close()
        await b.close()


async def test_lost_data_means_a_new_epoch(
    nodes: list[HistoryStore], client: Redis, prefix: str
) -> None:
    """Keys gone (a Redis restarted empty, a flush, eviction): old positions do not recover."""
    a, _ = nodes
    await append(a, "c:x", 3)
    old = await a.position("c:x")
    await client.delete(f"{prefix}:meta:c:x")
    recovery = await a.since("c:x", old.offset, old.epoch, limit=10)
    assert not recovery.recovered
    assert recovery.position.epoch != old.epoch and recovery.position.offset == 0
    fresh = await a.append("c:x", b"new", size=10, ttl=None)
    assert fresh.position.offset == 1


async def test_a_stream_lost_under_its_meta_is_not_a_silent_gap(
    nodes: list[HistoryStore], client: Redis, prefix: str
) -> None:
    """Publications missing from the stream fail recovery although the counters look fine."""
    a, _ = nodes
    await append(a, "c:x", 3)
    position = await a.position("c:x")
    await client.delete(f"{prefix}:stream:c:x")
    assert not (await a.since("c:x", 1, position.epoch, limit=10)).recovered
    assert (await a.since("c:x", 3, position.epoch, limit=10)).complete


async def test_approximate_trimming_never_shows_more_than_size(
    nodes: list[HistoryStore], client: Redis, prefix: str
) -> None:
    """MAXLEN ~ keeps extra entries; reads still stop at the last `size` publications."""
    a, _ = nodes
    await append(a, "c:x", 150, size=5)
    assert await client.xlen(f"{prefix}:stream:c:x") > 5
    pubs, _ = await a.latest("c:x", limit=100)
    assert [p.offset for p in pubs] == [146, 147, 148, 149, 150]
    epoch = (await a.position("c:x")).epoch
    assert not (await a.since("c:x", 144, epoch, limit=100)).recovered
    assert (await a.since("c:x", 145, epoch, limit=100)).complete


async def test_unreachable_redis_is_error_100(clock: Clock) -> None:
    """A Redis that does not answer fails the call with HubError 100, it does not hang."""
    history = RedisHistory(redis_client("redis://127.0.0.1:1/0", connect_timeout=1.0))
    try:
        with pytest.raises(HubError) as caught:
            await history.append("c:x", b"1", size=1, ttl=None)
        assert caught.value.code == 100
    finally:
        await history.close()


async def test_a_stream_rewound_below_an_acknowledged_offset_starts_an_empty_epoch(
    nodes: list[HistoryStore], client: Redis, prefix: str
) -> None:
    """A failover to a replica that missed the last acknowledged publications: the next
    append starts a new epoch that holds only what comes after, from offset 1 (the old
    stream's publications belong to the lost epoch; reading the new one from its start must
    not return them a second time)."""
    a, _ = nodes
    await append(a, "c:x", 5)
    old = await a.position("c:x")
    # what the promoted replica has: offsets 1..3, the meta's top at 3
    await client.xdel(f"{prefix}:stream:c:x", "4-0", "5-0")
    await client.hset(f"{prefix}:meta:c:x", "top", 3)
    fresh = await a.append("c:x", b"after", size=10, ttl=None)
    assert fresh.position.epoch != old.epoch and fresh.position.offset == 1
    recovery = await a.since("c:x", 0, fresh.position.epoch, limit=10)
    assert recovery.complete
    assert [p.data for p in recovery.publications] == [b"after"]
    assert not (await a.since("c:x", old.offset, old.epoch, limit=10)).recovered
