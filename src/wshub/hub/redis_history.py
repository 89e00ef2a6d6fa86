"""Channel history in Redis Streams, shared by every hub node (:class:`RedisHistory`).

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
* Recovery is decided on what the stream actually holds, not on counters: ``since``
  succeeds only if the entry right after the client's offset is there and young enough. A
  partially lost stream can therefore never produce a silent gap.
* ``MAXLEN ~`` trims lazily (whole stream nodes at a time); reads never look below
  ``top - size + 1``, so at most ``size`` publications are ever visible.
* Publication times never go back within a stream (a node whose clock is behind the
  previous publisher's reuses that time), so trimming by age removes a prefix of the
  stream and never opens a hole in it. Times come from the nodes' clocks: keep them
  synchronized (NTP); a skew shifts TTLs and the dedupe window by that much.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from wshub.exceptions import InvalidState
from wshub.hub.history import AppendResult, Recovery, _check_limits, new_epoch
from wshub.hub.redis_support import DEFAULT_PREFIX, Availability, close_client, redis_client
from wshub.hub.wire import Position, Publication

__all__ = ["RedisHistory"]

logger = logging.getLogger("wshub.hub")

# Shared by every script. KEYS: meta, stream, index. ARGV: channel, epoch candidate, now
# (seconds, the node's clock, as a string so that it is stored exactly), idle_ttl.
_PRELUDE = """
local meta, stream, index = KEYS[1], KEYS[2], KEYS[3]
local channel, now_s, idle = ARGV[1], ARGV[3], tonumber(ARGV[4])
local now = tonumber(now_s)

local function open_stream()
  local epoch = redis.call('HGET', meta, 'epoch')
  if epoch then return epoch end
  -- A new stream: a stream key left without its meta belongs to a lost epoch.
  redis.call('DEL', stream)
  redis.call('HSET', meta, 'epoch', ARGV[2], 'top', 0, 'time', now_s, 'size', 0, 'ttl', '')
  redis.call('ZADD', index, now + idle, channel)
  return ARGV[2]
end

local function state()
  local v = redis.call('HMGET', meta, 'top', 'size', 'ttl', 'time')
  return tonumber(v[1]), tonumber(v[2]), tonumber(v[3]), v[4]
end

local function offset_of(id)
  return tonumber(string.match(id, '^(%d+)'))
end

-- Drop the publications older than ttl from the front of the stream; returns how many of
-- them were visible (within the last `size`).
local function trim_age(top, size, ttl)
  if not ttl then return 0 end
  local cutoff = now - ttl
  local first_visible = top - size + 1
  local dropped = 0
  while true do
    local entries = redis.call('XRANGE', stream, '-', '+', 'COUNT', 100)
    for i, entry in ipairs(entries) do
      if tonumber(entry[2][2]) >= cutoff then
        if i > 1 then redis.call('XTRIM', stream, 'MINID', entry[1]) end
        return dropped
      end
      if offset_of(entry[1]) >= first_visible then dropped = dropped + 1 end
    end
    if #entries == 0 then return dropped end
    redis.call('XTRIM', stream, 'MINID', (offset_of(entries[#entries][1]) + 1) .. '-0')
  end
end

-- When expire() must next look at the stream: when its oldest visible publication gets
-- too old, or, with none left, when the idle stream may be dropped. Also says whether
-- any publication is visible.
local function next_sweep(top, size, ttl, time)
  if size > 0 and top > 0 then
    local low = math.max(top - size + 1, 1) .. '-0'
    local first = redis.call('XRANGE', stream, low, '+', 'COUNT', 1)
    if #first > 0 then
      if ttl then return tonumber(first[1][2][2]) + ttl, true end
      return '+inf', true
    end
  end
  return tonumber(time) + idle, false
end
"""

# KEYS[4] (optional): the dedupe key. ARGV[5] size, ARGV[6] ttl ('' = none), ARGV[7] data,
# ARGV[8] info, ARGV[9] '1' when there is an info, ARGV[10] dedupe window in seconds,
# ARGV[11] the same in milliseconds. Returns {appended 1|0, offset, epoch, time}.
_APPEND = (
    _PRELUDE
    + """
local size, ttl = tonumber(ARGV[5]), tonumber(ARGV[6])
local epoch = open_stream()
local dedupe = KEYS[4]
if dedupe then
  local seen = redis.call('GET', dedupe)
  if seen then
    local offset, seen_epoch, seen_time = string.match(seen, '^(%d+) (%S+) (%S+)$')
    if seen_epoch == epoch and tonumber(seen_time) >= now - tonumber(ARGV[10]) then
      return {0, tonumber(offset), epoch, seen_time}
    end
  end
end
local top = redis.call('HINCRBY', meta, 'top', 1)
local last = redis.call('HGET', meta, 'time')
if tonumber(last) > now then
  now_s, now = last, tonumber(last)
end
redis.call('HSET', meta, 'time', now_s, 'size', size, 'ttl', ARGV[6])
if size > 0 then
  if ARGV[9] == '1' then
    redis.call('XADD', stream, 'MAXLEN', '~', size, top .. '-0',
               't', now_s, 'd', ARGV[7], 'i', ARGV[8])
  else
    redis.call('XADD', stream, 'MAXLEN', '~', size, top .. '-0', 't', now_s, 'd', ARGV[7])
  end
else
  redis.call('DEL', stream)
end
trim_age(top, size, ttl)
if dedupe then
  redis.call('SET', dedupe, top .. ' ' .. epoch .. ' ' .. now_s, 'PX', ARGV[11])
end
redis.call('ZADD', index, next_sweep(top, size, ttl, now_s), channel)
return {1, top, epoch, now_s}
"""
)

# ARGV[5] offset, ARGV[6] the client's epoch, ARGV[7] count. Returns {epoch, top, ttl,
# entries after offset}; the entries are read only when they can all still be there.
_SINCE = (
    _PRELUDE
    + """
local epoch = open_stream()
local top, size = state()
local offset = tonumber(ARGV[5])
local entries = {}
if epoch == ARGV[6] and offset < top and offset + 1 >= top - size + 1 then
  entries = redis.call('XRANGE', stream, (offset + 1) .. '-0', '+', 'COUNT', ARGV[7])
end
return {epoch, top, redis.call('HGET', meta, 'ttl'), entries}
"""
)

# ARGV[5] limit. Returns {epoch, top, ttl, the newest visible entries, newest first}.
_LATEST = (
    _PRELUDE
    + """
local epoch = open_stream()
local top, size = state()
local limit = tonumber(ARGV[5])
local entries = {}
if limit > 0 and size > 0 and top > 0 then
  local low = math.max(top - size + 1, 1) .. '-0'
  entries = redis.call('XREVRANGE', stream, '+', low, 'COUNT', limit)
end
return {epoch, top, redis.call('HGET', meta, 'ttl'), entries}
"""
)

_POSITION = (
    _PRELUDE
    + """
local epoch = open_stream()
return {epoch, tonumber(redis.call('HGET', meta, 'top'))}
"""
)

# Trims one channel by age and drops it when it is empty and idle. Returns the number of
# visible publications dropped.
_SWEEP = (
    _PRELUDE
    + """
if not redis.call('HGET', meta, 'epoch') then
  redis.call('DEL', stream)
  redis.call('ZREM', index, channel)
  return 0
end
local top, size, ttl, time = state()
local dropped = trim_age(top, size, ttl)
local when, visible = next_sweep(top, size, ttl, time)
if not visible and when < now then
  redis.call('DEL', meta, stream)
  redis.call('ZREM', index, channel)
else
  redis.call('ZADD', index, when, channel)
end
return dropped
"""
)

#: Channels handled per round trip by :meth:`RedisHistory.expire` and ``channels``.
_BATCH = 200


def _publication(entry: Sequence[Any]) -> Publication:
    """A publication from a stream entry ``[id, [b"t", time, b"d", data, b"i", info]]``."""
    entry_id, fields = entry
    info = fields[5] if len(fields) > 5 else None
    return Publication(int(entry_id.partition(b"-")[0]), float(fields[1]), fields[3], info)


def _ttl(raw: bytes | None) -> float | None:
    return float(raw) if raw else None


class RedisHistory:
    """A :class:`~wshub.hub.history.HistoryStore` in Redis, shared by every hub node.

    Args:
        redis: a Redis URL (the store then owns a client made by
            :func:`~wshub.hub.redis_support.redis_client`) or a client to share (not closed
            by :meth:`close`; it should not retry commands, see ``redis_support``).
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
        self._append = self._client.register_script(_APPEND)
        self._since = self._client.register_script(_SINCE)
        self._latest = self._client.register_script(_LATEST)
        self._position = self._client.register_script(_POSITION)
        self._sweep = self._client.register_script(_SWEEP)
        self._health = Availability(logger, "history")
        self._closed = False

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
        _check_limits(size)
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
        appended, offset, epoch, when = await self._run(self._append, keys, args)
        position = Position(int(offset), epoch.decode())
        if not appended:
            return AppendResult(position, None)
        return AppendResult(position, Publication(position.offset, float(when), data, info))

    async def since(self, channel: str, offset: int, epoch: str, *, limit: int) -> Recovery:
        _check_limits(0, limit)
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

    async def latest(self, channel: str, *, limit: int) -> tuple[list[Publication], Position]:
        _check_limits(0, limit)
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
