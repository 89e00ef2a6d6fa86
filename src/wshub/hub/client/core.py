"""The :class:`HubClient`: one connection to a hub at a time, restored after each loss.

It wires the other modules of the package together: the connection loop opens a WebSocket,
sends ``connect``, restores the subscriptions (:mod:`~wshub.hub.client.subscription`),
resends unanswered commands (:mod:`~wshub.hub.client.requests`), reads until the connection
is lost, and asks :mod:`~wshub.hub.client.reconnect` whether and when to try again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl as ssl_module
from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import IntEnum
from typing import Any, TypeVar

from wshub.aio import ClientConnection, TransportOptions, connect
from wshub.exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    HubError,
    InvalidHandshake,
    InvalidState,
    NegotiationError,
    WSHubError,
)
from wshub.hub.client.commands import HubCommands
from wshub.hub.client.reconnect import Backoff, close_advice, give_up, retryable, why_lost
from wshub.hub.client.requests import OnLost, Outcome, Read, Request, Requests, no_result
from wshub.hub.client.subscription import SubscribeReply, Subscription
from wshub.hub.client.values import (
    ChannelEvent,
    ErrorHandler,
    EventHandler,
    Publication,
    PublicationHandler,
    TokenSource,
    hub_error,
    token_value,
)
from wshub.hub.wire import (
    SUBPROTOCOL,
    ConnectCommand,
    ConnectResult,
    EphemeralPush,
    ErrorCode,
    ErrorReply,
    EventPush,
    Position,
    PresenceDiffPush,
    PublicationPush,
    Reply,
    UnknownPushError,
    UnsubscribeCommand,
    UnsubscribePush,
    parse_message,
)
from wshub.protocol.uri import parse_uri

__all__ = ["ClientState", "HubClient"]

logger = logging.getLogger("wshub.hub.client")

T = TypeVar("T")


class ClientState(IntEnum):
    """The life of a :class:`HubClient`."""

    IDLE = 0  # made, connect() not called yet
    CONNECTING = 1  # opening a connection (the first one, or a reconnection)
    CONNECTED = 2  # connect acknowledged, subscriptions restored: commands flow
    WAITING = 3  # connection lost; waiting for the backoff delay to reconnect
    CLOSED = 4  # close() called, or an error that reconnecting cannot fix


class HubClient(HubCommands):
    """A client of a wshub hub that survives reconnects without losing or repeating messages.

    Args:
        url: the hub's WebSocket URL, e.g. ``ws://127.0.0.1:8765/ws``; or several, the
            nodes of one hub without a balancer in front: the first connection goes to
            the first, and each reconnection to the next one in turn, so that a client
            sent away by a draining node (1012) or refused by it (503) tries another.
        token: a connection JWT; or a callable (plain or async) returning one, called at
            every connection, which lets the client reconnect after its token expired;
            ``None`` connects anonymously.
        meta: self-declared information sent in ``connect`` (e.g. ``{"nick": "Alice"}``);
            a token's ``meta`` claim overrides it.
        queue_size: default bound of each subscription's buffer, in publications.
        max_pending: requests waiting for a reply at most; more calls wait for room.
        backoff_initial: seconds, the bound of the first reconnect delay; the delay is
            random between 0 and the bound (full jitter).
        max_delay: seconds, the largest reconnect delay: however long the hub was away,
            the client tries again at most this long after each failed attempt. After close
            code 4005 (rate limited) it waits between half of it and all of it.
        backoff_factor: growth of the bound per failed attempt in a row.
        rng: the random source of the jitter (a seeded :class:`random.Random` makes the
            delays reproducible); the :mod:`random` module's by default.
        publish_retry_time: seconds :meth:`publish` keeps retrying a publication the hub
            refuses for now (a temporary error, e.g. its Redis is down), with the same
            ``message_id`` and jittered backoff delays; then the error is raised. ``None``
            retries for as long as it takes.
        open_timeout: seconds to open the WebSocket connection and, again, to get the reply
            to ``connect``; ``None`` waits forever.
        ping_interval, ping_timeout, max_size, compression, ssl, additional_headers,
            origin: passed to :func:`wshub.connect`.
        options: every limit of the connection as one :class:`wshub.TransportOptions`
            (``open_timeout`` included); none of them may then also be given as a keyword.

    Raises:
        InvalidURI: ``url`` is not a ``ws://`` or ``wss://`` URL.
        ValueError: a limit is out of range, or ``url`` is an empty list.
    """

    def __init__(
        self,
        url: str | Sequence[str],
        token: TokenSource = None,
        *,
        meta: Any = None,
        queue_size: int = 1024,
        max_pending: int = 1024,
        backoff_initial: float = 0.5,
        max_delay: float = 5.0,
        backoff_factor: float = 2.0,
        rng: random.Random | None = None,
        publish_retry_time: float | None = 30.0,
        open_timeout: float | None = 10.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        max_size: int | None = 2**20,
        compression: str | None = "deflate",
        ssl: ssl_module.SSLContext | None = None,
        additional_headers: Iterable[tuple[str, str]] | Mapping[str, str] | None = None,
        origin: str | None = None,
        options: TransportOptions | None = None,
    ) -> None:
        urls = (url,) if isinstance(url, str) else tuple(url)
        if not urls:
            raise ValueError("url: give at least one URL")
        for each in urls:
            parse_uri(each)  # a wrong URL fails here, not in the background
        if queue_size < 2:
            raise ValueError("queue_size must be at least 2")
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        if publish_retry_time is not None and publish_retry_time < 0:
            raise ValueError("publish_retry_time must be >= 0")
        self._publish_retry_time = publish_retry_time
        self._backoff = Backoff(
            initial=backoff_initial, max_delay=max_delay, factor=backoff_factor, rng=rng
        )
        #: Every URL the client connects to, in turn.
        self.urls = urls
        #: The URL of the current (or next) connection.
        self.url = urls[0]
        self._token = token
        self._meta = meta
        self._queue_size = queue_size
        self._max_pending = max_pending
        transport = TransportOptions.merge(
            options,
            open_timeout=open_timeout,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            max_size=max_size,
            compression=compression,
        )
        self._open_timeout = transport.open_timeout
        self._connect_options: dict[str, Any] = {
            "options": transport,
            "ssl": ssl,
            "additional_headers": additional_headers,
            "origin": origin,
        }
        #: The hub's id for the current connection (changes at every reconnect).
        self.client_id: str | None = None
        #: The user id the hub established (``""`` when anonymous).
        self.user: str | None = None
        #: When the token expires (seconds since the Unix epoch), or ``None``.
        self.expires: float | None = None
        #: How many times the client reconnected after its first connection.
        self.reconnects = 0
        self._state = ClientState.IDLE
        self._ws: ClientConnection | None = None
        self._requests = Requests()
        self._slots: asyncio.Semaphore | None = None
        self._subs: dict[str, Subscription] = {}
        self._runner: asyncio.Task[None] | None = None
        self._first: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._connected_once = False

    # -- state ---------------------------------------------------------------------------------

    @property
    def state(self) -> ClientState:
        """Where the client is in its life (see :class:`ClientState`)."""
        return self._state

    def _set_state(self, state: ClientState) -> None:
        if state is not self._state:
            logger.debug("%s: %s -> %s", self.url, self._state.name, state.name)
            self._state = state

    @property
    def closed(self) -> bool:
        """Whether the client was closed or gave up (see :attr:`error`)."""
        return self._state is ClientState.CLOSED

    @property
    def connection(self) -> ClientConnection | None:
        """The current WebSocket connection, or ``None`` between connections."""
        return self._ws

    @property
    def subscriptions(self) -> Mapping[str, Subscription]:
        """The current subscriptions by channel."""
        return dict(self._subs)

    @property
    def backoff(self) -> Backoff:
        """The reconnect delays: failed attempts in a row, the latest delays."""
        return self._backoff

    @property
    def error(self) -> BaseException | None:
        """Why the client stopped, when it was not :meth:`close`."""
        return self._error

    # -- opening and closing -------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the first connection and send ``connect``; later losses are repaired alone.

        Raises:
            AuthError: the hub refused the token (103) or it expired (113).
            OSError, TimeoutError, InvalidHandshake: the hub could not be reached; the
                first connection is not retried, so that a wrong URL fails fast.
            InvalidState: ``connect()`` was already called.
        """
        if self._state is not ClientState.IDLE:
            raise InvalidState("connect() was already called")
        loop = asyncio.get_running_loop()
        self._slots = asyncio.Semaphore(self._max_pending)
        self._first = loop.create_future()
        self._set_state(ClientState.CONNECTING)
        self._runner = loop.create_task(self._run())
        await self._first

    async def __aenter__(self) -> HubClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection (1000), end every subscription and stop reconnecting.

        Calls still waiting for a reply raise :class:`~wshub.exceptions.ConnectionClosedOK`.
        """
        if self._state is ClientState.CLOSED and self._runner is None:
            return
        self._set_state(ClientState.CLOSED)
        ws = self._ws
        if ws is not None and ws.open:
            await ws.close()
        runner = self._runner
        if runner is not None and runner is not asyncio.current_task():
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        self._runner = None
        self._shut_down(ConnectionClosedOK(1000, "client closed"), None)

    def _shut_down(
        self, error: BaseException, sub_error: HubError | ConnectionClosed | None
    ) -> None:
        """Fail every waiting call with ``error``; end every subscription with ``sub_error``."""
        self._set_state(ClientState.CLOSED)
        self._requests.fail_all(error)
        subs = list(self._subs.values())
        self._subs.clear()
        for sub in subs:
            # Closed by the user: coroutine callbacks stop now rather than drain.
            sub.end(sub_error, drain=sub_error is not None)
        if self._first is not None and not self._first.done():
            self._first.set_exception(error)

    def _fail(self, error: BaseException) -> None:
        """Give up for good: reconnecting cannot fix ``error``."""
        if self._connected_once:  # else connect() raises it
            logger.error("%s: giving up: %s", self.url, error)
        self._error = error
        sub_error = error if isinstance(error, HubError | ConnectionClosed) else None
        if sub_error is None:
            sub_error = ConnectionClosedError(1006, str(error))
        self._shut_down(error, sub_error)

    # -- the connection loop -------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._reconnect_loop()
        except Exception as exc:  # a bug, or an error nobody foresaw: never hang the caller
            logger.exception("%s: the connection loop failed", self.url)
            self._fail(exc)

    async def _reconnect_loop(self) -> None:
        backoff = self._backoff
        while not self.closed:
            self._set_state(ClientState.CONNECTING)
            close_code: int | None = None
            try:
                ws = await connect(self.url, subprotocols=[SUBPROTOCOL], **self._connect_options)
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                if not self._connected_once or not retryable(exc):
                    self._fail(exc)
                    return
                reason = f"connecting failed ({type(exc).__name__}: {exc})"
            else:
                if self.closed:  # close() ran meanwhile
                    await ws.close()
                    return
                failure = await self._session(ws)
                close_code = ws.close_code
                if self.closed:
                    return
                fatal = give_up(
                    failure,
                    close_code,
                    connected_once=self._connected_once,
                    renewable=callable(self._token),
                )
                if fatal is not None:
                    self._fail(fatal)
                    return
                reason = why_lost(failure, close_code, ws.close_reason, self._open_timeout)
            self._set_state(ClientState.WAITING)
            delay = backoff.next_delay(slow_down=close_advice(close_code).slow_down)
            logger.warning("%s: %s; reconnecting in %.2f s", self.url, reason, delay)
            await asyncio.sleep(delay)
            self.url = self.urls[(self.urls.index(self.url) + 1) % len(self.urls)]

    async def _session(self, ws: ClientConnection) -> BaseException | None:
        """Run one connection: ``connect``, restore subscriptions, resend, read until lost.

        Returns why the handshake failed (the hub's refusal of ``connect``, a timeout, the
        connection lost), or ``None`` when it got as far as :attr:`ClientState.CONNECTED`.
        """
        self._ws = ws
        reader = asyncio.get_running_loop().create_task(self._read(ws))
        failure: BaseException | None = None
        ready = False
        try:
            if ws.subprotocol != SUBPROTOCOL:
                raise NegotiationError(f"the hub did not accept the subprotocol {SUBPROTOCOL}")
            await self._handshake(ws)
            ready = True
        except NegotiationError as exc:
            self._fail(exc)
        except Exception as exc:
            # The hub refused connect, did not answer, the link dropped, or the token
            # callable failed: _run() decides whether to try again.
            failure = exc
        finally:
            if not ready or self._state is ClientState.CLOSED:
                await ws.close()
        await reader
        return failure

    async def _handshake(self, ws: ClientConnection) -> None:
        token = await token_value(self._token)
        async with asyncio.timeout(self._open_timeout):
            result = await self._send_now(
                ws,
                lambda id: ConnectCommand(id, token, self._meta).serialize(),
                ConnectResult.parse,
                OnLost.FAIL,
            ).future
        assert result is not None  # OnLost.FAIL: a reply or an exception
        self.client_id = result.client
        self.user = result.user
        self.expires = None if result.expires is None else float(result.expires)
        if self._connected_once:
            self.reconnects += 1
        # Subscriptions first (a publish may need one), then the unanswered requests, in
        # the order they were made. Subscriptions made meanwhile are picked up by the loop.
        # A subscription the hub refused for now (temporary error) is retried on its own
        # timer: it does not hold up the connection.
        while todo := [sub for sub in self._subs.values() if sub.waiting]:
            if not ws.open:
                raise ConnectionClosedError(ws.close_code or 1006, "")
            waits = [self._send_subscribe(ws, sub).future for sub in todo]
            await asyncio.gather(*waits)
        for req in self._requests.unsent():
            ws.send_nowait(req.text)
            req.sent = True
        if self._connected_once:
            logger.info("%s: reconnected; %d subscriptions restored", self.url, len(self._subs))
        self._connected_once = True
        self._backoff.reset()  # the next loss starts again from the first, short delay
        self._set_state(ClientState.CONNECTED)
        if self._first is not None and not self._first.done():
            self._first.set_result(None)

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for message in ws:
                self._dispatch(message)
        except ConnectionClosed:
            pass
        finally:
            self._connection_lost(ws)

    def _connection_lost(self, ws: ClientConnection) -> None:
        if self._ws is ws:
            self._ws = None
        if self._state is ClientState.CONNECTED:
            self._set_state(ClientState.CONNECTING)
        for sub in self._subs.values():
            sub.suspend()
        self._requests.connection_lost(
            ConnectionClosedError(ws.close_code or 1006, ws.close_reason or "")
        )

    # -- sending -------------------------------------------------------------------------------

    def _send_now(
        self,
        ws: ClientConnection,
        build: Callable[[int], str],
        read: Read[T],
        on_lost: OnLost,
        handler: Callable[[Outcome[T]], None] | None = None,
    ) -> Request[T]:
        """Register a request and write it to ``ws`` now (for the connection's own use)."""
        req = self._requests.add(build, read, on_lost, handler)
        try:
            ws.send_nowait(req.text)
            req.sent = True
        except ConnectionClosed as exc:
            self._requests.discard(req)
            req.resolve_lost(exc)
        return req

    def _send_subscribe(self, ws: ClientConnection, sub: Subscription) -> Request[SubscribeReply]:
        since: Position | None = None

        def build(id: int) -> str:
            nonlocal since
            command, since = sub.subscribe_command(id)
            return command.serialize()

        def handle(result: Outcome[SubscribeReply]) -> None:
            if self._subs.get(sub.channel) is not sub:
                # Unsubscribed while the hub was subscribing: undo it on the hub.
                if not isinstance(result, WSHubError) and self._ws is ws and ws.open:
                    self._send_now(
                        ws,
                        lambda id: UnsubscribeCommand(id, sub.channel).serialize(),
                        no_result,
                        OnLost.RESOLVE,
                    )
                return
            if isinstance(result, HubError) and result.temporary:
                self._retry_subscribe(ws, sub, result)
            elif isinstance(result, WSHubError):
                del self._subs[sub.channel]
                sub.end(result)
            else:
                sub.subscribed(result, since)

        return self._send_now(ws, build, sub.read_reply, OnLost.RESOLVE, handle)

    def _temporary_backoff(self) -> Backoff:
        b = self._backoff
        return Backoff(initial=b.initial, max_delay=b.max_delay, factor=b.factor)

    def _retry_subscribe(self, ws: ClientConnection, sub: Subscription, error: HubError) -> None:
        """The hub refused ``sub`` for now (its broker is unavailable): subscribe again on
        this connection after a bounded, jittered backoff delay (a new connection asks at
        once); the subscription keeps its position, so it recovers what it missed."""
        delay = sub.retry_later(error, self._temporary_backoff())

        def again() -> None:
            if self._subs.get(sub.channel) is sub and self._ws is ws and ws.open:
                self._send_subscribe(ws, sub)

        sub.call_later(delay, again)

    def _check_usable(self) -> None:
        if self._state is ClientState.IDLE:
            raise InvalidState("call connect() first")
        if self._state is ClientState.CLOSED:
            if self._error is not None:
                raise self._error
            raise InvalidState("the client is closed")

    async def _call(
        self, build: Callable[[int], str], read: Read[T], on_lost: OnLost = OnLost.RETRY
    ) -> T | None:
        """Send a command (now, or after the reconnection) and wait for its typed result;
        ``None`` when it was done without a reply (:attr:`OnLost.RESOLVE`)."""
        self._check_usable()
        assert self._slots is not None
        async with self._slots:
            self._check_usable()
            req = self._requests.add(build, read, on_lost)
            ws = self._ws
            if self._state is ClientState.CONNECTED and ws is not None:
                req.sent = True
                with contextlib.suppress(ConnectionClosed):
                    # Closing already: _connection_lost() marks it for the next connection.
                    await ws.send(req.text)
            try:
                return await req.future
            finally:
                self._requests.discard(req)

    # -- receiving -----------------------------------------------------------------------------

    def _dispatch(self, message: str | bytes) -> None:
        """Handle one message of the hub: parsed once, by the wire, then routed by kind.

        The hot path is the ``pub`` push, tested first.
        """
        try:
            msg = parse_message(message)
            if isinstance(msg, PublicationPush):
                sub = self._subs.get(msg.channel)
                if sub is not None and sub.active:
                    sub.offer(Publication.from_wire(msg.channel, msg.epoch, msg.publication))
            elif isinstance(msg, Reply | ErrorReply):
                self._reply(msg)
            else:
                self._push(msg)
        except UnknownPushError as exc:
            logger.debug("%s: ignoring a push of a newer protocol: %s", self.url, exc)  # §1
        except ValueError as exc:
            # A hub that breaks wshub.v1 is a bug on its side; keep the connection.
            logger.error("%s: ignoring a message that is not wshub.v1: %s", self.url, exc)

    def _reply(self, reply: Reply | ErrorReply) -> None:
        if not self._requests.reply(reply) and isinstance(reply, ErrorReply):
            logger.error("%s: the hub refused a command: %s", self.url, hub_error(reply))

    def _push(self, push: EphemeralPush | EventPush | PresenceDiffPush | UnsubscribePush) -> None:
        sub = self._subs.get(push.channel)
        if sub is None or not sub.active:
            return  # stale channels are ignored (§1)
        if isinstance(push, UnsubscribePush):
            del self._subs[sub.channel]
            sub.end(hub_error(push, sub.channel))
        elif isinstance(push, PresenceDiffPush):
            # One join or leave event per member: on_event works the same either way.
            for event in ChannelEvent.from_diff(push):
                sub.event(event)
        else:
            sub.event(ChannelEvent.from_wire(push))

    # -- commands ------------------------------------------------------------------------------

    async def subscribe(
        self,
        channel: str,
        callback: PublicationHandler | None = None,
        *,
        since: Position | None = None,
        recent: int = 0,
        on_event: EventHandler | None = None,
        on_error: ErrorHandler | None = None,
        queue_size: int | None = None,
        fill_gaps: bool = True,
    ) -> Subscription:
        """Subscribe to ``channel``; waits until the hub confirmed it.

        Args:
            channel: ``namespace:name``.
            callback: receives each publication in order; a plain function runs inline on
                the receive path (keep it short), a coroutine function is awaited one
                publication at a time. Without it, iterate the subscription.
            since: resume after this position (e.g. one saved from ``sub.position``); see
                ``sub.recovered``.
            recent: on a fresh subscription, or when recovery fails, also deliver the
                latest ``recent`` publications (e.g. a chat room's last messages).
            on_event: receives the channel's join, leave and ephemeral events.
            on_error: with a callback, receives what iteration would raise.
            queue_size: this subscription's buffer bound (default: the client's).
            fill_gaps: keep "every publication exactly once" by fetching skipped ones from
                history (default); ``False`` drops the oldest instead (tickers).

        Raises:
            HubError: refused: invalid channel (107), unknown namespace (108), already
                subscribed (109), too many channels (112).
            AuthError: no ``s`` permission (104).
        """
        self._check_usable()
        if channel in self._subs:
            raise HubError(
                ErrorCode.ALREADY_SUBSCRIBED, ErrorCode.ALREADY_SUBSCRIBED.message, channel=channel
            )
        sub = Subscription(
            self._fetch_history,
            channel,
            callback=callback,
            on_event=on_event,
            on_error=on_error,
            since=since,
            recent=recent,
            queue_size=queue_size if queue_size is not None else self._queue_size,
            fill_gaps=fill_gaps,
        )
        self._subs[channel] = sub
        ws = self._ws
        if self._state is ClientState.CONNECTED and ws is not None:
            self._send_subscribe(ws, sub)
        # Otherwise the next connection's handshake subscribes it.
        try:
            await sub.wait_live()
        except BaseException:
            if self._subs.get(channel) is sub:
                # Cancelled while waiting: if the hub subscribes it, the reply handler
                # unsubscribes it again.
                del self._subs[channel]
                sub.end(None)
            raise
        return sub

    async def unsubscribe(self, channel: str) -> None:
        """End the subscription to ``channel``; its iteration stops after the buffer.

        Raises:
            HubError: 110, not subscribed.
        """
        self._check_usable()
        sub = self._subs.pop(channel, None)
        if sub is None:
            raise HubError(
                ErrorCode.NOT_SUBSCRIBED, ErrorCode.NOT_SUBSCRIBED.message, channel=channel
            )
        was_active = sub.active
        sub.end(None)
        if was_active:
            with contextlib.suppress(HubError):  # 110: the hub had already dropped it
                await self._call(
                    lambda id: UnsubscribeCommand(id, channel).serialize(),
                    no_result,
                    OnLost.RESOLVE,
                )
