"""One subscription: its publications exactly once and in order, and the repair of gaps.

A :class:`Subscription` is the single gate of "exactly once, in order": every publication,
pushed live, recovered in a subscribe reply or fetched from history, goes through
:meth:`Subscription.offer`, which accepts only the next offset. Gaps are filled from history
(``fill_gaps=True``) or skipped; losses that cannot be filled become a 116 at that point of
the stream.

The :class:`~wshub.hub.client.HubClient` drives a subscription through a few named methods
(:meth:`~Subscription.subscribe_command`, :meth:`~Subscription.subscribed`,
:meth:`~Subscription.offer`, :meth:`~Subscription.event`, :meth:`~Subscription.suspend`,
:meth:`~Subscription.end`, :meth:`~Subscription.wait_live`); applications only read it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeAlias

from wshub.aio.connection import is_async_callable
from wshub.exceptions import ConnectionClosed, HubError, InvalidState, ProtocolError, WSHubError
from wshub.hub.client.reconnect import Backoff
from wshub.hub.client.values import (
    MAX_PAGE,
    ChannelEvent,
    ErrorHandler,
    EventHandler,
    HistoryPage,
    Publication,
    PublicationHandler,
    SubscriptionStats,
    unrecoverable,
)
from wshub.hub.wire import Position, SubscribeCommand, SubscribeResult

__all__ = ["FetchHistory", "SubscribeReply", "Subscription"]

logger = logging.getLogger("wshub.hub.client")

#: How a subscription reads history to fill a gap: ``fetch(channel, since, limit)``.
FetchHistory: TypeAlias = Callable[[str, Position, int], Awaitable[HistoryPage]]
#: A subscribe reply, read: the hub's result and the publications it recovered.
SubscribeReply: TypeAlias = tuple[SubscribeResult, list[Publication]]


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
        fetch_history: FetchHistory,
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
        self._fetch_history = fetch_history
        self._callback = callback
        # A plain callback runs inline on the receive path and needs no buffer.
        self._inline = callback is not None and not is_async_callable(callback)
        self._on_event = on_event
        self._on_error = on_error
        self._since = since
        self._recent = recent
        self._queue_size = queue_size
        self._fill_gaps = fill_gaps
        # The position of the last publication accepted, kept as two fields rather than a
        # Position: the receive path moves it once per publication (see ``_position``).
        self._epoch: str | None = None
        self._offset = 0
        self._queue: deque[Publication | HubError] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._active = False
        self._ended = False
        self._error: WSHubError | None = None
        self._live: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._repairing = False
        self._repair_target = 0
        self._repair_task: asyncio.Task[None] | None = None
        self._room: asyncio.Future[None] | None = None
        self._consumer: asyncio.Task[None] | None = None
        self._accepted = self._repaired = self._skipped = 0
        # A subscribe the hub refused for now: the backoff of its retries, the timer.
        self._retry_backoff: Backoff | None = None
        self._retry: asyncio.TimerHandle | None = None
        # A subscribe sent on this connection and not answered yet (not to be sent twice).
        self._in_flight = False
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
    def _position(self) -> Position | None:
        epoch = self._epoch
        return None if epoch is None else Position(self._offset, epoch)

    @_position.setter
    def _position(self, position: Position | None) -> None:
        if position is None:
            self._epoch, self._offset = None, 0
        else:
            self._epoch, self._offset = position.epoch, position.offset

    @property
    def active(self) -> bool:
        """Whether the hub is delivering this subscription on the current connection."""
        return self._active

    @property
    def waiting(self) -> bool:
        """Whether a connection's handshake should subscribe it now: neither delivered nor
        waiting to retry a temporary refusal."""
        return not self._active and self._retry is None and not self._in_flight

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

    def subscribe_command(self, id: int) -> tuple[SubscribeCommand, Position | None]:
        """The ``subscribe`` command to send now, and the position it resumes from."""
        since = self._position or self._since
        self._in_flight = True
        return SubscribeCommand(id, self.channel, since, self._recent), since

    def read_reply(self, obj: Mapping[str, Any]) -> SubscribeReply:
        """Read the ``result`` of a subscribe reply (in the receive path, so that one that is
        not ``wshub.v1`` fails the subscribe rather than the subscription's state).

        Raises:
            ValueError: ``obj`` is not a subscribe result, or a publication's ``info`` is not
                a client info object.
        """
        result = SubscribeResult.parse(obj)
        epoch = result.position.epoch
        return result, [Publication.from_wire(self.channel, epoch, p) for p in result.publications]

    def retry_later(self, error: HubError, backoff: Backoff) -> float:
        """The hub refused the subscribe for now (a temporary error, e.g. its broker is
        down): returns the delay before the next try (``backoff`` is used from the first
        refusal until the next success). The position is kept for the recovery."""
        self._in_flight = False
        if self._retry_backoff is None:
            self._retry_backoff = backoff
            logger.warning("subscription to %s refused for now, retrying: %s", self.channel, error)
        return self._retry_backoff.next_delay()

    def call_later(self, delay: float, again: Callable[[], None]) -> None:
        """Run ``again`` (subscribe again) after ``delay`` unless the connection is lost or
        the subscription ends first."""

        def fire() -> None:
            self._retry = None
            again()

        self._cancel_retry()
        self._retry = asyncio.get_running_loop().call_later(delay, fire)

    def _cancel_retry(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None

    def subscribed(self, reply: SubscribeReply, since: Position | None) -> None:
        """Apply a subscribe reply: recover from ``since`` or start at the channel's position."""
        result, publications = reply
        self._in_flight = False
        if self._retry_backoff is not None:
            self._retry_backoff = None
            logger.info("subscription to %s restored", self.channel)
        self._active = True
        self._since = None
        self._subscribes += 1
        self.recoverable = result.recoverable
        offset, epoch = result.position.offset, result.position.epoch
        restarted = False
        if since is not None:
            if result.recovered:
                self.recovered = True
                if self._position is None:
                    self._position = since
            else:
                self._lost_for_good()
                restarted = since.epoch != epoch and self._restart_at(epoch)
        for pub in publications:
            self.offer(pub)
        position = self._position
        if self._repairing:
            if position is not None and position.epoch == epoch:
                self._repair_target = max(self._repair_target, offset)
        elif restarted and position == Position(0, epoch):
            if offset > 0:
                self._start_repair(offset)
        elif position is None or position.epoch != epoch or position.offset < offset:
            # Nothing up to ``offset`` is owed to us: a fresh subscription starts there.
            self._position = Position(offset, epoch)
        if not self._live.done():
            self._live.set_result(None)

    def offer(self, pub: Publication) -> None:
        """Accept ``pub`` if it is the next one; the single gate of "exactly once, in order"."""
        epoch = self._epoch
        if epoch is not None and pub.epoch == epoch:
            if pub.offset <= self._offset:
                return  # already accepted (recovered and pushed, or repaired)
            if self._repairing:
                self._repair_target = max(self._repair_target, pub.offset)
                return
            gap = pub.offset - self._offset - 1
            if gap:
                if self._fill_gaps:
                    self._start_repair(pub.offset)
                    return
                self._skipped += gap
        elif epoch is not None:
            # The stream restarted (§5.1): whatever the old epoch still held is gone.
            self._lost_for_good()
            if self._restart_at(pub.epoch) and pub.offset > 1:
                self._start_repair(pub.offset)
                return
        self._accept(pub)

    def _restart_at(self, epoch: str) -> bool:
        """After a 116 for a new epoch: resume from that epoch's start, so that its first
        publications, still in history, are fetched (with ``fill_gaps`` and history)."""
        if not (self._fill_gaps and self.recoverable):
            return False
        self._position = Position(0, epoch)
        return True

    def _accept(self, pub: Publication) -> None:
        if self._inline:
            self._epoch, self._offset = pub.epoch, pub.offset
            self._accepted += 1
            try:
                self._callback(pub)  # type: ignore[misc]
            except Exception:
                logger.exception("publication callback of %s failed", self.channel)
            return
        queue = self._queue
        if len(queue) >= self._queue_size:
            if self._fill_gaps:
                if self._epoch is not None:
                    self._start_repair(pub.offset)
                # else: inside a gap already reported (116 queued); the first publication
                # that finds room starts the stream again.
                return
            self._drop_oldest()
        queue.append(pub)
        self._epoch, self._offset = pub.epoch, pub.offset
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
        marker = unrecoverable(self.channel)
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
            return MAX_PAGE
        while len(self._queue) > self._queue_size // 2:
            self._room = asyncio.get_running_loop().create_future()
            try:
                await self._room
            finally:
                self._room = None
        return min(MAX_PAGE, self._queue_size - len(self._queue))

    async def _repair(self) -> None:
        """Fetch the publications skipped since ``position`` from history, in pages."""
        since = self._position
        try:
            while True:
                room = await self._wait_room()
                since = self._position
                assert since is not None
                page = await self._fetch_history(self.channel, since, room)
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
                    raise unrecoverable(self.channel)  # the hub returned nothing usable
        except (HubError, ProtocolError) as exc:
            if self._ended:
                return
            logger.warning("cannot fill the gap in %s after %s: %s", self.channel, since, exc)
            self._repair_task = None
            self._lost_for_good()
        except WSHubError:
            return  # the client closed or gave up: end() reports it
        else:
            self._repair_task = None
            self._repairing = False
            self._repair_target = 0

    # -- events and ending -----------------------------------------------------------------

    def event(self, event: ChannelEvent) -> None:
        """Hand a ``join``, ``leave`` or ``ephemeral`` event to ``on_event``."""
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception:
            logger.exception("event callback of %s failed", self.channel)

    def suspend(self) -> None:
        """The connection was lost: the hub no longer delivers until the next subscribe."""
        self._active = self._in_flight = False
        self._cancel_retry()  # the next connection subscribes it at once

    async def wait_live(self) -> None:
        """Wait for the first successful subscribe.

        Raises:
            HubError, ConnectionClosed, InvalidState: the subscription ended before it.
        """
        await self._live

    def end(self, error: WSHubError | None, *, drain: bool = True) -> None:
        """End the subscription; the reader finishes the buffer, then stops or raises.

        Args:
            error: what iteration raises once the buffer is read; ``None`` stops it.
            drain: ``False`` stops a coroutine callback at once instead of letting it
                finish the buffer (the client was closed).
        """
        if not drain and self._consumer is not None:
            self._consumer.cancel()
        if self._ended:
            return
        self._ended = True
        self._active = self._in_flight = False
        self._error = error
        self._cancel_retry()
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
