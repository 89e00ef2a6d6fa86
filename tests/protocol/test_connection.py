"""Tests for wshub.protocol.connection: the sans-I/O state machine of RFC 6455 §5-§7.

Behaviour that RFC 6455 defines the same way for both ends runs on a server and on a
client connection alike; only masking differs (§5.1), and the helpers below send each
side what its peer would send.
"""

from __future__ import annotations

import itertools
import logging
import random
import tracemalloc
import zlib
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wshub.exceptions import InvalidState, PayloadTooBig, ProtocolError
from wshub.protocol.connection import Connection, PreparedMessage, Side, State, frame_message
from wshub.protocol.events import CloseReceived, Event, Message, Ping, Pong
from wshub.protocol.extensions.permessage_deflate import PerMessageDeflate
from wshub.protocol.frames import (
    CloseCode,
    Frame,
    Opcode,
    frame_header,
    parse_close,
    serialize_close,
)

CONT, TEXT, BINARY = Opcode.CONT, Opcode.TEXT, Opcode.BINARY
CLOSE, PING, PONG = Opcode.CLOSE, Opcode.PING, Opcode.PONG
PEER_MASK = b"\x37\xfa\x21\x3d"
RESERVED_OPCODES = [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF]
# Invalid UTF-8 prefixes that a strict decoder can reject as soon as it holds them (§8.1).
BAD_UTF8_PREFIXES = [b"\xc0", b"\xf5", b"\xed\xa0", b"\xe0\x80", b"\xf4\x90"]

sides = pytest.mark.parametrize("side", [Side.SERVER, Side.CLIENT], ids=["server", "client"])


def deflate() -> PerMessageDeflate:
    """A permessage-deflate instance with RFC 7692's defaults (15-bit windows, takeover)."""
    return PerMessageDeflate(
        remote_no_context_takeover=False,
        local_no_context_takeover=False,
        remote_max_window_bits=15,
        local_max_window_bits=15,
    )


def from_peer(
    side: Side,
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv1: bool = False,
    rsv2: bool = False,
    rsv3: bool = False,
) -> bytes:
    """A frame as the peer of ``side`` sends it: clients mask, servers do not (§5.1)."""
    mask = PEER_MASK if side is Side.SERVER else None
    return Frame(opcode, payload, fin, rsv1, rsv2, rsv3).serialize(mask)


def peer_header(side: Side, opcode: int, length: int, *, fin: bool = True) -> bytes:
    """Only the header (and masking key) of a frame from the peer of ``side``."""
    masked = side is Side.SERVER
    return frame_header(opcode, length, fin=fin, masked=masked) + (PEER_MASK if masked else b"")


def sent(conn: Connection) -> list[Frame]:
    """The frames ``conn`` wrote since the last call, each checked for §5.1 masking."""
    data = b"".join(conn.data_to_send())
    frames = []
    while data:
        assert bool(data[1] & 0x80) == (conn.side is Side.CLIENT), "wrong masking (§5.1)"
        frame, size = Frame.parse(data)
        frames.append(frame)
        data = data[size:]
    return frames


def close_frame(code: int, reason: str = "") -> Frame:
    return Frame(CLOSE, serialize_close(code, reason))


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(min(cut, len(data)) for cut in cuts), len(data)]
    return [data[start:stop] for start, stop in itertools.pairwise(bounds)]


def assert_failed(conn: Connection, code: int) -> list[Event]:
    """Check that ``conn`` failed the connection with ``code`` (§7.1.7).

    One close frame with that code went out, and input that follows is discarded:
    no event, no pong, no second close frame.

    Returns:
        The events reported before the failure.
    """
    assert conn.failure is not None
    assert conn.failure.code == code
    assert conn.state is State.CLOSING
    frames = sent(conn)
    assert [frame.opcode for frame in frames].count(CLOSE) == 1
    assert frames[-1].opcode == CLOSE
    assert parse_close(frames[-1].payload)[0] == code
    events = conn.events_received()
    side = conn.side
    conn.receive_data(
        from_peer(side, PING, b"still there?")
        + from_peer(side, TEXT, b"late")
        + from_peer(side, CLOSE, serialize_close(1000))
    )
    assert conn.events_received() == []
    assert conn.data_to_send() == []
    return events


# -- data messages (§5.6, §5.4) --------------------------------------------------------------


@sides
@pytest.mark.parametrize(
    ("opcode", "payload", "message"),
    [
        (TEXT, b"Hello", "Hello"),
        (TEXT, "café 😀".encode(), "café 😀"),
        (TEXT, b"", ""),
        (BINARY, b"\x00\xff\x80", b"\x00\xff\x80"),
        (BINARY, b"", b""),
    ],
)
def test_whole_message(side: Side, opcode: Opcode, payload: bytes, message: str | bytes) -> None:
    """A single frame with FIN set is a whole message: text as str, binary as bytes."""
    conn = Connection(side)
    conn.receive_data(from_peer(side, opcode, payload))
    assert conn.events_received() == [Message(message)]
    assert conn.data_to_send() == []
    assert conn.state is State.OPEN


@sides
@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70_000])
def test_payload_length_encodings_around_the_thresholds(side: Side, length: int) -> None:
    """7-bit, 16-bit and 64-bit payload lengths (§5.2) each deliver the whole payload."""
    payload = bytes(range(256)) * (length // 256) + b"x" * (length % 256)
    conn = Connection(side)
    conn.receive_data(from_peer(side, BINARY, payload) + from_peer(side, TEXT, b"next"))
    assert conn.events_received() == [Message(payload), Message("next")]


@sides
def test_fragmented_message_with_control_frames_between_fragments(side: Side) -> None:
    """§5.4: fragments make one message; control frames may come between them."""
    conn = Connection(side)
    conn.receive_data(
        from_peer(side, TEXT, b"Hel", fin=False)
        + from_peer(side, PING, b"p1")
        + from_peer(side, CONT, b"lo, ", fin=False)
        + from_peer(side, PONG, b"p2")
        + from_peer(side, CONT, b"", fin=False)
        + from_peer(side, CONT, "wörld".encode())
    )
    assert conn.events_received() == [Ping(b"p1"), Pong(b"p2"), Message("Hello, wörld")]
    assert sent(conn) == [Frame(PONG, b"p1")]


@sides
def test_fragmented_binary_message(side: Side) -> None:
    """Binary fragments are joined in order."""
    conn = Connection(side)
    for piece in (b"\x01", b"\x02\x03", b"\x04"):
        opcode = CONT if piece != b"\x01" else BINARY
        conn.receive_data(from_peer(side, opcode, piece, fin=piece == b"\x04"))
    assert conn.events_received() == [Message(b"\x01\x02\x03\x04")]


@sides
def test_text_character_split_across_fragments(side: Side) -> None:
    """§5.6: only the whole message must be valid UTF-8, not each fragment."""
    data = "€".encode()
    conn = Connection(side)
    conn.receive_data(from_peer(side, TEXT, data[:1], fin=False))
    conn.receive_data(from_peer(side, CONT, data[1:2], fin=False))
    conn.receive_data(from_peer(side, CONT, data[2:]))
    assert conn.events_received() == [Message("€")]


@sides
def test_input_fed_one_byte_at_a_time(side: Side) -> None:
    """Headers, masking keys and payloads cut anywhere are put back together."""
    wire = (
        from_peer(side, TEXT, "añb".encode() * 50, fin=False)
        + from_peer(side, PING, b"ping")
        + from_peer(side, CONT, b"!" * 300)
        + from_peer(side, BINARY, b"\x00" * 70_000)
    )
    conn = Connection(side)
    for i in range(len(wire)):
        conn.receive_data(wire[i : i + 1])
    assert conn.events_received() == [
        Ping(b"ping"),
        Message("añb" * 50 + "!" * 300),
        Message(b"\x00" * 70_000),
    ]
    assert sent(conn) == [Frame(PONG, b"ping")]


@sides
@pytest.mark.parametrize("compression", [False, True], ids=["plain", "deflate"])
# Wall-clock deadlines would make the run flaky under coverage on a loaded machine.
@settings(deadline=None)
@given(data=st.data())
def test_any_split_of_the_input_gives_the_same_messages(
    side: Side, compression: bool, data: st.DataObject
) -> None:
    """A random stream of frames cut into random chunks reads the same as fed at once."""
    sender = deflate()
    wire = b""
    expected: list[Event] = []
    replies: list[Frame] = []  # pongs, and the close echo
    messages = data.draw(st.lists(st.text(max_size=40) | st.binary(max_size=40), max_size=4))
    for message in messages:
        payload = message.encode() if isinstance(message, str) else message
        compressed = compression and data.draw(st.booleans(), label="compressed")
        if compressed:
            payload = sender.compress(payload)
        cuts = data.draw(st.lists(st.integers(0, len(payload)), max_size=3), label="fragments")
        fragments = split(payload, cuts)
        for i, fragment in enumerate(fragments):
            if i:
                controls = st.tuples(st.sampled_from([PING, PONG]), st.binary(max_size=8))
                for opcode, control in data.draw(st.lists(controls, max_size=2)):
                    wire += from_peer(side, opcode, control)
                    expected.append(Ping(control) if opcode == PING else Pong(control))
                    if opcode == PING:
                        replies.append(Frame(PONG, control))
            opcode = CONT if i else (TEXT if isinstance(message, str) else BINARY)
            last = i == len(fragments) - 1
            wire += from_peer(side, opcode, fragment, fin=last, rsv1=compressed and not i)
        expected.append(Message(message))
    if data.draw(st.booleans(), label="close"):
        wire += from_peer(side, CLOSE, serialize_close(1000, "bye"))
        expected.append(CloseReceived(1000, "bye"))
        replies.append(close_frame(1000))
    chunk_cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=12), label="chunks")

    # Each receiver needs its own inflater: with context takeover, it keeps state.
    at_once = Connection(side, extensions=[deflate()] if compression else [])
    at_once.receive_data(wire)
    in_pieces = Connection(side, extensions=[deflate()] if compression else [])
    for chunk in split(wire, chunk_cuts):
        in_pieces.receive_data(chunk)

    assert at_once.failure is None
    assert in_pieces.failure is None
    assert at_once.events_received() == expected
    assert in_pieces.events_received() == expected
    assert sent(at_once) == replies
    assert sent(in_pieces) == replies


@sides
@pytest.mark.parametrize(("opcode", "message"), [(TEXT, "héllo " * 20), (BINARY, b"\x00" * 300)])
def test_rsv1_with_permessage_deflate(side: Side, opcode: Opcode, message: str | bytes) -> None:
    """RFC 7692 §6: RSV1 on the first frame marks a compressed message, which is inflated."""
    payload = message.encode() if isinstance(message, str) else message
    compressed = deflate().compress(payload)
    assert len(compressed) < len(payload)
    conn = Connection(side, extensions=[deflate()])
    conn.receive_data(from_peer(side, opcode, compressed, rsv1=True))
    conn.receive_data(from_peer(side, opcode, payload))  # §6: a message may go uncompressed
    assert conn.events_received() == [Message(message), Message(message)]


@sides
def test_compressed_message_in_fragments(side: Side) -> None:
    """RFC 7692 §6.1: RSV1 on the first fragment only; the fragments are inflated in turn."""
    compressed = deflate().compress(b"fragmented and compressed " * 10)
    half = len(compressed) // 2
    conn = Connection(side, extensions=[deflate()])
    conn.receive_data(from_peer(side, BINARY, compressed[:half], fin=False, rsv1=True))
    conn.receive_data(from_peer(side, PING, b"between"))
    conn.receive_data(from_peer(side, CONT, compressed[half:]))
    assert conn.events_received() == [Ping(b"between"), Message(b"fragmented and compressed " * 10)]


# -- protocol violations (§5.1, §5.2, §5.4, §5.5, §7.4, §8.1; RFC 7692 §6) ----------------


def _violations() -> list[object]:
    """Input that breaks a rule, the close code it fails with, and the extensions it needs.

    Each row is what the peer sends, as a function of our side (which decides masking).
    """
    rows: list[tuple[str, Callable[[Side], bytes], int, str]] = [
        # §5.4: a continuation frame continues a non-final data frame, nothing else.
        ("continuation-without-message", lambda s: from_peer(s, CONT, b"orphan"), 1002, "any"),
        (
            "continuation-after-whole-message",
            lambda s: from_peer(s, TEXT, b"done") + from_peer(s, CONT, b"more"),
            1002,
            "any",
        ),
        # §5.4: fragments of different messages must not interleave.
        *[
            (
                f"new-{op.name.lower()}-during-fragmented-message",
                lambda s, op=op: from_peer(s, TEXT, b"first", fin=False) + from_peer(s, op, b"2"),
                1002,
                "any",
            )
            for op in (TEXT, BINARY)
        ],
        # §5.2: opcodes 3-7 and 0xB-0xF are reserved.
        *[
            (f"reserved-opcode-{op:#x}", lambda s, op=op: from_peer(s, op, b"?"), 1002, "any")
            for op in RESERVED_OPCODES
        ],
        # §5.2: RSV2 and RSV3 mean nothing without an extension defining them, and
        # permessage-deflate owns RSV1 only (RFC 7692 §6).
        *[
            (
                f"{bit}-on-{op.name.lower()}",
                lambda s, op=op, bit=bit: from_peer(s, op, b"x", **{bit: True}),
                1002,
                "any",
            )
            for bit in ("rsv2", "rsv3")
            for op in (TEXT, BINARY, PING)
        ],
        # §5.2: nor does RSV1 without a negotiated extension.
        *[
            (
                f"rsv1-on-{op.name.lower()}-without-extension",
                lambda s, op=op: from_peer(s, op, deflate().compress(b"hello"), rsv1=True),
                1002,
                "plain",
            )
            for op in (TEXT, BINARY)
        ],
        # RFC 7692 §6.1: RSV1 only on the first frame of a message, never on control frames.
        (
            "rsv1-on-continuation",
            lambda s: (
                from_peer(s, TEXT, deflate().compress(b"hi")[:2], fin=False, rsv1=True)
                + from_peer(s, CONT, deflate().compress(b"hi")[2:], rsv1=True)
            ),
            1002,
            "deflate",
        ),
        *[
            (
                f"rsv1-on-{op.name.lower()}",
                lambda s, op=op: from_peer(s, op, b"", rsv1=True),
                1002,
                "deflate",
            )
            for op in (PING, PONG, CLOSE)
        ],
        # RFC 7692 §6.2: data that does not inflate (BFINAL=1 with the reserved block type).
        (
            "corrupt-deflate-data",
            lambda s: from_peer(s, BINARY, b"\xff\xff", rsv1=True),
            1007,
            "deflate",
        ),
        # §5.2: the most significant bit of a 64-bit length must be 0.
        (
            "64-bit-length-top-bit",
            lambda s: (
                peer_header(s, BINARY, 65536)[:2]
                + (2**63).to_bytes(8, "big")
                + (PEER_MASK if s is Side.SERVER else b"")
            ),
            1002,
            "any",
        ),
        # §5.5: control frames carry at most 125 bytes and are never fragmented.
        *[
            (
                f"{op.name.lower()}-over-125-bytes",
                lambda s, op=op: from_peer(s, op, b"\x03\xe8" + b"x" * 124),
                1002,
                "any",
            )
            for op in (PING, PONG, CLOSE)
        ],
        *[
            (
                f"fragmented-{op.name.lower()}",
                lambda s, op=op: from_peer(s, op, b"", fin=False),
                1002,
                "any",
            )
            for op in (PING, PONG, CLOSE)
        ],
        # §8.1: text messages are UTF-8, in every fragment and after inflating.
        ("invalid-utf8", lambda s: from_peer(s, TEXT, b"caf\xe9"), 1007, "any"),
        (
            "invalid-utf8-in-continuation",
            lambda s: from_peer(s, TEXT, b"ok", fin=False) + from_peer(s, CONT, b"\xed\xa0\x80"),
            1007,
            "any",
        ),
        (
            "text-ends-inside-a-character",
            lambda s: from_peer(s, TEXT, b"ok \xe2\x82", fin=False) + from_peer(s, CONT),
            1007,
            "any",
        ),
        (
            "invalid-utf8-compressed",
            lambda s: from_peer(s, TEXT, deflate().compress(b"\xed\xa0\x80"), rsv1=True),
            1007,
            "deflate",
        ),
        # §5.5.1: a close body is a 2-byte code, then a UTF-8 reason; §7.4: valid codes only.
        ("close-with-1-byte-body", lambda s: from_peer(s, CLOSE, b"\x03"), 1002, "any"),
        *[
            (
                f"close-code-{code}",
                lambda s, code=code: from_peer(s, CLOSE, code.to_bytes(2, "big")),
                1002,
                "any",
            )
            for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000)
        ],
        ("close-reason-not-utf8", lambda s: from_peer(s, CLOSE, b"\x03\xe8\xff"), 1007, "any"),
    ]
    params = []
    for name, wire, code, extensions in rows:
        for compression in (False, True):
            if extensions == "any" or extensions == ("deflate" if compression else "plain"):
                label = f"{name}-{'deflate' if compression else 'plain'}"
                params.append(pytest.param(wire, code, compression, id=label))
    return params


@sides
@pytest.mark.parametrize(("wire", "code", "compression"), _violations())
def test_protocol_violation_fails_the_connection(
    side: Side, wire: Callable[[Side], bytes], code: int, compression: bool
) -> None:
    """Bad input from the peer fails the connection with the close code of its rule."""
    conn = Connection(side, extensions=[deflate()] if compression else [])
    conn.receive_data(wire(side))
    assert_failed(conn, code)
    assert conn.close_rcvd is None


def test_server_refuses_unmasked_frames() -> None:
    """§5.1: a server must close the connection on an unmasked client frame: 1002."""
    conn = Connection(Side.SERVER)
    conn.receive_data(Frame(TEXT, b"Hello").serialize())
    assert_failed(conn, CloseCode.PROTOCOL_ERROR)


def test_client_refuses_masked_frames() -> None:
    """§5.1: a client must close the connection on a masked server frame: 1002."""
    conn = Connection(Side.CLIENT)
    conn.receive_data(Frame(TEXT, b"Hello").serialize(PEER_MASK))
    assert_failed(conn, CloseCode.PROTOCOL_ERROR)


@pytest.mark.parametrize("opcode", [PING, CLOSE])
def test_masking_is_checked_on_control_frames_too(opcode: Opcode) -> None:
    """§5.1 holds for every frame, control frames included."""
    server = Connection(Side.SERVER)
    server.receive_data(Frame(opcode, b"").serialize())
    assert_failed(server, CloseCode.PROTOCOL_ERROR)
    client = Connection(Side.CLIENT)
    client.receive_data(Frame(opcode, b"").serialize(PEER_MASK))
    assert_failed(client, CloseCode.PROTOCOL_ERROR)


@sides
@pytest.mark.parametrize("opcode", [PING, PONG, CLOSE])
def test_control_frame_of_exactly_125_bytes(side: Side, opcode: Opcode) -> None:
    """125 bytes is still a valid control frame."""
    conn = Connection(side)
    conn.receive_data(from_peer(side, opcode, b"\x03\xe8" + b"x" * 123))
    assert conn.failure is None
    assert len(conn.events_received()) == 1


# -- invalid UTF-8 (§8.1) ------------------------------------------------------------------


@sides
@pytest.mark.parametrize("bad", BAD_UTF8_PREFIXES)
def test_invalid_utf8_fails_in_the_first_fragment(side: Side, bad: bytes) -> None:
    """§8.1 fail fast: invalid text is refused before the later fragments arrive."""
    conn = Connection(side)
    conn.receive_data(from_peer(side, TEXT, b"fine so far " + bad, fin=False))
    assert assert_failed(conn, CloseCode.INVALID_DATA) == []


@sides
@pytest.mark.parametrize("bad", BAD_UTF8_PREFIXES)
def test_invalid_utf8_fails_in_the_middle_of_a_frame(side: Side, bad: bytes) -> None:
    """§8.1 fail fast: a frame that arrives in pieces is refused at the bad octets."""
    payload = b"fine so far " + bad + b"\x80" * 200
    frame = from_peer(side, TEXT, payload)
    bad_end = len(frame) - len(payload) + len(b"fine so far ") + len(bad)
    conn = Connection(side)
    conn.receive_data(frame[: bad_end - 1])
    assert conn.failure is None
    conn.receive_data(frame[bad_end - 1 : bad_end])
    assert assert_failed(conn, CloseCode.INVALID_DATA) == []


# -- max_size (§10.4) ------------------------------------------------------------------------


@sides
@pytest.mark.parametrize("length", [1001, 65536, 2**40])
def test_too_big_frame_is_refused_from_its_header(side: Side, length: int) -> None:
    """A frame over max_size fails with 1009 before any of its payload arrives."""
    conn = Connection(side, max_size=1000)
    conn.receive_data(peer_header(side, BINARY, length))
    assert_failed(conn, CloseCode.MESSAGE_TOO_BIG)


@sides
def test_too_big_continuation_is_refused_from_its_header(side: Side) -> None:
    """The limit applies to the message: a continuation that would exceed it is refused."""
    conn = Connection(side, max_size=1000)
    conn.receive_data(from_peer(side, TEXT, b"a" * 600, fin=False))
    conn.receive_data(peer_header(side, CONT, 401))
    assert_failed(conn, CloseCode.MESSAGE_TOO_BIG)


@sides
def test_fragmented_message_over_max_size(side: Side) -> None:
    """Fragments each under max_size but together over it fail with 1009."""
    conn = Connection(side, max_size=1000)
    conn.receive_data(from_peer(side, BINARY, b"x" * 400, fin=False))
    conn.receive_data(from_peer(side, CONT, b"x" * 400, fin=False))
    assert conn.failure is None
    conn.receive_data(from_peer(side, CONT, b"x" * 400))
    assert_failed(conn, CloseCode.MESSAGE_TOO_BIG)


@sides
def test_message_of_exactly_max_size(side: Side) -> None:
    """max_size bytes are allowed, whole or in fragments."""
    conn = Connection(side, max_size=1000)
    conn.receive_data(from_peer(side, BINARY, b"x" * 1000))
    conn.receive_data(from_peer(side, TEXT, b"y" * 500, fin=False))
    conn.receive_data(from_peer(side, CONT, b"y" * 500))
    assert conn.events_received() == [Message(b"x" * 1000), Message("y" * 1000)]


@sides
def test_no_max_size(side: Side) -> None:
    """max_size=None accepts messages of any size."""
    conn = Connection(side, max_size=None)
    conn.receive_data(from_peer(side, BINARY, b"x" * (2**20 + 1)))
    assert conn.events_received() == [Message(b"x" * (2**20 + 1))]


@sides
@pytest.mark.parametrize("fragments", [1, 2])
def test_compressed_bomb(side: Side, fragments: int) -> None:
    """A small compressed frame that inflates over max_size fails with 1009."""
    bomb = deflate().compress(b"\x00" * 10_000_000)
    assert len(bomb) < 20_000
    conn = Connection(side, extensions=[deflate()], max_size=100_000)
    if fragments == 1:
        conn.receive_data(from_peer(side, BINARY, bomb, rsv1=True))
    else:
        half = len(bomb) // 2
        conn.receive_data(from_peer(side, BINARY, bomb[:half], fin=False, rsv1=True))
        conn.receive_data(from_peer(side, CONT, bomb[half:]))
    assert_failed(conn, CloseCode.MESSAGE_TOO_BIG)
    assert isinstance(conn.failure, PayloadTooBig)


def _big_bomb(size: int) -> bytes:
    """``size`` zero bytes deflated as one message, built without holding them all."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    zeros = bytes(2**20)
    parts = [compressor.compress(zeros) for _ in range(size // len(zeros))]
    parts.append(compressor.flush(zlib.Z_SYNC_FLUSH))
    return b"".join(parts)[:-4]  # RFC 7692 §7.2.1: without the empty block's tail


@sides
@pytest.mark.parametrize("opcode", [BINARY, TEXT])
@pytest.mark.parametrize("fragments", [1, 3])
def test_refusing_a_compression_bomb_costs_max_size_plus_a_constant(
    side: Side, opcode: Opcode, fragments: int
) -> None:
    """A 200 MiB bomb against max_size=8 MiB fails with 1009, and the peak memory while
    refusing it stays under max_size + 1 MiB (inflating it whole costs twice max_size)."""
    max_size = 8 * 2**20
    bomb = _big_bomb(200 * 2**20)
    assert len(bomb) < 300_000
    cut = len(bomb) // fragments
    pieces = [
        bomb[i * cut : (i + 1) * cut if i < fragments - 1 else None] for i in range(fragments)
    ]
    frames = [
        from_peer(side, opcode if i == 0 else CONT, piece, fin=i == fragments - 1, rsv1=i == 0)
        for i, piece in enumerate(pieces)
    ]
    conn = Connection(side, extensions=[deflate()], max_size=max_size)
    tracemalloc.start()
    try:
        for frame in frames:
            conn.receive_data(frame)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert_failed(conn, CloseCode.MESSAGE_TOO_BIG)
    assert peak < max_size + 2**20, f"peak {peak / 2**20:.1f} MiB"


class _UnboundedInflate:
    """An extension that ignores max_size: the connection's own count still holds."""

    name = "x-unbounded"

    def inflate(self, data: bytes, *, fin: bool, max_size: int | None) -> Iterator[bytes]:
        yield data * 10

    def decompress(self, data: bytes, *, fin: bool, max_size: int | None) -> bytes:
        return data * 10

    def compress(self, data: bytes) -> bytes:
        return data

    def release_idle(self) -> bool:
        return False


@sides
def test_max_size_holds_even_if_an_extension_overshoots(side: Side) -> None:
    """The connection counts inflated bytes itself: an extension that yields too much
    still fails the connection with 1009."""
    conn = Connection(side, extensions=[_UnboundedInflate()], max_size=50)
    conn.receive_data(from_peer(side, BINARY, b"x" * 10, rsv1=True))
    assert_failed(conn, CloseCode.MESSAGE_TOO_BIG)


@sides
def test_large_compressed_message_is_inflated_whole(side: Side) -> None:
    """A message larger than one inflate piece (64 KiB), in a frame larger than one input
    slice, arrives intact: piecewise inflation changes memory, not the message."""
    rng = random.Random(7)
    message = bytes(rng.getrandbits(8) for _ in range(300_000)) + b"\x00" * 3_000_000
    compressed = deflate().compress(message)
    assert len(compressed) > 2**16
    conn = Connection(side, extensions=[deflate()], max_size=len(message))
    conn.receive_data(from_peer(side, BINARY, compressed, rsv1=True))
    assert conn.events_received() == [Message(message)]


@sides
def test_compressed_message_of_exactly_max_size(side: Side) -> None:
    """The limit counts inflated bytes: exactly max_size of them pass."""
    conn = Connection(side, extensions=[deflate()], max_size=100_000)
    compressed = deflate().compress(b"\x00" * 100_000)
    conn.receive_data(from_peer(side, BINARY, compressed[:10], fin=False, rsv1=True))
    conn.receive_data(from_peer(side, CONT, compressed[10:]))
    assert conn.events_received() == [Message(b"\x00" * 100_000)]


# -- ping and pong (§5.5.2, §5.5.3) ----------------------------------------------------------


@sides
@pytest.mark.parametrize("payload", [b"", b"x", b"\x00" * 125])
def test_ping_is_answered_with_the_same_payload(side: Side, payload: bytes) -> None:
    """§5.5.2: a pong answers a ping with identical application data."""
    conn = Connection(side)
    conn.receive_data(from_peer(side, PING, payload))
    assert conn.events_received() == [Ping(payload)]
    assert sent(conn) == [Frame(PONG, payload)]


@sides
def test_pong_is_reported_and_not_answered(side: Side) -> None:
    """§5.5.3: a pong, solicited or not, needs no response."""
    conn = Connection(side)
    conn.receive_data(from_peer(side, PONG, b"heartbeat"))
    assert conn.events_received() == [Pong(b"heartbeat")]
    assert conn.data_to_send() == []


@sides
def test_local_ping_and_pong(side: Side) -> None:
    """ping() and pong() send control frames with the given data."""
    conn = Connection(side)
    conn.ping(b"are you there")
    conn.ping()
    conn.pong(b"unsolicited")
    assert sent(conn) == [
        Frame(PING, b"are you there"),
        Frame(PING, b""),
        Frame(PONG, b"unsolicited"),
    ]


@sides
@pytest.mark.parametrize("method", ["ping", "pong"])
def test_control_frame_data_over_125_bytes_is_refused(side: Side, method: str) -> None:
    """§5.5: we never send a control frame the peer would have to reject."""
    conn = Connection(side)
    getattr(conn, method)(b"x" * 125)
    with pytest.raises(InvalidState):
        getattr(conn, method)(b"x" * 126)
    assert sent(conn) == [Frame(PING if method == "ping" else PONG, b"x" * 125)]


# -- closing handshake (§5.5.1, §7) ----------------------------------------------------------


@sides
@pytest.mark.parametrize("code", [1000, 1001, 1002, 1011, 3000, 4999])
def test_peer_initiated_close(side: Side, code: int) -> None:
    """§5.5.1: a close frame is answered with one echoing its code; then the handshake is done."""
    conn = Connection(side)
    conn.receive_data(from_peer(side, CLOSE, serialize_close(code, "see you")))
    assert conn.events_received() == [CloseReceived(code, "see you")]
    assert sent(conn) == [close_frame(code)]
    assert conn.state is State.CLOSING
    assert conn.close_rcvd == (code, "see you")
    assert conn.close_sent == (code, "")
    assert conn.close_rcvd_then_sent is True
    assert conn.close_handshake_done
    assert (conn.close_code, conn.close_reason) == (code, "see you")
    assert conn.failure is None
    conn.receive_eof()
    assert conn.state is State.CLOSED
    assert (conn.close_code, conn.close_reason) == (code, "see you")


@sides
def test_locally_initiated_close(side: Side) -> None:
    """§7.1.2: we send a close frame, keep reading, and the peer's reply completes it."""
    conn = Connection(side)
    conn.close(1001, "going away")
    assert sent(conn) == [close_frame(1001, "going away")]
    assert conn.state is State.CLOSING
    assert conn.close_sent == (1001, "going away")
    assert not conn.close_handshake_done
    assert conn.close_code is None
    assert conn.close_reason is None
    # Messages sent by the peer before it saw our close frame still arrive.
    conn.receive_data(from_peer(side, TEXT, b"in flight"))
    conn.receive_data(from_peer(side, CLOSE, serialize_close(1001)))
    assert conn.events_received() == [Message("in flight"), CloseReceived(1001, "")]
    assert conn.data_to_send() == []  # no second close frame
    assert conn.close_handshake_done
    assert conn.close_rcvd_then_sent is False
    assert conn.close_code == 1001


@sides
def test_no_pong_after_our_close_frame(side: Side) -> None:
    """§5.5.1: after its close frame an endpoint sends nothing more; pings are still reported."""
    conn = Connection(side)
    conn.close()
    sent(conn)
    conn.receive_data(from_peer(side, PING, b"late ping"))
    assert conn.events_received() == [Ping(b"late ping")]
    assert conn.data_to_send() == []


@sides
def test_close_without_a_status_code(side: Side) -> None:
    """§7.1.5: an empty close frame is reported as 1005, and the echo is empty too."""
    conn = Connection(side)
    conn.receive_data(from_peer(side, CLOSE))
    assert conn.events_received() == [CloseReceived(CloseCode.NO_STATUS, "")]
    assert sent(conn) == [Frame(CLOSE, b"")]
    assert conn.close_code == CloseCode.NO_STATUS
    assert conn.close_reason == ""


@sides
def test_close_during_a_fragmented_message(side: Side) -> None:
    """A close frame between fragments is valid: echoed, not failed (Autobahn case 7.1.5)."""
    conn = Connection(side)
    conn.receive_data(
        from_peer(side, TEXT, b"frag", fin=False)
        + from_peer(side, CLOSE, serialize_close(1000))
        + from_peer(side, CONT, b"ment")
    )
    assert conn.events_received() == [CloseReceived(1000, "")]
    assert sent(conn) == [close_frame(1000)]
    assert conn.failure is None


@sides
def test_input_after_the_close_frame_is_discarded(side: Side) -> None:
    """§5.5.1: nothing follows a close frame; whatever does is ignored."""
    conn = Connection(side)
    conn.receive_data(
        from_peer(side, CLOSE, serialize_close(1000)) + from_peer(side, TEXT, b"after") + b"\xff"
    )
    conn.receive_data(from_peer(side, PING, b"later"))
    assert conn.events_received() == [CloseReceived(1000, "")]
    assert sent(conn) == [close_frame(1000)]
    assert conn.failure is None


@sides
def test_close_is_sent_once(side: Side) -> None:
    """close() after a close frame went out does nothing."""
    conn = Connection(side)
    conn.close()
    conn.close(1001, "again")
    assert sent(conn) == [close_frame(1000)]
    assert conn.close_sent == (1000, "")


@sides
def test_close_with_no_status_sends_an_empty_close_frame(side: Side) -> None:
    """close(1005) sends a close frame without a code (§7.1.5): 1005 never goes on the wire."""
    conn = Connection(side)
    conn.close(CloseCode.NO_STATUS)
    assert sent(conn) == [Frame(CLOSE, b"")]


@sides
def test_close_reason_is_cut_to_fit_a_control_frame(side: Side) -> None:
    """§5.5: a long reason is cut so that the close frame stays within 125 bytes."""
    conn = Connection(side)
    conn.close(4000, "ü" * 100)
    [frame] = sent(conn)
    assert len(frame.payload) <= 125
    code, reason = parse_close(frame.payload)
    assert code == 4000
    assert reason == "ü" * 61


@sides
@pytest.mark.parametrize("code", [0, 999, 1004, 1006, 1015, 1016, 2999, 5000])
def test_close_with_a_code_that_must_not_be_sent(side: Side, code: int) -> None:
    """§7.4.1: 1004, 1006 and 1015 (and unassigned codes) are never put in a close frame."""
    conn = Connection(side)
    with pytest.raises(InvalidState):
        conn.close(code)
    assert conn.data_to_send() == []
    assert conn.state is State.OPEN


@sides
def test_after_a_failure_one_close_frame_and_nothing_more(side: Side) -> None:
    """§7.1.7: failing sends one close frame; close() and later errors add nothing."""
    conn = Connection(side)
    conn.receive_data(from_peer(side, CONT, b"orphan") + from_peer(side, TEXT, b"\xff"))
    conn.close()
    assert_failed(conn, CloseCode.PROTOCOL_ERROR)


@sides
def test_failure_after_our_close_frame_sends_no_second_one(side: Side) -> None:
    """An error while we wait for the peer's close reply is recorded, but not sent."""
    conn = Connection(side)
    conn.close(1000)
    conn.receive_data(from_peer(side, TEXT, b"\xff"))
    assert isinstance(conn.failure, ProtocolError)
    assert conn.failure.code == CloseCode.INVALID_DATA
    assert sent(conn) == [close_frame(1000)]
    conn.receive_data(from_peer(side, CLOSE, serialize_close(1000)))
    assert conn.events_received() == []


@sides
def test_eof_without_a_close_frame(side: Side) -> None:
    """§7.1.5: a connection closed without a close frame reports 1006 and no reason."""
    conn = Connection(side)
    assert conn.close_code is None
    conn.receive_eof()
    assert conn.state is State.CLOSED
    assert conn.close_code == CloseCode.ABNORMAL
    assert conn.close_reason == ""
    conn.receive_data(from_peer(side, TEXT, b"too late"))
    conn.receive_eof()
    assert conn.events_received() == []
    conn.close()
    assert conn.data_to_send() == []


@sides
def test_eof_in_the_middle_of_a_message(side: Side) -> None:
    """A message cut by the end of the stream is never delivered."""
    conn = Connection(side)
    conn.receive_data(from_peer(side, BINARY, b"x" * 1000)[:500])
    conn.receive_eof()
    assert conn.events_received() == []
    assert conn.close_code == CloseCode.ABNORMAL


# -- sending (§5.1, §5.3, §5.6) --------------------------------------------------------------


@sides
@pytest.mark.parametrize(
    ("message", "frame"),
    [
        ("héllo", Frame(TEXT, "héllo".encode())),
        (b"\x00\x01", Frame(BINARY, b"\x00\x01")),
        (bytearray(b"\x02"), Frame(BINARY, b"\x02")),
        (memoryview(b"\x03\x04"), Frame(BINARY, b"\x03\x04")),
        ("", Frame(TEXT, b"")),
        (b"x" * 70_000, Frame(BINARY, b"x" * 70_000)),
    ],
)
def test_send(side: Side, message: str | bytes, frame: Frame) -> None:
    """str goes as a text frame, bytes-like objects as binary frames."""
    conn = Connection(side)
    conn.send(message)
    assert sent(conn) == [frame]


def test_client_masks_each_frame_with_a_fresh_key() -> None:
    """§5.3: every client frame is masked with a new, unpredictable key."""
    conn = Connection(Side.CLIENT)
    for _ in range(200):
        conn.send(b"same payload")
    keys = []
    for data in conn.data_to_send():
        assert data[1] & 0x80
        keys.append(data[2:6])
        assert Frame.parse(data)[0] == Frame(BINARY, b"same payload")
    assert len(set(keys)) > 190


def test_server_does_not_mask() -> None:
    """§5.1: a server must not mask its frames."""
    conn = Connection(Side.SERVER)
    conn.send("plain")
    conn.ping(b"p")
    conn.close()
    assert conn.data_to_send() == [b"\x81\x05plain", b"\x89\x01p", b"\x88\x02\x03\xe8"]


@pytest.mark.parametrize(
    ("sender_side", "receiver_side"), [(Side.CLIENT, Side.SERVER), (Side.SERVER, Side.CLIENT)]
)
def test_compressed_messages_between_two_connections(
    sender_side: Side, receiver_side: Side
) -> None:
    """With permessage-deflate, sent messages carry RSV1 and the peer inflates them."""
    sender = Connection(sender_side, extensions=[deflate()])
    receiver = Connection(receiver_side, extensions=[deflate()])
    messages: list[str | bytes] = ["héllo " * 50, b"\x00" * 1000, "", "héllo " * 50]
    for message in messages:
        sender.send(message)
    writes = sender.data_to_send()
    assert all(Frame.parse(data)[0].rsv1 for data in writes)
    assert sum(map(len, writes)) < 600
    receiver.receive_data(b"".join(writes))
    assert receiver.events_received() == [Message(message) for message in messages]


@sides
def test_send_frame_fragments_a_message(side: Side) -> None:
    """send_frame() sends one frame at a time, so a message can go in fragments (§5.4)."""
    conn = Connection(side)
    conn.send_frame(TEXT, b"frag", fin=False)
    conn.send_frame(CONT, b"ment")
    assert sent(conn) == [Frame(TEXT, b"frag", fin=False), Frame(CONT, b"ment")]


@pytest.mark.parametrize(
    ("message", "frame"),
    [
        ("héllo", b"\x81\x06h\xc3\xa9llo"),
        (b"\x00", b"\x82\x01\x00"),
        (bytearray(b"\x01"), b"\x82\x01\x01"),
        (memoryview(b"\x02"), b"\x82\x01\x02"),
    ],
)
def test_frame_message(message: str | bytes, frame: bytes) -> None:
    """frame_message builds the unmasked, uncompressed frame a server sends (§5.1, RFC 7692 §6)."""
    assert frame_message(message) == frame
    server = Connection(Side.SERVER)
    server.send(message)
    assert server.data_to_send() == [frame]


@sides
@pytest.mark.parametrize(
    "action",
    [
        pytest.param(lambda conn: conn.send("x"), id="send"),
        pytest.param(lambda conn: conn.send(b"x"), id="send-bytes"),
        pytest.param(lambda conn: conn.send_frame(BINARY, b"x"), id="send_frame"),
        pytest.param(lambda conn: conn.ping(), id="ping"),
        pytest.param(lambda conn: conn.pong(), id="pong"),
    ],
)
@pytest.mark.parametrize(
    "end",
    [
        pytest.param(lambda conn: conn.close(), id="closed-by-us"),
        pytest.param(
            lambda conn: conn.receive_data(from_peer(conn.side, CLOSE, serialize_close(1000))),
            id="closed-by-peer",
        ),
        pytest.param(lambda conn: conn.receive_data(from_peer(conn.side, CONT)), id="failed"),
        pytest.param(lambda conn: conn.receive_eof(), id="eof"),
    ],
)
def test_sending_after_the_close_raises(
    side: Side, action: Callable[[Connection], None], end: Callable[[Connection], None]
) -> None:
    """Once a close frame was sent or received, or the stream ended, sending is local misuse."""
    conn = Connection(side)
    end(conn)
    conn.data_to_send()
    with pytest.raises(InvalidState):
        action(conn)
    assert conn.data_to_send() == []


# -- handlers and queues ---------------------------------------------------------------------


@sides
def test_data_to_send_and_events_received_drain(side: Side) -> None:
    """Each call returns what accumulated since the previous one, then forgets it."""
    conn = Connection(side)
    conn.receive_data(from_peer(side, PING, b"1"))
    assert conn.events_received() == [Ping(b"1")]
    assert conn.events_received() == []
    assert len(conn.data_to_send()) == 1
    assert conn.data_to_send() == []
    conn.receive_data(from_peer(side, PING, b"2"))
    assert conn.events_received() == [Ping(b"2")]
    assert sent(conn) == [Frame(PONG, b"2")]


@sides
def test_handlers_replace_the_event_list(side: Side) -> None:
    """Installed handlers receive messages, pings, pongs and the close; writes go to write."""
    conn = Connection(side)
    calls: list[tuple[str, object]] = []
    written: list[bytes] = []
    conn.write = written.append
    conn.on_message = lambda message: calls.append(("message", message))
    conn.on_ping = lambda data: calls.append(("ping", data))
    conn.on_pong = lambda data: calls.append(("pong", data))
    conn.on_close = lambda code, reason: calls.append(("close", (code, reason)))
    conn.receive_data(
        from_peer(side, TEXT, b"whole")
        + from_peer(side, BINARY, b"frag", fin=False)
        + from_peer(side, PING, b"i")
        + from_peer(side, CONT, b"ment")
        + from_peer(side, PONG, b"o")
        + from_peer(side, CLOSE, serialize_close(1000, "done"))
    )
    assert calls == [
        ("message", "whole"),
        ("ping", b"i"),
        ("message", b"fragment"),
        ("pong", b"o"),
        ("close", (1000, "done")),
    ]
    assert conn.events_received() == []
    assert conn.data_to_send() == []
    assert len(written) == 2  # the pong and the close echo


@sides
def test_debug_log_shows_frames_and_states_but_no_payloads(
    side: Side, caplog: pytest.LogCaptureFixture
) -> None:
    """Debug logging traces control frames and transitions; payloads are elided."""
    caplog.set_level(logging.DEBUG, logger="wshub.protocol")
    conn = Connection(side)
    conn.ping(b"secret-ping")
    conn.receive_data(from_peer(side, PING, b"secret-ping") + from_peer(side, PONG, b"secret-pong"))
    conn.close(1000, "secret-reason")
    conn.receive_data(from_peer(side, CLOSE, serialize_close(1000, "secret-reply")))
    failing = Connection(side)
    failing.receive_data(from_peer(side, TEXT, b"secret\xff"))
    log = "\n".join(record.getMessage() for record in caplog.records)
    assert "> PING" in log
    assert "< PING" in log
    assert "< PONG" in log
    assert "> CLOSE 1000" in log
    assert "< CLOSE 1000" in log
    assert "OPEN -> CLOSING" in log
    assert "failing the connection: 1007" in log
    assert "secret" not in log


@sides
@pytest.mark.parametrize(
    ("opcode", "payload", "fin"),
    [
        pytest.param(0x3, b"", True, id="reserved-data-opcode"),
        pytest.param(0xB, b"", True, id="reserved-control-opcode"),
        pytest.param(CLOSE, b"\x03\xe8", True, id="close-goes-through-close"),
        pytest.param(PING, b"x" * 126, True, id="control-too-long"),
        pytest.param(PING, b"x", False, id="control-fragmented"),
    ],
)
def test_send_frame_refuses_what_the_peer_would_reject(
    side: Side, opcode: int, payload: bytes, fin: bool
) -> None:
    """send_frame() raises instead of writing a frame §5.2 or §5.5 forbids; nothing is sent."""
    conn = Connection(side)
    with pytest.raises(InvalidState):
        conn.send_frame(opcode, payload, fin=fin)
    assert conn.data_to_send() == []


def test_release_idle_memory_frees_a_quiet_connections_compressor() -> None:
    """The core passes release_idle_memory to permessage-deflate; nothing to do without it."""
    assert Connection(Side.SERVER).release_idle_memory() is False
    ext = deflate()
    conn = Connection(Side.SERVER, extensions=[ext])
    conn.send("compress me")
    assert conn.release_idle_memory() is False  # it sent since the last call
    assert ext._compressor is not None
    assert conn.release_idle_memory() is True
    assert ext._compressor is None


# -- messages framed once for many connections (PreparedMessage) ----------------------------


def shared_deflate(*, bits: int = 12) -> tuple[PerMessageDeflate, PerMessageDeflate]:
    """A server and a client extension that agreed on server_no_context_takeover."""
    server = PerMessageDeflate(
        remote_no_context_takeover=False,
        local_no_context_takeover=True,
        remote_max_window_bits=15,
        local_max_window_bits=bits,
    )
    client = PerMessageDeflate(
        remote_no_context_takeover=True,
        local_no_context_takeover=False,
        remote_max_window_bits=bits,
        local_max_window_bits=15,
    )
    return server, client


@pytest.mark.parametrize("message", ["héllo", b"\x00\x01" * 100])
def test_prepared_message_is_framed_once_for_plain_server_connections(
    message: str | bytes,
) -> None:
    """§5.1: server frames are unmasked, so every server connection shares one frame."""
    prepared = PreparedMessage(message)
    first, second = Connection(Side.SERVER), Connection(Side.SERVER)
    frame = first.prepared_frame(prepared)
    assert frame is second.prepared_frame(prepared)
    assert frame == frame_message(message)
    first.send_prepared(prepared)
    assert first.data_to_send() == [frame]


def test_prepared_message_is_compressed_once_per_set_of_parameters() -> None:
    """RFC 7692 §7.1.1.1: without context takeover one compressed frame serves every
    connection with the same parameters; each peer inflates it, again and again."""
    message = '{"push":"pub","channel":"ticker:EURUSD","data":{"bid":1.0842}}' * 3
    prepared = PreparedMessage(message)
    servers = [Connection(Side.SERVER, extensions=[shared_deflate()[0]]) for _ in range(3)]
    frames = [conn.prepared_frame(prepared) for conn in servers]
    assert frames[0] is not None
    assert frames[1] is frames[0] and frames[2] is frames[0]
    assert frames[0][0] & 0x40  # RSV1: compressed (§6)
    assert len(frames[0]) < len(frame_message(message))
    narrow = Connection(Side.SERVER, extensions=[shared_deflate(bits=9)[0]])
    narrow_frame = narrow.prepared_frame(prepared)
    assert narrow_frame is not None and narrow_frame is not frames[0]
    for frame, bits in ((frames[0], 12), (narrow_frame, 9)):
        client = Connection(Side.CLIENT, extensions=[shared_deflate(bits=bits)[1]])
        client.receive_data(frame + frame)
        assert client.failure is None
        assert client.events_received() == [Message(message), Message(message)]


def test_prepared_message_falls_back_where_frames_cannot_be_shared() -> None:
    """A client masks each frame, and a compressor with context takeover depends on what
    this connection sent before: both frame the message themselves, correctly."""
    prepared = PreparedMessage("the same words, the same words, the same words")
    client = Connection(Side.CLIENT)
    assert client.prepared_frame(prepared) is None
    client.send_prepared(prepared)
    assert [frame.payload for frame in sent(client)] == [prepared.message.encode()]

    server_ext, client_ext = deflate(), deflate()
    server = Connection(Side.SERVER, extensions=[server_ext])
    assert server.prepared_frame(prepared) is None
    server.send_prepared(prepared)
    server.send_prepared(prepared)
    receiver = Connection(Side.CLIENT, extensions=[client_ext])
    receiver.receive_data(b"".join(server.data_to_send()))
    assert receiver.events_received() == [Message(prepared.message)] * 2


def test_send_prepared_on_a_closed_connection_raises() -> None:
    """Local misuse raises, as for send()."""
    conn = Connection(Side.SERVER)
    conn.close()
    with pytest.raises(InvalidState):
        conn.send_prepared(PreparedMessage("late"))
