"""Channel history in Redis Streams, shared by every hub node (:class:`RedisHistory`).

The Lua scripts are ``lua/history*.lua`` (``history.lua`` holds the functions they share).

One channel is three things in Redis (``prefix`` defaults to ``wshub``)::

    <prefix>:meta:<channel>     hash    epoch, top (last offset), time (of the last
                                        publication), size and ttl (of the last append)
    <prefix>:stream:<channel>   stream  one entry per kept publication, id ``<offset>-0``,
                                        fields t (time), d (data), i (info, optional)
    <prefix>:dedupe:<n>:<channel>:<message_id>
                                string  "<offset> <epoch> <time>", expires after the
                                        dedupe window (``n`` = length of the channel name,
                                        so that no two channels share a key)

and one sorted set, ``<prefix>:streams``, scores each channel with the time at which
:meth:`RedisHistory.expire` must next look at it.

Every operation on a channel is one Lua script, so it is atomic across nodes: two nodes
publishing to one channel at the same moment get consecutive offsets, never the same one,
and a message id accepted by one node is a duplicate on all of them. Scripts run on one
Redis, so this store needs a single Redis (a primary with replicas, or Sentinel), not
Redis Cluster: the index key and the channel keys would live in different slots.

How the recovery contract of docs/protocol.md survives Redis:

* A stream's epoch is created by the first script that finds no ``meta`` hash, from a
  candidate the node draws at random. Redis restarted without its data, a flushed
  database, an evicted hash: the next access makes a new epoch, so old positions fail to
  recover (``recovered: false``) instead of matching different publications.
* A failover to a replica that had not yet received the last publications (replication is
  asynchronous) loses publications the hub acknowledged, and the new master would give
  their offsets to other publications. Each node remembers the last position it
  acknowledged per channel; an append that finds the stream of that epoch below it
  starts a new, empty epoch at offset 1, so subscribers are told (116,
  ``recovered: false``) instead of seeing one offset stand for two publications.
* Recovery is decided on what the stream actually holds, not on counters: ``since``
  succeeds only if the entry right after the client's offset is there and young enough. A
  partially lost stream can therefore never produce a silent gap.
* ``MAXLEN ~`` trims lazily (whole stream nodes at a time); reads never look below
  ``top - size + 1``, so at most ``size`` publications are ever visible.
* StoredPublication times never go back within a stream (a node whose clock is behind the
  previous publisher's reuses that time), so trimming by age removes a prefix of the
  stream and never opens a hole in it. Times come from the nodes' clocks: keep them
  synchronized (NTP); a skew shifts TTLs and the dedupe window by that much.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from wshub.exceptions import InvalidState
from wshub.hub.backends.base import DEFAULT_PREFIX, AppendResult, Recovery, check_limits, new_epoch
from wshub.hub.backends.redis.connection import (
    Availability,
    close_client,
    lua_script,
    redis_client,
)
from wshub.hub.wire import Position, StoredPublication

__all__ = ["RedisHistory"]

logger = logging.getLogger("wshub.hub")

#: Channels handled per round trip by :meth:`RedisHistory.expire` and ``channels``.
_BATCH = 200


def _publication(entry: Sequence[Any]) -> StoredPublication:
    """A publication from a stream entry ``[id, [b"t", time, b"d", data, b"i", info]]``."""
    entry_id, fields = entry
    info = fields[5] if len(fields) > 5 else None
    return StoredPublication(int(entry_id.partition(b"-")[0]), float(fields[1]), fields[3], info)


def _ttl(raw: bytes | None) -> float | None:
    return float(raw) if raw else None


#: Channels whose last acknowledged position a node remembers (the least recent forgotten).
_ACKED_CHANNELS = 65536


class RedisHistory:
    """A :class:`~wshub.hub.backends.base.HistoryStore` in Redis, shared by every hub node.

    Args:
        redis: a Redis URL (the store then owns a client made by
            :func:`~.connection.redis_client`) or a client to share (not closed by
            :meth:`close`; it should not retry commands, see :mod:`.connection`).
        prefix: the first part of every key; hubs with different prefixes are separate.
        clock: returns the current time in seconds since the Unix epoch (tests pass a fake).
        dedupe_window: seconds a ``message_id`` is remembered (it expires in Redis too).
        idle_ttl: seconds after its last publication (or its creation) a stream without
            visible publications is dropped by :meth:`expire`; a later use starts a new
            epoch.

    Raises:
        ValueError: ``dedupe_window`` or ``idle_ttl`` is not positive.
    """

    def __init__(
        self,
        redis: str | Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        clock: Callable[[], float] = time.time,
        dedupe_window: float = 120.0,
        idle_ttl: float = 24 * 3600.0,
    ) -> None:
        if dedupe_window <= 0 or idle_ttl <= 0:
            raise ValueError("dedupe_window and idle_ttl must be > 0")
        self._owns_client = isinstance(redis, str)
        self._client = redis_client(redis) if isinstance(redis, str) else redis
        self._prefix = prefix
        self._index = f"{prefix}:streams"
        self._clock = clock
        self._dedupe_window = dedupe_window
        self._dedupe_ms = str(max(1, round(dedupe_window * 1000)))
        self._idle = repr(float(idle_ttl))
        register = self._client.register_script
        self._append = register(lua_script("history", "history_append"))
        self._since = register(lua_script("history", "history_since"))
        self._latest = register(lua_script("history", "history_latest"))
        self._position = register(lua_script("history", "history_position"))
        self._sweep = register(lua_script("history", "history_sweep"))
        self._health = Availability(logger, "history")
        self._closed = False
        # The last position this node acknowledged per channel (most recent last), so that
        # a stream found below it (Redis lost acknowledged publications) changes its epoch.
        self._acked: OrderedDict[str, Position] = OrderedDict()

    def _keys(self, channel: str) -> list[str]:
        prefix = self._prefix
        return [f"{prefix}:meta:{channel}", f"{prefix}:stream:{channel}", self._index]

    def _args(self, channel: str, now: float) -> list[str | bytes]:
        return [channel, new_epoch(), repr(now), self._idle]

    async def _run(self, script: AsyncScript, keys: list[str], args: list[str | bytes]) -> Any:
        if self._closed:
            raise InvalidState("history store is closed")
        try:
            result = await script(keys, args)
        except RedisError as exc:
            raise self._health.failed(exc) from exc
        self._health.succeeded()
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
        keys = self._keys(channel)
        if message_id is not None:
            keys.append(f"{self._prefix}:dedupe:{len(channel)}:{channel}:{message_id}")
        args = self._args(channel, now)
        args += [
            str(size),
            "" if ttl is None else repr(float(ttl)),
            data,
            b"" if info is None else info,
            "0" if info is None else "1",
            repr(self._dedupe_window),
            self._dedupe_ms,
        ]
        acked = self._acked.get(channel)
        args += ["", "0"] if acked is None else [acked.epoch, str(acked.offset)]
        appended, offset, epoch, when = await self._run(self._append, keys, args)
        position = Position(int(offset), epoch.decode())
        if acked is None or acked.epoch != position.epoch or acked.offset < position.offset:
            self._acked[channel] = position  # (a duplicate's older position is not kept)
        self._acked.move_to_end(channel)
        if len(self._acked) > _ACKED_CHANNELS:
            self._acked.popitem(last=False)
        if not appended:
            return AppendResult(position, None)
        return AppendResult(position, StoredPublication(position.offset, float(when), data, info))

    async def since(self, channel: str, offset: int, epoch: str, *, limit: int) -> Recovery:
        check_limits(0, limit)
        now = self._clock()
        args = [*self._args(channel, now), str(offset), epoch, str(max(limit, 1))]
        current, top, ttl_raw, entries = await self._run(self._since, self._keys(channel), args)
        position = Position(int(top), current.decode())
        if epoch != position.epoch or offset > position.offset:
            return Recovery((), False, position)
        if offset == position.offset:
            return Recovery([], True, position)
        # The entry right after ``offset`` decides: there and young enough, the rest follows
        # (times never go back within a stream).
        ttl = _ttl(ttl_raw)
        pubs = [_publication(entry) for entry in entries]
        if not pubs or pubs[0].offset != offset + 1:
            return Recovery((), False, position)
        if ttl is not None and pubs[0].time < now - ttl:
            return Recovery((), False, position)
        return Recovery(pubs[:limit], True, position)

    async def latest(self, channel: str, *, limit: int) -> tuple[list[StoredPublication], Position]:
        check_limits(0, limit)
        now = self._clock()
        args = [*self._args(channel, now), str(limit)]
        current, top, ttl_raw, entries = await self._run(self._latest, self._keys(channel), args)
        ttl = _ttl(ttl_raw)
        cutoff = float("-inf") if ttl is None else now - ttl
        pubs = [pub for pub in map(_publication, reversed(entries)) if pub.time >= cutoff]
        return pubs, Position(int(top), current.decode())

    async def position(self, channel: str) -> Position:
        args = self._args(channel, self._clock())
        epoch, top = await self._run(self._position, self._keys(channel), args)
        return Position(int(top), epoch.decode())

    async def channels(self) -> list[str]:
        if self._closed:
            raise InvalidState("history store is closed")
        now = self._clock()
        names: list[str] = []
        try:
            members = [name async for name, _ in self._client.zscan_iter(self._index)]
            for start in range(0, len(members), _BATCH):
                batch = members[start : start + _BATCH]
                async with self._client.pipeline(transaction=False) as pipe:
                    for member in batch:
                        channel = member.decode()
                        meta, stream = self._keys(channel)[:2]
                        pipe.hmget(meta, "top", "size", "ttl", "time")
                        pipe.xlen(stream)
                    replies = await pipe.execute()
                for index, member in enumerate(batch):
                    (top, size, ttl, last), length = replies[2 * index : 2 * index + 2]
                    if not (top and size and int(top) > 0 and int(size) > 0 and length):
                        continue
                    if ttl and float(last) < now - float(ttl):
                        continue
                    names.append(member.decode())
        except RedisError as exc:
            raise self._health.failed(exc) from exc
        self._health.succeeded()
        return sorted(names)

    async def expire(self) -> int:
        if self._closed:
            raise InvalidState("history store is closed")
        now = self._clock()
        dropped = 0
        seen: set[bytes] = set()
        try:
            while True:
                due: Any = await self._client.zrangebyscore(
                    self._index, "-inf", repr(now), start=0, num=_BATCH + len(seen)
                )
                # A stream whose next sweep is now again (its oldest publication is exactly
                # ttl old) stays due: visit each channel once per call.
                batch = [member for member in due if member not in seen]
                if not batch:
                    break
                seen.update(batch)
                async with self._client.pipeline(transaction=False) as pipe:
                    for member in batch:
                        channel = member.decode()
                        await self._sweep(self._keys(channel), self._args(channel, now), pipe)
                    dropped += sum(await pipe.execute())
        except RedisError as exc:
            raise self._health.failed(exc) from exc
        self._health.succeeded()
        return dropped

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            await close_client(self._client)
