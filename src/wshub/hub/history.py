"""Channel history: positions, bounded storage and recovery.

Every publication of a channel gets the next offset of the channel's *stream*; a stream has an
*epoch*, a random string fixed when the stream is created. When a stream is lost (a memory
store restarted, a SQLite file deleted, an idle stream dropped) its successor gets a new epoch,
so a client holding an old position can tell that its offsets mean nothing any more.

:class:`HistoryStore` is the interface; :class:`MemoryHistory` is the reference and
:class:`SQLiteHistory` the embedded durable store. The interface only speaks of channels,
offsets, raw bytes and time, so that a Redis Streams implementation (XADD with explicit ids,
a hash for epoch/top, SET NX EX for message ids) fits it unchanged.

Every read of a channel fixes its stream (creating it if needed), so the position a reader is
given always has a real epoch that a later ``since`` can match.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import sqlite3
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from wshub.exceptions import InvalidState
from wshub.hub.wire import Position, Publication

__all__ = [
    "AppendResult",
    "HistoryStore",
    "MemoryHistory",
    "Recovery",
    "SQLiteHistory",
    "new_epoch",
]

_T = TypeVar("_T")


def new_epoch() -> str:
    """A fresh random epoch (8 URL-safe characters)."""
    return secrets.token_urlsafe(6)


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What :meth:`HistoryStore.append` did.

    Attributes:
        position: the publication's position (the original one for a duplicate).
        publication: the new publication, or ``None`` when ``message_id`` was a duplicate
            within the dedupe window and nothing was appended.
    """

    position: Position
    publication: Publication | None

    @property
    def duplicate(self) -> bool:
        return self.publication is None


@dataclass(frozen=True, slots=True)
class Recovery:
    """What :meth:`HistoryStore.since` found.

    Attributes:
        publications: the publications after the requested offset, oldest first, at most
            ``limit`` of them.
        recovered: ``True`` when the epoch matched and nothing is missing between the
            requested offset and the first returned publication (or the current offset).
            When ``limit`` cut the list, the rest is simply not returned yet: compare the last
            offset with ``position.offset`` to know whether the list is complete.
        position: the stream's current position.
    """

    publications: Sequence[Publication]
    recovered: bool
    position: Position

    @property
    def complete(self) -> bool:
        """Recovered, and every publication up to the current position is in the list."""
        if not self.recovered:
            return False
        last = self.publications[-1].offset if self.publications else None
        return last is None or last == self.position.offset


class HistoryStore(Protocol):
    """Where the hub keeps each channel's stream position and recent publications."""

    async def append(
        self,
        channel: str,
        data: bytes,
        *,
        info: bytes | None = None,
        message_id: str | None = None,
        size: int,
        ttl: float | None,
    ) -> AppendResult:
        """Assign the next offset to a publication and keep it.

        Args:
            channel: the channel name.
            data: the payload, raw JSON bytes.
            info: who published it, raw JSON bytes.
            message_id: when given and already seen in this channel within the dedupe
                window, nothing is appended and the original position is returned.
            size: keep at most this many publications in the channel (0: keep none, only
                advance the offset).
            ttl: drop publications older than this many seconds (``None``: no age limit).
        """
        ...

    async def since(self, channel: str, offset: int, epoch: str, *, limit: int) -> Recovery:
        """The publications after ``offset`` of ``epoch`` (see :class:`Recovery`)."""
        ...

    async def latest(self, channel: str, *, limit: int) -> tuple[list[Publication], Position]:
        """The last ``limit`` publications (oldest first) and the current position."""
        ...

    async def position(self, channel: str) -> Position:
        """The channel's current position (the stream is created if needed)."""
        ...

    async def channels(self) -> list[str]:
        """The channels that currently hold at least one publication."""
        ...

    async def expire(self) -> int:
        """Drop publications past their channel's TTL and idle empty streams.

        Returns:
            How many publications were dropped.
        """
        ...

    async def close(self) -> None:
        """Release resources; the store is unusable afterwards."""
        ...


def _check_limits(size: int, limit: int | None = None) -> None:
    if size < 0 or (limit is not None and limit < 0):
        raise ValueError("size and limit must be >= 0")


# --- in memory ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Stream:
    epoch: str
    top: int = 0
    ttl: float | None = None
    updated: float = 0.0
    pubs: deque[Publication] = field(default_factory=deque)
    dedupe: OrderedDict[str, tuple[int, float]] = field(default_factory=OrderedDict)


class MemoryHistory:
    """The reference :class:`HistoryStore`, in process memory.

    Epochs are random per stream, so a new process (a new store) always starts new epochs
    and never lets an old position "recover" against different publications.

    Args:
        clock: returns the current time in seconds since the Unix epoch (tests pass a fake).
        dedupe_window: seconds a ``message_id`` is remembered.
        max_dedupe: message ids remembered per channel at most (the oldest are forgotten
            first), bounding memory under a flood of distinct ids.
        idle_ttl: seconds after its last publication an empty stream is dropped by
            :meth:`expire`, bounding memory for one-off channel names.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        dedupe_window: float = 120.0,
        max_dedupe: int = 10_000,
        idle_ttl: float = 24 * 3600.0,
    ) -> None:
        self._clock = clock
        self._dedupe_window = dedupe_window
        self._max_dedupe = max_dedupe
        self._idle_ttl = idle_ttl
        self._streams: dict[str, _Stream] = {}
        self._closed = False

    def _stream(self, channel: str) -> _Stream:
        if self._closed:
            raise InvalidState("history store is closed")
        stream = self._streams.get(channel)
        if stream is None:
            stream = self._streams[channel] = _Stream(new_epoch(), updated=self._clock())
        return stream

    @staticmethod
    def _trim_age(stream: _Stream, now: float) -> int:
        dropped = 0
        if stream.ttl is not None:
            cutoff = now - stream.ttl
            while stream.pubs and stream.pubs[0].time < cutoff:
                stream.pubs.popleft()
                dropped += 1
        return dropped

    async def append(
        self,
        channel: str,
        data: bytes,
        *,
        info: bytes | None = None,
        message_id: str | None = None,
        size: int,
        ttl: float | None,
    ) -> AppendResult:
        _check_limits(size)
        now = self._clock()
        stream = self._stream(channel)
        if message_id is not None:
            cutoff = now - self._dedupe_window
            while stream.dedupe:
                oldest = next(iter(stream.dedupe.values()))
                if oldest[1] >= cutoff:
                    break
                stream.dedupe.popitem(last=False)
            seen = stream.dedupe.get(message_id)
            if seen is not None:
                return AppendResult(Position(seen[0], stream.epoch), None)
        stream.top += 1
        stream.updated = now
        stream.ttl = ttl
        pub = Publication(stream.top, now, data, info)
        if size > 0:
            stream.pubs.append(pub)
        while len(stream.pubs) > size:
            stream.pubs.popleft()
        self._trim_age(stream, now)
        if message_id is not None:
            stream.dedupe[message_id] = (stream.top, now)
            if len(stream.dedupe) > self._max_dedupe:
                stream.dedupe.popitem(last=False)
        return AppendResult(Position(stream.top, stream.epoch), pub)

    async def since(self, channel: str, offset: int, epoch: str, *, limit: int) -> Recovery:
        _check_limits(0, limit)
        stream = self._stream(channel)
        self._trim_age(stream, self._clock())
        position = Position(stream.top, stream.epoch)
        first = stream.pubs[0].offset if stream.pubs else stream.top + 1
        if not _recoverable(position, offset, epoch, first):
            return Recovery((), False, position)
        start = max(0, offset + 1 - first)
        pubs = [stream.pubs[i] for i in range(start, min(len(stream.pubs), start + limit))]
        return Recovery(pubs, True, position)

    async def latest(self, channel: str, *, limit: int) -> tuple[list[Publication], Position]:
        _check_limits(0, limit)
        stream = self._stream(channel)
        self._trim_age(stream, self._clock())
        count = min(limit, len(stream.pubs))
        pubs = [stream.pubs[i] for i in range(len(stream.pubs) - count, len(stream.pubs))]
        return pubs, Position(stream.top, stream.epoch)

    async def position(self, channel: str) -> Position:
        stream = self._stream(channel)
        return Position(stream.top, stream.epoch)

    async def channels(self) -> list[str]:
        now = self._clock()
        return [name for name, s in self._streams.items() if s.pubs and not self._all_old(s, now)]

    @staticmethod
    def _all_old(stream: _Stream, now: float) -> bool:
        return stream.ttl is not None and stream.pubs[-1].time < now - stream.ttl

    async def expire(self) -> int:
        now = self._clock()
        dropped = 0
        for name, stream in list(self._streams.items()):
            dropped += self._trim_age(stream, now)
            if not stream.pubs and stream.updated < now - self._idle_ttl:
                del self._streams[name]
        return dropped

    async def close(self) -> None:
        self._closed = True
        self._streams.clear()


def _recoverable(position: Position, offset: int, epoch: str, first: int) -> bool:
    """Whether every publication after ``offset`` is still there.

    ``first`` is the oldest available offset (``top + 1`` when nothing is stored).
    """
    if epoch != position.epoch or offset > position.offset:
        return False
    return offset == position.offset or first <= offset + 1


# --- SQLite -------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (
    channel TEXT PRIMARY KEY,
    epoch TEXT NOT NULL,
    top INTEGER NOT NULL,
    ttl REAL,
    updated REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pubs (
    channel TEXT NOT NULL,
    seq INTEGER NOT NULL,
    time REAL NOT NULL,
    data BLOB NOT NULL,
    info BLOB,
    PRIMARY KEY (channel, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dedupe (
    channel TEXT NOT NULL,
    message_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    time REAL NOT NULL,
    PRIMARY KEY (channel, message_id)
) WITHOUT ROWID;
"""


class SQLiteHistory:
    """A durable :class:`HistoryStore` in one SQLite file.

    The epoch of each stream is stored in the file, so positions stay valid across restarts
    of the hub. All database work runs on one worker thread that owns the connection: the
    event loop never blocks on disk, and there is no locking between threads to get wrong.
    The database uses WAL mode with ``synchronous=NORMAL``: a power loss may lose the last
    transactions, never corrupt the file.

    Args:
        path: the database file (created with its tables if missing).
        clock: returns the current time in seconds since the Unix epoch.
        dedupe_window: seconds a ``message_id`` is remembered.
        idle_ttl: seconds after its last publication an empty stream is dropped by
            :meth:`expire`.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Callable[[], float] = time.time,
        dedupe_window: float = 120.0,
        idle_ttl: float = 24 * 3600.0,
    ) -> None:
        self._path = str(path)
        self._clock = clock
        self._dedupe_window = dedupe_window
        self._idle_ttl = idle_ttl
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wshub-sqlite")
        self._db: sqlite3.Connection | None = None
        self._closed = False

    async def _run(self, fn: Callable[..., _T], *args: object) -> _T:
        if self._closed:
            raise InvalidState("history store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    def _conn(self) -> sqlite3.Connection:
        # Opened lazily on the worker thread, which then is the only one to use it.
        if self._db is None:
            db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            self._db = db
        return self._db

    def _stream(self, db: sqlite3.Connection, channel: str) -> tuple[str, int, float | None]:
        row = db.execute(
            "SELECT epoch, top, ttl FROM streams WHERE channel = ?", (channel,)
        ).fetchone()
        if row is None:
            epoch = new_epoch()
            db.execute(
                "INSERT INTO streams (channel, epoch, top, ttl, updated) VALUES (?, ?, 0, NULL, ?)",
                (channel, epoch, self._clock()),
            )
            return epoch, 0, None
        return row[0], row[1], row[2]

    def _transaction(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        db = self._conn()
        # IMMEDIATE takes the write lock up front: reads create streams too, and a snapshot
        # that later upgrades to a write could fail with SQLITE_BUSY under another process.
        db.execute("BEGIN IMMEDIATE")
        try:
            result = fn(db)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

    async def append(
        self,
        channel: str,
        data: bytes,
        *,
        info: bytes | None = None,
        message_id: str | None = None,
        size: int,
        ttl: float | None,
    ) -> AppendResult:
        _check_limits(size)
        now = self._clock()

        def work(db: sqlite3.Connection) -> AppendResult:
            epoch, top, _ = self._stream(db, channel)
            if message_id is not None:
                db.execute(
                    "DELETE FROM dedupe WHERE channel = ? AND time < ?",
                    (channel, now - self._dedupe_window),
                )
                row = db.execute(
                    "SELECT seq FROM dedupe WHERE channel = ? AND message_id = ?",
                    (channel, message_id),
                ).fetchone()
                if row is not None:
                    return AppendResult(Position(row[0], epoch), None)
                db.execute(
                    "INSERT INTO dedupe (channel, message_id, seq, time) VALUES (?, ?, ?, ?)",
                    (channel, message_id, top + 1, now),
                )
            top += 1
            db.execute(
                "UPDATE streams SET top = ?, ttl = ?, updated = ? WHERE channel = ?",
                (top, ttl, now, channel),
            )
            if size > 0:
                db.execute(
                    "INSERT INTO pubs (channel, seq, time, data, info) VALUES (?, ?, ?, ?, ?)",
                    (channel, top, now, data, info),
                )
            db.execute("DELETE FROM pubs WHERE channel = ? AND seq <= ?", (channel, top - size))
            if ttl is not None:
                db.execute("DELETE FROM pubs WHERE channel = ? AND time < ?", (channel, now - ttl))
            return AppendResult(Position(top, epoch), Publication(top, now, data, info))

        return await self._run(self._transaction, work)

    def _select(
        self,
        db: sqlite3.Connection,
        channel: str,
        ttl: float | None,
        where: str,
        args: tuple[object, ...],
    ) -> list[Publication]:
        cutoff = float("-inf") if ttl is None else self._clock() - ttl
        rows = db.execute(
            f"SELECT seq, time, data, info FROM pubs WHERE channel = ? AND time >= ? {where}",
            (channel, cutoff, *args),
        ).fetchall()
        return [
            Publication(r[0], r[1], bytes(r[2]), None if r[3] is None else bytes(r[3]))
            for r in rows
        ]

    async def since(self, channel: str, offset: int, epoch: str, *, limit: int) -> Recovery:
        _check_limits(0, limit)

        def work(db: sqlite3.Connection) -> Recovery:
            current, top, ttl = self._stream(db, channel)
            position = Position(top, current)
            # The oldest live row tells whether offset + 1 is still there.
            first_rows = self._select(db, channel, ttl, "ORDER BY seq LIMIT 1", ())
            first = first_rows[0].offset if first_rows else top + 1
            if not _recoverable(position, offset, epoch, first):
                return Recovery((), False, position)
            pubs = self._select(
                db, channel, ttl, "AND seq > ? ORDER BY seq LIMIT ?", (offset, limit)
            )
            return Recovery(pubs, True, position)

        return await self._run(self._transaction, work)

    async def latest(self, channel: str, *, limit: int) -> tuple[list[Publication], Position]:
        _check_limits(0, limit)

        def work(db: sqlite3.Connection) -> tuple[list[Publication], Position]:
            epoch, top, ttl = self._stream(db, channel)
            pubs = self._select(db, channel, ttl, "ORDER BY seq DESC LIMIT ?", (limit,))
            pubs.reverse()
            return pubs, Position(top, epoch)

        return await self._run(self._transaction, work)

    async def position(self, channel: str) -> Position:
        def work(db: sqlite3.Connection) -> Position:
            epoch, top, _ = self._stream(db, channel)
            return Position(top, epoch)

        return await self._run(self._transaction, work)

    async def channels(self) -> list[str]:
        now = self._clock()

        def work(db: sqlite3.Connection) -> list[str]:
            rows = db.execute(
                "SELECT s.channel FROM streams AS s WHERE EXISTS (SELECT 1 FROM pubs AS p"
                " WHERE p.channel = s.channel AND (s.ttl IS NULL OR p.time >= ? - s.ttl))"
                " ORDER BY s.channel",
                (now,),
            ).fetchall()
            return [r[0] for r in rows]

        return await self._run(self._transaction, work)

    async def expire(self) -> int:
        now = self._clock()

        def work(db: sqlite3.Connection) -> int:
            dropped = db.execute(
                "DELETE FROM pubs WHERE time < ? - (SELECT s.ttl FROM streams AS s"
                " WHERE s.channel = pubs.channel)",
                (now,),
            ).rowcount
            db.execute(
                "DELETE FROM streams WHERE updated < ? AND NOT EXISTS"
                " (SELECT 1 FROM pubs WHERE pubs.channel = streams.channel)",
                (now - self._idle_ttl,),
            )
            db.execute(
                "DELETE FROM dedupe WHERE time < ? OR NOT EXISTS"
                " (SELECT 1 FROM streams WHERE streams.channel = dedupe.channel)",
                (now - self._dedupe_window,),
            )
            return max(dropped, 0)

        return await self._run(self._transaction, work)

    async def close(self) -> None:
        if self._closed:
            return

        def shut() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await self._run(shut)
        self._closed = True
        self._executor.shutdown(wait=True)
