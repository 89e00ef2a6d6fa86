"""The values a :class:`~wshub.hub.client.HubClient` hands out, and the errors it raises.

Small frozen dataclasses, plus the callback types of a subscription. The client reads
every message with :func:`wshub.hub.wire.parse_message` and turns the typed wire values
into these here and nowhere else (the ``from_wire()`` constructors and :func:`hub_error`):
publication data, raw JSON bytes on the wire side, is decoded once, here. Named ``values``
rather than ``types`` so that it never shadows the standard library module.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import orjson

from wshub.exceptions import AuthError, HubError
from wshub.hub.wire import (
    MAX_LIMIT,
    ClientInfo,
    EphemeralPush,
    ErrorCode,
    ErrorReply,
    EventPush,
    HistoryResult,
    Position,
    PresenceDiffPush,
    StoredPublication,
    UnsubscribePush,
)

if TYPE_CHECKING:
    from wshub.hub.client.subscription import Subscription

__all__ = [
    "MAX_PAGE",
    "ChannelEvent",
    "ErrorHandler",
    "EventHandler",
    "HistoryPage",
    "Publication",
    "PublicationHandler",
    "SubscriptionStats",
    "TokenSource",
    "hub_error",
    "token_value",
    "unrecoverable",
]

#: A token, or a (possibly async) callable returning a fresh one at every connection.
TokenSource: TypeAlias = str | Callable[[], str | Awaitable[str]] | None
#: Receives each publication of a subscription, in order.
PublicationHandler: TypeAlias = Callable[["Publication"], Awaitable[None] | None]
#: Receives join, leave and ephemeral events of a subscription.
EventHandler: TypeAlias = Callable[["ChannelEvent"], object]
#: Receives what ``async for`` would raise: a 116 gap marker, or the error that ended it.
ErrorHandler: TypeAlias = Callable[["Subscription", HubError], object]

#: The largest ``limit`` the hub accepts for one history read (the wire's own bound).
MAX_PAGE = MAX_LIMIT

# Error codes that are about who the client is or what it may do.
_AUTH_CODES = frozenset(
    {ErrorCode.UNAUTHORIZED, ErrorCode.PERMISSION_DENIED, ErrorCode.TOKEN_EXPIRED}
)


async def token_value(source: TokenSource) -> str | None:
    """The token to send in ``connect``: ``source`` itself, or what its callable returns."""
    if source is None or isinstance(source, str):
        return source
    value = source()
    if inspect.isawaitable(value):
        value = await value
    return value


def hub_error(error: ErrorReply | UnsubscribePush, channel: str | None = None) -> HubError:
    """The exception for an error reply, or for the ``unsubscribe`` push that ended
    ``channel``'s subscription: :class:`AuthError` for the codes about tokens and
    permissions, else :class:`HubError`."""
    message = error.message if isinstance(error, ErrorReply) else ""
    cls = AuthError if error.code in _AUTH_CODES else HubError
    temporary = isinstance(error, ErrorReply) and error.temporary
    return cls(int(error.code), message or error.code.message, channel=channel, temporary=temporary)


def unrecoverable(channel: str) -> HubError:
    """The 116 raised at a point of ``channel``'s stream where publications were lost."""
    return HubError(ErrorCode.UNRECOVERABLE, ErrorCode.UNRECOVERABLE.message, channel=channel)


# Publications of one publisher carry the same info: decoding it once per publisher rather
# than once per publication is the largest saving of the receive path (a third of it,
# benchmarks/hub_client_receive.py). The values are frozen and shared; the bound keeps a
# hub with many publishers from growing the cache.
_decode_info = functools.lru_cache(maxsize=1024)(ClientInfo.decode)


@dataclass(frozen=True, slots=True, init=False)
class Publication:
    """One publication as a subscriber receives it.

    Attributes:
        channel: the channel it was published in.
        offset: its position in the channel's stream (consecutive within an epoch).
        epoch: the stream it belongs to; offsets of different epochs are unrelated.
        data: the payload, decoded from JSON.
        info: who published it, or ``None`` for publications made by the server; one value
            shared by the publications of one publisher (do not mutate its ``meta``).
        time: the hub's time of the publication, seconds since the Unix epoch.
    """

    channel: str
    offset: int
    epoch: str
    data: Any
    info: ClientInfo | None = None
    time: float = 0.0

    def __init__(
        self,
        channel: str,
        offset: int,
        epoch: str,
        data: Any,
        info: ClientInfo | None = None,
        time: float = 0.0,
    ) -> None:
        # Written out, like the wire's StoredPublication (see its slot_setters()): one is
        # built per publication received, and the generated frozen __init__ costs twice as
        # much.
        _SET_CHANNEL(self, channel)
        _SET_OFFSET(self, offset)
        _SET_EPOCH(self, epoch)
        _SET_DATA(self, data)
        _SET_INFO(self, info)
        _SET_TIME(self, time)

    @property
    def position(self) -> Position:
        """Where this publication is, to resume after it (``since=``)."""
        return Position(self.offset, self.epoch)

    @classmethod
    def from_wire(cls, channel: str, epoch: str, pub: StoredPublication) -> Publication:
        """The publication a subscriber sees, from the hub's (a ``pub`` push, or one of
        a subscribe or history reply): its data decoded from JSON.

        Raises:
            ValueError: its ``info`` is not a client info object.
        """
        info = None if pub.info is None else _decode_info(pub.info)
        return cls(channel, pub.offset, epoch, orjson.loads(pub.data), info, pub.time)


# One setter per field, in order: a field added without updating __init__ fails here.
_SET_CHANNEL, _SET_OFFSET, _SET_EPOCH, _SET_DATA, _SET_INFO, _SET_TIME = [
    getattr(Publication, field.name).__set__ for field in fields(Publication)
]


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

    @classmethod
    def from_wire(cls, push: EventPush | EphemeralPush) -> ChannelEvent:
        """The event of a ``join``, ``leave`` or ``ephemeral`` push.

        Raises:
            ValueError: the ``info`` of an ephemeral push is not a client info object.
        """
        if isinstance(push, EventPush):
            return cls(push.kind, push.channel, push.info)
        info = None if push.info is None else _decode_info(push.info)
        return cls("ephemeral", push.channel, info, orjson.loads(push.data))

    @classmethod
    def from_diff(cls, push: PresenceDiffPush) -> list[ChannelEvent]:
        """The ``leave`` then ``join`` events of a ``presence_diff`` push, one per client
        (a client is in one of them at most, so their order does not matter)."""
        channel = push.channel
        leaves = [cls("leave", channel, info) for info in push.leaves]
        return leaves + [cls("join", channel, info) for info in push.joins]


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

    @classmethod
    def from_wire(cls, result: HistoryResult) -> HistoryPage:
        """The page of a ``history`` reply.

        Raises:
            ValueError: a publication's ``info`` is not a client info object.
        """
        channel, epoch = result.channel, result.position.epoch
        pubs = [Publication.from_wire(channel, epoch, pub) for pub in result.publications]
        return cls(channel, result.position, pubs)


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
