"""The values a :class:`~wshub.hub.client.HubClient` hands out, and the errors it raises.

Small frozen dataclasses built from the hub's JSON (docs/protocol.md), plus the callback
types of a subscription. Named ``values`` rather than ``types`` so that it never shadows the
standard library module.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from wshub.exceptions import AuthError, HubError
from wshub.hub.wire import MAX_LIMIT, ClientInfo, ErrorCode, Position

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
    "client_info",
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


def hub_error(error: Mapping[str, Any], channel: str | None = None) -> HubError:
    """The exception for an ``error`` object of a reply or an ``unsubscribe`` push."""
    code = error.get("code")
    message = error.get("message")
    code = code if isinstance(code, int) and not isinstance(code, bool) else ErrorCode.INTERNAL
    message = message if isinstance(message, str) else "error"
    cls = AuthError if code in _AUTH_CODES else HubError
    return cls(int(code), message, channel=channel)


def unrecoverable(channel: str) -> HubError:
    """The 116 raised at a point of ``channel``'s stream where publications were lost."""
    return HubError(ErrorCode.UNRECOVERABLE, ErrorCode.UNRECOVERABLE.message, channel=channel)


def client_info(value: object) -> ClientInfo | None:
    """Read an ``info`` object of a push or a presence reply; ``None`` when absent."""
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
            client_info(obj.get("info")),
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
