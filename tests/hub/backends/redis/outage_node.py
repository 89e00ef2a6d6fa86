"""A hub node on Redis with timeouts short enough for outage tests, and how to cut Redis.

The node's stores are built here instead of by ``start_hub(redis_url=...)`` so that an outage
shows within a fraction of a second (subscribe timeout, heartbeat, broker backoff) instead of
the production defaults' seconds. Shared by tests/hub/test_outage.py and the wshub.js tests.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from wshub.hub import ChannelRegistry, Hub, HubLimits
from wshub.hub.auth import Authenticator
from wshub.hub.backends.redis import RedisBroker, RedisHistory, RedisPresence
from wshub.hub.backends.redis.connection import close_client, redis_client
from wshub.hub.server import HubServer, start_hub

from .redis_proxy import RedisProxy


@contextlib.asynccontextmanager
async def redis_node(
    url: str,
    registry: ChannelRegistry,
    permissions: Sequence[str],
    *,
    prefix: str = "outage",
    start: Any = None,
) -> AsyncIterator[HubServer]:
    """A hub node on the Redis at ``url``, anonymous clients allowed ``permissions``.

    ``start(hub=...)`` starts the server (an async context manager yielding it, e.g. the
    chat tests' ``running_chat``); by default ``start_hub`` on a free loopback port.
    """
    client = redis_client(url, connect_timeout=0.5, command_timeout=0.5)
    hub = Hub(
        registry=registry,
        history=RedisHistory(client, prefix=prefix),
        broker=RedisBroker(
            client, prefix=prefix, subscribe_timeout=0.3, backoff_initial=0.02, backoff_max=0.1
        ),
        presence=RedisPresence(client, prefix=prefix, ttl=30.0, heartbeat_interval=0.1),
        auth=Authenticator(allow_anonymous=True, anonymous_permissions=tuple(permissions)),
        limits=HubLimits(command_rate=None, publish_rate=None),
    )
    try:
        if start is None:
            async with await start_hub("127.0.0.1", 0, hub=hub, compression=None) as server:
                yield server
        else:
            async with start(hub=hub) as server:
                yield server
    finally:
        for store in (hub.history_store, hub.broker, hub.presence_store):
            await store.close()
        await close_client(client)


def down(proxy: RedisProxy) -> None:
    """Redis becomes unreachable: new connections are refused, current ones dropped."""
    proxy.point_to(None)
    proxy.cut()
