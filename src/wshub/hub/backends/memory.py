"""The in-process backends, the reference implementations of :mod:`.base`.

:class:`MemoryBroker` calls the subscribed callbacks synchronously, in subscription order, so
within one process delivery is immediate and ordered. Several hubs sharing one
``MemoryBroker`` behave like several nodes sharing a real broker, which is how the multi-node
paths are tested without a network.

:class:`MemoryHistory` and :class:`MemoryPresence` live and die with the process: epochs are
random per stream, so a new process (a new store) always starts new epochs and never lets an
old position "recover" against different publications.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from wshub.exceptions import InvalidState
from wshub.hub.backends.base import (
    AppendResult,
    BrokerCallback,
    Recovery,
    check_limits,
    new_epoch,
    recoverable,
)
from wshub.hub.wire import ClientInfo, Position, StoredPublication

__all__ = ["MemoryBroker", "MemoryHistory", "MemoryPresence"]

logger = logging.getLogger("wshub.broker")


# --- broker -------------------------------------------------------------------------------


class MemoryBroker:
    """The reference :class:`~.base.Broker`: delivers payloads to callbacks in this process."""

    def __init__(self) -> None:
        # A dict keeps insertion order and makes double subscription a no-op.
        self._subscribers: dict[str, dict[BrokerCallback, None]] = {}
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidState("broker is closed")

    async def publish(self, channel: str, payload: bytes) -> None:
        self._check_open()
        callbacks = self._subscribers.get(channel)
        if not callbacks:
            return
        # Copy: a callback may subscribe or unsubscribe while we iterate.
        for callback in list(callbacks):
            try:
                callback(channel, payload)
            except Exception:
                logger.exception("broker callback failed for channel %s", channel)

    async def subscribe(self, channel: str, callback: BrokerCallback) -> None:
        self._check_open()
        self._subscribers.setdefault(channel, {})[callback] = None

    async def unsubscribe(self, channel: str, callback: BrokerCallback) -> None:
        callbacks = self._subscribers.get(channel)
        if callbacks is None:
            return
        callbacks.pop(callback, None)
        if not callbacks:
            del self._subscribers[channel]

    async def close(self) -> None:
        self._closed = True
        self._subscribers.clear()


# --- history ------------------------------------------------------------------------------


#: The publications of a stream that has none yet, shared by all of them: an empty deque
#: costs about 760 bytes, and a hub has one stream per channel subscribed to (a personal
#: channel per connection), most never published to. ``maxlen=0``: never appended to;
#: :meth:`MemoryHistory.append` gives a stream its own deque first.
_NO_PUBS: deque[StoredPublication] = deque(maxlen=0)


@dataclass(slots=True)
class _Stream:
    epoch: str
    top: int = 0
    ttl: float | None = None
    updated: float = 0.0
    pubs: deque[StoredPublication] = field(default_factory=lambda: _NO_PUBS)
    #: message ids seen (``None`` until the first publication with one)
    dedupe: OrderedDict[str, tuple[int, float]] | None = None


class MemoryHistory:
    """The reference :class:`~.base.HistoryStore`, in process memory.

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
        check_limits(size)
        now = self._clock()
        stream = self._stream(channel)
        dedupe = stream.dedupe
        if message_id is not None:
            if dedupe is None:
                dedupe = stream.dedupe = OrderedDict()
            cutoff = now - self._dedupe_window
            while dedupe:
                oldest = next(iter(dedupe.values()))
                if oldest[1] >= cutoff:
                    break
                dedupe.popitem(last=False)
            seen = dedupe.get(message_id)
            if seen is not None:
                return AppendResult(Position(seen[0], stream.epoch), None)
        stream.top += 1
        stream.updated = now
        stream.ttl = ttl
        pub = StoredPublication(stream.top, now, data, info)
        if size > 0:
            if stream.pubs is _NO_PUBS:
                stream.pubs = deque()
            stream.pubs.append(pub)
        while len(stream.pubs) > size:
            stream.pubs.popleft()
        self._trim_age(stream, now)
        if dedupe is not None and message_id is not None:
            dedupe[message_id] = (stream.top, now)
            if len(dedupe) > self._max_dedupe:
                dedupe.popitem(last=False)
        return AppendResult(Position(stream.top, stream.epoch), pub)

    async def since(self, channel: str, offset: int, epoch: str, *, limit: int) -> Recovery:
        check_limits(0, limit)
        stream = self._stream(channel)
        self._trim_age(stream, self._clock())
        position = Position(stream.top, stream.epoch)
        first = stream.pubs[0].offset if stream.pubs else stream.top + 1
        if not recoverable(position, offset, epoch, first):
            return Recovery((), False, position)
        start = max(0, offset + 1 - first)
        pubs = [stream.pubs[i] for i in range(start, min(len(stream.pubs), start + limit))]
        return Recovery(pubs, True, position)

    async def latest(self, channel: str, *, limit: int) -> tuple[list[StoredPublication], Position]:
        check_limits(0, limit)
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


# --- presence -----------------------------------------------------------------------------


class MemoryPresence:
    """The reference :class:`~.base.PresenceStore`, in process memory."""

    def __init__(self) -> None:
        self._channels: dict[str, dict[str, ClientInfo]] = {}

    async def add(self, channel: str, info: ClientInfo) -> None:
        self._channels.setdefault(channel, {})[info.client] = info

    async def remove(self, channel: str, client: str) -> bool:
        entries = self._channels.get(channel)
        if entries is None or entries.pop(client, None) is None:
            return False
        if not entries:
            del self._channels[channel]
        return True

    async def get(self, channel: str) -> list[ClientInfo]:
        return list(self._channels.get(channel, {}).values())

    async def close(self) -> None:
        self._channels.clear()
