"""The Redis backend: broker, history and presence shared by every node of a hub.

One module per interface (:mod:`.broker`, :mod:`.history`, :mod:`.presence`), what they share
in :mod:`.connection`, the Lua scripts in ``lua/``. Importing this package needs the optional
``redis`` dependency (``pip install 'wshub[redis]'``); :func:`wshub.hub.backends.open_stores`
builds all three on one connection pool.
"""

from __future__ import annotations

from wshub.hub.backends.redis.broker import BrokerStatistics, RedisBroker
from wshub.hub.backends.redis.connection import describe_url, redis_client
from wshub.hub.backends.redis.history import RedisHistory
from wshub.hub.backends.redis.presence import RedisPresence

__all__ = [
    "BrokerStatistics",
    "RedisBroker",
    "RedisHistory",
    "RedisPresence",
    "describe_url",
    "redis_client",
]
