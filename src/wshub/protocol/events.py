"""Events that the sans-I/O connection reports when no handler is installed.

The transports install handler functions instead (no object per message on the
hot path); these values exist for tests, tools and readers of the protocol.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CloseReceived", "Event", "Message", "Ping", "Pong"]


@dataclass(frozen=True, slots=True)
class Message:
    """A complete data message: ``str`` for text, ``bytes`` for binary."""

    data: str | bytes


@dataclass(frozen=True, slots=True)
class Ping:
    """A ping from the peer (already answered with a pong)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    """A pong from the peer."""

    data: bytes


@dataclass(frozen=True, slots=True)
class CloseReceived:
    """The peer's close frame: code 1005 when it carried none."""

    code: int
    reason: str


Event = Message | Ping | Pong | CloseReceived
