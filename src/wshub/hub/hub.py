"""The hub: channels, publications, fan-out, history, presence.

:class:`Hub` is transport-agnostic. A transport creates one :class:`~wshub.hub.session.Session`
per connection with :meth:`Hub.session` and feeds it messages; backends publish with
:meth:`Hub.publish` (the HTTP API is a thin layer over these methods).

Publishing goes store → broker → every node's local subscribers:

1. the history store assigns the next offset (and drops a duplicate ``message_id``), under a
   per-channel lock so that publications reach the broker in offset order;
2. the ``pub`` push is encoded **once** and handed to the broker in an envelope
   (:mod:`wshub.hub._fanout`);
3. on each node the fan-out gives the same ``str`` to every local subscription, which
   writes it or queues it (:mod:`wshub.hub._outbox`) without awaiting.

The hub is the :class:`~wshub.hub.host.SessionHost` of its sessions: the methods under
"session host" are what a session asks of it.

Recovery is race-free because a subscription is registered (buffering) *before* history is
read: a publication is then either in the history read, or in the buffer, or both, and the
merge by offset in :meth:`SessionSubscription.go_live` delivers each exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from typing import Any

import orjson

from wshub.exceptions import HubError, InvalidState
from wshub.hub._catch_up import read_missed
from wshub.hub._drain import drain_sessions
from wshub.hub._fanout import CaughtUp, Fanout
from wshub.hub._outbox import EPH, POS
from wshub.hub._presence import JoinLeave
from wshub.hub.auth import Authenticator
from wshub.hub.backends import (
    AppendResult,
    Broker,
    HistoryStore,
    MemoryBroker,
    MemoryHistory,
    MemoryPresence,
    PresenceStore,
)
from wshub.hub.channels import ChannelRegistry, NamespaceOptions
from wshub.hub.limits import HubLimits, UserCounts
from wshub.hub.session import Peer, Session
from wshub.hub.stats import HubStats
from wshub.hub.subscription import SessionSubscription
from wshub.hub.wire import (
    ClientInfo,
    DisconnectCode,
    EphemeralPush,
    ErrorCode,
    Position,
    PublicationPush,
    StoredPublication,
    SubscribeResult,
)

__all__ = ["Hub", "HubLimits"]

logger = logging.getLogger("wshub.hub")


class Hub:
    """A hub node.

    Args:
        registry: the namespaces served (default: none, every channel is refused).
        history: the durable history store for ``persistent`` namespaces (default: a
            :class:`MemoryHistory`).
        volatile_history: the history store for ``persistent=False`` namespaces (default:
            a :class:`MemoryHistory` of the hub's own). Nodes that share their state pass
            the shared store as both (see :func:`wshub.hub.backends.open_stores`).
        broker: the broker between nodes (default: a :class:`MemoryBroker`).
        presence: the presence store (default: a :class:`MemoryPresence`).
        auth: the token verifier (default: one that accepts no connection: no secret, no
            key, no anonymous users).
        limits: per-connection limits.
        dedupe_window: seconds a ``message_id`` is remembered by the in-memory store the hub
            creates for non-persistent namespaces (configure the durable store's own).
        expire_interval: seconds between sweeps of expired history; ``None`` disables them.
        clock: wall-clock time in seconds since the Unix epoch (token expiry, history TTL).
        monotonic: monotonic time in seconds (rate limits).

    The hub closes, in :meth:`close`, only the stores and broker it created itself.
    """

    def __init__(
        self,
        *,
        registry: ChannelRegistry | None = None,
        history: HistoryStore | None = None,
        volatile_history: HistoryStore | None = None,
        broker: Broker | None = None,
        presence: PresenceStore | None = None,
        auth: Authenticator | None = None,
        limits: HubLimits | None = None,
        dedupe_window: float = 120.0,
        expire_interval: float | None = 60.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry if registry is not None else ChannelRegistry({})
        self.clock = clock
        self.monotonic = monotonic
        self.limits = limits if limits is not None else HubLimits()
        self.auth = auth if auth is not None else Authenticator()
        self.stats = HubStats()
        self._owned: list[HistoryStore | Broker | PresenceStore] = []
        if volatile_history is None:
            volatile_history = MemoryHistory(clock=clock, dedupe_window=dedupe_window)
            self._owned.append(volatile_history)
        self._volatile = volatile_history
        if history is None:
            history = MemoryHistory(clock=clock, dedupe_window=dedupe_window)
            self._owned.append(history)
        if broker is None:
            broker = MemoryBroker()
            self._owned.append(broker)
        if presence is None:
            presence = MemoryPresence()
            self._owned.append(presence)
        self.history_store = history
        self.broker = broker
        self.presence_store = presence
        self._expire_interval = expire_interval
        self._fanout: Fanout[SessionSubscription] = Fanout(
            broker,
            spawn=self.spawn,
            feed_many=SessionSubscription.feed_many,
            catch_up=self._catch_up,
        )
        self._join_leave = JoinLeave(self._fanout.publish, spawn=self.spawn, stats=self.stats)
        self._publish_locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._sessions: set[Session] = set()
        self._users = UserCounts()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._expirer: asyncio.Task[None] | None = None
        self._closed = self._draining = False

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Start background work (the history expiry sweep). Idempotent."""
        if self._expirer is None and self._expire_interval is not None:
            self._expirer = asyncio.get_running_loop().create_task(self._expire_loop())

    async def __aenter__(self) -> Hub:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _expire_loop(self) -> None:
        assert self._expire_interval is not None
        failing = False  # log once per outage, not at every interval
        while not self._closed:  # not cancel() alone: redis-py may swallow it (Python 3.11)
            await asyncio.sleep(self._expire_interval)
            try:
                await self.expire()
                failing = False
            except Exception as exc:
                if not failing:
                    logger.warning("history expiry failed, retried every interval: %r", exc)
                failing = True

    async def expire(self) -> int:
        """Drop expired history now; returns how many publications were dropped."""
        dropped = await self.history_store.expire()
        if self._volatile is not self.history_store:
            dropped += await self._volatile.expire()
        return dropped

    async def close(self) -> None:
        """Close every session with 1001, stop background work, close owned resources."""
        if self._closed:
            return
        self._closed = True
        self._join_leave.close()
        if self._expirer is not None:
            self._expirer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expirer
        sessions = list(self._sessions)
        for session in sessions:
            session.close(DisconnectCode.GOING_AWAY)
        await asyncio.gather(*(s.connection_lost() for s in sessions), return_exceptions=True)
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for resource in self._owned:
            await resource.close()

    @property
    def draining(self) -> bool:
        """Whether :meth:`drain` was called: ``/healthz`` answers 503 ``draining`` and a
        new session is closed with 1012 as soon as it is made."""
        return self._draining

    # The defaults are those of ListenConfig (drain_period, drain_timeout), which says why.
    async def drain(self, *, drain_period: float = 5.0, drain_timeout: float = 30.0) -> int:
        """Send every client elsewhere before a stop: close each session with 1012
        (service restart), the closes spread evenly over ``drain_period`` seconds, and wait
        for them to go, at most ``drain_timeout`` seconds from the start. Sessions made
        meanwhile are closed at once. Cancel it to stop where it is (:meth:`close` closes
        the rest with 1001). Details: :mod:`wshub.hub._drain`.

        Returns:
            How many connections were still open when ``drain_timeout`` ran out.

        Raises:
            ValueError: unless ``0 <= drain_period <= drain_timeout``.
        """
        if 0 <= drain_period <= drain_timeout:
            self._draining = True
        return await drain_sessions(
            list(self._sessions), drain_period=drain_period, drain_timeout=drain_timeout
        )

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` in the background, keeping a reference until it ends."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("hub background task failed", exc_info=task.exception())

    # --- sessions ------------------------------------------------------------------------

    def session(self, peer: Peer) -> Session:
        """Create the session of a new connection (must be called on the event loop).

        Raises:
            InvalidState: the hub is closed.
        """
        if self._closed:
            raise InvalidState("hub is closed")
        session = Session(self, peer)
        self._sessions.add(session)
        self.stats.connections += 1
        self.stats.connections_total += 1
        if self._draining:  # a balancer that did not notice yet: send the client elsewhere
            session.close(DisconnectCode.SERVICE_RESTART)
        return session

    @property
    def sessions(self) -> frozenset[Session]:
        """The open sessions of this node."""
        return frozenset(self._sessions)

    def session_closed(self, session: Session) -> None:
        """Forget ``session`` (session host)."""
        if session in self._sessions:
            self._sessions.discard(session)
            self.stats.connections -= 1

    def count_user(self, user: str) -> None:
        """Count one more connection of ``user`` (session host); :class:`HubError` 112 over
        ``limits.max_connections_per_user``."""
        if not self._users.add(user, self.limits.max_connections_per_user):
            raise HubError(ErrorCode.LIMIT_EXCEEDED, ErrorCode.LIMIT_EXCEEDED.message)

    def release_user(self, user: str) -> None:
        """Count one connection of ``user`` less (session host)."""
        self._users.release(user)

    def _store(self, options: NamespaceOptions) -> HistoryStore:
        return self.history_store if options.persistent else self._volatile

    # --- publishing ----------------------------------------------------------------------

    async def publish(
        self,
        channel: str,
        data: Any,
        *,
        info: Any = None,
        message_id: str | None = None,
    ) -> AppendResult:
        """Publish ``data`` (any JSON value) to ``channel`` as the server.

        Namespace publish policies do not apply: the server may publish everywhere.

        Args:
            channel: the channel.
            data: the payload.
            info: shown as the publication's ``info`` (any JSON value), or ``None``.
            message_id: makes the publish idempotent within the dedupe window.

        Returns:
            The position (``.position``) and whether it was a duplicate (``.duplicate``).

        Raises:
            HubError: 107/108 for a bad channel, 101 when ``data`` or ``info`` is not
                JSON-serializable, 114 when ``data`` is too large.
        """
        options = self.registry.options(channel)
        raw = self._encode(data)
        info_raw = None if info is None else self._encode(info)
        return await self.publish_encoded(channel, options, raw, info_raw, message_id)

    async def publish_ephemeral(self, channel: str, data: Any, *, info: Any = None) -> None:
        """Send ``data`` to the current subscribers of ``channel`` without storing it."""
        self.registry.options(channel)
        info_raw = None if info is None else self._encode(info)
        await self.publish_ephemeral_encoded(channel, self._encode(data), info_raw)

    async def broadcast(self, channels: Sequence[str], data: Any) -> list[AppendResult]:
        """Publish the same ``data`` to several channels (all are validated first)."""
        options = [self.registry.options(channel) for channel in channels]
        raw = self._encode(data)
        return [
            await self.publish_encoded(channel, opts, raw, None, None)
            for channel, opts in zip(channels, options, strict=True)
        ]

    def _encode(self, value: Any) -> bytes:
        try:
            raw = orjson.dumps(value)
        except (TypeError, orjson.JSONEncodeError) as exc:
            raise HubError(ErrorCode.BAD_REQUEST, "bad request: not JSON-serializable") from exc
        if len(raw) > self.limits.max_publication_size:
            raise HubError(ErrorCode.TOO_LARGE, ErrorCode.TOO_LARGE.message)
        return raw

    @contextlib.asynccontextmanager
    async def _channel_lock(self, channel: str) -> AsyncIterator[None]:
        lock, users = self._publish_locks.get(channel, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._publish_locks[channel] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._publish_locks[channel]
            if users == 1:
                del self._publish_locks[channel]
            else:
                self._publish_locks[channel] = (lock, users - 1)

    async def publish_encoded(
        self,
        channel: str,
        options: NamespaceOptions,
        data: bytes,
        info: bytes | None,
        message_id: str | None,
    ) -> AppendResult:
        """Store and fan out a publication whose data and info are encoded JSON (session
        host; namespace policies are the caller's to check)."""
        store = self._store(options)
        async with self._channel_lock(channel):
            result = await store.append(
                channel,
                data,
                info=info,
                message_id=message_id,
                size=options.history_size,
                ttl=options.history_ttl,
            )
            pub = result.publication
            if pub is None:
                self.stats.duplicates += 1
                return result
            self.stats.publications += 1
            epoch = result.position.epoch
            push = PublicationPush(channel, epoch, pub).serialize()
            await self._fanout.publish(channel, POS, pub.offset, epoch, push)
        return result

    async def _catch_up(self, channel: str, offset: int, epoch: str) -> CaughtUp:
        """What the broker may have missed of ``channel`` (:func:`read_missed`)."""
        store = self._store(self.registry.options(channel))
        return await read_missed(store, channel, offset, epoch, limit=self.limits.max_recovery)

    async def publish_ephemeral_encoded(
        self, channel: str, data: bytes, info: bytes | None
    ) -> None:
        """Fan out a publication without storing it (session host)."""
        self.stats.ephemeral += 1
        push = EphemeralPush(channel, data, info).serialize()
        await self._fanout.publish(channel, EPH, 0, "-", push)

    # --- subscriptions -------------------------------------------------------------------

    async def attach(
        self, sub: SessionSubscription, since: Position | None, recent: int
    ) -> tuple[SubscribeResult, Position]:
        """Add ``sub`` to its channel and read what it must receive first (session host).

        Recovery is race-free because ``sub`` is added (buffering) *before* history is
        read: a publication is then in the history read, or in the buffer, or both, and
        :meth:`SessionSubscription.go_live` delivers each exactly once.

        Returns:
            The subscribe reply's result, and the position ``sub`` goes live at.
        """
        if await self._fanout.add(sub):
            self.stats.subscriptions += 1
        options = sub.options
        store = self._store(options)
        pubs: Sequence[StoredPublication] = ()
        recovered: bool | None = None
        if since is not None:
            recovery = await store.since(
                sub.channel, since.offset, since.epoch, limit=self.limits.max_recovery
            )
            position = recovery.position
            recovered = recovery.complete
            if recovered:
                pubs = recovery.publications
                self.stats.recoveries += 1
        if recent > 0 and not recovered:
            pubs, position = await store.latest(sub.channel, limit=recent)
        elif since is None:
            position = await store.position(sub.channel)
        self._fanout.start_at(sub.channel, position.offset, position.epoch)
        result = SubscribeResult(
            sub.channel, position, options.history_size > 0, tuple(pubs), recovered
        )
        return result, position

    def detach(self, sub: SessionSubscription) -> None:
        """Remove ``sub`` from its channel (session host)."""
        if self._fanout.remove(sub):
            self.stats.subscriptions -= 1

    async def announce_join(self, sub: SessionSubscription) -> None:
        """Presence and ``join`` for a subscription that just went live (session host)."""
        options = sub.options
        info = sub.session.info
        if options.presence:
            await self.presence_store.add(sub.channel, info)
            if not sub.active:
                # The connection died while we were adding: do not leave a ghost.
                await self.presence_store.remove(sub.channel, info.client)
                return
        if options.join_leave:
            await self._join_leave.announce("join", sub.channel, info, options.join_leave_interval)

    async def announce_leave(self, sub: SessionSubscription) -> None:
        """Presence and ``leave`` for a subscription that ended (session host). Never raises."""
        options = sub.options
        info = sub.session.info
        try:
            removed = True
            if options.presence:
                removed = await self.presence_store.remove(sub.channel, info.client)
            if options.join_leave and removed:
                interval = options.join_leave_interval
                await self._join_leave.announce("leave", sub.channel, info, interval)
        except Exception:
            logger.exception("leaving %s failed", sub.channel)

    def flush_presence(self, channel: str) -> None:
        """Send the pending ``presence_diff`` of ``channel`` now, not at its interval's end."""
        self._join_leave.flush(channel)

    # --- reading -------------------------------------------------------------------------

    async def presence(self, channel: str) -> list[ClientInfo]:
        """Who is subscribed to ``channel``.

        Raises:
            HubError: 107/108 for a bad channel, 115 when presence is off in its namespace.
        """
        if not self.registry.options(channel).presence:
            raise HubError(ErrorCode.NOT_AVAILABLE, ErrorCode.NOT_AVAILABLE.message)
        return await self.presence_store.get(channel)

    async def history(
        self, channel: str, *, limit: int = 100, since: Position | None = None
    ) -> tuple[Sequence[StoredPublication], Position]:
        """Stored publications of ``channel``, oldest first, and its current position.

        Args:
            channel: the channel.
            limit: at most this many (clamped to ``limits.max_history_limit``).
            since: only those after this position; ``None`` for the latest ones.

        Raises:
            HubError: 107/108 for a bad channel, 115 when the namespace keeps no history,
                116 when ``since`` is no longer available.
        """
        options = self.registry.options(channel)
        if options.history_size == 0:
            raise HubError(ErrorCode.NOT_AVAILABLE, ErrorCode.NOT_AVAILABLE.message)
        limit = max(1, min(limit, self.limits.max_history_limit))
        store = self._store(options)
        if since is None:
            return await store.latest(channel, limit=limit)
        recovery = await store.since(channel, since.offset, since.epoch, limit=limit)
        if not recovery.recovered:
            raise HubError(ErrorCode.UNRECOVERABLE, ErrorCode.UNRECOVERABLE.message)
        return recovery.publications, recovery.position

    async def channels(self, *, also: Iterable[str] = ()) -> list[dict[str, Any]]:
        """The channels that exist now: with local subscribers or stored history.

        Each is ``{"channel", "subscribers" (on this node), "offset" (its last), "epoch"}``.

        Args:
            also: more channel names to list (subscribed on other nodes); invalid names and
                unknown namespaces among them are skipped.
        """
        names = set(self._fanout)
        names.update(await self.history_store.channels())
        if self._volatile is not self.history_store:
            names.update(await self._volatile.channels())
        names.update(also)
        stores: dict[str, HistoryStore] = {}
        for name in sorted(names):
            with contextlib.suppress(HubError):
                stores[name] = self._store(self.registry.options(name))
        # One read per channel (a round trip each with Redis: see docs/http-api.md).
        positions = [await store.position(name) for name, store in stores.items()]
        fanout = self._fanout
        return [
            {"channel": name, "subscribers": len(fanout.subscribers(name)), **position.to_json()}
            for name, position in zip(stores, positions, strict=True)
        ]

    def disconnect(self, *, user: str | None = None, client: str | None = None) -> int:
        """Close this node's connections of ``user`` or with client id ``client`` (4008).

        Returns:
            How many connections were closed.
        """
        closed = 0
        for session in list(self._sessions):
            identity = session.identity
            matches = session.client_id == client or (
                user is not None and identity is not None and identity.user == user
            )
            if matches:
                state = session.state
                session.close(DisconnectCode.DISCONNECTED)
                closed += session.state != state  # not when it was closing already
        return closed

    def local_channels(self) -> list[str]:
        """The channels with subscribers on this node."""
        return list(self._fanout)

    def subscribers(self, channel: str) -> Iterable[Session]:
        """The local sessions subscribed to ``channel``."""
        return [sub.session for sub in self._fanout.subscribers(channel)]
