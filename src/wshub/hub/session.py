"""One client connection to the hub: the command state machine and its output.

A :class:`Session` consumes the text messages of one connection (:meth:`Session.handle`) and
writes replies and pushes through a :class:`Peer`, the small part of the transport it needs
(``wshub.aio.ServerConnection`` is one; tests use a recording fake). What is about more than
this connection it asks of its :class:`~wshub.hub.host.SessionHost` (the hub). It never
awaits the peer on the fan-out path: a publication is written at once when the connection
is keeping up, and otherwise waits in the connection's outbox (:mod:`wshub.hub._outbox`),
where the namespace's slow-consumer policy and the connection's bounds apply. Its
subscriptions are :class:`~wshub.hub.subscription.SessionSubscription` values.

States (one table, one setter that logs)::

    AWAITING_CONNECT --connect ok--> CONNECTED --close/lost--> CLOSING --> CLOSED
           |                                                     ^
           +----------------- timeout / refused / lost ----------+
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable
from enum import IntEnum
from typing import TYPE_CHECKING, Protocol

import orjson

from wshub.aio.connection import WebSocketConnection
from wshub.exceptions import AuthError, HubError, InvalidState, WSHubError
from wshub.hub._outbox import Outbox
from wshub.hub.auth import Identity
from wshub.hub.channels import NamespaceOptions
from wshub.hub.ratelimit import TokenBucket
from wshub.hub.subscription import SessionSubscription
from wshub.hub.wire import (
    ClientInfo,
    Command,
    ConnectCommand,
    ConnectResult,
    DisconnectCode,
    ErrorCode,
    ErrorReply,
    HistoryCommand,
    HistoryResult,
    PingCommand,
    PresenceCommand,
    PresenceResult,
    PublishCommand,
    PublishResult,
    RefreshCommand,
    RefreshResult,
    Reply,
    SubscribeCommand,
    UnsubscribeCommand,
    UnsubscribePush,
    WireError,
    parse_command,
)
from wshub.protocol import PreparedMessage

if TYPE_CHECKING:
    from wshub.hub.host import SessionHost

__all__ = ["Peer", "Session", "SessionState"]

logger = logging.getLogger("wshub.hub")

#: Largest reply (characters of JSON) that joins the connection's cork: pipelined small
#: replies share a system call, while at most a cork of them (64) waits past the write limit.
MAX_CORKED_REPLY = 4096


class Peer(Protocol):
    """What a session needs from its connection (``wshub.aio.ServerConnection`` fits)."""

    def cork(self) -> None:
        """Hold what is sent until the end of this loop iteration, then write it at once."""
        ...

    def send_nowait(self, message: str | bytes) -> None:
        """Frame and write ``message`` now, without waiting."""
        ...

    def send_prepared_nowait(self, prepared: PreparedMessage) -> None:
        """Write a message framed once for a whole fan-out (or frame ``prepared.message``
        for this connection alone), corked as after :meth:`cork`, without waiting."""
        ...

    @property
    def writable(self) -> bool:
        """Whether the write buffer is below its high-water mark."""
        ...

    def drain(self) -> Awaitable[None]:
        """Wait until the write buffer is below its low-water mark."""
        ...

    def close(self, code: int = 1000, reason: str = "") -> Awaitable[None]:
        """Close the connection with ``code`` and ``reason``."""
        ...


class SessionState(IntEnum):
    """Where a session is in its life (the table below is every allowed transition)."""

    AWAITING_CONNECT = 0
    CONNECTED = 1
    CLOSING = 2
    CLOSED = 3


_TRANSITIONS: dict[SessionState, frozenset[SessionState]] = {
    SessionState.AWAITING_CONNECT: frozenset({SessionState.CONNECTED, SessionState.CLOSING}),
    SessionState.CONNECTED: frozenset({SessionState.CLOSING}),
    SessionState.CLOSING: frozenset({SessionState.CLOSED}),
    SessionState.CLOSED: frozenset(),
}


class Session:
    """The hub side of one client connection.

    Create it with :meth:`Hub.session`; feed it every received message with :meth:`handle`
    and call :meth:`connection_lost` when the connection ends, whatever the reason.

    Attributes:
        client_id: the id sent in the ``connect`` reply and in ``info``.
        state: the current :class:`SessionState`.
        identity: who the connection is, once connected.
        direct: the peer, when it is a ``wshub.aio`` connection that fan-outs write to in
            one batch (``SessionSubscription.feed_many``); else ``None``.
        outbox: what waits because the connection does not keep up.
    """

    def __init__(self, hub: SessionHost, peer: Peer) -> None:
        self.hub = hub
        self.peer = peer
        self.direct = peer if isinstance(peer, WebSocketConnection) else None
        self.client_id = uuid.uuid4().hex
        self.state = SessionState.AWAITING_CONNECT
        self.identity: Identity | None = None
        self.info = ClientInfo(self.client_id, "")
        self.info_bytes = self.info.encode()
        self.subscriptions: dict[str, SessionSubscription] = {}
        limits = hub.limits
        self.max_buffered = limits.max_recovery + 1024
        self._limits = limits
        self._commands = TokenBucket(limits.command_rate, limits.command_burst, clock=hub.monotonic)
        self._publishes = TokenBucket(
            limits.publish_rate, limits.publish_burst, clock=hub.monotonic
        )
        self._bad_in_row = 0
        self._limited_in_row = 0
        self.outbox = self._outbox = Outbox(
            max_pending_replies=limits.max_pending_replies,
            max_queued_size=limits.max_queued_size,
        )
        self._writer: asyncio.Task[None] | None = None
        self._cleanup_task: asyncio.Task[None] | None = None
        self._counted_user = False
        loop = asyncio.get_running_loop()
        self._connect_timer: asyncio.TimerHandle | None = None
        if limits.connect_timeout is not None:
            self._connect_timer = loop.call_later(limits.connect_timeout, self._connect_timeout)
        self._expiry_timer: asyncio.TimerHandle | None = None

    # --- state ---------------------------------------------------------------------------

    def _set_state(self, state: SessionState) -> None:
        if state not in _TRANSITIONS[self.state]:
            raise InvalidState(f"session {self.client_id}: {self.state.name} -> {state.name}")
        logger.debug("session %s: %s -> %s", self.client_id, self.state.name, state.name)
        self.state = state

    # --- input ---------------------------------------------------------------------------

    async def handle(self, message: str | bytes) -> None:
        """Process one message received from the client. Never raises."""
        if self.state >= SessionState.CLOSING:
            return
        command = parse_command(message)
        if not self._commands.take() or (
            isinstance(command, PublishCommand) and not self._publishes.take()
        ):
            self._rate_limited(command.id)
            return
        self._limited_in_row = 0
        if isinstance(command, WireError):
            self._bad_command(command)
            return
        self._bad_in_row = 0
        command_id = command.id
        try:
            await self._dispatch(command)
        except AuthError as exc:
            self.hub.stats.auth_failures += 1
            self._send_error(command_id, exc)
            if isinstance(command, ConnectCommand):
                self.close(DisconnectCode.UNAUTHORIZED)
        except HubError as exc:
            self._send_error(command_id, exc)
            if isinstance(command, ConnectCommand) and exc.code == ErrorCode.LIMIT_EXCEEDED:
                self.close(DisconnectCode.TOO_MANY_CONNECTIONS)
        except Exception:
            logger.exception(
                "session %s: command %s failed", self.client_id, type(command).__name__
            )
            self._send(ErrorReply(command_id, ErrorCode.INTERNAL).serialize())

    def _rate_limited(self, command_id: int | None) -> None:
        self.hub.stats.rate_limited += 1
        self._limited_in_row += 1
        self._send(ErrorReply(command_id, ErrorCode.RATE_LIMITED).serialize())
        if self._limited_in_row >= self._limits.max_rate_limited:
            self.close(DisconnectCode.RATE_LIMITED)

    def _bad_command(self, error: WireError) -> None:
        self.hub.stats.bad_commands += 1
        self._bad_in_row += 1
        self._send(ErrorReply(error.id, error.code, error.message).serialize())
        if self._bad_in_row >= self._limits.max_bad_commands:
            self.close(DisconnectCode.BAD_COMMANDS)

    def _send_error(self, id: int, e: HubError) -> None:
        self._send(ErrorReply(id, ErrorCode(e.code), e.message, e.temporary).serialize())

    async def _dispatch(self, command: Command) -> None:
        if isinstance(command, PingCommand):
            self._send(Reply(command.id).serialize())
        elif isinstance(command, ConnectCommand):
            self._connect(command)
        elif self.state != SessionState.CONNECTED:
            raise HubError(ErrorCode.NOT_CONNECTED, ErrorCode.NOT_CONNECTED.message)
        elif isinstance(command, SubscribeCommand):
            await self._subscribe(command)
        elif isinstance(command, UnsubscribeCommand):
            await self._unsubscribe(command)
        elif isinstance(command, PublishCommand):
            await self._publish(command)
        elif isinstance(command, PresenceCommand):
            self._permissions(command.channel, "r")
            clients = await self.hub.presence(command.channel)
            result = PresenceResult(command.channel, tuple(clients))
            self._send(Reply(command.id, result).serialize())
        elif isinstance(command, HistoryCommand):
            await self._history(command)
        else:
            self._refresh(command)

    def _permissions(self, channel: str, perm: str) -> NamespaceOptions:
        options = self.hub.registry.options(channel)
        assert self.identity is not None
        if not self.identity.permissions.allows(channel, perm):
            raise HubError(ErrorCode.PERMISSION_DENIED, ErrorCode.PERMISSION_DENIED.message)
        return options

    # --- commands ------------------------------------------------------------------------

    def _connect(self, command: ConnectCommand) -> None:
        if self.state != SessionState.AWAITING_CONNECT:
            raise HubError(ErrorCode.ALREADY_CONNECTED, ErrorCode.ALREADY_CONNECTED.message)
        identity = self.hub.auth.authenticate(command.token)
        meta = identity.meta
        if meta is None and command.meta is not None:
            if len(orjson.dumps(command.meta)) > self._limits.max_meta_size:
                raise HubError(ErrorCode.BAD_REQUEST, "bad request: meta")
            meta = command.meta
        if not identity.anonymous:
            self.hub.count_user(identity.user)
            self._counted_user = True
        self.identity = identity
        self.info = ClientInfo(self.client_id, identity.user, meta)
        self.info_bytes = self.info.encode()
        if self._connect_timer is not None:
            self._connect_timer.cancel()
            self._connect_timer = None
        self._set_state(SessionState.CONNECTED)
        self._schedule_expiry()
        expires = None if identity.expires is None else int(identity.expires)
        result = ConnectResult(self.client_id, identity.user, expires, meta)
        self._send(Reply(command.id, result).serialize())

    async def _subscribe(self, command: SubscribeCommand) -> None:
        channel = command.channel
        options = self._permissions(channel, "s")
        if channel in self.subscriptions:
            raise HubError(ErrorCode.ALREADY_SUBSCRIBED, ErrorCode.ALREADY_SUBSCRIBED.message)
        if len(self.subscriptions) >= self._limits.max_channels:
            raise HubError(ErrorCode.LIMIT_EXCEEDED, ErrorCode.LIMIT_EXCEEDED.message)
        sub = SessionSubscription(self, channel, options)
        self.subscriptions[channel] = sub
        try:
            result, position = await self.hub.attach(sub, command.since, command.recent)
        except BaseException:
            self._drop_subscription(sub)
            raise
        if not sub.active:
            return
        # No await between the reply and go_live: nothing of this channel can slip between.
        self._send(Reply(command.id, result).serialize())
        sub.go_live(position)
        await self.hub.announce_join(sub)

    async def _unsubscribe(self, command: UnsubscribeCommand) -> None:
        self.hub.registry.options(command.channel)
        sub = self.subscriptions.get(command.channel)
        if sub is None:
            raise HubError(ErrorCode.NOT_SUBSCRIBED, ErrorCode.NOT_SUBSCRIBED.message)
        self._drop_subscription(sub)
        self._send(Reply(command.id).serialize())
        await self.hub.announce_leave(sub)

    async def _publish(self, command: PublishCommand) -> None:
        channel = command.channel
        options = self._permissions(channel, "p")
        if options.publish == "none":
            raise HubError(ErrorCode.PERMISSION_DENIED, ErrorCode.PERMISSION_DENIED.message)
        if options.publish == "subscribers" and channel not in self.subscriptions:
            raise HubError(ErrorCode.NOT_SUBSCRIBED, ErrorCode.NOT_SUBSCRIBED.message)
        if len(command.data) > self._limits.max_publication_size:
            raise HubError(ErrorCode.TOO_LARGE, ErrorCode.TOO_LARGE.message)
        if command.ephemeral:
            await self.hub.publish_ephemeral_encoded(channel, command.data, self.info_bytes)
            self._send(Reply(command.id).serialize())
            return
        result = await self.hub.publish_encoded(
            channel, options, command.data, self.info_bytes, command.message_id
        )
        reply = Reply(command.id, PublishResult(result.position, result.duplicate))
        self._send(reply.serialize())

    async def _history(self, command: HistoryCommand) -> None:
        self._permissions(command.channel, "r")
        pubs, position = await self.hub.history(
            command.channel, limit=command.limit or 100, since=command.since
        )
        result = HistoryResult(command.channel, position, tuple(pubs))
        self._send(Reply(command.id, result).serialize())

    def _refresh(self, command: RefreshCommand) -> None:
        assert self.identity is not None
        if self.identity.anonymous:
            raise AuthError(ErrorCode.UNAUTHORIZED, ErrorCode.UNAUTHORIZED.message)
        identity = self.hub.auth.authenticate(command.token)
        if identity.user != self.identity.user:
            raise AuthError(ErrorCode.UNAUTHORIZED, ErrorCode.UNAUTHORIZED.message)
        self.identity = identity
        self._schedule_expiry()
        for channel, sub in list(self.subscriptions.items()):
            if not identity.permissions.allows(channel, "s"):
                self._drop_subscription(sub)
                self._send(UnsubscribePush(channel, ErrorCode.PERMISSION_DENIED).serialize())
                self.hub.spawn(self.hub.announce_leave(sub))
        expires = None if identity.expires is None else int(identity.expires)
        self._send(Reply(command.id, RefreshResult(expires)).serialize())

    def _drop_subscription(self, sub: SessionSubscription) -> None:
        """End ``sub`` now: nothing of its channel is sent after this returns."""
        if not sub.active:
            return
        sub.active = False
        if self.subscriptions.get(sub.channel) is sub:
            del self.subscriptions[sub.channel]
        self._outbox.discard(sub.queue)
        sub.buffer.clear()
        self.hub.detach(sub)

    # --- timers --------------------------------------------------------------------------

    def _connect_timeout(self) -> None:
        self._connect_timer = None
        if self.state == SessionState.AWAITING_CONNECT:
            self.close(DisconnectCode.CONNECT_TIMEOUT)

    def _schedule_expiry(self) -> None:
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
            self._expiry_timer = None
        assert self.identity is not None
        if self.identity.expires is not None:
            deadline = self.identity.expires + self.hub.auth.leeway
            delay = max(0.0, deadline - self.hub.clock())
            loop = asyncio.get_running_loop()
            self._expiry_timer = loop.call_later(delay, self.check_expiry)

    def check_expiry(self) -> bool:
        """Close with 4003 if the token has expired; returns whether it did.

        Called by the session's timer; public so that a test with a fake clock can run it.
        """
        self._expiry_timer = None
        identity = self.identity
        if self.state != SessionState.CONNECTED or identity is None or identity.expires is None:
            return False
        # Valid until exp + leeway, as authenticate() judged it at connect and refresh.
        if self.hub.clock() < identity.expires + self.hub.auth.leeway:
            self._schedule_expiry()
            return False
        self.close(DisconnectCode.TOKEN_EXPIRED)
        return True

    # --- output --------------------------------------------------------------------------

    def _write(self, message: str, *, cork: bool = True) -> None:
        try:
            if cork:
                # A feed that publishes to several of this connection's channels in one
                # loop iteration reaches it in one system call, not one per publication.
                self.peer.cork()
            self.peer.send_nowait(message)
        except WSHubError:
            # The connection is gone; the transport calls connection_lost.
            self._start_cleanup()

    def _send(self, message: str) -> None:
        """Send a reply or a control push, after anything already queued."""
        if self.state >= SessionState.CLOSING:
            return
        outbox = self._outbox
        if outbox.pending == 0 and self.peer.writable:
            # Only small replies are corked: a cork is invisible to the transport's
            # high-water mark, and a client that pipelines history reads would otherwise
            # get up to a cork's worth of large replies buffered past it.
            self._write(message, cork=len(message) <= MAX_CORKED_REPLY)
            return
        if not outbox.add_reply(message):
            self.slow_consumer()
            return
        self._ensure_writer()

    def enqueue(
        self,
        sub: SessionSubscription,
        kind: int,
        message: str,
        prepared: PreparedMessage | None = None,
    ) -> None:
        """Send a channel message now if the connection keeps up, else queue it.

        ``prepared`` is ``message`` framed once for the whole fan-out: written as is when
        nothing is queued (the frame is shared), while a backlog queues ``message`` after
        what waits, so that nothing overtakes it.
        """
        if self.state >= SessionState.CLOSING:
            return
        self.hub.stats.deliveries += 1
        outbox = self._outbox
        peer = self.peer
        if outbox.pending == 0 and peer.writable:
            if prepared is None:
                self._write(message)
                return
            try:
                # The fan-out's shared frame; the peer corks it itself.
                peer.send_prepared_nowait(prepared)
            except WSHubError:
                self._start_cleanup()
            return
        dropped = outbox.add(sub.queue, kind, message)
        if dropped is None:
            self.slow_consumer()
            return
        self.hub.stats.drops += dropped
        self._ensure_writer()

    @property
    def queued_messages(self) -> int:
        """Replies and pushes waiting because the connection does not keep up."""
        return self._outbox.pending

    @property
    def queued_size(self) -> int:
        """Characters of JSON waiting (bounded by ``HubLimits.max_queued_size``)."""
        return self._outbox.size

    def slow_consumer(self) -> None:
        """Close with 4004: the client does not read fast enough."""
        if self.state < SessionState.CLOSING:
            self.hub.stats.slow_consumer_disconnects += 1
            self.close(DisconnectCode.SLOW_CONSUMER)

    def _ensure_writer(self) -> None:
        if self._writer is None and self._outbox.pending:
            self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    async def _write_loop(self) -> None:
        outbox = self._outbox
        try:
            while outbox.pending > 0 and self.state < SessionState.CLOSING:
                if not self.peer.writable:
                    await self.peer.drain()
                    continue
                self._write(outbox.pop())
        except (WSHubError, ConnectionError) as exc:
            logger.debug("session %s: write failed: %s", self.client_id, exc)
            self._start_cleanup()
        finally:
            self._writer = None

    # --- closing -------------------------------------------------------------------------

    def close(self, code: DisconnectCode) -> None:
        """Close the connection with ``code`` and clean up.

        Replies already queued are written first (so that a client refused at ``connect``
        sees the error reply before the close frame), except for a slow consumer (4004);
        queued pushes are discarded.
        """
        if self.state >= SessionState.CLOSING:
            return
        logger.debug("session %s: closing with %d", self.client_id, code)
        # A slow consumer reads nothing: its replies would only add to what the hub holds.
        replies = self._outbox.take_replies() if code != DisconnectCode.SLOW_CONSUMER else []
        self._start_cleanup()
        for message in replies:
            self._write(message, cork=False)
        self.hub.spawn(self._close_peer(code))

    async def _close_peer(self, code: DisconnectCode) -> None:
        try:
            await self.peer.close(int(code), code.reason)
        except (WSHubError, ConnectionError) as exc:
            logger.debug("session %s: close failed: %s", self.client_id, exc)

    def _start_cleanup(self) -> None:
        if self.state < SessionState.CLOSING:
            self._set_state(SessionState.CLOSING)
        if self._cleanup_task is None:
            self._cleanup_task = asyncio.get_running_loop().create_task(self._cleanup())

    async def connection_lost(self) -> None:
        """The connection has ended (any reason): leave every channel and forget the session.

        Returns once presence entries are removed and ``leave`` events sent.
        """
        self._start_cleanup()
        assert self._cleanup_task is not None
        await asyncio.shield(self._cleanup_task)

    async def _cleanup(self) -> None:
        for timer in (self._connect_timer, self._expiry_timer):
            if timer is not None:
                timer.cancel()
        self._connect_timer = self._expiry_timer = None
        self._outbox.clear()
        subs = list(self.subscriptions.values())
        for sub in subs:
            self._drop_subscription(sub)
        if self._counted_user and self.identity is not None:
            self.hub.release_user(self.identity.user)
            self._counted_user = False
        try:
            for sub in subs:
                await self.hub.announce_leave(sub)
        finally:
            self.hub.session_closed(self)
            self._set_state(SessionState.CLOSED)
