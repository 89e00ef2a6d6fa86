"""What the Redis broker and stores share: the client, the Lua scripts, failure reporting.

Redis is an optional dependency (``pip install wshub[redis]``); only this package imports
it, so a hub without Redis never needs it.

The client is built for a hub, not for a script:

* every wait is bounded: connecting (``connect_timeout``), each command
  (``command_timeout``) and waiting for a free pooled connection (the same bound), so a slow
  or dead Redis turns into an error reply (code 100), never into a hub that hangs;
* the pool is bounded (``max_connections``) and blocks for a free connection instead of
  opening more, so a burst cannot open thousands of sockets to Redis;
* commands are never retried by the client: a write that reached Redis before the
  connection broke would otherwise run twice (a second offset for one publication). The
  caller sees the failure; a client retries a publish with its ``message_id``.
"""

from __future__ import annotations

import asyncio
import logging
from importlib import resources
from urllib.parse import urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from wshub.exceptions import HubError
from wshub.hub.backends.base import DEFAULT_PREFIX
from wshub.hub.wire import ErrorCode

__all__ = [
    "DEFAULT_PREFIX",
    "Availability",
    "close_client",
    "describe_url",
    "lua_script",
    "raise_if_cancelled",
    "redis_client",
]


def redis_client(
    url: str,
    *,
    max_connections: int = 32,
    connect_timeout: float | None = 5.0,
    command_timeout: float | None = 5.0,
) -> Redis:
    """A Redis client for the hub's stores and broker.

    Args:
        url: ``redis://[user:password@]host:port/db``, ``rediss://`` (TLS) or
            ``unix:///path/to/socket``.
        max_connections: connections in the pool at most; a command waits (at most
            ``command_timeout``) for a free one. The broker's subscriber holds one for good.
        connect_timeout: seconds to open a connection; ``None`` waits forever.
        command_timeout: seconds for one command, and to wait for a pooled connection;
            ``None`` waits forever (not advised: a stuck Redis would stall publishers).

    Raises:
        ValueError: ``url`` is not a Redis URL.
    """
    if max_connections < 1:
        raise ValueError("max_connections must be >= 1")
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=command_timeout,
        socket_connect_timeout=connect_timeout,
        socket_timeout=command_timeout,
        retry=Retry(NoBackoff(), 0),
    )
    return Redis(connection_pool=pool)


async def close_client(client: Redis) -> None:
    """Close ``client`` and every connection of its pool."""
    await client.connection_pool.disconnect()


def lua_script(*names: str) -> str:
    """The Lua source made of ``lua/<name>.lua`` for each name, in order.

    The scripts ship as package data, one file each, so that they can be read (and
    linted) as Lua; a store prepends the shared functions its scripts use.
    """
    folder = resources.files(__package__).joinpath("lua")
    return "\n".join(folder.joinpath(f"{name}.lua").read_text(encoding="utf-8") for name in names)


def describe_url(url: str) -> str:
    """``url`` without its credentials, for logs and messages."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    host = parts.hostname or "localhost"
    port = parts.port or 6379
    return f"{parts.scheme}://{host}:{port}{parts.path}"


def raise_if_cancelled() -> None:
    """Raise :class:`asyncio.CancelledError` if the current task is being cancelled.

    Call it where a Redis error is caught. A cancellation that arrives just as the
    connection breaks can come out of redis-py as a ``ConnectionError``; handled as a
    failure, it would be lost, and a task being stopped (a reader, a hub's expiry loop)
    would carry on as if nothing had been asked of it.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class Availability:
    """Turns Redis failures into error 100 and logs only when Redis comes and goes.

    During an outage every command fails; logging each failure would flood the log, so
    only the first failure (warning) and the first success after it (info) are logged.

    Args:
        logger: where to log.
        what: names the component in the messages (``"history"``, ``"broker"``, ...).
    """

    __slots__ = ("_logger", "_up", "_what")

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self._logger = logger
        self._what = what
        self._up = True

    @property
    def up(self) -> bool:
        """Whether the last command succeeded."""
        return self._up

    def failed(self, exc: BaseException) -> HubError:
        """Record a failure; returns the error to raise (``raise ... from exc``).

        Raises:
            asyncio.CancelledError: the task is being cancelled (see
                :func:`raise_if_cancelled`): that is what happened, not a Redis failure.
        """
        raise_if_cancelled()
        if self._up:
            self._up = False
            self._logger.warning("%s: Redis unavailable: %s", self._what, exc)
        else:
            self._logger.debug("%s: Redis still unavailable: %s", self._what, exc)
        return HubError(ErrorCode.INTERNAL, ErrorCode.INTERNAL.message)

    def succeeded(self) -> None:
        """Record a success."""
        if not self._up:
            self._up = True
            self._logger.info("%s: Redis available again", self._what)
