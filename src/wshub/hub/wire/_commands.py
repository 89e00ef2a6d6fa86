"""Commands, client to hub (docs/protocol.md §4), and :func:`parse_command`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import orjson

from wshub.hub.wire._codes import MAX_ID, MAX_LIMIT, MAX_MESSAGE_ID_LENGTH, ErrorCode
from wshub.hub.wire._values import Position

__all__ = [
    "Command",
    "ConnectCommand",
    "HistoryCommand",
    "PingCommand",
    "PresenceCommand",
    "PublishCommand",
    "RefreshCommand",
    "SubscribeCommand",
    "UnsubscribeCommand",
    "WireError",
    "parse_command",
]


@dataclass(frozen=True, slots=True)
class ConnectCommand:
    id: int
    token: str | None = None
    meta: Any = None

    def serialize(self) -> str:
        return _command(self.id, "connect", token=self.token, meta=self.meta)


@dataclass(frozen=True, slots=True)
class SubscribeCommand:
    id: int
    channel: str
    since: Position | None = None
    recent: int = 0

    def serialize(self) -> str:
        since = self.since.to_json() if self.since else None
        recent = self.recent or None
        return _command(self.id, "subscribe", channel=self.channel, since=since, recent=recent)


@dataclass(frozen=True, slots=True)
class UnsubscribeCommand:
    id: int
    channel: str

    def serialize(self) -> str:
        return _command(self.id, "unsubscribe", channel=self.channel)


@dataclass(frozen=True, slots=True)
class PublishCommand:
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
class PresenceCommand:
    id: int
    channel: str

    def serialize(self) -> str:
        return _command(self.id, "presence", channel=self.channel)


@dataclass(frozen=True, slots=True)
class HistoryCommand:
    id: int
    channel: str
    limit: int | None = None
    since: Position | None = None

    def serialize(self) -> str:
        since = self.since.to_json() if self.since else None
        return _command(self.id, "history", channel=self.channel, limit=self.limit, since=since)


@dataclass(frozen=True, slots=True)
class PingCommand:
    id: int

    def serialize(self) -> str:
        return _command(self.id, "ping")


@dataclass(frozen=True, slots=True)
class RefreshCommand:
    id: int
    token: str

    def serialize(self) -> str:
        return _command(self.id, "refresh", token=self.token)


Command: TypeAlias = (
    ConnectCommand
    | SubscribeCommand
    | UnsubscribeCommand
    | PublishCommand
    | PresenceCommand
    | HistoryCommand
    | PingCommand
    | RefreshCommand
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
    return ConnectCommand(id, _opt_str(obj, "token", max_length=16384), obj.get("meta"))


def _parse_subscribe(id: int, obj: Mapping[str, Any]) -> Command:
    recent = _limit(obj, "recent", low=0) or 0
    return SubscribeCommand(id, _str(obj, "channel"), _position(obj, "since"), recent)


def _parse_unsubscribe(id: int, obj: Mapping[str, Any]) -> Command:
    return UnsubscribeCommand(id, _str(obj, "channel"))


def _parse_publish(id: int, obj: Mapping[str, Any]) -> Command:
    channel = _str(obj, "channel")
    if "data" not in obj:
        raise _Bad("bad request: data")
    message_id = _opt_str(obj, "message_id", max_length=MAX_MESSAGE_ID_LENGTH)
    ephemeral = obj.get("ephemeral", False)
    if not isinstance(ephemeral, bool):
        raise _Bad("bad request: ephemeral")
    return PublishCommand(id, channel, orjson.dumps(obj["data"]), message_id, ephemeral)


def _parse_presence(id: int, obj: Mapping[str, Any]) -> Command:
    return PresenceCommand(id, _str(obj, "channel"))


def _parse_history(id: int, obj: Mapping[str, Any]) -> Command:
    limit = _limit(obj, "limit", low=1)
    return HistoryCommand(id, _str(obj, "channel"), limit, _position(obj, "since"))


def _parse_ping(id: int, obj: Mapping[str, Any]) -> Command:
    return PingCommand(id)


def _parse_refresh(id: int, obj: Mapping[str, Any]) -> Command:
    return RefreshCommand(id, _str(obj, "token", max_length=16384))


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
