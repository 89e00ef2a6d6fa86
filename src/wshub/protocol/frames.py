"""Frame-level building blocks of RFC 6455 §5: opcodes, headers, close payloads."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from ..exceptions import ProtocolError
from .speedups import apply_mask

__all__ = [
    "CloseCode",
    "Frame",
    "Opcode",
    "build_frame",
    "frame_header",
    "is_valid_close_code",
    "parse_close",
    "serialize_close",
]


class Opcode(IntEnum):
    """Frame opcodes (RFC 6455 §5.2); 3-7 and 0xB-0xF are reserved."""

    CONT = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


class CloseCode(IntEnum):
    """Close codes with a meaning defined by RFC 6455 §7.4.1 and the IANA registry."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS = 1005  # never on the wire: "the close frame had no code"
    ABNORMAL = 1006  # never on the wire: "no close frame at all"
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    TLS_HANDSHAKE = 1015  # never on the wire


# §7.4.1 plus the IANA registry: codes an endpoint may put in a close frame.
_VALID_REGISTERED = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
)


def is_valid_close_code(code: int) -> bool:
    """Whether ``code`` may appear in a close frame (§7.4.1, §7.4.2).

    1005, 1006 and 1015 are reserved for reporting and never sent; 3000-3999
    are registered by libraries and 4000-4999 are private use.
    """
    return code in _VALID_REGISTERED or 3000 <= code <= 4999


def parse_close(payload: bytes) -> tuple[int, str]:
    """Decode a close frame's payload (§5.5.1).

    Returns:
        ``(code, reason)``; ``(1005, "")`` for an empty payload.

    Raises:
        ProtocolError: 1002 for a 1-byte payload or an invalid code, 1007 for a
            reason that is not UTF-8.
    """
    n = len(payload)
    if n == 0:
        return CloseCode.NO_STATUS, ""
    if n == 1:
        raise ProtocolError("close frame with a 1-byte payload")
    code = (payload[0] << 8) | payload[1]
    if not is_valid_close_code(code):
        raise ProtocolError("invalid close code")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("invalid UTF-8 in close reason", 1007) from None
    return code, reason


def serialize_close(code: int, reason: str = "") -> bytes:
    """Encode a close frame's payload; 1005 means "send no code at all"."""
    if code == CloseCode.NO_STATUS:
        return b""
    data = reason.encode("utf-8")
    if len(data) > 123:
        # Control frames carry at most 125 bytes (§5.5), 2 of them the code; the reason
        # is cut on a UTF-8 boundary so that it still decodes (§5.5.1).
        data = data[:123].decode("utf-8", "ignore").encode("utf-8")
    return code.to_bytes(2, "big") + data


_pack_short = struct.Struct("!BBH").pack
_pack_long = struct.Struct("!BBQ").pack
# Headers of unmasked, final frames with a payload shorter than 126 bytes, by opcode.
_SMALL_HEADERS: dict[int, tuple[bytes, ...]] = {
    op: tuple(bytes((0x80 | op, n)) for n in range(126)) for op in (0, 1, 2, 8, 9, 10)
}


def frame_header(
    opcode: int, length: int, *, fin: bool = True, rsv1: bool = False, masked: bool = False
) -> bytes:
    """Build a frame header without the masking key (§5.2)."""
    b0 = opcode | (0x80 if fin else 0) | (0x40 if rsv1 else 0)
    m = 0x80 if masked else 0
    if length < 126:
        return bytes((b0, m | length))
    if length < 65536:
        return _pack_short(b0, m | 126, length)
    return _pack_long(b0, m | 127, length)


def build_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv1: bool = False,
    mask: bytes | None = None,
) -> bytes:
    """Build a complete frame; ``mask`` is the client's 4-byte key (§5.3)."""
    n = len(payload)
    if mask is None:
        if fin and not rsv1 and n < 126:
            return _SMALL_HEADERS[opcode][n] + payload
        return frame_header(opcode, n, fin=fin, rsv1=rsv1) + payload
    return (
        frame_header(opcode, n, fin=fin, rsv1=rsv1, masked=True) + mask + apply_mask(payload, mask)
    )


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame, as a value: for tests, logs and tools, not the receive hot path."""

    opcode: int
    payload: bytes
    fin: bool = True
    rsv1: bool = False
    rsv2: bool = False
    rsv3: bool = False

    def serialize(self, mask: bytes | None = None) -> bytes:
        """Encode the frame, masked with ``mask`` when given."""
        n = len(self.payload)
        b0 = (
            self.opcode
            | (0x80 if self.fin else 0)
            | (0x40 if self.rsv1 else 0)
            | (0x20 if self.rsv2 else 0)
            | (0x10 if self.rsv3 else 0)
        )
        head = frame_header(0, n, fin=False, masked=mask is not None)
        head = bytes((b0,)) + head[1:]
        if mask is None:
            return head + self.payload
        return head + mask + apply_mask(self.payload, mask)

    @classmethod
    def parse(cls, data: bytes) -> tuple[Frame, int]:
        """Decode one frame at the start of ``data``, unmasking it if needed.

        Returns:
            The frame and the number of bytes it took.

        Raises:
            ProtocolError: the data holds no complete, well-formed frame header.
        """
        if len(data) < 2:
            raise ProtocolError("incomplete frame")
        b0, b1 = data[0], data[1]
        length = b1 & 0x7F
        pos = 2
        if length == 126:
            length = int.from_bytes(data[2:4], "big")
            pos = 4
        elif length == 127:
            length = int.from_bytes(data[2:10], "big")
            pos = 10
        mask = None
        if b1 & 0x80:
            mask = data[pos : pos + 4]
            pos += 4
        if len(data) < pos + length:
            raise ProtocolError("incomplete frame")
        payload = data[pos : pos + length]
        if mask is not None:
            payload = apply_mask(payload, mask)
        frame = cls(
            b0 & 0x0F,
            payload,
            fin=bool(b0 & 0x80),
            rsv1=bool(b0 & 0x40),
            rsv2=bool(b0 & 0x20),
            rsv3=bool(b0 & 0x10),
        )
        return frame, pos + length
