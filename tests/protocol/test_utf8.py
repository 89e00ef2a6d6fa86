"""Tests for wshub.protocol.utf8: incremental UTF-8 validation that fails fast (RFC 6455 §8.1)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from wshub.protocol.utf8 import Utf8Decoder

# After an incomplete sequence, at most three more octets complete it. The second octet
# has lead-dependent bounds (E0: A0..BF, ED: 80..9F, F0: 90..BF, F4: 80..8F), so one
# representative of each of 80..8F, 90..9F and A0..BF covers them all.
_COMPLETIONS = [b""] + [
    bytes((second,)) + b"\x80" * k for second in (0x80, 0x90, 0xA0) for k in (0, 1, 2)
]


def is_valid_prefix(data: bytes) -> bool:
    """Whether some valid UTF-8 text starts with ``data``, by Python's strict decoder."""
    for completion in _COMPLETIONS:
        try:
            (data + completion).decode("utf-8")
        except UnicodeDecodeError:
            continue
        return True
    return False


def first_invalid_prefix(data: bytes) -> int | None:
    """Length of the shortest prefix of ``data`` that no valid text starts with."""
    for n in range(1, len(data) + 1):
        if not is_valid_prefix(data[:n]):
            return n
    return None


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(min(cut, len(data)) for cut in cuts), len(data)]
    return [data[start:stop] for start, stop in itertools.pairwise(bounds)]


def mutate(text: str, edits: list[tuple[int, int]]) -> bytes:
    """Encode ``text`` and overwrite a few octets: mostly-valid input with errors anywhere."""
    data = bytearray(text.encode("utf-8"))
    for position, value in edits:
        if data:
            data[position % len(data)] = value
    return bytes(data)


byte_strings = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=20).map(lambda text: text.encode("utf-8")),
    st.builds(
        mutate,
        st.text(max_size=20),
        st.lists(st.tuples(st.integers(0, 80), st.integers(0, 255)), max_size=2),
    ),
)


# Wall-clock deadlines would make the run flaky under coverage on a loaded machine.
@settings(deadline=None)
@given(byte_strings, st.lists(st.integers(0, 40), max_size=6))
@example(b"ab\xed\xa0", [])
@example(b"\xed\xa0\x80", [2])
@example(b"\xf0\x90\x80\x80", [1, 2, 3])
@example(b"\xe2\x82", [])
def test_decoder_agrees_with_the_strict_decoder_and_fails_fast(
    data: bytes, cuts: list[int]
) -> None:
    """Fed in pieces, the decoder raises iff the whole is invalid, at the first piece that shows it.

    A strict reference knows that input is invalid once it holds a prefix that no valid
    text starts with; the decoder must raise while decoding the piece that completes
    that prefix, not later.
    """
    try:
        expected: str | None = data.decode("utf-8")
    except UnicodeDecodeError:
        expected = None
    bad_at = first_invalid_prefix(data)
    decoder = Utf8Decoder()
    decoded: list[str] = []
    received = 0
    raised_at: int | None = None
    for piece in split(data, cuts):
        received += len(piece)
        try:
            decoded.append(decoder.decode(piece))
        except UnicodeDecodeError:
            raised_at = received
            break
    if raised_at is None:
        try:
            decoded.append(decoder.decode(b"", final=True))
        except UnicodeDecodeError:
            raised_at = -1  # only at the end of the input: later than any piece
    if expected is not None:
        assert raised_at is None
        assert "".join(decoded) == expected
    else:
        assert raised_at is not None
    if bad_at is not None:
        # Piece boundaries are prefix lengths; the first one at or past the bad prefix
        # marks the piece that must raise.
        ends = [len(piece) for piece in split(data, cuts)]
        for i in range(1, len(ends)):
            ends[i] += ends[i - 1]
        assert raised_at == next(end for end in ends if end >= bad_at)


@pytest.mark.parametrize(
    ("prefix", "why"),
    [
        (b"\xc0", "C0 and C1 only start overlong encodings"),
        (b"\xc1", "C0 and C1 only start overlong encodings"),
        (b"\xf5", "F5..FF would encode beyond U+10FFFF"),
        (b"\xff", "F5..FF would encode beyond U+10FFFF"),
        (b"\x80", "a continuation octet cannot start a character"),
        (b"\xed\xa0", "ED A0..BF starts a UTF-16 surrogate"),
        (b"\xed\xbf", "ED A0..BF starts a UTF-16 surrogate"),
        (b"\xe0\x80", "E0 80..9F starts an overlong 3-octet encoding"),
        (b"\xf0\x80", "F0 80..8F starts an overlong 4-octet encoding"),
        (b"\xf4\x90", "F4 90..BF would encode beyond U+10FFFF"),
    ],
)
def test_known_invalid_prefixes_fail_at_once(prefix: bytes, why: str) -> None:
    """Each prefix that no valid text starts with is rejected before more input arrives."""
    decoder = Utf8Decoder()
    decoder.decode(b"valid text ")
    with pytest.raises(UnicodeDecodeError):
        decoder.decode(prefix)
    assert not is_valid_prefix(prefix), why


@pytest.mark.parametrize("piece_size", [1, 2, 3])
@pytest.mark.parametrize("prefix", [b"\xed\xa0", b"\xe0\x80", b"\xf4\x90"])
def test_invalid_prefix_split_across_pieces_fails_at_once(prefix: bytes, piece_size: int) -> None:
    """A bad two-octet prefix is caught when its second octet arrives, even in another piece."""
    decoder = Utf8Decoder()
    data = b"ok" + prefix + b"\x80" * 4
    bad_at = len(b"ok") + len(prefix)
    with pytest.raises(UnicodeDecodeError):
        for start in range(0, len(data), piece_size):
            decoder.decode(data[start : start + piece_size])
            assert start + piece_size < bad_at


@pytest.mark.parametrize("prefix", [b"\xed\x9f", b"\xe0\xa0", b"\xf0\x90", b"\xf4\x8f", b"\xc2"])
def test_valid_incomplete_sequences_wait_for_more(prefix: bytes) -> None:
    """Prefixes of valid characters are held back until the final piece."""
    decoder = Utf8Decoder()
    assert decoder.decode(prefix) == ""
    with pytest.raises(UnicodeDecodeError):
        decoder.decode(b"", final=True)


def test_characters_split_across_pieces() -> None:
    """Multi-octet characters split anywhere come out whole."""
    data = "é€😀".encode()
    decoder = Utf8Decoder()
    text = "".join(decoder.decode(data[i : i + 1]) for i in range(len(data)))
    assert text + decoder.decode(b"", final=True) == "é€😀"
