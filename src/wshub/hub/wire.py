"""The hub's JSON wire protocol, ``wshub.v1`` (specified in docs/protocol.md).

Commands are frozen dataclasses with ``serialize()``; :func:`parse_command` turns one text
message from a client into a command or a :class:`WireError` and never raises, because a
client's garbage must become an error reply, not an exception in the hub. Replies and pushes
are built here too, so that the JSON shape lives in one module.

Publication data travels as raw JSON bytes end to end: it is encoded once when a publish is
accepted and embedded as-is (``orjson.Fragment``) in every push and reply that carries it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, TypeAlias

import orjson

__all__ = [
    "SUBPROTOCOL",
    "ClientInfo",
    "Command",
    "Connect",
    "DisconnectAdvice",
    "DisconnectCode",
    "ErrorCode",
    "History",
    "Ping",
    "Position",
    "Presence",
    "Publication",
    "Publish",
    "Refresh",
    "Subscribe",
    "Unsubscribe",
    "WireError",
    "disconnect_advice",
    "encode_json",
    "ephemeral_push",
    "error_reply",
    "event_push",
    "parse_command",
    "pub_push",
    "publication_json",
    "reply",
    "unsubscribe_push",
]

SUBPROTOCOL = "wshub.v1"

#: Largest command id: the largest integer a JavaScript number holds exactly.
MAX_ID = 2**53 - 1
#: Longest ``message_id``.
MAX_MESSAGE_ID_LENGTH = 64
#: Largest ``recent`` / ``limit`` a command may carry before it is clamped.
MAX_LIMIT = 1000


class ErrorCode(IntEnum):
    """Codes of error replies (docs/protocol.md §6)."""

    INTERNAL = 100
    BAD_REQUEST = 101
    UNKNOWN_COMMAND = 102
    UNAUTHORIZED = 103
    PERMISSION_DENIED = 104
    NOT_CONNECTED = 105
    ALREADY_CONNECTED = 106
    INVALID_CHANNEL = 107
    UNKNOWN_NAMESPACE = 108
    ALREADY_SUBSCRIBED = 109
    NOT_SUBSCRIBED = 110
    RATE_LIMITED = 111
    LIMIT_EXCEEDED = 112
    TOKEN_EXPIRED = 113
    TOO_LARGE = 114
    NOT_AVAILABLE = 115
    UNRECOVERABLE = 116

    @property
    def message(self) -> str:
        """The fixed, safe message sent with this code."""
        return _ERROR_MESSAGES[self]


_ERROR_MESSAGES = {
    ErrorCode.INTERNAL: "internal error",
    ErrorCode.BAD_REQUEST: "bad request",
    ErrorCode.UNKNOWN_COMMAND: "unknown command",
    ErrorCode.UNAUTHORIZED: "unauthorized",
    ErrorCode.PERMISSION_DENIED: "permission denied",
    ErrorCode.NOT_CONNECTED: "not connected",
    ErrorCode.ALREADY_CONNECTED: "already connected",
    ErrorCode.INVALID_CHANNEL: "invalid channel",
    ErrorCode.UNKNOWN_NAMESPACE: "unknown namespace",
    ErrorCode.ALREADY_SUBSCRIBED: "already subscribed",
    ErrorCode.NOT_SUBSCRIBED: "not subscribed",
    ErrorCode.RATE_LIMITED: "rate limited",
    ErrorCode.LIMIT_EXCEEDED: "limit exceeded",
    ErrorCode.TOKEN_EXPIRED: "token expired",
    ErrorCode.TOO_LARGE: "publication too large",
    ErrorCode.NOT_AVAILABLE: "not available",
    ErrorCode.UNRECOVERABLE: "position unrecoverable",
}


class DisconnectCode(IntEnum):
    """Close codes the hub uses (docs/protocol.md §7), each with the advice it carries.

    Not to be confused with :class:`wshub.CloseCode`, the codes of RFC 6455 §7.4.1: the
    hub's own are in the 4000-4999 range that RFC 6455 leaves to applications, plus the two
    RFC codes it sends itself. What a client should do after each (:attr:`reconnect`,
    :attr:`new_token`, :attr:`slow_down`) is one table, ``_ADVICE``, which the Python client
    and ``wshub.js`` both follow (a test checks that the JavaScript copy agrees).
    """

    GOING_AWAY = 1001
    INTERNAL_ERROR = 1011
    BAD_COMMANDS = 4000
    UNAUTHORIZED = 4001
    CONNECT_TIMEOUT = 4002
    TOKEN_EXPIRED = 4003
    SLOW_CONSUMER = 4004
    RATE_LIMITED = 4005
    TOO_MANY_CONNECTIONS = 4006
    UNSUPPORTED_SUBPROTOCOL = 4007

    @property
    def reason(self) -> str:
        """The fixed close reason sent with this code (never any detail)."""
        return self.name.lower().replace("_", " ")

    @property
    def reconnect(self) -> bool:
        """Whether reconnecting can help (with a new token when :attr:`new_token`)."""
        return _ADVICE[self].reconnect

    @property
    def new_token(self) -> bool:
        """Whether the client needs a new token before it reconnects."""
        return _ADVICE[self].new_token

    @property
    def slow_down(self) -> bool:
        """Whether the client should wait its longest backoff before it reconnects."""
        return _ADVICE[self].slow_down


@dataclass(frozen=True, slots=True)
class DisconnectAdvice:
    """What a client should do after the connection closed with some code."""

    reconnect: bool
    new_token: bool = False
    slow_down: bool = False


_RETRY = DisconnectAdvice(reconnect=True)
_ADVICE: dict[DisconnectCode, DisconnectAdvice] = {
    DisconnectCode.GOING_AWAY: _RETRY,  # the node restarts: another one (or it) answers soon
    DisconnectCode.INTERNAL_ERROR: _RETRY,
    DisconnectCode.BAD_COMMANDS: DisconnectAdvice(reconnect=False),  # a bug in the client
    DisconnectCode.UNAUTHORIZED: DisconnectAdvice(reconnect=True, new_token=True),
    DisconnectCode.CONNECT_TIMEOUT: _RETRY,
    DisconnectCode.TOKEN_EXPIRED: DisconnectAdvice(reconnect=True, new_token=True),
    DisconnectCode.SLOW_CONSUMER: _RETRY,  # and recover what was missed
    DisconnectCode.RATE_LIMITED: DisconnectAdvice(reconnect=True, slow_down=True),
    DisconnectCode.TOO_MANY_CONNECTIONS: DisconnectAdvice(reconnect=False),
    DisconnectCode.UNSUPPORTED_SUBPROTOCOL: DisconnectAdvice(reconnect=False),
}


def disconnect_advice(code: int) -> DisconnectAdvice:
    """The advice for any close code: the table's for the hub's codes, else "reconnect"
    (a network failure, 1006, or a proxy's close is worth retrying)."""
    try:
        return _ADVICE[DisconnectCode(code)]
    except ValueError:
        return _RETRY


#: Deprecated name of :class:`DisconnectCode`, kept only until ``hub/client`` (branch
#: client) imports the new name; not exported. ``wshub.CloseCode`` is RFC 6455's.
CloseCode = DisconnectCode


@dataclass(frozen=True, slots=True)
class Position:
    """Where a channel's stream is: the last ``offset`` within an ``epoch``."""

    offset: int
    epoch: str

    def to_json(self) -> dict[str, Any]:
        return {"offset": self.offset, "epoch": self.epoch}


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """Who a connection is: shown in presence and in the ``info`` of its publications."""

    client: str
    user: str
    meta: Any = None

    def to_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"client": self.client, "user": self.user}
        if self.meta is not None:
            obj["meta"] = self.meta
        return obj

    def encode(self) -> bytes:
        """The JSON bytes stored with a publication."""
        return orjson.dumps(self.to_json())


@dataclass(frozen=True, slots=True)
class Publication:
    """One publication of a channel as stored in history.

    Attributes:
        offset: its position in the channel's epoch.
        time: server time of the publication, seconds since the Unix epoch.
        data: the payload as raw JSON bytes.
        info: who published it, as raw JSON bytes, or ``None``.
    """

    offset: int
    time: float
    data: bytes
    info: bytes | None = None


# --- commands ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connect:
    id: int
    token: str | None = None
    meta: Any = None

    def serialize(self) -> str:
        return _command(self.id, "connect", token=self.token, meta=self.meta)


@dataclass(frozen=True, slots=True)
class Subscribe:
    id: int
    channel: str
    since: Position | None = None
    recent: int = 0

    def serialize(self) -> str:
        since = self.since.to_json() if self.since else None
        recent = self.recent or None
        return _command(self.id, "subscribe", channel=self.channel, since=since, recent=recent)


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    id: int
    channel: str

    def serialize(self) -> str:
        return _command(self.id, "unsubscribe", channel=self.channel)


@dataclass(frozen=True, slots=True)
class Publish:
    """A publish command; ``data`` is the payload already encoded as JSON."""

    id: int
    channel: str
    data: bytes
    message_id: str | None = None
    ephemeral: bool = False

    def serialize(self) -> str:
        return _command(
            self.id,
            "publish",
            channel=self.channel,
            data=orjson.Fragment(self.data),
            message_id=self.message_id,
            ephemeral=self.ephemeral or None,
        )


@dataclass(frozen=True, slots=True)
class Presence:
    id: int
    channel: str

    def serialize(self) -> str:
        return _command(self.id, "presence", channel=self.channel)


@dataclass(frozen=True, slots=True)
class History:
    id: int
    channel: str
    limit: int | None = None
    since: Position | None = None

    def serialize(self) -> str:
        since = self.since.to_json() if self.since else None
        return _command(self.id, "history", channel=self.channel, limit=self.limit, since=since)


@dataclass(frozen=True, slots=True)
class Ping:
    id: int

    def serialize(self) -> str:
        return _command(self.id, "ping")


@dataclass(frozen=True, slots=True)
class Refresh:
    id: int
    token: str

    def serialize(self) -> str:
        return _command(self.id, "refresh", token=self.token)


Command: TypeAlias = (
    Connect | Subscribe | Unsubscribe | Publish | Presence | History | Ping | Refresh
)


@dataclass(frozen=True, slots=True)
class WireError:
    """A message that is not a valid command: becomes an error reply.

    Attributes:
        id: the command id when one could be read, else ``None``.
        code: :attr:`ErrorCode.BAD_REQUEST` or :attr:`ErrorCode.UNKNOWN_COMMAND`.
        message: a short text naming the offending field; safe to send back.
    """

    id: int | None
    code: ErrorCode
    message: str


def _command(id: int, cmd: str, **fields: Any) -> str:
    obj: dict[str, Any] = {"id": id, "cmd": cmd}
    obj.update((k, v) for k, v in fields.items() if v is not None)
    return orjson.dumps(obj).decode()


# --- parsing ----------------------------------------------------------------------------


class _Bad(Exception):
    """A field is missing or has the wrong type; carries the message for the reply."""


def _str(obj: Mapping[str, Any], key: str, *, max_length: int = 1000) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not 0 < len(value) <= max_length:
        raise _Bad(f"bad request: {key}")
    return value


def _opt_str(obj: Mapping[str, Any], key: str, *, max_length: int) -> str | None:
    return None if obj.get(key) is None else _str(obj, key, max_length=max_length)


def _int(value: Any, key: str, *, low: int, high: int) -> int:
    # bool is an int subclass; true/false is not a number on the wire.
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise _Bad(f"bad request: {key}")
    return value


def _position(obj: Mapping[str, Any], key: str) -> Position | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _Bad(f"bad request: {key}")
    offset = _int(value.get("offset"), f"{key}.offset", low=0, high=MAX_ID)
    epoch = value.get("epoch")
    if not isinstance(epoch, str) or len(epoch) > 64:
        raise _Bad(f"bad request: {key}.epoch")
    return Position(offset, epoch)


def _limit(obj: Mapping[str, Any], key: str, *, low: int) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    return min(_int(value, key, low=low, high=MAX_ID), MAX_LIMIT)


def _parse_connect(id: int, obj: Mapping[str, Any]) -> Command:
    return Connect(id, _opt_str(obj, "token", max_length=16384), obj.get("meta"))


def _parse_subscribe(id: int, obj: Mapping[str, Any]) -> Command:
    recent = _limit(obj, "recent", low=0) or 0
    return Subscribe(id, _str(obj, "channel"), _position(obj, "since"), recent)


def _parse_unsubscribe(id: int, obj: Mapping[str, Any]) -> Command:
    return Unsubscribe(id, _str(obj, "channel"))


def _parse_publish(id: int, obj: Mapping[str, Any]) -> Command:
    channel = _str(obj, "channel")
    if "data" not in obj:
        raise _Bad("bad request: data")
    message_id = _opt_str(obj, "message_id", max_length=MAX_MESSAGE_ID_LENGTH)
    ephemeral = obj.get("ephemeral", False)
    if not isinstance(ephemeral, bool):
        raise _Bad("bad request: ephemeral")
    return Publish(id, channel, orjson.dumps(obj["data"]), message_id, ephemeral)


def _parse_presence(id: int, obj: Mapping[str, Any]) -> Command:
    return Presence(id, _str(obj, "channel"))


def _parse_history(id: int, obj: Mapping[str, Any]) -> Command:
    limit = _limit(obj, "limit", low=1)
    return History(id, _str(obj, "channel"), limit, _position(obj, "since"))


def _parse_ping(id: int, obj: Mapping[str, Any]) -> Command:
    return Ping(id)


def _parse_refresh(id: int, obj: Mapping[str, Any]) -> Command:
    return Refresh(id, _str(obj, "token", max_length=16384))


_PARSERS: dict[str, Callable[[int, Mapping[str, Any]], Command]] = {
    "connect": _parse_connect,
    "subscribe": _parse_subscribe,
    "unsubscribe": _parse_unsubscribe,
    "publish": _parse_publish,
    "presence": _parse_presence,
    "history": _parse_history,
    "ping": _parse_ping,
    "refresh": _parse_refresh,
}


def parse_command(message: str | bytes) -> Command | WireError:
    """Decode one message from a client.

    Args:
        message: the WebSocket message as received; binary messages are not part of
            ``wshub.v1`` and are refused.

    Returns:
        The command, or a :class:`WireError` describing why it is not one. Never raises.
    """
    if isinstance(message, bytes):
        return WireError(None, ErrorCode.BAD_REQUEST, "bad request: binary message")
    try:
        obj = orjson.loads(message)
    except orjson.JSONDecodeError:
        return WireError(None, ErrorCode.BAD_REQUEST, "bad request: invalid JSON")
    if not isinstance(obj, dict):
        return WireError(None, ErrorCode.BAD_REQUEST, "bad request: not an object")
    try:
        id = _int(obj.get("id"), "id", low=1, high=MAX_ID)
    except _Bad as exc:
        return WireError(None, ErrorCode.BAD_REQUEST, str(exc))
    cmd = obj.get("cmd")
    parser = _PARSERS.get(cmd) if isinstance(cmd, str) else None
    if parser is None:
        return WireError(id, ErrorCode.UNKNOWN_COMMAND, ErrorCode.UNKNOWN_COMMAND.message)
    try:
        return parser(id, obj)
    except _Bad as exc:
        return WireError(id, ErrorCode.BAD_REQUEST, str(exc))
    except (TypeError, orjson.JSONEncodeError):
        # Re-encoding ``data`` can only fail on pathological input (e.g. huge nesting).
        return WireError(id, ErrorCode.BAD_REQUEST, "bad request: data")


# --- replies and pushes -----------------------------------------------------------------


def encode_json(obj: Any) -> str:
    """Encode one outgoing message as a text message."""
    return orjson.dumps(obj).decode()


def reply(id: int, result: Mapping[str, Any] | None = None) -> str:
    """A success reply to command ``id``."""
    return encode_json({"id": id, "result": result or {}})


def error_reply(id: int | None, code: ErrorCode, message: str | None = None) -> str:
    """An error reply to command ``id`` (``None`` when the id could not be read)."""
    return encode_json({"id": id, "error": {"code": int(code), "message": message or code.message}})


def publication_json(pub: Publication) -> dict[str, Any]:
    """The publication object of replies (data and info embedded without re-encoding)."""
    obj: dict[str, Any] = {
        "offset": pub.offset,
        "time": int(pub.time * 1000),
        "data": orjson.Fragment(pub.data),
    }
    if pub.info is not None:
        obj["info"] = orjson.Fragment(pub.info)
    return obj


def pub_push(channel: str, epoch: str, pub: Publication) -> bytes:
    """The ``pub`` push of a publication, encoded once for every subscriber."""
    obj = {"push": "pub", "channel": channel, "epoch": epoch, **publication_json(pub)}
    return orjson.dumps(obj)


def ephemeral_push(channel: str, data: bytes, info: bytes | None) -> bytes:
    """The ``ephemeral`` push (not stored, no offset)."""
    obj: dict[str, Any] = {"push": "ephemeral", "channel": channel, "data": orjson.Fragment(data)}
    if info is not None:
        obj["info"] = orjson.Fragment(info)
    return orjson.dumps(obj)


def event_push(kind: str, channel: str, info: ClientInfo) -> bytes:
    """A ``join`` or ``leave`` push."""
    return orjson.dumps({"push": kind, "channel": channel, "info": info.to_json()})


def unsubscribe_push(channel: str, code: ErrorCode) -> str:
    """The ``unsubscribe`` push: the hub ended a subscription."""
    return encode_json(
        {"push": "unsubscribe", "channel": channel, "code": int(code), "message": code.message}
    )
