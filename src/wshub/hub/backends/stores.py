"""The stores of one hub node, built from the chosen backend (:func:`open_stores`).

Which store keeps which namespace's history is decided here, explicitly, not by the hub:

* memory and SQLite: the ``history`` store keeps the namespaces with ``persistent=True``;
  the hub keeps the others in a :class:`~.memory.MemoryHistory` of its own
  (``volatile_history`` is ``None``). Presence and the broker are the hub's in-memory ones.
* Redis: every namespace keeps its history in Redis, ``persistent=False`` ones included
  (``volatile_history`` is the same store): a stream in one node's memory would give that
  node's publications offsets and an epoch of their own, which the subscribers on the other
  nodes would take for a restarted stream at every publication. Presence and the broker are
  Redis ones too, all on one bounded connection pool.

A :class:`Stores` is handed to :class:`~wshub.hub.hub.Hub` field by field (the fields are
named as the hub's keywords) and closed after the hub.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from wshub.hub.backends.base import DEFAULT_PREFIX, Broker, HistoryStore, PresenceStore
from wshub.hub.backends.memory import MemoryHistory
from wshub.hub.backends.sqlite import SQLiteHistory

__all__ = ["Stores", "open_stores"]

logger = logging.getLogger("wshub.hub")


@dataclass(frozen=True, slots=True)
class Stores:
    """What a hub node keeps its state in. Build it with :func:`open_stores`.

    Attributes:
        location: where the data is, for people: ``"memory"``, the SQLite file, or the
            Redis URL without its credentials.
        history: the store of ``persistent`` namespaces.
        volatile_history: the store of ``persistent=False`` namespaces; ``None`` lets the
            hub keep them in a memory store of its own.
        broker: the fan-out between nodes; ``None``: the hub's in-memory broker.
        presence: the presence store; ``None``: the hub's in-memory one.
        closers: what :meth:`close` calls, in order.
    """

    location: str
    history: HistoryStore
    volatile_history: HistoryStore | None = None
    broker: Broker | None = None
    presence: PresenceStore | None = None
    closers: tuple[Callable[[], Awaitable[None]], ...] = ()

    async def close(self) -> None:
        """Close the broker and the stores, then the connections (after the hub)."""
        for close in self.closers:
            await close()


async def open_stores(
    *,
    sqlite_path: str | Path | None = None,
    redis_url: str | None = None,
    redis_prefix: str = DEFAULT_PREFIX,
    redis_sentinel_password: str | None = None,
    clock: Callable[[], float] = time.time,
    dedupe_window: float = 120.0,
) -> Stores:
    """Open the stores of a hub node: in memory (the default), SQLite, or Redis.

    Args:
        sqlite_path: keep the history of ``persistent`` namespaces in this SQLite file
            (created if missing; its directory must exist).
        redis_url: share history, presence and fan-out with the other nodes through the
            Redis at this URL (see :func:`~.redis.connection.redis_client`; a
            ``redis+sentinel://`` URL follows the master across failovers); checked first,
            and refused in cluster mode.
        redis_prefix: the first part of every Redis key and Pub/Sub channel; the nodes of
            one hub use the same.
        redis_sentinel_password: the sentinels' password, with a sentinel URL.
        clock: wall-clock time in seconds since the Unix epoch, for history TTLs and the
            dedupe window.
        dedupe_window: seconds a publish's ``message_id`` is remembered.

    Raises:
        ValueError: both ``sqlite_path`` and ``redis_url``; ``dedupe_window`` not positive;
            ``redis_url`` is not a Redis URL or the ``redis`` package is missing; Redis
            runs in cluster mode; no sentinel knows the service of a sentinel URL.
        ConnectionError: Redis (or every sentinel) does not answer (a wrong address, a
            password refused).
    """
    # Checked here for every store alike (Redis refuses a window of 0 itself, the others
    # would silently treat it as "remember for an instant").
    if not dedupe_window > 0:
        raise ValueError("dedupe_window must be > 0")
    if sqlite_path is not None and redis_url is not None:
        raise ValueError("give sqlite_path or redis_url, not both")
    if redis_url is not None:
        return await _open_redis(
            redis_url, redis_sentinel_password, redis_prefix, clock, dedupe_window
        )
    history: HistoryStore
    if sqlite_path is not None:
        history = SQLiteHistory(sqlite_path, clock=clock, dedupe_window=dedupe_window)
        location = str(sqlite_path)
    else:
        history = MemoryHistory(clock=clock, dedupe_window=dedupe_window)
        location = "memory"
    return Stores(location=location, history=history, closers=(history.close,))


async def _open_redis(
    url: str,
    sentinel_password: str | None,
    prefix: str,
    clock: Callable[[], float],
    dedupe_window: float,
) -> Stores:
    try:  # redis is optional
        from wshub.hub.backends.redis import RedisBroker, RedisHistory, RedisPresence
        from wshub.hub.backends.redis.connection import (
            check_server,
            close_client,
            describe_url,
            redis_client,
        )
    except ImportError as exc:
        raise ValueError("Redis needs the redis package: pip install 'wshub[redis]'") from exc

    client = redis_client(url, sentinel_password=sentinel_password)
    shown = describe_url(url)
    try:
        await check_server(client, shown)
    except BaseException:
        await close_client(client)
        raise
    logger.info("sharing history, presence and fan-out through Redis at %s", shown)
    history = RedisHistory(client, prefix=prefix, clock=clock, dedupe_window=dedupe_window)
    presence = RedisPresence(client, prefix=prefix)
    broker = RedisBroker(client, prefix=prefix)

    async def disconnect() -> None:
        await close_client(client)

    return Stores(
        location=shown,
        history=history,
        volatile_history=history,
        broker=broker,
        presence=presence,
        closers=(broker.close, presence.close, history.close, disconnect),
    )
