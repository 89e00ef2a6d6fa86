"""The hub's JSON wire protocol, ``wshub.v1`` (specified in docs/protocol.md).

Every message is a frozen dataclass with ``serialize()`` and a parser, so that the JSON shape
lives in this package and nowhere else:

- commands, client to hub (``_commands.py``): :class:`ConnectCommand` ...
  :class:`RefreshCommand`; :func:`parse_command` turns one text message from a client into a
  command or a :class:`WireError` and never raises, because a client's garbage must become
  an error reply, not an exception in the hub;
- replies and pushes, hub to client (``_replies.py``): :class:`Reply` with a typed result
  (:class:`ConnectResult` ...), :class:`ErrorReply`, :class:`PublicationPush` ...;
  :func:`parse_message` reads them back (the Python client's side);
- codes (``_codes.py``): :class:`ErrorCode` (§6) and :class:`DisconnectCode` (§7) with the
  advice each close code carries;
- shared values (``_values.py``): :class:`Position`, :class:`ClientInfo`,
  :class:`StoredPublication`.

Publication data travels as raw JSON bytes end to end: it is encoded once when a publish is
accepted and embedded as-is (``orjson.Fragment``) in every push and reply that carries it.
"""

from __future__ import annotations

from wshub.hub.wire._codes import (
    MAX_ID,
    MAX_LIMIT,
    MAX_MESSAGE_ID_LENGTH,
    SUBPROTOCOL,
    DisconnectAdvice,
    DisconnectCode,
    ErrorCode,
    disconnect_advice,
)
from wshub.hub.wire._commands import (
    Command,
    ConnectCommand,
    HistoryCommand,
    PingCommand,
    PresenceCommand,
    PublishCommand,
    RefreshCommand,
    SubscribeCommand,
    UnsubscribeCommand,
    WireError,
    parse_command,
)
from wshub.hub.wire._replies import (
    ConnectResult,
    EphemeralPush,
    ErrorReply,
    EventPush,
    HistoryResult,
    PresenceDiffPush,
    PresenceResult,
    PublicationPush,
    PublishResult,
    Push,
    RefreshResult,
    Reply,
    ServerMessage,
    SubscribeResult,
    UnknownPushError,
    UnsubscribePush,
    parse_message,
    publication_json,
)
from wshub.hub.wire._values import ClientInfo, Position, StoredPublication

__all__ = [
    "MAX_ID",
    "MAX_LIMIT",
    "MAX_MESSAGE_ID_LENGTH",
    "SUBPROTOCOL",
    "ClientInfo",
    "Command",
    "ConnectCommand",
    "ConnectResult",
    "DisconnectAdvice",
    "DisconnectCode",
    "EphemeralPush",
    "ErrorCode",
    "ErrorReply",
    "EventPush",
    "HistoryCommand",
    "HistoryResult",
    "PingCommand",
    "Position",
    "PresenceCommand",
    "PresenceDiffPush",
    "PresenceResult",
    "PublicationPush",
    "PublishCommand",
    "PublishResult",
    "Push",
    "RefreshCommand",
    "RefreshResult",
    "Reply",
    "ServerMessage",
    "StoredPublication",
    "SubscribeCommand",
    "SubscribeResult",
    "UnknownPushError",
    "UnsubscribeCommand",
    "UnsubscribePush",
    "WireError",
    "disconnect_advice",
    "parse_command",
    "parse_message",
    "publication_json",
]
