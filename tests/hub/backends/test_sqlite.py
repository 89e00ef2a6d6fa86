"""Tests for wshub.hub.backends.sqlite: what only a file can do (the contract is shared)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from wshub.hub.backends import SQLiteHistory

from .helpers import append


async def test_sqlite_history_survives_a_restart(tmp_path: Path) -> None:
    """Publications, offsets, epochs and message ids survive reopening the file."""
    path = tmp_path / "h.db"
    first = SQLiteHistory(path)
    for i in range(3):
        await first.append("chat:a", b"%d" % i, message_id=f"m{i}", size=10, ttl=None)
    before = await first.position("chat:a")
    await first.close()

    second = SQLiteHistory(path)
    try:
        assert await second.position("chat:a") == before
        recovery = await second.since("chat:a", 1, before.epoch, limit=10)
        assert recovery.complete and [p.data for p in recovery.publications] == [b"1", b"2"]
        again = await second.append("chat:a", b"2", message_id="m2", size=10, ttl=None)
        assert again.duplicate and again.position.offset == 3
        new = await second.append("chat:a", b"3", size=10, ttl=None)
        assert new.position.offset == 4 and new.position.epoch == before.epoch
    finally:
        await second.close()


async def test_sqlite_uses_wal(tmp_path: Path) -> None:
    """The database is in WAL mode (readers do not block the writer)."""
    path = tmp_path / "h.db"
    store = SQLiteHistory(path)
    await store.position("c:a")
    await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_a_new_file_means_a_new_epoch(tmp_path: Path) -> None:
    """Losing the file loses the epoch: old positions become unrecoverable."""
    first = SQLiteHistory(tmp_path / "one.db")
    await append(first, "c:a", 2)
    old = await first.position("c:a")
    await first.close()
    second = SQLiteHistory(tmp_path / "two.db")
    await append(second, "c:a", 3)
    assert not (await second.since("c:a", old.offset, old.epoch, limit=10)).recovered
    await second.close()
