"""A session's subscription to one channel: buffered until live, then without duplicates."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from wshub.aio import WebSocketConnection, send_prepared_many
from wshub.hub._outbox import POS, ChannelQueue
from wshub.hub.channels import NamespaceOptions
from wshub.hub.wire import Position
from wshub.protocol import PreparedMessage

if TYPE_CHECKING:
    from wshub.hub.session import Session

__all__ = ["SessionSubscription"]


class SessionSubscription:
    """A session's subscription to one channel.

    While the hub reads history for it (``live`` is false), publications arriving from the
    broker are buffered; :meth:`go_live` then releases those after the subscribe position.
    From then on a publication at or before the last delivered offset of the same epoch is
    skipped, so a subscriber never receives a duplicate.
    """

    __slots__ = (
        "active",
        "buffer",
        "channel",
        "epoch",
        "live",
        "offset",
        "options",
        "queue",
        "session",
    )

    def __init__(self, session: Session, channel: str, options: NamespaceOptions) -> None:
        self.session = session
        self.channel = channel
        self.options = options
        self.queue = ChannelQueue(options.slow_consumer, options.queue_size)
        self.buffer: list[tuple[int, int, str, str]] = []
        self.live = False
        self.active = True
        self.epoch = ""
        self.offset = 0

    @property
    def key(self) -> str:
        """The session's client id: unique among a channel's subscribers on this node."""
        return self.session.client_id

    def feed(
        self,
        kind: int,
        offset: int,
        epoch: str,
        message: str,
        prepared: PreparedMessage | None = None,
    ) -> None:
        """Take one message of the channel from the broker (``prepared``: the same,
        framed once for the whole fan-out)."""
        if not self.live:
            self.buffer.append((kind, offset, epoch, message))
            if len(self.buffer) > self.session.max_buffered:
                self.session.slow_consumer()
            return
        if kind == POS:
            if epoch == self.epoch and offset <= self.offset:
                return
            self.epoch, self.offset = epoch, offset
        self.session.enqueue(self, kind, message, prepared)

    @staticmethod
    def feed_many(
        subs: Iterable[SessionSubscription],
        kind: int,
        offset: int,
        epoch: str,
        message: str,
        prepared: PreparedMessage,
    ) -> None:
        """Feed one publication to a channel's subscriptions: :meth:`feed`
        for each of them, batched.

        A live subscription whose session is connected, has nothing queued and talks through a
        ``wshub.aio`` connection is collected, after its duplicate check; the collected
        connections get ``prepared``'s shared frame in one :func:`wshub.aio.send_prepared_many`
        loop and the hub's ``deliveries`` is counted once. The rest (buffering before go-live, a
        backlog, a connection above its write limit, another kind of peer) go through
        :meth:`Session.enqueue` one by one, exactly as :meth:`feed` does:
        the same order, duplicates and slow-consumer policies.
        """
        direct: list[WebSocketConnection] = []
        taken: list[SessionSubscription] = []
        slow: list[SessionSubscription] = []
        positioned = kind == POS
        from wshub.hub.session import SessionState  # session.py imports this module

        closing = SessionState.CLOSING
        for sub in subs:
            if not sub.live:
                sub.feed(kind, offset, epoch, message, prepared)
                continue
            if positioned:
                if epoch == sub.epoch and offset <= sub.offset:
                    continue
                sub.epoch = epoch
                sub.offset = offset
            session = sub.session
            if session.state >= closing:
                continue
            conn = session.direct
            if conn is None or session.outbox.pending:
                slow.append(sub)
            else:
                direct.append(conn)
                taken.append(sub)
        if direct:
            refused = send_prepared_many(direct, prepared)
            if refused:
                # Closed, or above the write limit: the session's own path queues or cleans up.
                slow.extend(taken[i] for i in refused)
            taken[0].session.hub.stats.deliveries += len(direct) - len(refused)
        for sub in slow:
            sub.session.enqueue(sub, kind, message, prepared)

    def go_live(self, position: Position) -> None:
        """Start delivering after ``position``, releasing what arrived meanwhile in order."""
        self.epoch, self.offset = position.epoch, position.offset
        self.live = True
        buffered, self.buffer = self.buffer, []
        for item in sorted(buffered, key=_buffer_order):
            self.feed(*item)


def _buffer_order(item: tuple[int, int, str, str]) -> int:
    # Positioned items of one channel arrive in offset order anyway; sorting by offset is a
    # guard for brokers that reorder. Events keep their place relative to each other.
    return item[1]
