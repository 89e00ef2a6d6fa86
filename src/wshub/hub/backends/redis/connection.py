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
from typing import Any, cast
from urllib.parse import urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import (
    MasterNotFoundError,
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
)
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from wshub.exceptions import HubError
from wshub.hub.backends.base import DEFAULT_PREFIX
from wshub.hub.redis_url import SentinelURL, is_sentinel_url
from wshub.hub.wire import ErrorCode

__all__ = [
    "DEFAULT_PREFIX",
    "Availability",
    "check_server",
    "close_client",
    "describe_url",
    "lua_script",
    "on_old_master",
    "raise_if_cancelled",
    "redis_client",
    "unavailable",
]


class _OneConnectAtATime:
    """A connection that opens one socket at a time.

    redis-py lets two tasks connect the same connection object at once: a ``PubSub``
    command that fails reconnects the subscriber connection from the caller's task while
    the broker's reader reconnects it too. Both open a socket, the second replaces the
    first, and the first is never closed (a leaked socket and transport, reported when it
    is collected). Here a second connect waits for the first, then finds it connected.
    """

    _connect_lock: asyncio.Lock | None = None
    _connect_owner: asyncio.Task[Any] | None = None

    async def connect_check_health(self, *args: Any, **kwargs: Any) -> None:
        parent = cast(Any, super())  # redis-py's connection class, next in the MRO
        task = asyncio.current_task()
        if task is not None and task is self._connect_owner:
            # Connecting already (e.g. a re-subscribe that fails inside the connect).
            await parent.connect_check_health(*args, **kwargs)
            return
        if self._connect_lock is None:
            self._connect_lock = asyncio.Lock()
        async with self._connect_lock:
            self._connect_owner = task
            try:
                await parent.connect_check_health(*args, **kwargs)
            finally:
                self._connect_owner = None


class _TCPConnection(_OneConnectAtATime, Connection):
    """A TCP connection, one connect at a time."""


class _SSLConnection(_OneConnectAtATime, SSLConnection):
    """A TLS connection, one connect at a time."""


class _UnixConnection(_OneConnectAtATime, UnixDomainSocketConnection):
    """A Unix socket connection, one connect at a time."""


_ONE_AT_A_TIME: dict[type[Any], type[Any]] = {
    Connection: _TCPConnection,
    SSLConnection: _SSLConnection,
    UnixDomainSocketConnection: _UnixConnection,
}


class _SentinelConnection(_OneConnectAtATime, SentinelManagedConnection):
    """A connection to the master Sentinel names, dropped when that master refuses writes
    for lack of replicas (``NOREPLICAS``, with ``min-replicas-to-write``).

    redis-py already drops a connection whose server turned into a replica (``READONLY``).
    Right after a failover the old master is still a master for a few seconds, until the
    sentinels reconfigure it: with ``min-replicas-to-write`` it refuses writes then, and a
    connection kept to it would keep failing. Dropped, the next connection asks the
    sentinels and reaches the new master.
    """

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().read_response(*args, **kwargs)
        except ResponseError as exc:
            if str(exc).startswith("NOREPLICAS"):
                await self.disconnect()
            raise


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Connections to the master Sentinel names, bounded and blocking as the plain pool.

    :class:`SentinelConnectionPool` asks the sentinels for the master's address before
    each new connection and drops idle connections when the address changed; a connection
    still open to a master that was demoted fails its next write (``READONLY``) and is
    dropped. :class:`BlockingConnectionPool` adds the bound on connections and the bounded
    wait for a free one.
    """


def redis_client(
    url: str,
    *,
    max_connections: int = 32,
    connect_timeout: float | None = 5.0,
    command_timeout: float | None = 5.0,
    sentinel_password: str | None = None,
) -> Redis:
    """A Redis client for the hub's stores and broker.

    Args:
        url: ``redis://[user:password@]host:port/db``, ``rediss://`` (TLS),
            ``unix:///path/to/socket``, or
            ``redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]``
            (the master of ``service`` as the sentinels name it, followed across
            failovers; see :mod:`wshub.hub.redis_url`).
        max_connections: connections in the pool at most; a command waits (at most
            ``command_timeout``) for a free one. The broker's subscriber holds one for good.
        connect_timeout: seconds to open a connection; ``None`` waits forever.
        command_timeout: seconds for one command, and to wait for a pooled connection;
            ``None`` waits forever (not advised: a stuck Redis would stall publishers).
        sentinel_password: the sentinels' password (``requirepass`` in their
            configuration); ``None``: they need none. Only with a sentinel URL.

    Raises:
        ValueError: ``url`` is not a Redis URL.
    """
    if max_connections < 1:
        raise ValueError("max_connections must be >= 1")
    options: dict[str, Any] = {
        "max_connections": max_connections,
        "timeout": command_timeout,
        "socket_connect_timeout": connect_timeout,
        "socket_timeout": command_timeout,
        "retry": Retry(NoBackoff(), 0),
    }
    if not is_sentinel_url(url):
        if sentinel_password is not None:
            raise ValueError("sentinel_password: only for a redis+sentinel:// URL")
        plain = BlockingConnectionPool.from_url(url, **options)
        plain.connection_class = _ONE_AT_A_TIME[plain.connection_class]
        return Redis(connection_pool=plain)
    parsed = SentinelURL.parse(url)
    sentinels = Sentinel(
        parsed.sentinels,
        sentinel_kwargs={
            "password": sentinel_password,
            "socket_connect_timeout": connect_timeout,
            "socket_timeout": command_timeout,
        },
    )
    pool = cast(Any, _BlockingSentinelPool)(  # untyped in redis-py
        parsed.service,
        sentinels,
        db=parsed.db,
        username=parsed.username,
        password=parsed.password,
        connection_class=_SentinelConnection,
        check_connection=False,
        **options,
    )
    return Redis(connection_pool=pool)


async def on_old_master(client: Redis, connection: Any) -> bool:
    """Whether ``connection`` (of ``client``'s pool) is open to a server the sentinels no
    longer name as the master; always ``False`` without Sentinel.

    A subscriber connection needs this check: after a failover the old master stays a
    master for a few seconds, and a connection left on it hears nothing published on the
    new one. Asks the sentinels (one command); when none answers, the connection is
    kept (``False``): the master may well be fine.
    """
    pool = client.connection_pool
    if not isinstance(pool, SentinelConnectionPool) or connection is None:
        return False
    try:
        master = await pool.sentinel_manager.discover_master(pool.service_name)
    except RedisError:
        raise_if_cancelled()
        return False
    return bool((connection.host, connection.port) != master)


async def check_server(client: Redis, shown: str) -> None:
    """Check that ``client`` reaches a Redis the hub can use (``shown`` names it).

    Raises:
        ValueError: the Redis runs in cluster mode (unsupported: docs/deployment.md), or
            no sentinel knows the service of a sentinel URL.
        ConnectionError: Redis (or every sentinel) does not answer.
    """
    pool = client.connection_pool
    try:
        info = await client.info("cluster")
    except MasterNotFoundError as exc:
        if isinstance(pool, SentinelConnectionPool) and await _sentinel_answers(pool):
            raise ValueError(
                f"no sentinel at {shown} monitors a master named {pool.service_name!r}"
            ) from exc
        raise ConnectionError(f"cannot reach any sentinel at {shown}: {exc}") from exc
    except RedisError as exc:
        raise ConnectionError(f"cannot reach Redis at {shown}: {exc}") from exc
    if str(info.get("cluster_enabled", 0)) == "1":
        raise ValueError(
            f"the Redis at {shown} runs in cluster mode, which wshub does not support "
            "(docs/deployment.md, Redis in production)"
        )


async def _sentinel_answers(pool: SentinelConnectionPool) -> bool:
    """Whether one of the sentinels of ``pool`` answers (so a master's name is wrong)."""
    for sentinel in pool.sentinel_manager.sentinels:
        try:
            await sentinel.ping()
        except RedisError:
            continue
        return True
    return False


async def close_client(client: Redis) -> None:
    """Close ``client`` and every connection of its pool (and of its sentinels)."""
    pool = client.connection_pool
    await pool.disconnect()
    if isinstance(pool, SentinelConnectionPool):
        await pool.sentinel_manager.aclose()


def lua_script(*names: str) -> str:
    """The Lua source made of ``lua/<name>.lua`` for each name, in order.

    The scripts ship as package data, one file each, so that they can be read (and
    linted) as Lua; a store prepends the shared functions its scripts use.
    """
    folder = resources.files(__package__).joinpath("lua")
    return "\n".join(folder.joinpath(f"{name}.lua").read_text(encoding="utf-8") for name in names)


def describe_url(url: str) -> str:
    """``url`` without its credentials, for logs and messages."""
    if is_sentinel_url(url):
        return SentinelURL.parse(url).describe()
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    host = parts.hostname or "localhost"
    port = parts.port or 6379
    return f"{parts.scheme}://{host}:{port}{parts.path}"


def unavailable() -> HubError:
    """The error for a command refused because Redis is unavailable: code 100, temporary
    (the client retries it; docs/protocol.md §6)."""
    return HubError(ErrorCode.INTERNAL, ErrorCode.INTERNAL.message, temporary=True)


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
    """Turns Redis failures into a temporary error 100 and logs only when Redis comes and goes.

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
        return unavailable()

    def succeeded(self) -> None:
        """Record a success."""
        if not self._up:
            self._up = True
            self._logger.info("%s: Redis available again", self._what)
