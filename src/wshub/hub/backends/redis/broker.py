"""The Redis broker: fan-out between hub nodes through Redis Pub/Sub (:class:`RedisBroker`).

Topology: each node holds **one** subscriber connection to Redis and, on it, one
``SUBSCRIBE`` per channel that has local subscribers (``<prefix>:pub:<channel>``);
publishing is a ``PUBLISH`` on the pooled connections. Redis then sends each publication
only to the nodes that have subscribers of its channel, on one socket per node. The
alternatives were rejected:

* one pattern subscription (``PSUBSCRIBE <prefix>:pub:*``) would send every publication to
  every node, whatever its subscribers: traffic grows with nodes times all channels;
* sharded Pub/Sub (``SSUBSCRIBE``, Redis 7) only pays off on Redis Cluster, which the
  history store does not support (its scripts span keys of several slots).

Order and delivery. Redis delivers the messages of a connection in the order it executed
the ``PUBLISH`` commands, so publications of one channel arrive in publish order. Pub/Sub
keeps nothing: while the subscriber connection is down, publications are not delivered to
this node. The hub is built for that: every publication has an offset in the history
store, so a subscriber sees a jump in offsets (which :class:`~wshub.hub.client.HubClient`
and wshub.js fill from history) or a new epoch (Redis lost its data), never a silent gap.

Reconnection. A reader task owns the subscriber connection. When it breaks (or stays
silent for ``ping_interval + ping_timeout`` seconds, or, with Sentinel, is found every
``ping_interval`` seconds to be on a server the sentinels no longer name as the master:
after a failover the old master stays one for a few seconds) the task reconnects with exponential
backoff and full jitter, subscribes again to every channel with local subscribers, and
carries on; :meth:`RedisBroker.subscribe` calls made meanwhile wait (at most
``subscribe_timeout``) until their channel is subscribed again. Publications made while
the connection was down never arrive (another node's pooled connection, or the new master
after a failover, can accept them well before this node is subscribed again): once Redis
confirms a channel on the new connection, its callbacks get an empty payload, the
:class:`~wshub.hub.backends.base.Broker` signal that the hub must catch up from history.

Nothing here blocks the event loop: callbacks run on the reader task as messages arrive,
every command has a timeout, and the connection pool is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from wshub.exceptions import InvalidState
from wshub.hub.backends.base import DEFAULT_PREFIX, BrokerCallback
from wshub.hub.backends.redis.connection import (
    Availability,
    close_client,
    on_old_master,
    raise_if_cancelled,
    redis_client,
    unavailable,
)

__all__ = ["BrokerStatistics", "RedisBroker"]

logger = logging.getLogger("wshub.broker")


@dataclass(frozen=True, slots=True)
class BrokerStatistics:
    """Counters of a :class:`RedisBroker`, for monitoring.

    Attributes:
        connected: whether the subscriber connection is up and every channel subscribed.
        channels: channels with local subscribers.
        reconnects: subscriber connections re-established after a loss.
        published: payloads published.
        delivered: payloads received from Redis for local subscribers.
    """

    connected: bool
    channels: int
    reconnects: int
    published: int
    delivered: int


class _Channel:
    """One channel with local subscribers."""

    __slots__ = ("callbacks", "name", "ready")

    def __init__(self, name: str) -> None:
        self.name = name
        self.callbacks: dict[BrokerCallback, None] = {}
        # Set while Redis delivers the channel to this node.
        self.ready = asyncio.Event()


class RedisBroker:
    """A :class:`~wshub.hub.backends.base.Broker` on Redis Pub/Sub, for several hub nodes.

    Args:
        redis: a Redis URL (the broker then owns a client made by
            :func:`~.connection.redis_client`) or a client to share (not closed
            by :meth:`close`; the subscriber connection is taken from its pool).
        prefix: the first part of every Pub/Sub channel name; hubs with different prefixes
            do not hear each other.
        subscribe_timeout: seconds :meth:`subscribe` waits for Redis to confirm (longer
            while Redis is unreachable) before it fails with error 100.
        ping_interval: seconds of silence on the subscriber connection after which the
            broker sends a ``PING``; ``None`` disables the check (a half-open connection is
            then only noticed by the operating system).
        ping_timeout: seconds to wait for the answer before the connection is dropped and
            made again.
        backoff_initial: seconds, the first reconnection delay bound (the delay is random
            between 0 and the bound).
        backoff_max: seconds, the largest delay bound; it doubles after each failure.

    Raises:
        ValueError: a timeout or delay is out of range.
    """

    def __init__(
        self,
        redis: str | Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        subscribe_timeout: float = 5.0,
        ping_interval: float | None = 5.0,
        ping_timeout: float = 5.0,
        backoff_initial: float = 0.05,
        backoff_max: float = 5.0,
    ) -> None:
        if subscribe_timeout <= 0 or ping_timeout <= 0:
            raise ValueError("subscribe_timeout and ping_timeout must be > 0")
        if ping_interval is not None and ping_interval <= 0:
            raise ValueError("ping_interval must be > 0 or None")
        if not 0 <= backoff_initial <= backoff_max:
            raise ValueError("need 0 <= backoff_initial <= backoff_max")
        self._owns_client = isinstance(redis, str)
        self._client = redis_client(redis) if isinstance(redis, str) else redis
        self._prefix = f"{prefix}:pub:".encode()
        self._subscribe_timeout = subscribe_timeout
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._channels: dict[bytes, _Channel] = {}  # by Redis channel name
        # SUBSCRIBE/UNSUBSCRIBE sent on the current connection and not yet confirmed, per
        # Redis channel: a channel is delivered once its last command is confirmed.
        self._inflight: dict[bytes, int] = {}
        # The channels a new connection subscribed to and Redis has not confirmed yet.
        self._resubscribing: set[bytes] = set()
        # Channels that were delivered on a connection that broke: their callbacks are told
        # (an empty payload) once they are delivered again.
        self._missed: set[bytes] = set()
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._connected = False
        self._health = Availability(logger, "broker")
        self._reconnects = self._published = self._delivered = 0
        self._closed = False

    def _key(self, channel: str) -> bytes:
        return self._prefix + channel.encode()

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidState("broker is closed")

    @property
    def connected(self) -> bool:
        """Whether the subscriber connection is up and every channel subscribed."""
        return self._connected

    def statistics(self) -> BrokerStatistics:
        """A snapshot of the broker's counters."""
        return BrokerStatistics(
            connected=self._connected,
            channels=len(self._channels),
            reconnects=self._reconnects,
            published=self._published,
            delivered=self._delivered,
        )

    # --- the Broker interface --------------------------------------------------------------

    async def publish(self, channel: str, payload: bytes) -> None:
        """``PUBLISH`` ``payload``; it reaches every node subscribed to ``channel``.

        Raises:
            HubError: code 100 when Redis fails or does not answer in time.
            InvalidState: the broker is closed.
        """
        self._check_open()
        try:
            await self._client.publish(self._key(channel), payload)
        except RedisError as exc:
            raise self._health.failed(exc) from exc
        self._health.succeeded()
        self._published += 1

    async def subscribe(self, channel: str, callback: BrokerCallback) -> None:
        """Deliver ``channel`` to ``callback``; returns once Redis confirmed the subscription.

        Raises:
            HubError: code 100 when Redis did not confirm within ``subscribe_timeout``
                (``callback`` is then not subscribed).
            InvalidState: the broker is closed.
        """
        self._check_open()
        key = self._key(channel)
        state = self._channels.get(key)
        if state is None:
            state = self._channels[key] = _Channel(channel)
            state.callbacks[callback] = None
            await self._send("SUBSCRIBE", key)
        else:
            state.callbacks[callback] = None
        if self._reader is None:
            self._reader = asyncio.get_running_loop().create_task(self._run())
        try:
            await asyncio.wait_for(state.ready.wait(), self._subscribe_timeout)
        except TimeoutError as exc:
            await self.unsubscribe(channel, callback)
            logger.warning("subscribing to %s timed out", channel)
            raise unavailable() from exc
        except asyncio.CancelledError:
            await self.unsubscribe(channel, callback)  # the caller never saw it subscribed
            raise

    async def unsubscribe(self, channel: str, callback: BrokerCallback) -> None:
        key = self._key(channel)
        state = self._channels.get(key)
        if state is None or callback not in state.callbacks:
            return
        del state.callbacks[callback]
        if not state.callbacks:
            del self._channels[key]
            self._missed.discard(key)
            await self._send("UNSUBSCRIBE", key)

    async def close(self) -> None:
        """Stop delivering, drop the subscriber connection, close an owned client."""
        if self._closed:
            return
        self._closed = True
        self._channels.clear()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._owns_client:
            await close_client(self._client)

    # --- the subscriber connection ---------------------------------------------------------

    async def _send(self, command: str, key: bytes) -> None:
        """Send (UN)SUBSCRIBE on the current connection; the reconnection covers a failure."""
        pubsub = self._pubsub
        connection = None if pubsub is None else pubsub.connection
        if pubsub is None or connection is None or not connection.is_connected:
            # Lost (the reader is reconnecting): reconnecting here as well would race it
            # on the same connection. The next connection subscribes to what is wanted then.
            return
        self._inflight[key] = self._inflight.get(key, 0) + 1
        try:
            if command == "SUBSCRIBE":
                await pubsub.subscribe(key)
            else:
                await pubsub.unsubscribe(key)
        except (RedisError, RuntimeError) as exc:
            # RuntimeError: the connection broke and the reader is reading it again.
            raise_if_cancelled()
            logger.debug("%s failed, the reader reconnects: %s", command, exc)

    async def _run(self) -> None:
        """Keep a subscriber connection, reconnecting with backoff; ends with :meth:`close`."""
        failures = 0
        while not self._closed:
            pubsub = self._client.pubsub()
            try:
                await self._open(pubsub)
                if failures:
                    self._reconnects += 1
                    logger.info("broker: reconnected to Redis")
                failures = 0
                await self._read(pubsub)
            except (RedisError, OSError, TimeoutError) as exc:
                raise_if_cancelled()
                if failures == 0:
                    logger.warning("broker: lost Redis, reconnecting: %s", exc)
                failures += 1
            except Exception:
                raise_if_cancelled()
                # Not a connection problem: log it in full, but keep the node delivering.
                logger.exception("broker: subscriber connection failed, reconnecting")
                failures += 1
            finally:
                self._lost()
                with contextlib.suppress(Exception):
                    await cast(Any, pubsub).aclose()  # untyped in redis-py
            bound = min(self._backoff_max, self._backoff_initial * 2 ** min(failures - 1, 30))
            await asyncio.sleep(random.uniform(0, bound))

    async def _open(self, pubsub: PubSub) -> None:
        await cast(Any, pubsub).connect()  # untyped in redis-py
        # From here on, subscribe() sends its own SUBSCRIBE; what is wanted now is sent below.
        self._pubsub = pubsub
        keys = list(self._channels)
        for key in keys:
            self._inflight[key] = 1
        self._resubscribing = set(keys)
        self._connected = not keys
        for start in range(0, len(keys), 1000):
            await pubsub.subscribe(*keys[start : start + 1000])

    def _lost(self) -> None:
        self._pubsub = None
        self._connected = False
        self._inflight.clear()
        self._resubscribing.clear()
        for key, state in self._channels.items():
            if state.ready.is_set():
                self._missed.add(key)
            state.ready.clear()

    async def _read(self, pubsub: PubSub) -> None:
        pinged = False
        checked = asyncio.get_running_loop().time()
        while True:
            if self._ping_interval is None:
                message = await pubsub.get_message(timeout=None)
            else:
                wait = self._ping_timeout if pinged else self._ping_interval
                message = await pubsub.get_message(timeout=wait)
                now = asyncio.get_running_loop().time()
                if now - checked >= self._ping_interval:
                    # With Sentinel, a connection left on a demoted master hears nothing.
                    checked = now
                    if await on_old_master(self._client, pubsub.connection):
                        raise ConnectionError("the sentinels name another master")
                if message is None:
                    if pinged:
                        raise TimeoutError("Redis did not answer PING")
                    await pubsub.ping()
                    pinged = True
                    continue
            pinged = False
            if message is None:
                continue
            kind = message["type"]
            if kind == "message":
                self._deliver(message["channel"], message["data"])
            elif kind == "subscribe" or kind == "unsubscribe":
                self._confirmed(message["channel"])

    def _confirmed(self, key: bytes) -> None:
        if self._resubscribing:
            self._resubscribing.discard(key)
            self._connected = not self._resubscribing
        count = self._inflight.get(key, 0) - 1
        if count > 0:
            self._inflight[key] = count
            return
        self._inflight.pop(key, None)
        # A channel that still has subscribers was last sent a SUBSCRIBE: it is live now.
        state = self._channels.get(key)
        if state is None:
            self._missed.discard(key)
            return
        state.ready.set()
        if key in self._missed:
            self._missed.discard(key)
            self._call(state, b"")

    def _deliver(self, key: bytes, payload: Any) -> None:
        state = self._channels.get(key)
        if state is None:
            return
        self._delivered += 1
        self._call(state, payload)

    def _call(self, state: _Channel, payload: Any) -> None:
        channel = state.name
        # Copy: a callback may subscribe or unsubscribe while we iterate.
        for callback in list(state.callbacks):
            try:
                callback(channel, payload)
            except Exception:
                logger.exception("broker callback failed for channel %s", channel)
