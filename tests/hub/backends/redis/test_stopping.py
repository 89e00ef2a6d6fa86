"""Stopping a node's background loops while one of their Redis commands is under way.

On Python 3.11, redis-py sends a command inside ``asyncio.wait_for``, which returns the
command's result instead of raising when the task is cancelled just as the write completes:
the cancellation is lost. A loop that relied on ``cancel()`` alone then went on forever and
the ``close()`` awaiting it never returned (a test run that hung until CI's own limit).

Each test stops a loop after a growing number of event-loop turns, so that the cancellation
lands at every stage of a command on a fresh connection (connecting, handshaking, sending,
reading the reply); whatever the stage, ``close()`` returns and the loop's task is over.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from wshub.hub import Hub
from wshub.hub.backends.redis import RedisBroker, RedisHistory
from wshub.hub.backends.redis.connection import close_client, redis_client
from wshub.hub.nodes import NodeDirectory
from wshub.testing import RedisServer

pytestmark = pytest.mark.redis

TURNS = range(40)  # event-loop turns before the stop; a command takes about 20 on loopback


def running(name: str) -> list[asyncio.Task[Any]]:
    """The tasks still running the coroutine function ``name``."""
    tasks = asyncio.all_tasks()
    return [t for t in tasks if cast_coro(t).__qualname__ == name and not t.done()]


def cast_coro(task: asyncio.Task[Any]) -> Coroutine[Any, Any, Any]:
    coro = task.get_coro()
    assert isinstance(coro, Coroutine)
    return coro


async def stops(close: Coroutine[Any, Any, None]) -> None:
    """Run ``close``; fail instead of hanging if it never returns (a generous guard against
    the hang, not a speed check: cancelling a close would not do, it waits on)."""
    task = asyncio.ensure_future(close)
    done, _ = await asyncio.wait({task}, timeout=30)
    assert done == {task}, "close() did not return"
    task.result()


async def turns(count: int) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


async def test_a_node_directory_stops_whatever_its_report_is_doing(
    redis: RedisServer, prefix: str
) -> None:
    for count in TURNS:
        client = redis_client(redis.url)  # a fresh pool: the first report connects
        hub = Hub(broker=RedisBroker(client, prefix=prefix), expire_interval=None)
        directory = NodeDirectory(hub, report_interval=0.01)
        try:
            await directory.start()
            await turns(count)
            await stops(directory.close())
            assert running("NodeDirectory._report_loop") == [], f"after {count} turns"
        finally:
            await hub.close()
            await hub.broker.close()
            await close_client(client)


async def test_a_hub_stops_whatever_its_history_expiry_is_doing(
    redis: RedisServer, prefix: str
) -> None:
    for count in TURNS:
        client = redis_client(redis.url)
        history = RedisHistory(client, prefix=prefix)
        hub = Hub(history=history, expire_interval=1e-6)  # sweeping all the time
        try:
            await hub.start()
            await turns(count)
            await stops(hub.close())
            assert running("Hub._expire_loop") == [], f"after {count} turns"
        finally:
            await history.close()
            await close_client(client)
