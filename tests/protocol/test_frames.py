"""Tests for wshub.protocol.frames: frame headers and close payloads of RFC 6455 §5 and §7.4."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from wshub.exceptions import ProtocolError
from wshub.protocol.frames import (
    CloseCode,
    Frame,
    Opcode,
    build_frame,
    frame_header,
    is_valid_close_code,
    parse_close,
    serialize_close,
)
from wshub.protocol.mask import apply_mask

MASK = b"\x0f\xa5\x5a\xf0"
# §7.4.1 and the IANA registry: codes an endpoint may send; 3000-4999 are for libraries,
# frameworks and applications (§7.4.2).
VALID_CODES = [1000, 1001, 1002, 1003, *range(1007, 1015), 3000, 3999, 4000, 4999]
# 1004 is reserved, 1005/1006/1015 are for reporting only, 1016-2999 are unassigned.
INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]

opcodes = st.integers(0, 15)
masks = st.none() | st.binary(min_size=4, max_size=4)
# Short payloads, and long ones around the 16-bit and 64-bit length thresholds.
payloads = st.binary(max_size=300) | st.sampled_from([126, 65535, 65536]).map(lambda n: b"\xa5" * n)
frames = st.builds(
    Frame,
    opcode=opcodes,
    payload=st.binary(max_size=300),
    fin=st.booleans(),
    rsv1=st.booleans(),
    rsv2=st.booleans(),
    rsv3=st.booleans(),
)


def test_opcodes_have_the_values_of_section_5_2() -> None:
    """Continuation 0, text 1, binary 2, close 8, ping 9, pong 0xA."""
    assert {op.name: op.value for op in Opcode} == {
        "CONT": 0x0,
        "TEXT": 0x1,
        "BINARY": 0x2,
        "CLOSE": 0x8,
        "PING": 0x9,
        "PONG": 0xA,
    }


@pytest.mark.parametrize(
    ("length", "header_size", "marker"),
    [
        (0, 2, 0),
        (125, 2, 125),  # the largest 7-bit length
        (126, 4, 126),  # the smallest 16-bit length
        (65535, 4, 126),  # the largest 16-bit length
        (65536, 10, 127),  # the smallest 64-bit length
        (2**63 - 1, 10, 127),  # the largest length §5.2 allows
    ],
)
@pytest.mark.parametrize("masked", [False, True])
def test_payload_length_encodings(length: int, header_size: int, marker: int, masked: bool) -> None:
    """§5.2: 7-bit lengths up to 125, then 126 + 16 bits, then 127 + 64 bits, network order."""
    header = frame_header(Opcode.BINARY, length, masked=masked)
    assert len(header) == header_size
    assert header[0] == 0x80 | Opcode.BINARY
    assert header[1] == (0x80 if masked else 0) | marker
    if header_size > 2:
        assert int.from_bytes(header[2:], "big") == length


@pytest.mark.parametrize("opcode", list(Opcode))
@pytest.mark.parametrize("fin", [True, False])
@pytest.mark.parametrize("rsv1", [True, False])
def test_frame_header_first_octet(opcode: Opcode, fin: bool, rsv1: bool) -> None:
    """§5.2: FIN is the top bit, RSV1 the next, the opcode the low four bits."""
    octet = frame_header(opcode, 0, fin=fin, rsv1=rsv1)[0]
    assert octet & 0x0F == opcode
    assert bool(octet & 0x80) == fin
    assert bool(octet & 0x40) == rsv1
    assert not octet & 0x30


@pytest.mark.parametrize("opcode", list(Opcode))
@pytest.mark.parametrize("length", [0, 1, 125, 126, 65535, 65536])
@pytest.mark.parametrize("mask", [None, MASK])
def test_build_frame_for_every_opcode_and_length(
    opcode: Opcode, length: int, mask: bytes | None
) -> None:
    """build_frame writes header, key and (masked) payload that parse back to the same frame."""
    payload = bytes(range(256)) * (length // 256) + bytes(range(length % 256))
    data = build_frame(opcode, payload, mask=mask)
    assert data == Frame(opcode, payload).serialize(mask)
    frame, consumed = Frame.parse(data)
    assert consumed == len(data)
    assert frame == Frame(opcode, payload)
    if mask is not None:
        assert data[len(data) - length - 4 : len(data) - length] == mask
        assert data[len(data) - length :] == apply_mask(payload, mask)


def test_masking_changes_the_payload_on_the_wire() -> None:
    """§5.3: a masked frame carries payload XOR key, not the payload itself."""
    data = build_frame(Opcode.TEXT, b"Hello", mask=b"\x37\xfa\x21\x3d")
    # The masked "Hello" example of §5.7.
    assert data == b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"


def test_examples_of_section_5_7() -> None:
    """The unmasked example frames of §5.7 build and parse as the RFC shows them."""
    assert build_frame(Opcode.TEXT, b"Hello") == b"\x81\x05Hello"
    assert build_frame(Opcode.TEXT, b"Hel", fin=False) == b"\x01\x03Hel"
    assert build_frame(Opcode.CONT, b"lo") == b"\x80\x02lo"
    assert build_frame(Opcode.PING, b"Hello") == b"\x89\x05Hello"
    assert build_frame(Opcode.BINARY, b"\x00" * 256)[:4] == b"\x82\x7e\x01\x00"
    assert build_frame(Opcode.BINARY, b"\x00" * 65536)[:10] == b"\x82\x7f" + (65536).to_bytes(
        8, "big"
    )
    assert Frame.parse(b"\x8a\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58") == (
        Frame(Opcode.PONG, b"Hello"),
        11,
    )


@given(frames, masks, st.binary(max_size=20))
def test_frame_round_trip(frame: Frame, mask: bytes | None, trailing: bytes) -> None:
    """Any frame, any opcode or reserved bit, masked or not, parses back to itself."""
    data = frame.serialize(mask)
    assert bool(data[1] & 0x80) == (mask is not None)
    assert Frame.parse(data + trailing) == (frame, len(data))


# Wall-clock deadlines would make the run flaky under coverage on a loaded machine.
@settings(deadline=None)
@given(
    st.sampled_from(list(Opcode)),
    payloads,
    st.booleans(),
    st.booleans(),
    masks,
)
def test_build_frame_round_trip(
    opcode: Opcode, payload: bytes, fin: bool, rsv1: bool, mask: bytes | None
) -> None:
    """build_frame (the send path) and Frame.serialize agree, and both parse back."""
    data = build_frame(opcode, payload, fin=fin, rsv1=rsv1, mask=mask)
    assert data == Frame(opcode, payload, fin=fin, rsv1=rsv1).serialize(mask)
    assert Frame.parse(data) == (Frame(opcode, payload, fin=fin, rsv1=rsv1), len(data))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x81",
        b"\x81\x05Hell",  # payload short
        b"\x81\x7e\x01",  # 16-bit length cut
        b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00",  # 64-bit length cut
        b"\x81\x85\x37\xfa",  # masking key cut
        b"\x81\x85\x37\xfa\x21\x3d\x7f",  # masked payload short
    ],
)
def test_parse_incomplete_frame(data: bytes) -> None:
    """Frame.parse refuses input that does not hold a whole frame."""
    with pytest.raises(ProtocolError):
        Frame.parse(data)


def test_frame_is_a_frozen_value() -> None:
    """Frames compare by value and cannot be changed."""
    assert Frame(Opcode.TEXT, b"a") == Frame(Opcode.TEXT, b"a", fin=True)
    assert Frame(Opcode.TEXT, b"a") != Frame(Opcode.TEXT, b"a", fin=False)
    with pytest.raises(AttributeError):
        Frame(Opcode.TEXT, b"a").payload = b"b"  # type: ignore[misc]


# -- close frames (§5.5.1, §7.4) ------------------------------------------------------------


@pytest.mark.parametrize("code", VALID_CODES)
def test_valid_close_codes(code: int) -> None:
    """Codes defined by §7.4.1 and those of §7.4.2 ranges 3000-4999 are accepted."""
    assert is_valid_close_code(code)
    payload = serialize_close(code, "why")
    assert payload == code.to_bytes(2, "big") + b"why"
    assert parse_close(payload) == (code, "why")


@pytest.mark.parametrize("code", INVALID_CODES)
def test_invalid_close_codes(code: int) -> None:
    """Reserved, reporting-only and unassigned codes in a close frame are a protocol error."""
    assert not is_valid_close_code(code)
    with pytest.raises(ProtocolError) as info:
        parse_close(code.to_bytes(2, "big") + b"why")
    assert info.value.code == CloseCode.PROTOCOL_ERROR


def test_close_code_validity_over_the_whole_range() -> None:
    """Exactly the registered codes and 3000-4999 are valid among all 16-bit values."""
    valid = {code for code in range(65536) if is_valid_close_code(code)}
    assert valid == {1000, 1001, 1002, 1003, *range(1007, 1015), *range(3000, 5000)}


def test_empty_close_payload_means_no_status() -> None:
    """§7.1.5: a close frame without a code reports 1005, and 1005 serializes to nothing."""
    assert parse_close(b"") == (CloseCode.NO_STATUS, "")
    assert serialize_close(CloseCode.NO_STATUS) == b""
    assert serialize_close(CloseCode.NO_STATUS, "ignored") == b""


def test_one_byte_close_payload() -> None:
    """§5.5.1: a body starts with a 2-byte code, so a 1-byte body is a protocol error."""
    with pytest.raises(ProtocolError) as info:
        parse_close(b"\x03")
    assert info.value.code == CloseCode.PROTOCOL_ERROR


@pytest.mark.parametrize("reason", [b"\xff", b"caf\xc3", b"\xed\xa0\x80", b"ok\xc0\xaf"])
def test_close_reason_must_be_utf8(reason: bytes) -> None:
    """§5.5.1 and §8.1: a reason that is not UTF-8 fails with 1007."""
    with pytest.raises(ProtocolError) as info:
        parse_close(b"\x03\xe8" + reason)
    assert info.value.code == CloseCode.INVALID_DATA


def test_close_reason_is_decoded() -> None:
    """A UTF-8 reason comes back as text."""
    assert parse_close(b"\x03\xe8caf\xc3\xa9") == (1000, "café")


@given(st.sampled_from(VALID_CODES), st.text(max_size=200))
@example(1000, "a" * 123)
@example(1001, "a" * 124)
@example(1011, "é" * 61)  # 122 bytes: fits
@example(3000, "é" * 62)  # 124 bytes: the last "é" goes whole
@example(4999, "€" * 42)  # 126 bytes: cut after 41 characters
@example(4000, "😀" * 40)  # 4-byte characters: 30 fit
def test_close_payload_round_trip(code: int, reason: str) -> None:
    """§5.5: a close payload fits in 125 bytes; a long reason is cut on a UTF-8 boundary.

    The code is kept, and at most one partial character is dropped from the reason.
    """
    payload = serialize_close(code, reason)
    assert len(payload) <= 125
    parsed_code, parsed_reason = parse_close(payload)
    assert parsed_code == code
    assert reason.startswith(parsed_reason)
    if len(reason.encode()) <= 123:
        assert parsed_reason == reason
    else:
        assert len(parsed_reason.encode()) > 123 - 4
