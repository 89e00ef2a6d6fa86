"""A session's subscription to one channel: buffered until live, then without duplicates."""

from __future__ import annotations

from typing import TYPE_CHECKING

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
