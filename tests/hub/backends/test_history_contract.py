"""The HistoryStore contract (wshub.hub.backends.base), run against every history store.

Memory (the reference), SQLite and Redis answer every test alike; what only one backend can
do or break is tested in its own module (test_sqlite.py, redis/test_history.py). Add an
implementation by adding a parameter to the ``factory`` fixture.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from wshub.exceptions import InvalidState
from wshub.hub.backends import HistoryStore, MemoryHistory, SQLiteHistory

from .helpers import Clock, Factory, append, redis_history


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def factory(request: pytest.FixtureRequest, tmp_path: Path, prefix: str) -> Factory:
    if request.param == "memory":
        return lambda clock: MemoryHistory(clock=clock, dedupe_window=60.0, idle_ttl=1000.0)
    if request.param == "sqlite":
        return lambda clock: SQLiteHistory(
            tmp_path / "history.db", clock=clock, dedupe_window=60.0, idle_ttl=1000.0
        )
    return redis_history(request.getfixturevalue("redis").url, prefix)


@pytest.fixture
async def store(factory: Factory, clock: Clock) -> AsyncIterator[HistoryStore]:
    history = factory(clock)
    yield history
    await history.close()


async def test_offsets_are_consecutive_per_channel(store: HistoryStore) -> None:
    """Each channel counts its own offsets from 1 within one epoch."""
    first = await store.append("c:a", b"1", size=10, ttl=None)
    second = await store.append("c:a", b"2", info=b'{"u":1}', size=10, ttl=None)
    other = await store.append("c:b", b"3", size=10, ttl=None)
    assert (first.position.offset, second.position.offset, other.position.offset) == (1, 2, 1)
    assert first.position.epoch == second.position.epoch
    assert second.publication is not None and second.publication.info == b'{"u":1}'
    assert not second.duplicate


async def test_position_of_a_new_channel_is_fixed(store: HistoryStore) -> None:
    """Reading a new channel fixes its epoch: the first publication keeps it."""
    before = await store.position("c:new")
    assert before.offset == 0
    result = await store.append("c:new", b"1", size=10, ttl=None)
    assert result.position.epoch == before.epoch


async def test_size_bound_keeps_the_newest(store: HistoryStore) -> None:
    """Only the last `size` publications are kept; offsets keep counting."""
    await append(store, "c:a", 10, size=3)
    pubs, position = await store.latest("c:a", limit=100)
    assert [p.offset for p in pubs] == [8, 9, 10]
    assert [p.data for p in pubs] == [b"7", b"8", b"9"]
    assert position.offset == 10


async def test_size_zero_only_advances_the_offset(store: HistoryStore) -> None:
    """With no history, offsets are still assigned and nothing is stored."""
    await append(store, "c:a", 3, size=0)
    pubs, position = await store.latest("c:a", limit=10)
    assert (pubs, position.offset) == ([], 3)
    assert await store.channels() == []
    current = await store.since("c:a", 3, position.epoch, limit=10)
    assert current.recovered and current.complete
    missed = await store.since("c:a", 2, position.epoch, limit=10)
    assert not missed.recovered


async def test_latest_limit(store: HistoryStore) -> None:
    """latest returns the newest `limit`, oldest first."""
    await append(store, "c:a", 5)
    pubs, _ = await store.latest("c:a", limit=2)
    assert [p.offset for p in pubs] == [4, 5]


async def test_since_recovers_exactly_the_missed(store: HistoryStore) -> None:
    """since returns the publications after the offset, in order, complete."""
    await append(store, "c:a", 6)
    position = await store.position("c:a")
    recovery = await store.since("c:a", 2, position.epoch, limit=100)
    assert recovery.recovered and recovery.complete
    assert [p.offset for p in recovery.publications] == [3, 4, 5, 6]
    assert recovery.position == position


async def test_since_with_limit_pages(store: HistoryStore) -> None:
    """A limit cuts the list: recovered but not complete."""
    await append(store, "c:a", 6)
    epoch = (await store.position("c:a")).epoch
    page = await store.since("c:a", 1, epoch, limit=2)
    assert [p.offset for p in page.publications] == [2, 3]
    assert page.recovered and not page.complete


@pytest.mark.parametrize(
    ("offset", "epoch_ok"),
    [(5, False), (7, True), (0, True)],
)
async def test_since_unrecoverable(store: HistoryStore, offset: int, epoch_ok: bool) -> None:
    """Another epoch, an offset beyond the top, or trimmed publications are unrecoverable."""
    await append(store, "c:a", 6, size=3)
    position = await store.position("c:a")
    epoch = position.epoch if epoch_ok else "other"
    recovery = await store.since("c:a", offset, epoch, limit=100)
    assert not recovery.recovered and not recovery.complete
    assert recovery.publications == ()
    assert recovery.position == position


async def test_since_just_inside_the_window(store: HistoryStore) -> None:
    """The oldest kept publication can still be recovered from the offset just before it."""
    await append(store, "c:a", 6, size=3)
    epoch = (await store.position("c:a")).epoch
    recovery = await store.since("c:a", 3, epoch, limit=100)
    assert recovery.complete
    assert [p.offset for p in recovery.publications] == [4, 5, 6]


async def test_dedupe_window(store: HistoryStore, clock: Clock) -> None:
    """A message id is a no-op within the window and returns the original offset."""
    first = await store.append("c:a", b"1", message_id="m", size=10, ttl=None)
    again = await store.append("c:a", b"1", message_id="m", size=10, ttl=None)
    assert again.duplicate and again.position == first.position
    other = await store.append("c:b", b"1", message_id="m", size=10, ttl=None)
    assert not other.duplicate
    clock.now += 61
    later = await store.append("c:a", b"1", message_id="m", size=10, ttl=None)
    assert not later.duplicate and later.position.offset == 2


async def test_ttl(store: HistoryStore, clock: Clock) -> None:
    """Publications older than the TTL are not returned and expire() drops them."""
    await store.append("c:a", b"old", size=10, ttl=10.0)
    clock.now += 5
    await store.append("c:a", b"new", size=10, ttl=10.0)
    clock.now += 6
    pubs, _ = await store.latest("c:a", limit=10)
    assert [p.data for p in pubs] == [b"new"]
    epoch = (await store.position("c:a")).epoch
    assert not (await store.since("c:a", 0, epoch, limit=10)).recovered
    assert (await store.since("c:a", 1, epoch, limit=10)).complete
    await store.append("c:a", b"newer", size=10, ttl=10.0)
    clock.now += 6
    assert await store.expire() == 1
    pubs, _ = await store.latest("c:a", limit=10)
    assert [p.data for p in pubs] == [b"newer"]
    clock.now += 10
    assert await store.channels() == []


async def test_channels_and_idle_streams(store: HistoryStore, clock: Clock) -> None:
    """channels() lists channels with history; idle empty streams get a new epoch."""
    await append(store, "c:b", 1)
    await append(store, "c:a", 1)
    empty = await store.position("c:empty")
    assert sorted(await store.channels()) == ["c:a", "c:b"]
    clock.now += 2000
    await store.expire()
    assert (await store.position("c:empty")).epoch != empty.epoch
    assert sorted(await store.channels()) == ["c:a", "c:b"]


async def test_closed_store_refuses_use(factory: Factory, clock: Clock) -> None:
    """A closed store raises InvalidState (our misuse), and close is idempotent."""
    history = factory(clock)
    await history.position("c:a")
    await history.close()
    await history.close()
    with pytest.raises(InvalidState):
        await history.position("c:a")


async def test_negative_size_or_limit_is_refused(store: HistoryStore) -> None:
    """A negative size or limit is local misuse: ValueError, and nothing is appended."""
    with pytest.raises(ValueError):
        await store.append("c:a", b"1", size=-1, ttl=None)
    with pytest.raises(ValueError):
        await store.latest("c:a", limit=-1)
    with pytest.raises(ValueError):
        await store.since("c:a", 0, "e", limit=-1)
    assert (await store.position("c:a")).offset == 0
