"""Sans-I/O RFC 6455 / RFC 7692: bytes in, messages and bytes out. Standard library only."""

from __future__ import annotations

from .connection import Connection, PreparedMessage, Side, State, frame_message
from .frames import CloseCode, Frame, Opcode
from .headers import Headers
from .http11 import Request, Response

__all__ = [
    "CloseCode",
    "Connection",
    "Frame",
    "Headers",
    "Opcode",
    "PreparedMessage",
    "Request",
    "Response",
    "Side",
    "State",
    "frame_message",
]
