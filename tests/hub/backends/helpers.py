"""What the backend tests share: a fake clock, a recording broker callback, store factories."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from wshub.hub.backends import HistoryStore


class Clock:
    """Wall-clock time that moves only when a test moves it."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


#: ``factory(clock)`` -> a new store; several from one factory share their data where the
#: backend can (Redis: the nodes of one hub).
Factory = Callable[[Clock], HistoryStore]


def redis_history(url: str, prefix: str) -> Factory:
    """RedisHistory stores on one prefix: several nodes of one hub."""
    from wshub.hub.backends.redis import RedisHistory

    return lambda clock: RedisHistory(
        url, prefix=prefix, clock=clock, dedupe_window=60.0, idle_ttl=1000.0
    )


async def append(store: HistoryStore, channel: str, n: int, *, size: int = 100) -> None:
    for i in range(n):
        await store.append(channel, b"%d" % i, size=size, ttl=None)


class Inbox:
    """A broker callback that records deliveries and lets a test wait for a count.

    Deliveries may be asynchronous (a Redis broker delivers from a reader task), so tests
    wait for the expected number of messages instead of checking right after publish.
    """

    def __init__(self, *, fail: bool = False) -> None:
        self.received: list[tuple[str, bytes]] = []
        self._changed = asyncio.Event()
        self._fail = fail

    def __call__(self, channel: str, payload: bytes) -> None:
        self.received.append((channel, payload))
        self._changed.set()
        if self._fail:
            raise RuntimeError("callback bug")

    async def wait_for(self, count: int) -> list[tuple[str, bytes]]:
        while len(self.received) < count:
            self._changed.clear()
            await self._changed.wait()
        return self.received
