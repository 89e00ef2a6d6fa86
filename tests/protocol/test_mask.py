"""Tests for wshub.protocol.mask: payload masking of RFC 6455 §5.3.

The pure-Python ``apply_mask`` is the reference; the compiled one that
``wshub.protocol.speedups`` selects when it is built must pass the same tests.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wshub.protocol import mask as pure
from wshub.protocol import speedups
from wshub.protocol.mask import new_mask

MaskFunction = Callable[..., bytes]
masks = st.binary(min_size=4, max_size=4)
implementations = pytest.mark.parametrize(
    "apply_mask",
    [
        pytest.param(pure.apply_mask, id="python"),
        pytest.param(
            speedups.apply_mask,
            id="compiled",
            marks=pytest.mark.skipif(
                not speedups.COMPILED,
                reason="wshub.protocol._speedups is not built, or WSHUB_NO_EXTENSIONS=1",
            ),
        ),
    ],
)


def reference_mask(data: bytes, mask: bytes, offset: int = 0) -> bytes:
    """§5.3 word for word: octet i is XOR-ed with octet (i MOD 4) of the key."""
    return bytes(b ^ mask[(offset + i) % 4] for i, b in enumerate(data))


@implementations
@given(st.binary(max_size=300), masks, st.integers(0, 1000))
def test_apply_mask_matches_the_rfc_definition(
    apply_mask: MaskFunction, data: bytes, mask: bytes, offset: int
) -> None:
    """apply_mask equals the octet-by-octet XOR of §5.3, at any offset into the payload."""
    assert apply_mask(data, mask, offset) == reference_mask(data, mask, offset)


@implementations
@given(st.binary(max_size=300), masks)
def test_apply_mask_is_its_own_inverse(apply_mask: MaskFunction, data: bytes, mask: bytes) -> None:
    """Masking twice with the same key gives the original octets back (§5.3)."""
    assert apply_mask(apply_mask(data, mask), mask) == data


@implementations
@given(st.binary(max_size=300), masks, st.lists(st.integers(0, 300), max_size=8))
def test_unmasking_in_pieces_equals_unmasking_at_once(
    apply_mask: MaskFunction, data: bytes, mask: bytes, cuts: list[int]
) -> None:
    """A payload that arrives in pieces unmasks piece by piece, each at its own offset."""
    bounds = [0, *sorted(min(cut, len(data)) for cut in cuts), len(data)]
    pieces = [
        apply_mask(data[start:stop], mask, start) for start, stop in itertools.pairwise(bounds)
    ]
    assert b"".join(pieces) == apply_mask(data, mask)


@implementations
def test_masking_keeps_leading_and_trailing_zero_octets(apply_mask: MaskFunction) -> None:
    """Octets that mask to zero at either end are not lost in the integer arithmetic."""
    mask = b"\x00\x01\x02\x03"
    data = b"\x00\x01\x02\x03\x00\x01"
    assert apply_mask(data, mask) == b"\x00\x00\x00\x00\x00\x00"
    assert apply_mask(b"\x00\x00\x00\x00\x00\x00", mask) == data


@implementations
def test_empty_payload(apply_mask: MaskFunction) -> None:
    """An empty payload stays empty whatever the key and offset."""
    assert apply_mask(b"", b"abcd") == b""
    assert apply_mask(b"", b"abcd", 3) == b""


@implementations
@pytest.mark.parametrize("offset", [0, 1, 2, 3, 4, 5, 7])
def test_offset_rotates_the_key(apply_mask: MaskFunction, offset: int) -> None:
    """At offset k the first octet is XOR-ed with key octet k MOD 4 (§5.3)."""
    mask = b"\x10\x20\x40\x80"
    assert apply_mask(b"\x00" * 4, mask, offset)[0] == mask[offset % 4]


@implementations
@pytest.mark.parametrize("offset", [0, 1, 2, 3])
def test_long_payload(apply_mask: MaskFunction, offset: int) -> None:
    """Payloads past any word-at-a-time fast path, of odd length, mask like the reference."""
    data = bytes(range(256)) * 300 + b"tail!"
    mask = b"\x9a\x0b\xfe\x31"
    assert apply_mask(data, mask, offset) == reference_mask(data, mask, offset)


def test_new_mask_gives_fresh_four_byte_keys() -> None:
    """Keys are 4 bytes and unpredictable: draws past the pooled read almost never repeat."""
    keys = [new_mask() for _ in range(3000)]
    assert all(type(key) is bytes and len(key) == 4 for key in keys)
    # 3000 random 32-bit keys collide with probability ~0.1 %; a handful of repeats at most.
    assert len(set(keys)) > 2990


def test_new_mask_pool_reset_draws_fresh_keys() -> None:
    """After reset() (run in a forked child), keys come from a fresh urandom read, not the pool."""
    source = pure._MaskSource()
    first = [source() for _ in range(4)]
    source.reset()
    again = [source() for _ in range(4)]
    assert all(len(key) == 4 for key in first + again)
    assert first != again
