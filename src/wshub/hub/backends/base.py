"""The storage interfaces of a hub node: :class:`Broker`, :class:`HistoryStore` and
:class:`PresenceStore`.

Each interface is a :class:`typing.Protocol` whose docstrings are its contract. The in-memory
implementations (:mod:`.memory`) are the reference; :mod:`.sqlite` keeps history in one file
and :mod:`.redis` shares all three between the nodes of a hub. One contract-test module per
interface (``tests/hub/backends/test_*_contract.py``) runs against every implementation, so
a new backend is added by adding a parameter there.

History
    Every publication of a channel gets the next offset of the channel's *stream*; a stream
    has an *epoch*, a random string fixed when the stream is created. When a stream is lost (a
    memory store restarted, a SQLite file deleted, Redis flushed, an idle stream dropped) its
    successor gets a new epoch, so a client holding an old position can tell that its offsets
    mean nothing any more. Every read of a channel fixes its stream (creating it if needed), so
    the position a reader is given always has a real epoch that a later ``since`` can match.

Presence
    The hub adds a :class:`~wshub.hub.wire.ClientInfo` when a subscription to a channel of a
    namespace with ``presence`` goes live and removes it when the subscription ends, including
    when the connection dies. The ``join`` and ``leave`` pushes are sent by the hub through
    the broker, not by the store.

Broker
    A broker moves opaque payloads from the node that accepted a publication to every node
    with subscribers of the channel, the node itself included. The hub encodes a publication
    once and hands the same bytes to the broker; the broker never looks inside them.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from wshub.hub.wire import ClientInfo, Position, StoredPublication

__all__ = [
    "DEFAULT_PREFIX",
    "AppendResult",
    "Broker",
    "BrokerCallback",
    "HistoryStore",
    "PresenceStore",
    "Recovery",
    "check_limits",
    "new_epoch",
    "recoverable",
]

#: The default first part of every key and Pub/Sub channel name of a shared backend (Redis),
#: so that several hubs (or other applications) can share one database with different ones.
DEFAULT_PREFIX = "wshub"


# --- history ------------------------------------------------------------------------------


def new_epoch() -> str:
    """A fresh random epoch (8 URL-safe characters)."""
    return secrets.token_urlsafe(6)


def check_limits(size: int, limit: int | None = None) -> None:
    """Refuse a negative ``size`` or ``limit`` (local misuse of a store).

    Raises:
        ValueError: one of them is negative.
    """
    if size < 0 or (limit is not None and limit < 0):
        raise ValueError("size and limit must be >= 0")


def recoverable(position: Position, offset: int, epoch: str, first: int) -> bool:
    """Whether every publication after ``offset`` of ``epoch`` is still there.

    Args:
        position: the stream's current position.
        offset: the last offset the reader has.
        epoch: the epoch of that offset.
        first: the oldest available offset (``top + 1`` when nothing is stored).
    """
    if epoch != position.epoch or offset > position.offset:
        return False
    return offset == position.offset or first <= offset + 1


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What :meth:`HistoryStore.append` did.

    Attributes:
        position: the publication's position (the original one for a duplicate).
        publication: the new publication, or ``None`` when ``message_id`` was a duplicate
            within the dedupe window and nothing was appended.
    """

    position: Position
    publication: StoredPublication | None

    @property
    def duplicate(self) -> bool:
        return self.publication is None


@dataclass(frozen=True, slots=True)
class Recovery:
    """What :meth:`HistoryStore.since` found.

    Attributes:
        publications: the publications after the requested offset, oldest first, at most
            ``limit`` of them.
        recovered: ``True`` when the epoch matched and nothing is missing between the
            requested offset and the first returned publication (or the current offset).
            When ``limit`` cut the list, the rest is simply not returned yet: compare the last
            offset with ``position.offset`` to know whether the list is complete.
        position: the stream's current position.
    """

    publications: Sequence[StoredPublication]
    recovered: bool
    position: Position

    @property
    def complete(self) -> bool:
        """Recovered, and every publication up to the current position is in the list."""
        if not self.recovered:
            return False
        last = self.publications[-1].offset if self.publications else None
        return last is None or last == self.position.offset


class HistoryStore(Protocol):
    """Where the hub keeps each channel's stream position and recent publications.

    Contract (``tests/hub/backends/test_history_contract.py``):

    * offsets count from 1 per channel within an epoch, with no gap and no repeat, also when
      several nodes append to one shared store at once;
    * at most ``size`` publications are visible (the newest); publications older than ``ttl``
      are never returned, and :meth:`expire` drops them;
    * :meth:`since` recovers only when the epoch matches and nothing after the offset is
      missing: never a silent gap;
    * a ``message_id`` seen within the dedupe window appends nothing and returns the original
      position;
    * a negative ``size`` or ``limit`` raises :class:`ValueError`; after :meth:`close`,
      appending and reading a channel raise :class:`~wshub.exceptions.InvalidState`, and
      ``close`` is idempotent.
    """

    async def append(
        self,
        channel: str,
        data: bytes,
        *,
        info: bytes | None = None,
        message_id: str | None = None,
        size: int,
        ttl: float | None,
    ) -> AppendResult:
        """Assign the next offset to a publication and keep it.

        Args:
            channel: the channel name.
            data: the payload, raw JSON bytes.
            info: who published it, raw JSON bytes.
            message_id: when given and already seen in this channel within the dedupe
                window, nothing is appended and the original position is returned.
            size: keep at most this many publications in the channel (0: keep none, only
                advance the offset).
            ttl: drop publications older than this many seconds (``None``: no age limit).
        """
        ...

    async def since(self, channel: str, offset: int, epoch: str, *, limit: int) -> Recovery:
        """The publications after ``offset`` of ``epoch`` (see :class:`Recovery`)."""
        ...

    async def latest(self, channel: str, *, limit: int) -> tuple[list[StoredPublication], Position]:
        """The last ``limit`` publications (oldest first) and the current position."""
        ...

    async def position(self, channel: str) -> Position:
        """The channel's current position (the stream is created if needed)."""
        ...

    async def channels(self) -> list[str]:
        """The channels that currently hold at least one publication."""
        ...

    async def expire(self) -> int:
        """Drop publications past their channel's TTL and idle empty streams.

        Returns:
            How many publications were dropped.
        """
        ...

    async def close(self) -> None:
        """Release resources; the store is unusable afterwards."""
        ...


# --- presence -----------------------------------------------------------------------------


class PresenceStore(Protocol):
    """Presence entries per channel, keyed by client id.

    Contract (``tests/hub/backends/test_presence_contract.py``): entries are per channel and
    listed in arrival order; adding a client again replaces its entry in place; removing
    says whether the client was there.
    """

    async def add(self, channel: str, info: ClientInfo) -> None:
        """Record ``info`` as present in ``channel`` (replacing an entry of the same client)."""
        ...

    async def remove(self, channel: str, client: str) -> bool:
        """Forget ``client`` in ``channel``; returns whether it was present."""
        ...

    async def get(self, channel: str) -> list[ClientInfo]:
        """The clients present in ``channel``, in the order they arrived."""
        ...

    async def close(self) -> None:
        """Release resources."""
        ...


# --- broker -------------------------------------------------------------------------------

#: ``callback(channel, payload)``.
BrokerCallback = Callable[[str, bytes], None]


class Broker(Protocol):
    """Fan-out of opaque payloads between hub nodes, per channel.

    Contract (``tests/hub/backends/test_broker_contract.py``):

    * payloads are delivered byte for byte, in publish order per channel, to every callback
      subscribed to that channel when the publish happened;
    * :meth:`subscribe` returns only once delivery is active, so a publication made after it
      returns is delivered (the hub relies on this for gap-free recovery);
    * subscribing the same callback twice to a channel is a no-op, and so is unsubscribing
      one that is not subscribed;
    * a callback that raises is logged and does not stop delivery to the others;
    * a broker that can miss publications (a subscriber connection to a server that broke
      or failed over) calls each callback of a channel with an **empty** payload once
      delivery is active again: what was published meanwhile may never arrive, and the
      hub then catches up from history (an empty payload is never published);
    * after :meth:`close`, publish and subscribe raise :class:`~wshub.exceptions.InvalidState`.

    Callbacks are plain functions, called on the event loop; they must not block.
    """

    async def publish(self, channel: str, payload: bytes) -> None:
        """Deliver ``payload`` to the callbacks subscribed to ``channel`` on every node."""
        ...

    async def subscribe(self, channel: str, callback: BrokerCallback) -> None:
        """Start delivering ``channel`` to ``callback``; returns once delivery is active."""
        ...

    async def unsubscribe(self, channel: str, callback: BrokerCallback) -> None:
        """Stop delivering ``channel`` to ``callback``."""
        ...

    async def close(self) -> None:
        """Stop all deliveries and release resources."""
        ...
