"""Constants and codes of ``wshub.v1``: error codes (§6) and disconnect codes (§7)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "MAX_ID",
    "MAX_LIMIT",
    "MAX_MESSAGE_ID_LENGTH",
    "SUBPROTOCOL",
    "DisconnectAdvice",
    "DisconnectCode",
    "ErrorCode",
    "disconnect_advice",
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
    SERVICE_RESTART = 1012
    BAD_COMMANDS = 4000
    UNAUTHORIZED = 4001
    CONNECT_TIMEOUT = 4002
    TOKEN_EXPIRED = 4003
    SLOW_CONSUMER = 4004
    RATE_LIMITED = 4005
    TOO_MANY_CONNECTIONS = 4006
    UNSUPPORTED_SUBPROTOCOL = 4007
    DISCONNECTED = 4008

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
    # The node drains (SIGTERM, Hub.drain): it spreads these closes over its drain period,
    # so a client reconnects at once (elsewhere: the node is refusing) and recovers.
    DisconnectCode.SERVICE_RESTART: _RETRY,
    DisconnectCode.BAD_COMMANDS: DisconnectAdvice(reconnect=False),  # a bug in the client
    DisconnectCode.UNAUTHORIZED: DisconnectAdvice(reconnect=True, new_token=True),
    DisconnectCode.CONNECT_TIMEOUT: _RETRY,
    DisconnectCode.TOKEN_EXPIRED: DisconnectAdvice(reconnect=True, new_token=True),
    DisconnectCode.SLOW_CONSUMER: _RETRY,  # and recover what was missed
    DisconnectCode.RATE_LIMITED: DisconnectAdvice(reconnect=True, slow_down=True),
    DisconnectCode.TOO_MANY_CONNECTIONS: DisconnectAdvice(reconnect=False),
    DisconnectCode.UNSUPPORTED_SUBPROTOCOL: DisconnectAdvice(reconnect=False),
    # An operator (POST /api/disconnect) or the application asked for it: coming back at
    # once would undo it.
    DisconnectCode.DISCONNECTED: DisconnectAdvice(reconnect=False),
}


def disconnect_advice(code: int) -> DisconnectAdvice:
    """The advice for any close code: the table's for the hub's codes, else "reconnect"
    (a network failure, 1006, or a proxy's close is worth retrying)."""
    try:
        return _ADVICE[DisconnectCode(code)]
    except ValueError:
        return _RETRY
