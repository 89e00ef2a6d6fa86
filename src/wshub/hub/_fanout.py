"""Fan-out on one node: the channel table, broker envelopes, the reorder window.

The hub encodes each push **once** and hands it to the broker inside a small envelope that
carries the kind, offset and epoch in clear (``b"<kind> <offset> <epoch>\\n" + push``). On
each node :meth:`Fanout.deliver` (the broker callback) decodes the envelope header once and
gives the same ``str`` to every local subscriber of the channel, with one
:class:`~wshub.protocol.PreparedMessage` for all of them: the push is framed once (and, for
connections that negotiated ``compression="deflate-shared"``, compressed once per set of
parameters), and every subscriber that keeps up writes those same bytes; one with a
backlog queues the ``str`` behind it, so its order is kept. Nothing awaits.

The envelope is the same for every subscriber because offsets and epochs are per channel,
not per subscription: that is what lets the frame be shared.

Two nodes publishing to one channel through Redis can deliver offsets out of order; a
publication that arrives ahead of its predecessor waits up to :data:`REORDER_WINDOW`
seconds (at most :data:`REORDER_MAX_HELD` of them) to be put back in order; after that the
held ones go on and clients see, and fill, the gap (docs/protocol.md §5.1).

A broker that may have missed publications (its connection to Redis broke, or Redis failed
over) says so with an empty payload once the channel is delivered again; the fan-out then
asks ``catch_up`` for what was published after the last position it delivered and feeds
it through the same ordering, so that a publication acknowledged meanwhile is delivered,
or, when history no longer has it, the latest one shows subscribers the gap. Without that
a quiet channel would never tell its subscribers: a gap is only seen at a next publication.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from typing import Any, Generic, Protocol, TypeVar

from wshub.exceptions import InvalidState
from wshub.hub._outbox import POS
from wshub.hub.backends import Broker
from wshub.protocol import PreparedMessage

__all__ = [
    "REORDER_MAX_HELD",
    "REORDER_WINDOW",
    "Fanout",
    "FeedMany",
    "Subscriber",
    "envelope",
]

#: Seconds a publication that arrived ahead of its predecessor waits for it.
REORDER_WINDOW = 0.1
#: Publications that may wait so; one more releases them all.
REORDER_MAX_HELD = 64

_Args = tuple[int, int, str, str]
#: What ``catch_up`` returns: ``(offset, epoch, push)`` of positioned publications.
CaughtUp = Sequence[tuple[int, str, str]]
CatchUp = Callable[[str, int, str], Awaitable[CaughtUp]]


class Subscriber(Protocol):
    """What the channel table holds for one subscription."""

    @property
    def channel(self) -> str: ...

    @property
    def key(self) -> str:
        """Unique among the subscribers of a channel on this node (the client id)."""
        ...

    @property
    def active(self) -> bool:
        """False once the subscription ended: it must not be added any more."""
        ...

    def feed(
        self,
        kind: int,
        offset: int,
        epoch: str,
        message: str,
        prepared: PreparedMessage | None = None,
    ) -> None:
        """Take one message of the channel (never awaits); ``prepared`` is ``message``
        framed once for every subscriber of this fan-out, when there is one."""
        ...


S = TypeVar("S", bound=Subscriber)

#: Feeds one publication to many subscribers at once: ``(subscribers, kind, offset, epoch,
#: message, prepared)``; the same as calling each one's ``feed``, in their order.
FeedMany = Callable[[list[S], int, int, str, str, PreparedMessage], None]


def feed_each(
    subs: list[S], kind: int, offset: int, epoch: str, message: str, prepared: PreparedMessage
) -> None:
    """The default :data:`FeedMany`: each subscriber's ``feed``."""
    for sub in subs:
        sub.feed(kind, offset, epoch, message, prepared)


def envelope(kind: int, offset: int, epoch: str, push: bytes) -> bytes:
    """Wrap an encoded push for the broker."""
    return b"%d %d %s\n" % (kind, offset, epoch.encode()) + push


class _Channel(Generic[S]):
    """The local subscribers of one channel, whether the broker delivers it here, and the
    broker's last position for it (to put cross-node publications back in offset order)."""

    __slots__ = (
        "broker_active",
        "epoch",
        "feed_many",
        "flush_handle",
        "held",
        "lock",
        "name",
        "offset",
        "subs",
    )

    def __init__(self, name: str, feed_many: FeedMany[S]) -> None:
        self.name = name
        self.feed_many = feed_many
        self.subs: dict[str, S] = {}
        self.lock = asyncio.Lock()
        self.broker_active = False
        self.epoch: str | None = None
        self.offset = 0
        self.held: dict[int, _Args] = {}
        self.flush_handle: asyncio.TimerHandle | None = None

    def fan_out(self, args: _Args) -> None:
        kind, offset, epoch, message = args
        self.feed_many(
            list(self.subs.values()), kind, offset, epoch, message, PreparedMessage(message)
        )

    def cancel_flush(self) -> None:
        if self.flush_handle is not None:
            self.flush_handle.cancel()
            self.flush_handle = None

    def release_held(self) -> None:
        """Give up waiting: deliver what is held, in offset order (subscribers see the gap)."""
        self.cancel_flush()
        held, self.held = self.held, {}
        for offset in sorted(held):
            self.offset = max(self.offset, offset)
            self.fan_out(held[offset])

    def positioned(self, args: _Args) -> None:
        """Deliver a positioned publication in offset order, holding one that came early."""
        offset, epoch = args[1], args[2]
        if epoch != self.epoch:
            self.release_held()
            self.epoch, self.offset = epoch, offset
            self.fan_out(args)
            return
        if offset > self.offset + 1:
            self.held[offset] = args
            if len(self.held) > REORDER_MAX_HELD:
                self.release_held()
            elif self.flush_handle is None:
                loop = asyncio.get_running_loop()
                self.flush_handle = loop.call_later(REORDER_WINDOW, self.release_held)
            return
        if offset == self.offset + 1:
            self.offset = offset
        self.fan_out(args)
        held = self.held
        while held and self.offset + 1 in held:
            self.offset += 1
            self.fan_out(held.pop(self.offset))
        if not held:
            self.cancel_flush()


class Fanout(Generic[S]):
    """The channels with local subscribers on this node, fed by the broker.

    Args:
        broker: the broker between nodes; a channel is subscribed there while it has local
            subscribers.
        spawn: runs a coroutine in the background (the owner keeps track of it).
        feed_many: gives one publication to all the local subscribers of a channel; by
            default each one's ``feed`` (the hub batches the writes of those that keep up).
        catch_up: ``catch_up(channel, offset, epoch)`` reads the positioned publications
            after that position (all of them, or only the latest when history cannot fill
            the gap), each as ``(offset, epoch, push)``; called when the broker may have
            missed some. ``None``: missed publications are only noticed by clients at the
            next one.
    """

    def __init__(
        self,
        broker: Broker,
        *,
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
        feed_many: FeedMany[S] = feed_each,
        catch_up: CatchUp | None = None,
    ) -> None:
        self.broker = broker
        self._feed_many = feed_many
        self._spawn = spawn
        self._catch_up = catch_up
        self._channels: dict[str, _Channel[S]] = {}
        self._deliver_cb = self.deliver

    def __iter__(self) -> Iterator[str]:
        """The channels with local subscribers (or being set up)."""
        return iter(list(self._channels))

    def subscribers(self, channel: str) -> list[S]:
        """The local subscribers of ``channel``."""
        state = self._channels.get(channel)
        return list(state.subs.values()) if state else []

    async def add(self, sub: S) -> bool:
        """Add ``sub`` to its channel, subscribing this node to the broker if needed.

        Returns:
            Whether it was added (not when it ended while the broker was subscribed).
        """
        name = sub.channel
        while True:
            state = self._channels.get(name)
            if state is None:
                state = self._channels[name] = _Channel(name, self._feed_many)
            async with state.lock:
                if self._channels.get(name) is not state:
                    continue  # torn down while we waited: use the new one
                if not state.broker_active:
                    await self.broker.subscribe(name, self._deliver_cb)
                    state.broker_active = True
                if not sub.active:
                    return False
                state.subs[sub.key] = sub
                return True

    def remove(self, sub: S) -> bool:
        """Remove ``sub``; the broker subscription ends in the background with the last one.

        Returns:
            Whether it was there.
        """
        state = self._channels.get(sub.channel)
        if state is None or state.subs.get(sub.key) is not sub:
            return False
        del state.subs[sub.key]
        if not state.subs:
            self._spawn(self._teardown(state))
        return True

    async def _teardown(self, state: _Channel[S]) -> None:
        async with state.lock:
            if state.subs or self._channels.get(state.name) is not state:
                return
            del self._channels[state.name]
            state.cancel_flush()
            if state.broker_active:
                state.broker_active = False
                with contextlib.suppress(InvalidState):
                    await self.broker.unsubscribe(state.name, self._deliver_cb)

    def start_at(self, channel: str, offset: int, epoch: str) -> None:
        """Order what comes from this position, if the broker has delivered nothing yet."""
        state = self._channels.get(channel)
        if state is not None and state.epoch is None:
            state.epoch, state.offset = epoch, offset

    async def publish(self, channel: str, kind: int, offset: int, epoch: str, push: bytes) -> None:
        """Send an encoded push to every node's subscribers of ``channel``."""
        await self.broker.publish(channel, envelope(kind, offset, epoch, push))

    def deliver(self, channel: str, payload: bytes) -> None:
        """The broker callback: one enveloped push for the local subscribers of ``channel``."""
        state = self._channels.get(channel)
        if state is None or not state.subs:
            return
        if not payload:
            # The broker may have missed publications: catch up from where we are.
            if self._catch_up is not None and state.epoch is not None:
                self._spawn(self._resync(state, self._catch_up, state.offset, state.epoch))
            return
        header, _, body = payload.partition(b"\n")
        kind, offset, epoch = header.split(b" ")
        args = (int(kind), int(offset), epoch.decode(), body.decode())
        if args[0] == POS:
            state.positioned(args)
        else:
            state.fan_out(args)

    async def _resync(self, state: _Channel[S], catch_up: CatchUp, offset: int, epoch: str) -> None:
        """Feed what was published after ``offset`` in ``epoch`` and not delivered since."""
        caught = await catch_up(state.name, offset, epoch)
        if self._channels.get(state.name) is not state:
            return
        for pub_offset, pub_epoch, push in caught:
            if pub_epoch == state.epoch and pub_offset <= state.offset:
                continue  # delivered live meanwhile
            state.positioned((POS, pub_offset, pub_epoch, push))
