"""The Python hub client: :class:`HubClient` speaks ``wshub.v1`` (docs/protocol.md).

A :class:`HubClient` keeps one WebSocket connection to a hub and hides its losses::

    async with HubClient("ws://127.0.0.1:8765/ws", token) as client:
        sub = await client.subscribe("chat:lobby")
        await client.publish("chat:lobby", {"text": "hi"})
        async for pub in sub:
            print(pub.offset, pub.data)

What it guarantees, and how:

* **Reconnects by itself.** After an abnormal closure (lost TCP connection, 1001 hub restart,
  1011, 4002, 4004 slow consumer; 4005 rate limited, after a longer wait) it reconnects with
  exponential backoff and full jitter and logs why on the ``wshub.hub.client`` logger. Calls
  made meanwhile wait and go out once the subscriptions are restored. Closures that a retry
  cannot fix end the client instead (4000 bad commands, 4006 too many connections, 4007
  subprotocol, and 4001/4003 when the token is a fixed string rather than a callable that can
  fetch a new one); every waiting call and subscription then raises the error. Only the first
  connection is not retried: :meth:`HubClient.connect` raises, so that a wrong URL or token
  fails fast.
* **Exactly once, in order, across reconnects.** Each :class:`Subscription` keeps the
  position of the last publication it accepted and re-subscribes with ``since`` = that
  position, so the hub sends exactly the missed publications. Publications are accepted only
  in offset order; an offset already seen is dropped.
* **Recovery failures are reported, never hidden.** When the hub cannot recover (the stream's
  epoch changed, or its history no longer reaches back), the subscription sets
  ``sub.recovered = False`` and, at that point of the stream, ``async for`` raises
  :class:`~wshub.exceptions.HubError` with code 116 (``position unrecoverable``). The
  application reloads its state (e.g. with :meth:`HubClient.history`) and iterates again:
  the publications after the gap follow. With callbacks, ``on_error(sub, exc)`` is called
  instead.
* **Publishes are retried without duplicates.** Every publish carries a ``message_id``
  (a random one unless given); a publish whose reply was lost with the connection is sent
  again with the same id after the re-subscriptions, and the hub answers with the offset it
  assigned the first time. ``publish()`` returns exactly one offset. (A publish whose caller
  was cancelled is not resent; it may or may not have been made.)
* **Bounded buffers.** A subscription buffers at most ``queue_size`` unread publications.
  When its reader falls behind that far, the client stops buffering (it keeps reading the
  socket, so replies and other channels are not held up) and, once the reader has caught up
  to half the buffer, fetches what it skipped with ``history`` ``since`` its position: still
  exactly once and in order (this needs the ``r`` permission; without it, or once the hub's
  history was trimmed, the gap is reported as above). A gap in the hub's own stream
  (namespaces whose slow-consumer policy drops publications) is filled the same way.
  With ``fill_gaps=False`` (tickers,
  where only the newest value matters) the oldest buffered publication is dropped instead,
  and gaps in the stream are skipped. At most ``max_pending`` requests wait for a reply;
  further calls wait for room.

Replies are matched to commands by request id; error replies raise
:class:`~wshub.exceptions.HubError`, or :class:`~wshub.exceptions.AuthError` for the
codes about tokens and permissions (103, 104, 113).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import random
import ssl as ssl_module
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Any, Literal, TypeAlias

import orjson

from wshub.aio import ClientConnection, connect
from wshub.aio.connection import is_async_callable
from wshub.exceptions import (
    AuthError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    HubError,
    InvalidHandshake,
    InvalidResponse,
    InvalidState,
    NegotiationError,
    WSHubError,
)
from wshub.hub.wire import (
    SUBPROTOCOL,
    ClientInfo,
    CloseCode,
    Connect,
    ErrorCode,
    History,
    Ping,
    Position,
    Presence,
    Publish,
    Refresh,
    Subscribe,
    Unsubscribe,
)
from wshub.protocol.uri import parse_uri

__all__ = [
    "ChannelEvent",
    "ClientState",
    "HistoryPage",
    "HubClient",
    "Position",
    "Publication",
    "Subscription",
    "SubscriptionStats",
    "hub_error",
]

logger = logging.getLogger("wshub.hub.client")

#: A token, or a (possibly async) callable returning a fresh one at every connection.
TokenSource: TypeAlias = str | Callable[[], str | Awaitable[str]] | None
#: Receives each publication of a subscription, in order.
PublicationHandler: TypeAlias = Callable[["Publication"], Awaitable[None] | None]
#: Receives join, leave and ephemeral events of a subscription.
EventHandler: TypeAlias = Callable[["ChannelEvent"], object]
#: Receives what ``async for`` would raise: a 116 gap marker, or the error that ended it.
ErrorHandler: TypeAlias = Callable[["Subscription", HubError], object]

# Error codes that are about who the client is or what it may do.
_AUTH_CODES = frozenset(
    {ErrorCode.UNAUTHORIZED, ErrorCode.PERMISSION_DENIED, ErrorCode.TOKEN_EXPIRED}
)
# Close codes after which reconnecting cannot help (docs/protocol.md §7).
_FATAL_CLOSE_CODES = frozenset(
    {CloseCode.BAD_COMMANDS, CloseCode.TOO_MANY_CONNECTIONS, CloseCode.UNSUPPORTED_SUBPROTOCOL}
)
# Close codes that need a new token before reconnecting.
_TOKEN_CLOSE_CODES = frozenset({CloseCode.UNAUTHORIZED, CloseCode.TOKEN_EXPIRED})
# The largest ``limit`` the hub accepts for one history read.
_MAX_PAGE = 1000


def hub_error(error: Mapping[str, Any], channel: str | None = None) -> HubError:
    """The exception for an ``error`` object of a reply or an ``unsubscribe`` push."""
    code = error.get("code")
    message = error.get("message")
    code = code if isinstance(code, int) and not isinstance(code, bool) else ErrorCode.INTERNAL
    message = message if isinstance(message, str) else "error"
    cls = AuthError if code in _AUTH_CODES else HubError
    return cls(int(code), message, channel=channel)


def _unrecoverable(channel: str) -> HubError:
    return HubError(ErrorCode.UNRECOVERABLE, ErrorCode.UNRECOVERABLE.message, channel=channel)


# --- values -----------------------------------------------------------------------------


def _client_info(value: object) -> ClientInfo | None:
    if not isinstance(value, dict):
        return None
    return ClientInfo(str(value.get("client", "")), str(value.get("user", "")), value.get("meta"))


@dataclass(frozen=True, slots=True)
class Publication:
    """One publication as a subscriber receives it.

    Attributes:
        channel: the channel it was published in.
        offset: its position in the channel's stream (consecutive within an epoch).
        epoch: the stream it belongs to; offsets of different epochs are unrelated.
        data: the payload, decoded from JSON.
        info: who published it, or ``None`` for publications made by the server.
        time: the hub's time of the publication, seconds since the Unix epoch.
    """

    channel: str
    offset: int
    epoch: str
    data: Any
    info: ClientInfo | None = None
    time: float = 0.0

    @property
    def position(self) -> Position:
        """Where this publication is, to resume after it (``since=``)."""
        return Position(self.offset, self.epoch)

    @classmethod
    def parse(cls, obj: Mapping[str, Any], channel: str, epoch: str) -> Publication:
        """Build from a ``pub`` push or a publication object of a reply.

        Raises:
            KeyError, TypeError, ValueError: ``obj`` lacks an integer ``offset``.
        """
        offset = obj["offset"]
        if not isinstance(offset, int) or isinstance(offset, bool):
            raise TypeError("offset must be an integer")
        time_ms = obj.get("time")
        return cls(
            channel,
            offset,
            epoch,
            obj.get("data"),
            _client_info(obj.get("info")),
            time_ms / 1000 if isinstance(time_ms, int | float) else 0.0,
        )


@dataclass(frozen=True, slots=True)
class ChannelEvent:
    """A ``join``, ``leave`` or ``ephemeral`` push of a subscribed channel.

    Attributes:
        kind: ``"join"``, ``"leave"`` or ``"ephemeral"``.
        channel: the channel.
        info: the client that joined, left or sent the ephemeral publication.
        data: the payload of an ephemeral publication, else ``None``.
    """

    kind: Literal["join", "leave", "ephemeral"]
    channel: str
    info: ClientInfo | None
    data: Any = None


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """The answer to :meth:`HubClient.history`.

    Attributes:
        channel: the channel.
        position: the channel's position when the hub read the history (page on with
            ``since=`` the last publication's position until it is reached).
        publications: oldest first.
    """

    channel: str
    position: Position
    publications: list[Publication]


@dataclass(frozen=True, slots=True)
class SubscriptionStats:
    """Counters of one subscription (see :meth:`Subscription.statistics`).

    Attributes:
        buffered: publications waiting to be read now.
        queue_size: the bound of that buffer.
        accepted: publications accepted in order (buffered or handed to the callback).
        repaired: of those, publications fetched from history to fill a gap.
        skipped: publications never delivered with ``fill_gaps=False`` (dropped from a full
            buffer, or missing from the hub's stream).
        unrecovered: gaps that could not be recovered (each one raised a 116).
        subscribes: successful ``subscribe`` commands (the first one, then one per reconnect).
    """

    buffered: int
    queue_size: int
    accepted: int
    repaired: int
    skipped: int
    unrecovered: int
    subscribes: int


# --- subscriptions ----------------------------------------------------------------------


class Subscription:
    """A subscription to one channel; made by :meth:`HubClient.subscribe`.

    Iterate it (``async for pub in sub``) to read its publications, unless it was made with
    a callback. Iteration ends when the subscription is ended by :meth:`HubClient.unsubscribe`
    or :meth:`HubClient.close`, and raises the error when the hub ended it (e.g. an
    ``unsubscribe`` push after a ``refresh`` that removed the permission, an
    :class:`~wshub.exceptions.AuthError` with code 104) or the client gave up reconnecting.

    Attributes:
        channel: the channel.
        recoverable: whether the channel keeps history (``None`` until subscribed).
        recovered: ``True`` after a subscribe with ``since`` (a reconnection, or a saved
            position) recovered everything missed; ``False`` once publications were lost for
            good (a failed recovery, a new epoch, a gap history could not fill: a 116 was
            raised at that point of the stream); ``None`` while neither happened.
    """

    def __init__(
        self,
        client: HubClient,
        channel: str,
        *,
        callback: PublicationHandler | None,
        on_event: EventHandler | None,
        on_error: ErrorHandler | None,
        since: Position | None,
        recent: int,
        queue_size: int,
        fill_gaps: bool,
    ) -> None:
        self.channel = channel
        self.recoverable: bool | None = None
        self.recovered: bool | None = None
        self._client = client
        self._callback = callback
        # A plain callback runs inline on the receive path and needs no buffer.
        self._inline = callback is not None and not is_async_callable(callback)
        self._on_event = on_event
        self._on_error = on_error
        self._since = since
        self._recent = recent
        self._queue_size = queue_size
        self._fill_gaps = fill_gaps
        self._position: Position | None = None
        self._queue: deque[Publication | HubError] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._active = False
        self._ended = False
        self._error: HubError | ConnectionClosed | None = None
        self._live: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._repairing = False
        self._repair_target = 0
        self._repair_task: asyncio.Task[None] | None = None
        self._room: asyncio.Future[None] | None = None
        self._consumer: asyncio.Task[None] | None = None
        self._accepted = self._repaired = self._skipped = 0
        self._unrecovered_count = self._subscribes = 0
        if callback is not None and not self._inline:
            self._consumer = asyncio.get_running_loop().create_task(self._consume())

    def __repr__(self) -> str:
        return f"<Subscription {self.channel} at {self._position}>"

    @property
    def position(self) -> Position | None:
        """The position of the last publication accepted (store it to resume with ``since``)."""
        return self._position

    @property
    def active(self) -> bool:
        """Whether the hub is delivering this subscription on the current connection."""
        return self._active

    @property
    def ended(self) -> bool:
        """Whether the subscription is over (unsubscribed, closed or ended by the hub)."""
        return self._ended

    def statistics(self) -> SubscriptionStats:
        """Counters for monitoring: buffer use, gaps filled, publications skipped."""
        return SubscriptionStats(
            buffered=len(self._queue),
            queue_size=self._queue_size,
            accepted=self._accepted,
            repaired=self._repaired,
            skipped=self._skipped,
            unrecovered=self._unrecovered_count,
            subscribes=self._subscribes,
        )

    # -- reading -----------------------------------------------------------------------------

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Publication:
        if self._callback is not None:
            raise InvalidState("this subscription delivers to a callback")
        return await self._next()

    async def get(self) -> Publication:
        """The next publication (what ``async for`` yields).

        Raises:
            HubError: code 116 at a gap that could not be recovered (reading on continues
                after the gap); or the error that ended the subscription.
            StopAsyncIteration: the subscription was ended by this client.
        """
        return await self.__anext__()

    async def _next(self) -> Publication:
        queue = self._queue
        while not queue:
            if self._ended:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            if self._waiter is not None:
                raise InvalidState("the subscription is already being read")
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        item = queue.popleft()
        room = self._room
        if room is not None and len(queue) <= self._queue_size // 2 and not room.done():
            room.set_result(None)
        if isinstance(item, HubError):
            raise item
        return item

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _consume(self) -> None:
        """Feed a coroutine callback, one publication at a time, in order."""
        callback = self._callback
        assert callback is not None
        while True:
            try:
                pub = await self._next()
            except StopAsyncIteration:
                return
            except HubError as exc:
                self._report(exc)
                if self._ended and not self._queue:
                    return
                continue
            except ConnectionClosed:
                return
            try:
                await callback(pub)  # type: ignore[misc]
            except Exception:
                logger.exception("publication callback of %s failed", self.channel)

    def _report(self, exc: HubError) -> None:
        if self._on_error is None:
            logger.warning("subscription to %s: %s", self.channel, exc)
            return
        try:
            self._on_error(self, exc)
        except Exception:
            logger.exception("on_error callback of %s failed", self.channel)

    # -- accepting publications ------------------------------------------------------------

    def _subscribe_command(self, id: int) -> tuple[Subscribe, Position | None]:
        since = self._position or self._since
        return Subscribe(id, self.channel, since, self._recent), since

    def _subscribed(self, result: Mapping[str, Any], since: Position | None) -> None:
        """Apply a subscribe reply: recover from ``since`` or start at the channel's position."""
        self._active = True
        self._since = None
        self._subscribes += 1
        self.recoverable = bool(result.get("recoverable"))
        epoch = str(result.get("epoch", ""))
        offset = result.get("offset")
        offset = offset if isinstance(offset, int) else 0
        if since is not None:
            if result.get("recovered"):
                self.recovered = True
                if self._position is None:
                    self._position = since
            else:
                self._lost_for_good()
        for obj in result.get("publications") or ():
            self._offer(Publication.parse(obj, self.channel, epoch))
        position = self._position
        if self._repairing:
            if position is not None and position.epoch == epoch:
                self._repair_target = max(self._repair_target, offset)
        elif position is None or position.epoch != epoch or position.offset < offset:
            # Nothing up to ``offset`` is owed to us: a fresh subscription starts there.
            self._position = Position(offset, epoch)
        if not self._live.done():
            self._live.set_result(None)

    def _offer(self, pub: Publication) -> None:
        """Accept ``pub`` if it is the next one; the single gate of "exactly once, in order"."""
        position = self._position
        if position is not None and pub.epoch == position.epoch:
            if pub.offset <= position.offset:
                return  # already accepted (recovered and pushed, or repaired)
            if self._repairing:
                self._repair_target = max(self._repair_target, pub.offset)
                return
            gap = pub.offset - position.offset - 1
            if gap:
                if self._fill_gaps:
                    self._start_repair(pub.offset)
                    return
                self._skipped += gap
        elif position is not None:
            # The stream restarted (§5.1): whatever the old epoch still held is gone.
            self._lost_for_good()
        self._accept(pub)

    def _accept(self, pub: Publication) -> None:
        if self._inline:
            self._position = pub.position
            self._accepted += 1
            try:
                self._callback(pub)  # type: ignore[misc]
            except Exception:
                logger.exception("publication callback of %s failed", self.channel)
            return
        queue = self._queue
        if len(queue) >= self._queue_size:
            if self._fill_gaps:
                if self._position is not None:
                    self._start_repair(pub.offset)
                # else: inside a gap already reported (116 queued); the first publication
                # that finds room starts the stream again.
                return
            self._drop_oldest()
        queue.append(pub)
        self._position = pub.position
        self._accepted += 1
        self._wake()

    def _drop_oldest(self) -> None:
        """Make room with ``fill_gaps=False``: the oldest publication goes, gap markers stay."""
        queue = self._queue
        markers: list[Publication | HubError] = []
        while queue:
            item = queue.popleft()
            if isinstance(item, Publication):
                self._skipped += 1
                break
            markers.append(item)
        queue.extendleft(reversed(markers))

    def _lost_for_good(self) -> None:
        """Publications were lost: raise a 116 at this point of the stream, start over."""
        self.recovered = False
        self._position = None
        self._unrecovered_count += 1
        self._stop_repair()
        marker = _unrecoverable(self.channel)
        if self._inline:
            self._report(marker)
            return
        queue = self._queue
        if not (queue and isinstance(queue[-1], HubError)):
            queue.append(marker)
            self._wake()

    # -- filling gaps --------------------------------------------------------------------------

    def _start_repair(self, offset: int) -> None:
        self._repairing = True
        self._repair_target = max(self._repair_target, offset)
        if self._repair_task is None and not self._ended:
            self._repair_task = asyncio.get_running_loop().create_task(self._repair())

    def _stop_repair(self) -> None:
        self._repairing = False
        self._repair_target = 0
        task = self._repair_task
        self._repair_task = None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _wait_room(self) -> int:
        """Wait until the reader emptied half the buffer; returns how many may be fetched."""
        if self._inline:
            return _MAX_PAGE
        while len(self._queue) > self._queue_size // 2:
            self._room = asyncio.get_running_loop().create_future()
            try:
                await self._room
            finally:
                self._room = None
        return min(_MAX_PAGE, self._queue_size - len(self._queue))

    async def _repair(self) -> None:
        """Fetch the publications skipped since ``position`` from history, in pages."""
        since = self._position
        try:
            while True:
                room = await self._wait_room()
                since = self._position
                assert since is not None
                page = await self._client.history(self.channel, since=since, limit=room)
                for pub in page.publications:
                    position = self._position
                    if position is None or pub.epoch != position.epoch:
                        break
                    if pub.offset == position.offset + 1:
                        self._repaired += 1
                        self._accept(pub)
                position = self._position
                assert position is not None
                target = max(self._repair_target, page.position.offset)
                if position.offset >= target:
                    break
                if position == since:
                    raise _unrecoverable(self.channel)  # the hub returned nothing usable
        except HubError as exc:
            if self._ended:
                return
            logger.warning("cannot fill the gap in %s after %s: %s", self.channel, since, exc)
            self._repair_task = None
            self._lost_for_good()
        except WSHubError:
            return  # the client closed or gave up: _end() reports it
        else:
            self._repair_task = None
            self._repairing = False
            self._repair_target = 0

    # -- events and ending -----------------------------------------------------------------

    def _event(self, kind: Literal["join", "leave", "ephemeral"], obj: Mapping[str, Any]) -> None:
        if self._on_event is None:
            return
        event = ChannelEvent(kind, self.channel, _client_info(obj.get("info")), obj.get("data"))
        try:
            self._on_event(event)
        except Exception:
            logger.exception("event callback of %s failed", self.channel)

    def _end(self, error: HubError | ConnectionClosed | None) -> None:
        """End the subscription; the reader finishes the buffer, then stops or raises."""
        if self._ended:
            return
        self._ended = True
        self._active = False
        self._error = error
        self._stop_repair()
        if not self._live.done():
            # Never live: subscribe() raises the error, nobody else needs to hear of it.
            self._live.set_exception(error or InvalidState("unsubscribed before the hub answered"))
            self._live.exception()  # subscribe() may have been cancelled: mark it retrieved
            if self._consumer is not None:
                self._consumer.cancel()
        elif self._inline and isinstance(error, HubError):
            self._report(error)
        self._wake()


# --- the client -------------------------------------------------------------------------


class ClientState(IntEnum):
    """The life of a :class:`HubClient`."""

    IDLE = 0  # made, connect() not called yet
    CONNECTING = 1  # opening a connection (the first one, or a reconnection)
    CONNECTED = 2  # connect acknowledged, subscriptions restored: commands flow
    WAITING = 3  # connection lost; waiting for the backoff delay to reconnect
    CLOSED = 4  # close() called, or an error that reconnecting cannot fix


class _OnLost(Enum):
    """What happens to a request whose connection is lost before its reply."""

    RETRY = 1  # send it again on the next connection (idempotent, or made so by message_id)
    RESOLVE = 2  # done anyway (unsubscribe: the next connection will not have the channel)
    FAIL = 3  # raise ConnectionClosedError (the connect handshake)


class _Request:
    __slots__ = ("future", "handler", "id", "on_lost", "sent", "text")

    def __init__(
        self,
        id: int,
        text: str,
        on_lost: _OnLost,
        handler: Callable[[Mapping[str, Any] | HubError], None] | None,
    ) -> None:
        self.id = id
        self.text = text
        self.on_lost = on_lost
        # Runs inside the receive path, before any later message is handled (subscribe
        # replies must take effect before the pushes that follow them).
        self.handler = handler
        self.future: asyncio.Future[Mapping[str, Any]] = asyncio.get_running_loop().create_future()
        self.sent = False


class HubClient:
    """A client of a wshub hub that survives reconnects without losing or repeating messages.

    Args:
        url: the hub's WebSocket URL, e.g. ``ws://127.0.0.1:8765/ws``.
        token: a connection JWT; or a callable (plain or async) returning one, called at
            every connection, which lets the client reconnect after its token expired;
            ``None`` connects anonymously.
        meta: self-declared information sent in ``connect`` (e.g. ``{"nick": "Alice"}``);
            a token's ``meta`` claim overrides it.
        queue_size: default bound of each subscription's buffer, in publications.
        max_pending: requests waiting for a reply at most; more calls wait for room.
        backoff_initial: seconds, the first reconnect delay bound (full jitter: a random
            delay between 0 and the bound).
        backoff_max: seconds, the largest delay bound.
        backoff_factor: growth of the bound per failed attempt.
        open_timeout: seconds to open the WebSocket connection and, again, to get the reply
            to ``connect``; ``None`` waits forever.
        ping_interval, ping_timeout, max_size, compression, ssl, additional_headers,
            origin: passed to :func:`wshub.connect`.

    Raises:
        InvalidURI: ``url`` is not a ``ws://`` or ``wss://`` URL.
        ValueError: a limit is out of range.
    """

    def __init__(
        self,
        url: str,
        token: TokenSource = None,
        *,
        meta: Any = None,
        queue_size: int = 1024,
        max_pending: int = 1024,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        backoff_factor: float = 2.0,
        open_timeout: float | None = 10.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        max_size: int | None = 2**20,
        compression: str | None = "deflate",
        ssl: ssl_module.SSLContext | None = None,
        additional_headers: Iterable[tuple[str, str]] | Mapping[str, str] | None = None,
        origin: str | None = None,
    ) -> None:
        parse_uri(url)  # a wrong URL fails here, not in the background
        if queue_size < 2:
            raise ValueError("queue_size must be at least 2")
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        if backoff_initial < 0 or backoff_max < backoff_initial or backoff_factor < 1:
            raise ValueError("need 0 <= backoff_initial <= backoff_max and backoff_factor >= 1")
        self.url = url
        self._token = token
        self._meta = meta
        self._queue_size = queue_size
        self._max_pending = max_pending
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._backoff_factor = backoff_factor
        self._open_timeout = open_timeout
        self._connect_options: dict[str, Any] = {
            "ping_interval": ping_interval,
            "ping_timeout": ping_timeout,
            "max_size": max_size,
            "compression": compression,
            "ssl": ssl,
            "additional_headers": additional_headers,
            "origin": origin,
            "open_timeout": open_timeout,
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
        self._ids = itertools.count(1)
        self._pending: dict[int, _Request] = {}
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
        for req in list(self._pending.values()):
            self._pending.pop(req.id, None)
            if not req.future.done():
                req.future.set_exception(error)
                req.future.exception()  # its caller may have been cancelled meanwhile
        subs = list(self._subs.values())
        self._subs.clear()
        for sub in subs:
            sub._end(sub_error)
            if sub._consumer is not None and sub_error is None:
                sub._consumer.cancel()
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

    async def _token_value(self) -> str | None:
        token = self._token
        if token is None or isinstance(token, str):
            return token
        value = token()
        if inspect.isawaitable(value):
            value = await value
        return value

    def _delay(self, attempt: int, close_code: int | None) -> float:
        """Exponential backoff with full jitter, so that clients do not return in step."""
        if close_code == CloseCode.RATE_LIMITED:
            # The hub asked us to slow down: wait long.
            return random.uniform(self._backoff_max / 2, self._backoff_max)
        bound = self._backoff_initial * self._backoff_factor**attempt
        return random.uniform(0, min(bound, self._backoff_max))

    async def _run(self) -> None:
        try:
            await self._reconnect_loop()
        except Exception as exc:  # a bug, or an error nobody foresaw: never hang the caller
            logger.exception("%s: the connection loop failed", self.url)
            self._fail(exc)

    async def _reconnect_loop(self) -> None:
        attempt = 0
        while not self.closed:
            self._set_state(ClientState.CONNECTING)
            close_code: int | None = None
            try:
                ws = await connect(self.url, subprotocols=[SUBPROTOCOL], **self._connect_options)
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                if not self._connected_once or not _retryable(exc):
                    self._fail(exc)
                    return
                reason = f"connecting failed ({type(exc).__name__}: {exc})"
            else:
                if self.closed:  # close() ran meanwhile
                    await ws.close()
                    return
                failure, ready = await self._session(ws)
                close_code = ws.close_code
                if self.closed:
                    return
                if ready:
                    attempt = 0
                fatal = self._fatal_error(failure, close_code)
                if fatal is not None:
                    self._fail(fatal)
                    return
                if isinstance(failure, HubError):
                    reason = f"connect refused ({failure})"
                elif isinstance(failure, TimeoutError):
                    reason = f"no reply to connect within {self._open_timeout} s"
                elif failure is not None and not isinstance(failure, ConnectionClosed):
                    reason = f"connecting failed ({type(failure).__name__}: {failure})"
                else:
                    reason = f"connection lost (close code {close_code}{_reason(ws.close_reason)})"
            self._set_state(ClientState.WAITING)
            delay = self._delay(attempt, close_code)
            attempt += 1
            logger.warning("%s: %s; reconnecting in %.2f s", self.url, reason.strip(), delay)
            await asyncio.sleep(delay)

    def _fatal_error(
        self, failure: BaseException | None, close_code: int | None
    ) -> BaseException | None:
        """The error that ends the client, or ``None`` when reconnecting may help."""
        renewable = callable(self._token)
        if isinstance(failure, HubError):
            if not self._connected_once or not renewable:
                return failure
            if failure.code not in (ErrorCode.UNAUTHORIZED, ErrorCode.TOKEN_EXPIRED):
                return failure
            return None
        if not self._connected_once:
            # The first connection failed: report it rather than retry blindly.
            return failure or ConnectionClosedError(close_code or 1006, "closed while connecting")
        if close_code in _FATAL_CLOSE_CODES:
            assert close_code is not None
            return ConnectionClosedError(close_code, CloseCode(close_code).reason)
        if close_code in _TOKEN_CLOSE_CODES and not renewable:
            return AuthError(ErrorCode.TOKEN_EXPIRED, ErrorCode.TOKEN_EXPIRED.message)
        return None

    async def _session(self, ws: ClientConnection) -> tuple[BaseException | None, bool]:
        """Run one connection: ``connect``, restore subscriptions, resend, read until lost.

        Returns why the handshake failed (the hub's refusal of ``connect``, a timeout, the
        connection lost), or ``None``; and whether the connection got as far as
        :attr:`ClientState.CONNECTED`.
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
        return failure, ready

    async def _handshake(self, ws: ClientConnection) -> None:
        token = await self._token_value()
        async with asyncio.timeout(self._open_timeout):
            result = await self._send_now(
                ws, lambda id: Connect(id, token, self._meta).serialize(), _OnLost.FAIL
            ).future
        self.client_id = str(result.get("client", ""))
        self.user = str(result.get("user", ""))
        expires = result.get("expires")
        self.expires = float(expires) if isinstance(expires, int | float) else None
        if self._connected_once:
            self.reconnects += 1
        # Subscriptions first (a publish may need one), then the unanswered requests, in
        # the order they were made. Subscriptions made meanwhile are picked up by the loop.
        while todo := [sub for sub in self._subs.values() if not sub._active]:
            if not ws.open:
                raise ConnectionClosedError(ws.close_code or 1006, "")
            waits = [self._send_subscribe(ws, sub).future for sub in todo]
            await asyncio.gather(*waits)
        for req in list(self._pending.values()):
            if not req.sent:
                ws.send_nowait(req.text)
                req.sent = True
        if self._connected_once:
            logger.info("%s: reconnected; %d subscriptions restored", self.url, len(self._subs))
        self._connected_once = True
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
            sub._active = False
        lost = ConnectionClosedError(ws.close_code or 1006, ws.close_reason or "")
        for req in list(self._pending.values()):
            if not req.sent:
                continue
            req.sent = False
            if req.on_lost is _OnLost.RETRY:
                continue
            del self._pending[req.id]
            if req.future.done():
                continue
            if req.on_lost is _OnLost.RESOLVE:
                req.future.set_result({})
            else:
                req.future.set_exception(lost)
                req.future.exception()  # its waiter may be gone (connect timed out)

    # -- sending -------------------------------------------------------------------------------

    def _send_now(
        self,
        ws: ClientConnection,
        build: Callable[[int], str],
        on_lost: _OnLost,
        handler: Callable[[Mapping[str, Any] | HubError], None] | None = None,
    ) -> _Request:
        """Register a request and write it to ``ws`` now (for the connection's own use)."""
        id = next(self._ids)
        req = _Request(id, build(id), on_lost, handler)
        self._pending[id] = req
        try:
            ws.send_nowait(req.text)
            req.sent = True
        except ConnectionClosed as exc:
            del self._pending[id]
            if on_lost is _OnLost.RESOLVE:
                req.future.set_result({})
            else:
                req.future.set_exception(exc)
        return req

    def _send_subscribe(self, ws: ClientConnection, sub: Subscription) -> _Request:
        since: Position | None = None

        def build(id: int) -> str:
            nonlocal since
            command, since = sub._subscribe_command(id)
            return command.serialize()

        def handle(result: Mapping[str, Any] | HubError) -> None:
            if self._subs.get(sub.channel) is not sub:
                # Unsubscribed while the hub was subscribing: undo it on the hub.
                if not isinstance(result, HubError) and self._ws is ws and ws.open:
                    self._send_now(
                        ws, lambda id: Unsubscribe(id, sub.channel).serialize(), _OnLost.RESOLVE
                    )
                return
            if isinstance(result, HubError):
                del self._subs[sub.channel]
                sub._end(result)
            else:
                sub._subscribed(result, since)

        return self._send_now(ws, build, _OnLost.RESOLVE, handle)

    def _check_usable(self) -> None:
        if self._state is ClientState.IDLE:
            raise InvalidState("call connect() first")
        if self._state is ClientState.CLOSED:
            if self._error is not None:
                raise self._error
            raise InvalidState("the client is closed")

    async def _call(
        self, build: Callable[[int], str], on_lost: _OnLost = _OnLost.RETRY
    ) -> Mapping[str, Any]:
        """Send a command (now, or after the reconnection) and wait for its reply."""
        self._check_usable()
        assert self._slots is not None
        async with self._slots:
            self._check_usable()
            id = next(self._ids)
            req = _Request(id, build(id), on_lost, None)
            self._pending[id] = req
            ws = self._ws
            if self._state is ClientState.CONNECTED and ws is not None:
                req.sent = True
                with contextlib.suppress(ConnectionClosed):
                    # Closing already: _connection_lost() marks it for the next connection.
                    await ws.send(req.text)
            try:
                return await req.future
            finally:
                self._pending.pop(id, None)

    # -- receiving -----------------------------------------------------------------------------

    def _dispatch(self, message: str | bytes) -> None:
        try:
            obj = orjson.loads(message)
            if not isinstance(obj, dict):
                raise TypeError("not an object")
            if "push" in obj:
                self._push(obj)
            else:
                self._reply(obj)
        except (ValueError, TypeError, KeyError) as exc:
            # A hub that breaks wshub.v1 is a bug on its side; keep the connection.
            logger.error("%s: ignoring a message that is not wshub.v1: %s", self.url, exc)

    def _reply(self, obj: Mapping[str, Any]) -> None:
        id = obj.get("id")
        req = self._pending.get(id) if isinstance(id, int) else None
        if req is None:
            if "error" in obj:
                logger.error("%s: the hub refused a command: %s", self.url, obj["error"])
            return
        del self._pending[req.id]
        error = obj.get("error")
        outcome: Mapping[str, Any] | HubError
        if isinstance(error, dict):
            outcome = hub_error(error)
        else:
            result = obj.get("result")
            outcome = result if isinstance(result, dict) else {}
        try:
            if req.handler is not None:
                req.handler(outcome)
                outcome = {}
        finally:
            if req.future.done():
                pass
            elif isinstance(outcome, HubError):
                req.future.set_exception(outcome)
            else:
                req.future.set_result(outcome)

    def _push(self, obj: Mapping[str, Any]) -> None:
        kind = obj["push"]
        sub = self._subs.get(obj.get("channel"))  # type: ignore[arg-type]
        if sub is None or not sub._active:
            return  # unknown push types and stale channels are ignored (§1)
        if kind == "pub":
            sub._offer(Publication.parse(obj, sub.channel, str(obj.get("epoch", ""))))
        elif kind in ("join", "leave", "ephemeral"):
            sub._event(kind, obj)
        elif kind == "unsubscribe":
            del self._subs[sub.channel]
            sub._end(hub_error(obj, sub.channel))

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
            self,
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
            await sub._live
        except BaseException:
            if self._subs.get(channel) is sub:
                # Cancelled while waiting: if the hub subscribes it, the reply handler
                # unsubscribes it again.
                del self._subs[channel]
                sub._end(None)
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
        was_active = sub._active
        sub._end(None)
        if was_active:
            with contextlib.suppress(HubError):  # 110: the hub had already dropped it
                await self._call(lambda id: Unsubscribe(id, channel).serialize(), _OnLost.RESOLVE)

    async def publish(self, channel: str, data: Any, message_id: str | None = None) -> int:
        """Publish ``data`` (any JSON value) to ``channel``; returns its offset.

        Exactly one publication is made even if the connection drops before the reply:
        the publish is resent with the same ``message_id`` after reconnecting, and the hub
        answers a duplicate with the offset it assigned the first time.

        Args:
            channel: ``namespace:name``; most namespaces need a subscription first.
            data: the payload, encoded as JSON.
            message_id: 1-64 characters that identify this publication for deduplication;
                a random one by default.

        Raises:
            HubError: 107, 108, 110 (not subscribed), 111 (rate limited), 114 (too large).
            AuthError: no ``p`` permission (104).
            TypeError: ``data`` cannot be encoded as JSON.
        """
        payload = orjson.dumps(data)
        mid = message_id if message_id is not None else uuid.uuid4().hex
        result = await self._call(lambda id: Publish(id, channel, payload, mid).serialize())
        return int(result["offset"])

    async def publish_ephemeral(self, channel: str, data: Any) -> None:
        """Send ``data`` to the current subscribers only (e.g. a typing indicator).

        Not stored, no offset, never recovered (docs/protocol.md §4.4.1); subscribers see
        it as a :class:`ChannelEvent` of kind ``"ephemeral"``. Not resent after a
        reconnection: a stale signal is worth nothing.

        Raises:
            HubError, AuthError: as :meth:`publish`.
        """
        payload = orjson.dumps(data)
        await self._call(
            lambda id: Publish(id, channel, payload, ephemeral=True).serialize(), _OnLost.RESOLVE
        )

    async def presence(self, channel: str) -> list[ClientInfo]:
        """Who is subscribed to ``channel`` now.

        Raises:
            HubError: 107, 108, 115 (presence off in this namespace).
            AuthError: no ``r`` permission (104).
        """
        result = await self._call(lambda id: Presence(id, channel).serialize())
        clients = result.get("clients") or ()
        return [info for info in map(_client_info, clients) if info is not None]

    async def history(
        self, channel: str, since: Position | None = None, limit: int = 100
    ) -> HistoryPage:
        """Read stored publications of ``channel``.

        Args:
            channel: ``namespace:name``.
            since: return the publications after this position (page on with the last
                one's position); without it, the latest ``limit``.
            limit: 1-1000 publications.

        Raises:
            HubError: 107, 108, 115 (no history in this namespace), 116 (``since`` is no
                longer available).
            AuthError: no ``r`` permission (104).
        """
        result = await self._call(lambda id: History(id, channel, limit, since).serialize())
        epoch = str(result.get("epoch", ""))
        offset = result.get("offset")
        pubs = [Publication.parse(obj, channel, epoch) for obj in result.get("publications") or ()]
        return HistoryPage(channel, Position(offset if isinstance(offset, int) else 0, epoch), pubs)

    async def refresh(self, token: str) -> float | None:
        """Replace the connection's token (before it expires); returns the new expiry.

        The new token is also used for later reconnections (unless the client was given a
        token callable, which stays in charge).

        Raises:
            AuthError: the token is invalid or of another user (103), or expired (113).
        """
        result = await self._call(lambda id: Refresh(id, token).serialize())
        if not callable(self._token):
            self._token = token
        expires = result.get("expires")
        self.expires = float(expires) if isinstance(expires, int | float) else None
        return self.expires

    async def ping(self) -> float:
        """An application-level round trip to the hub; returns it in seconds."""
        # perf_counter, not loop.time(): uvloop's clock moves in whole milliseconds.
        start = time.perf_counter()
        await self._call(lambda id: Ping(id).serialize())
        return time.perf_counter() - start


def _retryable(exc: BaseException) -> bool:
    """Network errors, timeouts and 5xx/429 answers are worth retrying; other refusals not."""
    if isinstance(exc, InvalidResponse):
        return exc.status == 0 or exc.status >= 500 or exc.status == 429
    return not isinstance(exc, InvalidHandshake)


def _reason(reason: str | None) -> str:
    return f" {reason}" if reason else ""
