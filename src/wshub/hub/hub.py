"""The hub: channels, publications, fan-out, history, presence.

:class:`Hub` is transport-agnostic. A transport creates one :class:`~wshub.hub.session.Session`
per connection with :meth:`Hub.session` and feeds it messages; backends publish with
:meth:`Hub.publish` (the HTTP API is a thin layer over these methods).

Publishing goes store → broker → every node's local subscribers:

1. the history store assigns the next offset (and drops a duplicate ``message_id``), under a
   per-channel lock so that publications reach the broker in offset order;
2. the ``pub`` push is encoded **once** and handed to the broker inside a small envelope
   that carries the offset and epoch in clear (``b"<kind> <offset> <epoch>\\n" + push``);
3. on each node the broker callback decodes the envelope header once and gives the same
   ``str`` to every local subscription, which writes it or queues it without awaiting.

Recovery is race-free because a subscription is registered (buffering) *before* history is
read: a publication is then either in the history read, or in the buffer, or both, and the
merge by offset in :meth:`Subscription.go_live` delivers each exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from wshub.exceptions import HubError, InvalidState
from wshub.hub._outbox import EPH, EVT, POS
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
from wshub.hub.channels import ChannelRegistry, NamespaceOptions, default_registry
from wshub.hub.session import Peer, Session, Subscription
from wshub.hub.stats import HubStats
from wshub.hub.wire import (
    ClientInfo,
    DisconnectCode,
    ErrorCode,
    Position,
    Publication,
    ephemeral_push,
    event_push,
    pub_push,
    publication_json,
)

__all__ = ["Hub", "HubLimits"]

logger = logging.getLogger("wshub.hub")


@dataclass(frozen=True, slots=True, kw_only=True)
class HubLimits:
    """Per-connection limits (docs/hub.md, "Limits"). ``None`` means no limit where allowed.

    Attributes:
        connect_timeout: seconds a client has to send ``connect`` (close 4002).
        max_channels: subscriptions per connection (error 112).
        max_connections_per_user: open connections of one authenticated user (error 112
            then close 4006); anonymous connections are not counted.
        command_rate: commands per second, token bucket refill (error 111).
        command_burst: the command bucket's capacity.
        publish_rate: publish commands per second.
        publish_burst: the publish bucket's capacity.
        max_bad_commands: malformed or unknown commands in a row before close 4000.
        max_rate_limited: rate-limited commands in a row before close 4005.
        max_publication_size: bytes of encoded publication data (error 114).
        max_meta_size: bytes of encoded ``meta`` sent in ``connect``.
        max_recovery: publications one ``subscribe`` may recover.
        max_history_limit: the largest ``limit`` of a history read.
        max_pending_replies: replies queued for a client that does not read (close 4004).
        max_queued_size: characters of JSON (about bytes) queued for a client that does not
            read, replies and pushes of all its channels together, beyond the transport's
            write buffer (close 4004, whatever the namespaces' slow-consumer policies;
            ephemeral pushes are dropped instead). ``None`` means no limit.
    """

    connect_timeout: float | None = 10.0
    max_channels: int = 128
    max_connections_per_user: int | None = 16
    command_rate: float | None = 50.0
    command_burst: int = 100
    publish_rate: float | None = 20.0
    publish_burst: int = 40
    max_bad_commands: int = 10
    max_rate_limited: int = 50
    max_publication_size: int = 65536
    max_meta_size: int = 1024
    max_recovery: int = 1000
    max_history_limit: int = 1000
    max_pending_replies: int = 256
    max_queued_size: int | None = 4 * 2**20


#: How long a publication that arrived ahead of its predecessor waits for it (seconds), and
#: how many may wait. Two nodes publishing to one channel through Redis can deliver offsets
#: out of order; within this window they are put back in order, after it they go on and the
#: clients see (and fill) a gap, as docs/protocol.md §5.1 describes.
REORDER_WINDOW = 0.1
REORDER_MAX_HELD = 64

_Args = tuple[int, int, str, str]


class _Channel:
    """The local subscribers of one channel, whether the broker delivers it here, and the
    broker's last position for it (to put cross-node publications back in offset order)."""

    __slots__ = ("broker_active", "epoch", "flush_handle", "held", "lock", "name", "offset", "subs")

    def __init__(self, name: str) -> None:
        self.name = name
        self.subs: dict[str, Subscription] = {}
        self.lock = asyncio.Lock()
        self.broker_active = False
        self.epoch: str | None = None
        self.offset = 0
        self.held: dict[int, _Args] = {}
        self.flush_handle: asyncio.TimerHandle | None = None


def _envelope(kind: int, offset: int, epoch: str, push: bytes) -> bytes:
    return b"%d %d %s\n" % (kind, offset, epoch.encode()) + push


def _fan_out(state: _Channel, args: _Args) -> None:
    for sub in list(state.subs.values()):
        sub.feed(*args)


def _release_held(state: _Channel) -> None:
    """Give up waiting: deliver what is held, in offset order (subscribers see the gap)."""
    if state.flush_handle is not None:
        state.flush_handle.cancel()
        state.flush_handle = None
    held, state.held = state.held, {}
    for offset in sorted(held):
        state.offset = max(state.offset, offset)
        _fan_out(state, held[offset])


class Hub:
    """A hub node.

    Args:
        registry: the namespaces served (default: :func:`default_registry`).
        history: the durable history store for ``persistent`` namespaces (default: a
            :class:`MemoryHistory`).
        volatile_history: the history store for ``persistent=False`` namespaces (default:
            a :class:`MemoryHistory` of the hub's own). Nodes that share their state pass
            the shared store as both (see :func:`wshub.hub.backends.open_stores`).
        broker: the broker between nodes (default: a :class:`MemoryBroker`).
        presence: the presence store (default: a :class:`MemoryPresence`).
        auth: the token verifier (default: anonymous connections only).
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
        self.registry = registry if registry is not None else default_registry()
        self.clock = clock
        self.monotonic = monotonic
        self.limits = limits if limits is not None else HubLimits()
        self.auth = auth if auth is not None else Authenticator(allow_anonymous=True)
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
        self._channels: dict[str, _Channel] = {}
        self._publish_locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._sessions: set[Session] = set()
        self._users: dict[str, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._expirer: asyncio.Task[None] | None = None
        self._on_broker_cb = self._on_broker
        self._closed = False

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
        while True:
            await asyncio.sleep(self._expire_interval)
            try:
                await self.expire()
            except Exception:
                logger.exception("history expiry failed")

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

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
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
        return session

    @property
    def sessions(self) -> frozenset[Session]:
        """The open sessions of this node."""
        return frozenset(self._sessions)

    def _forget_session(self, session: Session) -> None:
        if session in self._sessions:
            self._sessions.discard(session)
            self.stats.connections -= 1

    def _count_user(self, user: str) -> None:
        limit = self.limits.max_connections_per_user
        count = self._users.get(user, 0)
        if limit is not None and count >= limit:
            raise HubError(ErrorCode.LIMIT_EXCEEDED, ErrorCode.LIMIT_EXCEEDED.message)
        self._users[user] = count + 1

    def _uncount_user(self, user: str) -> None:
        count = self._users.get(user, 0) - 1
        if count > 0:
            self._users[user] = count
        else:
            self._users.pop(user, None)

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
        return await self._publish(channel, options, raw, info_raw, message_id)

    async def publish_ephemeral(self, channel: str, data: Any, *, info: Any = None) -> None:
        """Send ``data`` to the current subscribers of ``channel`` without storing it."""
        self.registry.options(channel)
        info_raw = None if info is None else self._encode(info)
        await self._publish_ephemeral(channel, self._encode(data), info_raw)

    async def broadcast(self, channels: Sequence[str], data: Any) -> list[AppendResult]:
        """Publish the same ``data`` to several channels (all are validated first)."""
        options = [self.registry.options(channel) for channel in channels]
        raw = self._encode(data)
        return [
            await self._publish(channel, opts, raw, None, None)
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

    async def _publish(
        self,
        channel: str,
        options: NamespaceOptions,
        data: bytes,
        info: bytes | None,
        message_id: str | None,
    ) -> AppendResult:
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
            push = pub_push(channel, epoch, pub)
            await self.broker.publish(channel, _envelope(POS, pub.offset, epoch, push))
        return result

    async def _publish_ephemeral(self, channel: str, data: bytes, info: bytes | None) -> None:
        self.stats.ephemeral += 1
        await self.broker.publish(
            channel, _envelope(EPH, 0, "-", ephemeral_push(channel, data, info))
        )

    def _on_broker(self, channel: str, payload: bytes) -> None:
        state = self._channels.get(channel)
        if state is None or not state.subs:
            return
        header, _, body = payload.partition(b"\n")
        kind, offset, epoch = header.split(b" ")
        message = body.decode()
        args = (int(kind), int(offset), epoch.decode(), message)
        if args[0] == POS:
            self._positioned(state, args)
        else:
            _fan_out(state, args)

    def _positioned(self, state: _Channel, args: _Args) -> None:
        """Deliver a positioned publication in offset order, holding one that came early."""
        offset, epoch = args[1], args[2]
        if epoch != state.epoch:
            _release_held(state)
            state.epoch, state.offset = epoch, offset
            _fan_out(state, args)
            return
        if offset > state.offset + 1:
            state.held[offset] = args
            if len(state.held) > REORDER_MAX_HELD:
                _release_held(state)
            elif state.flush_handle is None:
                state.flush_handle = asyncio.get_running_loop().call_later(
                    REORDER_WINDOW, _release_held, state
                )
            return
        if offset == state.offset + 1:
            state.offset = offset
        _fan_out(state, args)
        held = state.held
        while held and state.offset + 1 in held:
            state.offset += 1
            _fan_out(state, held.pop(state.offset))
        if not held and state.flush_handle is not None:
            state.flush_handle.cancel()
            state.flush_handle = None

    # --- subscriptions -------------------------------------------------------------------

    async def _register(self, sub: Subscription) -> None:
        """Add ``sub`` to its channel, subscribing this node to the broker if needed."""
        name = sub.channel
        while True:
            state = self._channels.get(name)
            if state is None:
                state = self._channels[name] = _Channel(name)
            async with state.lock:
                if self._channels.get(name) is not state:
                    continue  # torn down while we waited: use the new one
                if not state.broker_active:
                    await self.broker.subscribe(name, self._on_broker_cb)
                    state.broker_active = True
                if not sub.active:
                    return
                state.subs[sub.session.client_id] = sub
                self.stats.subscriptions += 1
                return

    def _remove_subscription(self, sub: Subscription) -> None:
        state = self._channels.get(sub.channel)
        if state is None or state.subs.get(sub.session.client_id) is not sub:
            return
        del state.subs[sub.session.client_id]
        self.stats.subscriptions -= 1
        if not state.subs:
            self._spawn(self._teardown(state))

    async def _teardown(self, state: _Channel) -> None:
        async with state.lock:
            if state.subs or self._channels.get(state.name) is not state:
                return
            del self._channels[state.name]
            if state.flush_handle is not None:
                state.flush_handle.cancel()
                state.flush_handle = None
            if state.broker_active:
                state.broker_active = False
                with contextlib.suppress(InvalidState):
                    await self.broker.unsubscribe(state.name, self._on_broker_cb)

    async def _subscribe(
        self, sub: Subscription, since: Position | None, recent: int
    ) -> tuple[dict[str, Any], Position]:
        """Register ``sub`` and read what it must receive first.

        Returns:
            The subscribe reply's result, and the position ``sub`` goes live at.
        """
        await self._register(sub)
        options = sub.options
        store = self._store(options)
        pubs: Sequence[Publication] = ()
        recovered: bool | None = None
        if since is not None:
            recovery = await store.since(
                sub.channel, since.offset, since.epoch, limit=self.limits.max_recovery
            )
            position = recovery.position
            recovered = recovery.complete
            if recovered:
                pubs = recovery.publications
        if recent > 0 and not recovered:
            pubs, position = await store.latest(sub.channel, limit=recent)
        elif since is None:
            position = await store.position(sub.channel)
        state = self._channels.get(sub.channel)
        if state is not None and state.epoch is None:
            # The broker has delivered nothing here yet: order what comes from this position.
            state.epoch, state.offset = position.epoch, position.offset
        result: dict[str, Any] = {
            "channel": sub.channel,
            **position.to_json(),
            "recoverable": options.history_size > 0,
        }
        if recovered is not None:
            result["recovered"] = recovered
        result["publications"] = [publication_json(p) for p in pubs]
        return result, position

    async def _joined(self, sub: Subscription) -> None:
        """Presence and ``join`` for a subscription that just went live."""
        options = sub.options
        info = sub.session.info
        if options.presence:
            await self.presence_store.add(sub.channel, info)
            if not sub.active:
                # The connection died while we were adding: do not leave a ghost.
                await self.presence_store.remove(sub.channel, info.client)
                return
        if options.join_leave:
            await self._event("join", sub.channel, info)

    async def _left(self, sub: Subscription) -> None:
        """Presence and ``leave`` for a subscription that ended. Never raises."""
        options = sub.options
        info = sub.session.info
        try:
            removed = True
            if options.presence:
                removed = await self.presence_store.remove(sub.channel, info.client)
            if options.join_leave and removed:
                await self._event("leave", sub.channel, info)
        except Exception:
            logger.exception("leaving %s failed", sub.channel)

    async def _event(self, kind: str, channel: str, info: ClientInfo) -> None:
        if self._closed:
            return
        push = event_push(kind, channel, info)
        await self.broker.publish(channel, _envelope(EVT, 0, "-", push))

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
    ) -> tuple[Sequence[Publication], Position]:
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

    async def channels(self) -> list[dict[str, Any]]:
        """The channels that exist now: with local subscribers or stored history."""
        names = set(self._channels)
        names.update(await self.history_store.channels())
        if self._volatile is not self.history_store:
            names.update(await self._volatile.channels())
        return [
            {"channel": name, "subscribers": len(s.subs) if (s := self._channels.get(name)) else 0}
            for name in sorted(names)
        ]

    def subscribers(self, channel: str) -> Iterable[Session]:
        """The local sessions subscribed to ``channel``."""
        state = self._channels.get(channel)
        return [sub.session for sub in state.subs.values()] if state else []
