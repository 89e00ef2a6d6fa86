"""Channel history in one SQLite file (:class:`SQLiteHistory`): durable, for one hub node.

The epoch of each stream is stored in the file, so positions stay valid across restarts of
the hub; losing the file loses the epochs, so old positions then fail to recover instead of
matching different publications.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from wshub.exceptions import InvalidState
from wshub.hub.backends.base import AppendResult, Recovery, check_limits, new_epoch, recoverable
from wshub.hub.wire import Position, StoredPublication

__all__ = ["SQLiteHistory"]

_T = TypeVar("_T")

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
    """A durable :class:`~.base.HistoryStore` in one SQLite file.

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
        check_limits(size)
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
            return AppendResult(Position(top, epoch), StoredPublication(top, now, data, info))

        return await self._run(self._transaction, work)

    def _select(
        self,
        db: sqlite3.Connection,
        channel: str,
        ttl: float | None,
        where: str,
        args: tuple[object, ...],
    ) -> list[StoredPublication]:
        cutoff = float("-inf") if ttl is None else self._clock() - ttl
        rows = db.execute(
            f"SELECT seq, time, data, info FROM pubs WHERE channel = ? AND time >= ? {where}",
            (channel, cutoff, *args),
        ).fetchall()
        return [
            StoredPublication(r[0], r[1], bytes(r[2]), None if r[3] is None else bytes(r[3]))
            for r in rows
        ]

    async def since(self, channel: str, offset: int, epoch: str, *, limit: int) -> Recovery:
        check_limits(0, limit)

        def work(db: sqlite3.Connection) -> Recovery:
            current, top, ttl = self._stream(db, channel)
            position = Position(top, current)
            # The oldest live row tells whether offset + 1 is still there.
            first_rows = self._select(db, channel, ttl, "ORDER BY seq LIMIT 1", ())
            first = first_rows[0].offset if first_rows else top + 1
            if not recoverable(position, offset, epoch, first):
                return Recovery((), False, position)
            pubs = self._select(
                db, channel, ttl, "AND seq > ? ORDER BY seq LIMIT ?", (offset, limit)
            )
            return Recovery(pubs, True, position)

        return await self._run(self._transaction, work)

    async def latest(self, channel: str, *, limit: int) -> tuple[list[StoredPublication], Position]:
        check_limits(0, limit)

        def work(db: sqlite3.Connection) -> tuple[list[StoredPublication], Position]:
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
