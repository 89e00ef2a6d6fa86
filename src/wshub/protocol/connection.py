"""The sans-I/O WebSocket connection of RFC 6455 §5-§7, after the opening handshake.

Bytes go in through :meth:`Connection.receive_data`; complete messages, pings,
pongs and the peer's close come out through handler functions; frames to send
go out through the ``write`` function. The connection never touches a socket,
a clock or an event loop, so the transports (``wshub.aio``) and the tests drive
the same code.

Handlers instead of an event list keep the receive path free of one object and
one list per message; without handlers installed, events are collected and
:meth:`Connection.events_received` returns them (the classic sans-I/O shape).

Bad input from the peer never raises here (STYLE convention 1): the connection
records the cause in :attr:`Connection.failure`, queues a close frame with the
right code and discards what follows. Only local misuse raises
(:class:`~wshub.exceptions.InvalidState`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from enum import IntEnum

from ..exceptions import InvalidState, PayloadTooBig, ProtocolError
from . import speedups
from .events import CloseReceived, Event, Message, Ping, Pong
from .extensions.base import Extension
from .extensions.permessage_deflate import SharedDeflate
from .frames import CloseCode, build_frame, is_valid_close_code, parse_close, serialize_close
from .mask import new_mask
from .speedups import apply_mask
from .utf8 import Utf8Decoder

__all__ = ["Connection", "PreparedMessage", "Side", "State"]

logger = logging.getLogger("wshub.protocol")

# Opcodes as plain ints: comparisons against IntEnum members cost more on the hot path.
_CONT, _TEXT, _BINARY, _CLOSE, _PING, _PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_KNOWN_OPCODES = frozenset({_CONT, _TEXT, _BINARY, _CLOSE, _PING, _PONG})


class Side(IntEnum):
    """Which end of the connection this is; it decides masking (§5.1)."""

    SERVER = 0
    CLIENT = 1


class State(IntEnum):
    """Connection states after the opening handshake (§4.1 "OPEN", §7)."""

    OPEN = 1
    CLOSING = 2  # a close frame was sent or received
    CLOSED = 3  # the transport is gone


class Connection:
    """One side of an open WebSocket connection.

    Args:
        side: ``Side.SERVER`` expects masked frames and sends unmasked ones;
            ``Side.CLIENT`` the reverse (§5.1).
        extensions: negotiated extensions; permessage-deflate is the one that
            owns RSV1 (RFC 7692 §6).
        max_size: largest message in bytes after decompression; a larger one
            fails the connection with 1009 before it is buffered. ``None``
            means no limit.
    """

    __slots__ = (
        "_buf",
        "_debug",
        "_deflate",
        "_discard",
        "_events",
        "_expect_mask",
        "_f_fin",
        "_f_mask",
        "_f_pos",
        "_m_compressed",
        "_m_decoder",
        "_m_op",
        "_m_parts",
        "_m_size",
        "_mask_source",
        "_out",
        "_remaining",
        "_shared",
        "close_rcvd",
        "close_rcvd_then_sent",
        "close_sent",
        "failure",
        "max_size",
        "on_close",
        "on_message",
        "on_ping",
        "on_pong",
        "side",
        "state",
        "write",
    )

    def __init__(
        self,
        side: Side,
        *,
        extensions: Sequence[Extension] = (),
        max_size: int | None = 2**20,
    ) -> None:
        self.side = side
        self.state = State.OPEN
        self.max_size = max_size
        self._deflate: Extension | None = extensions[0] if extensions else None
        self._expect_mask = side is Side.SERVER
        self._mask_source: Callable[[], bytes] | None = new_mask if side is Side.CLIENT else None
        self._debug = logger.isEnabledFor(logging.DEBUG)
        # How this connection's messages can share bytes with other connections' (see
        # prepared_frame): _PLAIN, _OWN (masked, or compressed with context takeover) or
        # the SharedDeflate of its compression parameters.
        self._shared: SharedDeflate | int = _OWN
        if side is Side.SERVER:
            deflate = self._deflate
            if deflate is None:
                self._shared = _PLAIN
            else:
                shared = getattr(deflate, "shared", None)
                if isinstance(shared, SharedDeflate):
                    self._shared = shared

        self._buf = bytearray()  # an incomplete frame header (or control frame)
        self._discard = False  # ignore all further input (close received, or failed)
        # The data frame whose payload is arriving in pieces.
        self._remaining = 0
        self._f_fin = False
        self._f_mask: bytes | None = None
        self._f_pos = 0
        # The message being assembled from several frames or pieces.
        self._m_op = 0
        self._m_parts: list[bytes] | list[str] = []
        self._m_size = 0
        self._m_compressed = False
        self._m_decoder: Utf8Decoder | None = None

        self.close_rcvd: tuple[int, str] | None = None
        self.close_sent: tuple[int, str] | None = None
        self.close_rcvd_then_sent: bool | None = None
        self.failure: ProtocolError | None = None

        self._events: list[Event] = []
        self._out: list[bytes] = []
        self.write: Callable[[bytes], None] = self._out.append
        self.on_message: Callable[[str | bytes], None] = self._queue_message
        self.on_ping: Callable[[bytes], None] = self._queue_ping
        self.on_pong: Callable[[bytes], None] = self._queue_pong
        self.on_close: Callable[[int, str], None] = self._queue_close

    # -- default handlers: collect events ---------------------------------------------------

    def _queue_message(self, data: str | bytes) -> None:
        self._events.append(Message(data))

    def _queue_ping(self, data: bytes) -> None:
        self._events.append(Ping(data))

    def _queue_pong(self, data: bytes) -> None:
        self._events.append(Pong(data))

    def _queue_close(self, code: int, reason: str) -> None:
        self._events.append(CloseReceived(code, reason))

    def events_received(self) -> list[Event]:
        """Return and forget the events collected since the last call."""
        events, self._events = self._events, []
        return events

    def data_to_send(self) -> list[bytes]:
        """Return and forget the bytes written since the last call (default ``write``)."""
        out, self._out[:] = list(self._out), []
        return out

    # -- state ------------------------------------------------------------------------------

    @property
    def close_code(self) -> int | None:
        """The peer's close code; 1006 once closed without one; ``None`` while open."""
        if self.close_rcvd is not None:
            return self.close_rcvd[0]
        if self.state is State.CLOSED:
            return CloseCode.ABNORMAL
        return None

    @property
    def close_reason(self) -> str | None:
        """The peer's close reason; ``""`` once closed without one; ``None`` while open."""
        if self.close_rcvd is not None:
            return self.close_rcvd[1]
        if self.state is State.CLOSED:
            return ""
        return None

    @property
    def close_handshake_done(self) -> bool:
        """Both close frames have crossed: the TCP connection may go (§7.1.1)."""
        return self.close_sent is not None and self.close_rcvd is not None

    def _set_state(self, state: State) -> None:
        if self._debug:
            logger.debug("%s state %s -> %s", self.side.name.lower(), self.state.name, state.name)
        self.state = state

    # -- receiving --------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the transport; handlers run for what they complete."""
        if self._discard:
            return
        if self._buf:
            self._buf += data
            data = bytes(self._buf)
            self._buf.clear()
        elif _scan_frames is not None and not self._remaining and not self._m_op:
            # Compiled fast path: whole single-frame messages go straight to on_message; the
            # first frame it does not handle (control, fragment, compressed, incomplete,
            # invalid) and everything after it is parsed below, by the reference code.
            max_size = self.max_size
            pos = _scan_frames(
                data, self._expect_mask, -1 if max_size is None else max_size, self.on_message
            )
            if pos == len(data) or self._discard:
                return
            if pos:
                data = data[pos:]
        pos = 0
        end = len(data)
        while pos < end:
            if self._remaining:
                pos = self._receive_piece(data, pos, end)
                if self._discard:
                    return
                continue
            if end - pos < 2:
                self._buf += data[pos:]
                return
            b0 = data[pos]
            b1 = data[pos + 1]
            length = b1 & 0x7F
            head = 2 if length < 126 else (4 if length == 126 else 10)
            masked = b1 & 0x80
            if masked:
                head += 4
            if end - pos < head:
                self._buf += data[pos:]
                return
            if length == 126:
                length = (data[pos + 2] << 8) | data[pos + 3]
            elif length == 127:
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                if length >> 63:
                    # §5.2: the most significant bit of a 64-bit length MUST be 0.
                    self._fail(ProtocolError("invalid frame length"))
                    return
            opcode = b0 & 0x0F
            fin = b0 & 0x80
            rsv1 = b0 & 0x40
            if b0 & 0x30 or opcode not in _KNOWN_OPCODES or bool(masked) != self._expect_mask:
                # §5.2 reserved bits without an extension that owns them; §5.2
                # reserved opcodes; §5.1 masking in the wrong direction.
                self._fail(ProtocolError(self._header_error(b0, opcode, masked)))
                return
            start = pos + head
            if opcode >= _CLOSE:
                # §5.5: control frames are short, never fragmented, never compressed.
                if not fin or length > 125 or rsv1:
                    self._fail(ProtocolError("invalid control frame"))
                    return
                if end - start < length:
                    self._buf += data[pos:]
                    return
                payload = data[start : start + length]
                if masked:
                    payload = apply_mask(payload, data[start - 4 : start])
                pos = start + length
                self._control(opcode, payload)
                if self._discard:
                    return
                continue
            # Data frame (§5.4 fragmentation, §5.6 data frames).
            if opcode == _CONT:
                if not self._m_op:
                    self._fail(ProtocolError("continuation frame without a message"))
                    return
                if rsv1:
                    # RFC 7692 §6.1: only the first frame of a message carries RSV1.
                    self._fail(ProtocolError("RSV1 on a continuation frame"))
                    return
            else:
                if self._m_op:
                    self._fail(ProtocolError("new message before the previous one ended"))
                    return
                if rsv1 and self._deflate is None:
                    self._fail(ProtocolError("RSV1 without a negotiated extension"))
                    return
            max_size = self.max_size
            if (
                max_size is not None
                and not (rsv1 or self._m_compressed)
                and self._m_size + length > max_size
            ):
                self._fail(PayloadTooBig())
                return
            if end - start >= length:
                payload = data[start : start + length]
                if masked:
                    payload = apply_mask(payload, data[start - 4 : start])
                pos = start + length
                if opcode and fin and not rsv1:
                    # The common case: a whole message in one uncompressed frame.
                    if opcode == _TEXT:
                        try:
                            text = payload.decode("utf-8")
                        except UnicodeDecodeError:
                            self._fail(ProtocolError("invalid UTF-8", 1007))
                            return
                        self.on_message(text)
                    else:
                        self.on_message(payload)
                    continue
                if opcode:
                    self._start_message(opcode, bool(rsv1))
                self._message_piece(payload, bool(fin))
                if self._discard:
                    return
                continue
            # The payload is not all here: consume it piece by piece, so a large
            # frame is never held twice and text is validated as it arrives.
            if opcode:
                self._start_message(opcode, bool(rsv1))
            self._remaining = length
            self._f_fin = bool(fin)
            self._f_mask = data[start - 4 : start] if masked else None
            self._f_pos = 0
            pos = start

    def _header_error(self, b0: int, opcode: int, masked: int) -> str:
        if b0 & 0x30:
            return "reserved bits set"
        if opcode not in _KNOWN_OPCODES:
            return "reserved opcode"
        return "unmasked client frame" if self._expect_mask else "masked server frame"

    def _receive_piece(self, data: bytes, pos: int, end: int) -> int:
        take = min(self._remaining, end - pos)
        piece = data[pos : pos + take]
        if self._f_mask is not None:
            piece = apply_mask(piece, self._f_mask, self._f_pos)
        self._f_pos += take
        self._remaining -= take
        self._message_piece(piece, self._f_fin and not self._remaining)
        return pos + take

    def _start_message(self, opcode: int, compressed: bool) -> None:
        self._m_op = opcode
        self._m_compressed = compressed
        self._m_size = 0
        self._m_parts = []
        self._m_decoder = Utf8Decoder() if opcode == _TEXT else None

    def _message_piece(self, data: bytes, final: bool) -> None:
        """Add a piece of the current message; ``final`` when it ends the message."""
        if self._m_compressed:
            assert self._deflate is not None
            max_size = self.max_size
            allowed = None if max_size is None else max_size - self._m_size
            # Inflated piece by piece into the message buffer, so that refusing a bomb
            # costs max_size plus one piece, not a second copy (RFC 7692 §8.1).
            try:
                for piece in self._deflate.inflate(data, fin=final, max_size=allowed):
                    if not self._add_piece(piece, False):
                        return
            except ProtocolError as exc:
                self._fail(exc)
                return
            if final and self._add_piece(b"", True):
                self._end_message()
            return
        if self._add_piece(data, final) and final:
            self._end_message()

    def _add_piece(self, data: bytes, final: bool) -> bool:
        """Buffer (and, for text, validate) one piece; ``False`` once the connection failed."""
        max_size = self.max_size
        self._m_size += len(data)
        if max_size is not None and self._m_size > max_size:
            self._fail(PayloadTooBig())
            return False
        decoder = self._m_decoder
        if decoder is not None:
            try:
                text = decoder.decode(data, final)
            except UnicodeDecodeError:
                self._fail(ProtocolError("invalid UTF-8", 1007))
                return False
            if text:
                self._m_parts.append(text)  # type: ignore[arg-type]
        elif data:
            self._m_parts.append(data)  # type: ignore[arg-type]
        return True

    def _end_message(self) -> None:
        parts = self._m_parts
        text = self._m_decoder is not None
        message = "".join(parts) if text else b"".join(parts)  # type: ignore[arg-type]
        self._m_op = 0
        self._m_parts = []
        self._m_size = 0
        self._m_compressed = False
        self._m_decoder = None
        self.on_message(message)

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == _PING:
            if self._debug:
                logger.debug("< PING [%d bytes]", len(payload))
            if self.close_sent is None:
                # §5.5.2: answer with a pong carrying the same application data.
                self._send_frame(_PONG, payload)
            self.on_ping(payload)
        elif opcode == _PONG:
            if self._debug:
                logger.debug("< PONG [%d bytes]", len(payload))
            self.on_pong(payload)
        else:
            try:
                code, reason = parse_close(payload)
            except ProtocolError as exc:
                self._fail(exc)
                return
            if self._debug:
                logger.debug("< CLOSE %d [%d bytes of reason]", code, len(reason))
            self.close_rcvd = (code, reason)
            self._discard = True
            if self.close_sent is None:
                # §5.5.1: reply with a close frame, echoing the status code.
                self.close_rcvd_then_sent = True
                self._send_close(code, "")
            else:
                self.close_rcvd_then_sent = False
            self._set_state(State.CLOSING)
            self.on_close(code, reason)

    def _fail(self, exc: ProtocolError) -> None:
        """Fail the connection (§7.1.7): send a close frame, then ignore all input."""
        if self._debug:
            logger.debug("failing the connection: %d %s", exc.code, exc.reason)
        self.failure = exc
        self._discard = True
        self._buf.clear()
        self._m_parts = []
        self._remaining = 0
        if self.close_sent is None and self.state is State.OPEN:
            self._send_close(exc.code, exc.reason)
        self._set_state(State.CLOSING)

    def receive_eof(self) -> None:
        """The transport reached end of file or was lost."""
        if self.state is not State.CLOSED:
            self._discard = True
            self._set_state(State.CLOSED)

    # -- sending ----------------------------------------------------------------------------

    def _send_frame(
        self, opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False
    ) -> None:
        mask = self._mask_source() if self._mask_source is not None else None
        self.write(build_frame(opcode, payload, fin=fin, rsv1=rsv1, mask=mask))

    def _send_close(self, code: int, reason: str) -> None:
        self.close_sent = (code, reason)
        if self._debug:
            logger.debug("> CLOSE %d", code)
        self._send_frame(_CLOSE, serialize_close(code, reason))

    def _check_open(self) -> None:
        if self.state is not State.OPEN:
            raise InvalidState(f"cannot send: connection is {self.state.name}")

    def send(self, message: str | bytes) -> None:
        """Send a whole message: text for ``str``, binary for bytes-like objects."""
        if self.state is not State.OPEN:
            self._check_open()
        if type(message) is str:
            opcode = _TEXT
            payload = message.encode("utf-8")
        else:
            opcode = _BINARY
            payload = message if type(message) is bytes else bytes(message)  # type: ignore[arg-type]
        if self._deflate is not None:
            self._send_frame(opcode, self._deflate.compress(payload), rsv1=True)
        elif self._mask_source is None:
            self.write(build_frame(opcode, payload))
        else:
            self._send_frame(opcode, payload)

    def prepared_frame(self, prepared: PreparedMessage) -> bytes | None:
        """The frame of ``prepared`` for this connection, if it can share one.

        A server connection without an extension sends every other server connection's
        frame (§5.1: servers never mask); one that negotiated permessage-deflate without
        context takeover sends the frame compressed once for every connection with its
        parameters (RFC 7692 §7.1.1.1). ``None``: this connection frames on its own
        (a client masks each frame; a compressor with context takeover depends on what
        this connection sent before), so send ``prepared.message`` with :meth:`send`.
        """
        shared = self._shared
        if shared is _PLAIN:
            return prepared.frame
        if shared is _OWN:
            return None
        return prepared.compressed_frame(shared)  # type: ignore[arg-type]

    def send_prepared(self, prepared: PreparedMessage) -> None:
        """Send ``prepared``: its shared frame when this connection can use it, else
        framed (and compressed) for this connection alone, as :meth:`send` does."""
        if self.state is not State.OPEN:
            self._check_open()
        frame = self.prepared_frame(prepared)
        if frame is None:
            self.send(prepared.message)
        else:
            self.write(frame)

    def send_frame(self, opcode: int, payload: bytes, *, fin: bool = True) -> None:
        """Send one raw, uncompressed frame; for fragmentation and for tests.

        Raises:
            InvalidState: the connection is closing, the opcode is reserved, or a
                control frame is fragmented or longer than 125 bytes (§5.5).
        """
        self._check_open()
        if opcode not in _KNOWN_OPCODES or opcode == _CLOSE:
            raise InvalidState(f"cannot send a frame with opcode {opcode:#x} this way")
        if opcode >= _CLOSE and (not fin or len(payload) > 125):
            raise InvalidState("control frames are at most 125 bytes and never fragmented")
        self._send_frame(opcode, payload, fin)

    def release_idle_memory(self) -> bool:
        """Let the extension free what it can rebuild if nothing was sent since the last call.

        Meant to be called now and then (the aio layer calls it at every keepalive ping):
        a connection that negotiated permessage-deflate and went quiet drops its
        compressor. Returns whether anything was freed.
        """
        return self._deflate is not None and self._deflate.release_idle()

    def ping(self, data: bytes = b"") -> None:
        """Send a ping (§5.5.2); ``data`` is at most 125 bytes."""
        self._check_open()
        if len(data) > 125:
            raise InvalidState("ping data is limited to 125 bytes")
        if self._debug:
            logger.debug("> PING [%d bytes]", len(data))
        self._send_frame(_PING, data)

    def pong(self, data: bytes = b"") -> None:
        """Send an unsolicited pong (§5.5.3), e.g. as a heartbeat."""
        self._check_open()
        if len(data) > 125:
            raise InvalidState("pong data is limited to 125 bytes")
        self._send_frame(_PONG, data)

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Start the closing handshake (§7.1.2); a no-op once a close frame was sent.

        Args:
            code: the close code; 1005 sends a close frame without one.
            reason: a short text for the peer, cut to fit the frame (§5.5).

        Raises:
            InvalidState: ``code`` may not appear in a close frame (§7.4).
        """
        if self.close_sent is not None or self.state is State.CLOSED:
            return
        # §7.4.1: 1005, 1006 and 1015 must never be sent, and the peer fails the
        # connection on a reserved or unassigned code; 1005 here means "no code".
        if code != CloseCode.NO_STATUS and not is_valid_close_code(code):
            raise InvalidState(f"invalid close code {code}")
        self._send_close(code, reason)
        self._set_state(State.CLOSING)


_PLAIN = 0
_OWN = 1


class PreparedMessage:
    """One message, framed once for any number of server connections.

    :meth:`Connection.prepared_frame` picks the bytes a connection can send: the
    uncompressed frame, built at once (it is the common case, and an attribute read is
    what each of N connections then pays), or the frame compressed once per set of
    permessage-deflate parameters (:class:`SharedDeflate`), built on first use and kept.
    A fan-out to N connections frames and compresses a message once, not N times.

    Attributes:
        message: the message (``str``: text, ``bytes``: binary).
        frame: the unmasked, uncompressed frame (RFC 7692 lets any message go
            uncompressed).
    """

    __slots__ = ("_compressed", "frame", "message")

    def __init__(self, message: str | bytes) -> None:
        self.message = message
        self.frame = frame_message(message)
        self._compressed: dict[SharedDeflate, bytes] | None = None

    def compressed_frame(self, deflate: SharedDeflate) -> bytes:
        """The unmasked frame compressed with ``deflate``, RSV1 set (RFC 7692 §6)."""
        cache = self._compressed
        if cache is None:
            cache = self._compressed = {}
        frame = cache.get(deflate)
        if frame is None:
            message = self.message
            if isinstance(message, str):
                opcode, payload = _TEXT, message.encode("utf-8")
            else:
                opcode, payload = _BINARY, bytes(message)
            frame = cache[deflate] = build_frame(opcode, deflate.compress(payload), rsv1=True)
        return frame


def _frame_message(message: str | bytes) -> bytes:
    """Frame a message for a server to send, once, to any number of connections.

    The frame is unmasked and uncompressed: servers never mask (§5.1), and RFC
    7692 lets a sender leave any message uncompressed, even where
    permessage-deflate was negotiated.
    """
    if type(message) is str:
        return build_frame(_TEXT, message.encode("utf-8"))
    return build_frame(_BINARY, message if type(message) is bytes else bytes(message))  # type: ignore[arg-type]


_scan_frames = speedups.scan_frames
frame_message: Callable[[str | bytes], bytes] = speedups.frame_message or _frame_message
