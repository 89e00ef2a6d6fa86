"""Replies and pushes, hub to client (docs/protocol.md §4-§6), as typed values.

Each value has ``serialize()`` (what the hub sends) and a ``parse()`` that reads it back
(what a client receives), so that the JSON shape is written in one place. Publication data
and info stay raw JSON bytes (``orjson.Fragment`` when serialized): the hub encodes a
publication once and embeds it as-is in every push and reply that carries it.

Pushes that go through the broker (:class:`PublicationPush`, :class:`EphemeralPush`,
:class:`EventPush`, :class:`PresenceDiffPush`) serialize to ``bytes``; what a session sends
itself (:class:`Reply`, :class:`ErrorReply`, :class:`UnsubscribePush`) to ``str``, a text
message.

A client reads any message with :func:`parse_message`, then a reply's result with the
``parse()`` of the result type of the command it sent (:class:`ConnectResult`, ...).
Parsing raises :class:`ValueError` for a message that is not ``wshub.v1``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import orjson

from wshub.hub.wire._codes import ErrorCode
from wshub.hub.wire._values import ClientInfo, Position, StoredPublication, slot_setters

__all__ = [
    "ConnectResult",
    "EphemeralPush",
    "ErrorReply",
    "EventPush",
    "HistoryResult",
    "PresenceDiffPush",
    "PresenceResult",
    "PublicationPush",
    "PublishResult",
    "Push",
    "RefreshResult",
    "Reply",
    "ServerMessage",
    "SubscribeResult",
    "UnknownPushError",
    "UnsubscribePush",
    "parse_message",
    "publication_json",
]


class UnknownPushError(ValueError):
    """A push of a kind this version does not know, perhaps a newer hub's: §1 says a client
    ignores it, so it is told apart from a malformed message."""


def _need(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"not a wshub.v1 message: {key}")
    return value


def _opt(obj: Mapping[str, Any], key: str, kind: type) -> Any:
    """``obj[key]`` when present and not null (then of type ``kind``), else ``None``."""
    return None if obj.get(key) is None else _need(obj, key, kind)


def publication_json(pub: StoredPublication) -> dict[str, Any]:
    """The publication object of replies and pushes: ``time`` in milliseconds on the wire,
    data and info embedded without re-encoding."""
    obj: dict[str, Any] = {
        "offset": pub.offset,
        "time": int(pub.time * 1000),
        "data": orjson.Fragment(pub.data),
    }
    if pub.info is not None:
        obj["info"] = orjson.Fragment(pub.info)
    return obj


_TOO_DEEP = "not a wshub.v1 message: data nested too deeply"


def _raw(value: Any) -> bytes:
    """``value`` encoded again.

    Raises:
        ValueError: nested deeper than orjson encodes (it decodes deeper than it encodes).
    """
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        raise ValueError(_TOO_DEEP) from exc


def _raw_or_none(value: Any) -> bytes | None:
    return None if value is None else _raw(value)


def _parse_publication(obj: Any) -> StoredPublication:
    """One publication of a push or a result. ``info`` stays raw JSON, like ``data``: a
    client checks it when it decodes it."""
    # Every publication a client reads comes through here: checked inline rather than with
    # _need(). JSON numbers are exactly int, so ``type() is int`` also refuses true/false.
    if type(obj) is dict and "data" in obj:
        offset, time_ms = obj.get("offset"), obj.get("time")
        if type(offset) is int and type(time_ms) is int:
            try:  # _raw(), inline: one call less per publication
                data = orjson.dumps(obj["data"])
            except orjson.JSONEncodeError as exc:
                raise ValueError(_TOO_DEEP) from exc
            return StoredPublication(offset, time_ms / 1000, data, _raw_or_none(obj.get("info")))
    raise ValueError("not a wshub.v1 message: publication")


def _parse_position(obj: Mapping[str, Any]) -> Position:
    return Position(_need(obj, "offset", int), _need(obj, "epoch", str))


def _publications(obj: Mapping[str, Any]) -> tuple[StoredPublication, ...]:
    return tuple(_parse_publication(p) for p in _need(obj, "publications", list))


# --- results of replies -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectResult:
    """Who the hub says the connection is (§4.1); ``expires`` in seconds since the epoch."""

    client: str
    user: str
    expires: int | None = None
    meta: Any = None

    def to_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"client": self.client, "user": self.user, "expires": self.expires}
        if self.meta is not None:
            obj["meta"] = self.meta
        return obj

    @classmethod
    def parse(cls, obj: Mapping[str, Any]) -> ConnectResult:
        client, user = _need(obj, "client", str), _need(obj, "user", str)
        return cls(client, user, _opt(obj, "expires", int), obj.get("meta"))


@dataclass(frozen=True, slots=True)
class SubscribeResult:
    """Where the subscription starts and what it recovered (§4.2).

    ``recovered`` is ``None`` when the subscribe had no ``since``.
    """

    channel: str
    position: Position
    recoverable: bool
    publications: Sequence[StoredPublication] = ()
    recovered: bool | None = None

    def to_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "channel": self.channel,
            **self.position.to_json(),
            "recoverable": self.recoverable,
        }
        if self.recovered is not None:
            obj["recovered"] = self.recovered
        obj["publications"] = [publication_json(p) for p in self.publications]
        return obj

    @classmethod
    def parse(cls, obj: Mapping[str, Any]) -> SubscribeResult:
        return cls(
            _need(obj, "channel", str),
            _parse_position(obj),
            _need(obj, "recoverable", bool),
            _publications(obj),
            _opt(obj, "recovered", bool),
        )


@dataclass(frozen=True, slots=True)
class PublishResult:
    """The position a publication got, ``None`` for an ephemeral one (§4.4)."""

    position: Position | None = None
    duplicate: bool = False

    def to_json(self) -> dict[str, Any]:
        obj = {} if self.position is None else self.position.to_json()
        if self.duplicate:
            obj["duplicate"] = True
        return obj

    @classmethod
    def parse(cls, obj: Mapping[str, Any]) -> PublishResult:
        position = _parse_position(obj) if "offset" in obj else None
        return cls(position, obj.get("duplicate") is True)


@dataclass(frozen=True, slots=True)
class PresenceResult:
    """Who is subscribed to a channel (§4.5)."""

    channel: str
    clients: Sequence[ClientInfo]

    def to_json(self) -> dict[str, Any]:
        return {"channel": self.channel, "clients": [c.to_json() for c in self.clients]}

    @classmethod
    def parse(cls, obj: Mapping[str, Any]) -> PresenceResult:
        clients = tuple(ClientInfo.parse(c) for c in _need(obj, "clients", list))
        return cls(_need(obj, "channel", str), clients)


@dataclass(frozen=True, slots=True)
class HistoryResult:
    """A page of a channel's history and its current position (§4.6)."""

    channel: str
    position: Position
    publications: Sequence[StoredPublication]

    def to_json(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            **self.position.to_json(),
            "publications": [publication_json(p) for p in self.publications],
        }

    @classmethod
    def parse(cls, obj: Mapping[str, Any]) -> HistoryResult:
        return cls(_need(obj, "channel", str), _parse_position(obj), _publications(obj))


@dataclass(frozen=True, slots=True)
class RefreshResult:
    """When the new token expires (§4.8), seconds since the epoch or ``None``."""

    expires: int | None

    def to_json(self) -> dict[str, Any]:
        return {"expires": self.expires}

    @classmethod
    def parse(cls, obj: Mapping[str, Any]) -> RefreshResult:
        return cls(_opt(obj, "expires", int))


Result: TypeAlias = (
    ConnectResult | SubscribeResult | PublishResult | PresenceResult | HistoryResult | RefreshResult
)


# --- replies ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    """A success reply to command ``id``.

    ``result`` is a typed result when the hub builds it, ``None`` for the empty result of
    ``ping``, ``unsubscribe`` and an ephemeral ``publish``, and the raw object when
    parsed (read it with the ``parse()`` of the command's result type).
    """

    id: int
    result: Result | Mapping[str, Any] | None = None

    def serialize(self) -> str:
        result = self.result
        obj = {} if result is None else result if isinstance(result, Mapping) else result.to_json()
        return orjson.dumps({"id": self.id, "result": obj}).decode()


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """An error reply to command ``id`` (``None`` when the hub could not read the id).

    ``temporary`` marks a refusal due to a passing condition (the broker or Redis is
    unavailable): the command may succeed if sent again later (docs/protocol.md §6). It is
    sent only when true.
    """

    id: int | None
    code: ErrorCode
    message: str = ""
    temporary: bool = False

    def serialize(self) -> str:
        error: dict[str, Any] = {
            "code": int(self.code),
            "message": self.message or self.code.message,
        }
        if self.temporary:
            error["temporary"] = True
        return orjson.dumps({"id": self.id, "error": error}).decode()


# --- pushes -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, init=False)
class PublicationPush:
    """``pub``: a publication of a subscribed channel (§5), encoded once per publication."""

    channel: str
    epoch: str
    publication: StoredPublication

    def __init__(self, channel: str, epoch: str, publication: StoredPublication) -> None:
        # Written out (see slot_setters): a client builds one per publication it reads.
        _SET_CHANNEL(self, channel)
        _SET_EPOCH(self, epoch)
        _SET_PUBLICATION(self, publication)

    def serialize(self) -> bytes:
        obj = {"push": "pub", "channel": self.channel, "epoch": self.epoch}
        return orjson.dumps({**obj, **publication_json(self.publication)})


_SET_CHANNEL, _SET_EPOCH, _SET_PUBLICATION = slot_setters(PublicationPush)


@dataclass(frozen=True, slots=True)
class EphemeralPush:
    """``ephemeral``: a publication that is not stored and has no offset."""

    channel: str
    data: bytes
    info: bytes | None = None

    def serialize(self) -> bytes:
        obj: dict[str, Any] = {
            "push": "ephemeral",
            "channel": self.channel,
            "data": orjson.Fragment(self.data),
        }
        if self.info is not None:
            obj["info"] = orjson.Fragment(self.info)
        return orjson.dumps(obj)


@dataclass(frozen=True, slots=True)
class EventPush:
    """``join`` or ``leave``: presence changed in a subscribed channel."""

    kind: Literal["join", "leave"]
    channel: str
    info: ClientInfo

    def serialize(self) -> bytes:
        return orjson.dumps(
            {"push": self.kind, "channel": self.channel, "info": self.info.to_json()}
        )


@dataclass(frozen=True, slots=True)
class PresenceDiffPush:
    """``presence_diff``: who joined and who left a subscribed channel during one
    ``join_leave_interval`` (docs/protocol.md §5).

    A client is in ``joins`` or ``leaves`` at most once and never in both: a join and a
    leave of the same client in one interval cancel out, so the diff is the net change.

    Raises:
        ValueError: both are empty, or a client is listed twice.
    """

    channel: str
    joins: tuple[ClientInfo, ...]
    leaves: tuple[ClientInfo, ...]

    def __post_init__(self) -> None:
        if not (self.joins or self.leaves):
            raise ValueError("not a wshub.v1 message: empty presence_diff")
        clients = {info.client for info in self.joins} | {info.client for info in self.leaves}
        if len(clients) != len(self.joins) + len(self.leaves):
            raise ValueError("not a wshub.v1 message: a client twice in presence_diff")

    def serialize(self) -> bytes:
        return orjson.dumps(
            {
                "push": "presence_diff",
                "channel": self.channel,
                "joins": [info.to_json() for info in self.joins],
                "leaves": [info.to_json() for info in self.leaves],
            }
        )


def _infos(obj: Mapping[str, Any], key: str) -> tuple[ClientInfo, ...]:
    return tuple(ClientInfo.parse(info) for info in _need(obj, key, list))


@dataclass(frozen=True, slots=True)
class UnsubscribePush:
    """``unsubscribe``: the hub ended a subscription, for the reason ``code``."""

    channel: str
    code: ErrorCode

    def serialize(self) -> str:
        obj = {
            "push": "unsubscribe",
            "channel": self.channel,
            "code": int(self.code),
            "message": self.code.message,
        }
        return orjson.dumps(obj).decode()


Push: TypeAlias = PublicationPush | EphemeralPush | EventPush | PresenceDiffPush | UnsubscribePush
ServerMessage: TypeAlias = Reply | ErrorReply | Push

_PUSH_KINDS = frozenset({"ephemeral", "join", "leave", "presence_diff", "unsubscribe"})  # and "pub"


def _parse_pub(obj: Mapping[str, Any]) -> PublicationPush:
    channel, epoch = obj.get("channel"), obj.get("epoch")
    if type(channel) is str and type(epoch) is str:
        return PublicationPush(channel, epoch, _parse_publication(obj))
    raise ValueError("not a wshub.v1 message: pub")


def _parse_push(obj: Mapping[str, Any]) -> Push:
    """A push other than ``pub`` (which :func:`parse_message` reads first)."""
    kind = obj["push"]
    if type(kind) is not str:
        raise ValueError("not a wshub.v1 message: push")
    if kind not in _PUSH_KINDS:
        raise UnknownPushError(f"not a wshub.v1 message: push {kind!r}")
    channel = _need(obj, "channel", str)
    if kind == "ephemeral":
        if "data" not in obj:
            raise ValueError("not a wshub.v1 message: data")
        return EphemeralPush(channel, _raw(obj["data"]), _raw_or_none(obj.get("info")))
    if kind in ("join", "leave"):
        join_or_leave: Literal["join", "leave"] = "join" if kind == "join" else "leave"
        return EventPush(join_or_leave, channel, ClientInfo.parse(obj.get("info")))
    if kind == "presence_diff":
        return PresenceDiffPush(channel, _infos(obj, "joins"), _infos(obj, "leaves"))
    return UnsubscribePush(channel, _code(obj))


def _code(obj: Mapping[str, Any]) -> ErrorCode:
    try:
        return ErrorCode(_need(obj, "code", int))
    except ValueError:
        # A newer hub's code: the nearest meaning a client can act on.
        return ErrorCode.INTERNAL


def parse_message(message: str | bytes) -> ServerMessage:
    """Read one message from the hub.

    Returns:
        A :class:`Reply` (its ``result`` the raw object), an :class:`ErrorReply`, or a push.

    Raises:
        UnknownPushError: a push of an unknown kind (a client ignores it).
        ValueError: not a ``wshub.v1`` message (invalid JSON, missing or mistyped fields).
    """
    try:
        obj = orjson.loads(message)
    except orjson.JSONDecodeError as exc:
        raise ValueError("not a wshub.v1 message: invalid JSON") from exc
    if not isinstance(obj, dict):
        raise ValueError("not a wshub.v1 message: not an object")
    if "push" in obj:
        # Most messages a client reads are publications: their path is the shortest.
        return _parse_pub(obj) if obj["push"] == "pub" else _parse_push(obj)
    id = obj.get("id")
    if "error" in obj:
        error = obj["error"]
        if not isinstance(error, dict) or (id is not None and not isinstance(id, int)):
            raise ValueError("not a wshub.v1 message: error")
        temporary = error.get("temporary") is True
        return ErrorReply(id, _code(error), str(error.get("message", "")), temporary)
    return Reply(_need(obj, "id", int), _need(obj, "result", dict))
