"""The hub's Redis client opens one socket per connection object, however many tasks
connect it at once.

redis-py lets two tasks connect the same connection: a failed ``PubSub`` command
reconnects the subscriber connection from the caller's task while the broker's reader
reconnects it too. The second socket replaced the first, which was never closed (a leaked
transport, an unraisable ``ResourceWarning`` once collected, seen during Redis outages).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from wshub.hub.backends.redis.connection import close_client, redis_client
from wshub.testing import RedisServer

pytestmark = pytest.mark.redis


async def test_two_tasks_connecting_one_connection_open_one_socket(redis: RedisServer) -> None:
    client = redis_client(redis.url)
    try:
        connection: Any = client.connection_pool.make_connection()
        await asyncio.gather(*(connection.connect() for _ in range(4)))
        # This connection and the pooled one that asks: no third, leaked socket.
        assert len(await client.client_list()) == 2
        await connection.disconnect()
        assert len(await client.client_list()) == 1
    finally:
        await close_client(client)


class Reconnecting:
    """A connect callback that connects its connection again (as a PubSub's re-subscribe
    does when its command fails): from the task already connecting, it must not wait on
    itself."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.calls = 0

    async def on_connect(self, connection: Any) -> None:
        self.calls += 1
        await self.connection.connect()


async def test_a_connect_callback_may_connect_again(redis: RedisServer) -> None:
    client = redis_client(redis.url)
    try:
        connection: Any = client.connection_pool.make_connection()
        callback = Reconnecting(connection)
        connection.register_connect_callback(callback.on_connect)
        async with asyncio.timeout(30):  # fails instead of hanging on its own lock
            await connection.connect()
        assert callback.calls == 1 and connection.is_connected
        assert len(await client.client_list()) == 2
        await connection.disconnect()
    finally:
        await close_client(client)
