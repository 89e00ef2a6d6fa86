"""The compiled speedups give exactly what the pure-Python reference gives."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import wshub.protocol.connection as module
from wshub.protocol import speedups
from wshub.protocol.client import frame_message_masked_python
from wshub.protocol.connection import Connection, Side, _frame_message
from wshub.protocol.frames import Frame
from wshub.protocol.mask import apply_mask

compiled = pytest.mark.skipif(
    not speedups.COMPILED, reason="wshub.protocol._speedups is not built, or WSHUB_NO_EXTENSIONS=1"
)

messages = st.one_of(st.text(max_size=300), st.binary(max_size=70000))
frames = st.builds(
    Frame,
    opcode=st.sampled_from([0x0, 0x1, 0x2, 0x3, 0x8, 0x9, 0xA]),
    payload=st.one_of(
        st.binary(max_size=200),
        st.text(max_size=100).map(str.encode),
        st.sampled_from([b"\xff", b"\xed\xa0\x80", b"\xce"]),
    ),
    fin=st.booleans(),
    rsv1=st.booleans(),
)


def received(side: Side, data: bytes, *, scan: bool, max_size: int | None) -> tuple[object, ...]:
    """Everything a connection reports and writes for ``data``, with or without the scanner."""
    conn = Connection(side, max_size=max_size)
    saved = module._scan_frames
    module._scan_frames = speedups.scan_frames if scan else None
    try:
        conn.receive_data(data)
    finally:
        module._scan_frames = saved
    failure = conn.failure and (conn.failure.code, conn.failure.reason)
    writes = tuple(conn.data_to_send()) if side is Side.SERVER else ()
    return (tuple(conn.events_received()), writes, failure)


@compiled
@settings(max_examples=300, deadline=None)
@given(
    st.lists(frames, max_size=6),
    st.sampled_from([Side.SERVER, Side.CLIENT]),
    st.sampled_from([None, 0, 10, 1000]),
)
def test_scan_frames_changes_nothing_but_speed(
    sequence: list[Frame], side: Side, max_size: int | None
) -> None:
    """Any byte stream gives the same messages, close frame and failure with the scanner."""
    mask = os.urandom(4) if side is Side.SERVER else None
    data = b"".join(frame.serialize(mask) for frame in sequence)
    # Client-side writes carry random masking keys, so received() leaves them out.
    with_scan = received(side, data, scan=True, max_size=max_size)
    without = received(side, data, scan=False, max_size=max_size)
    assert with_scan == without


@compiled
@given(messages)
def test_frame_message_is_the_reference_frame(message: str | bytes) -> None:
    """The compiled server framing is byte for byte the pure one."""
    assert speedups.frame_message is not None
    assert speedups.frame_message(message) == _frame_message(message)


@compiled
@given(messages)
def test_frame_message_masked_unmasks_to_the_reference_payload(message: str | bytes) -> None:
    """The compiled client frame has the pure frame's header and, unmasked, its payload."""
    assert speedups.frame_message_masked is not None
    ours = speedups.frame_message_masked(message)
    reference = frame_message_masked_python(message)
    head = len(reference) - len(message.encode() if isinstance(message, str) else message)
    assert ours[: head - 4] == reference[: head - 4]
    assert apply_mask(ours[head:], ours[head - 4 : head]) == apply_mask(
        reference[head:], reference[head - 4 : head]
    )


@compiled
def test_frame_message_accepts_bytes_like_objects() -> None:
    """bytearray and memoryview go out as binary frames, like bytes."""
    assert speedups.frame_message is not None
    assert speedups.frame_message(bytearray(b"ab")) == b"\x82\x02ab"
    assert speedups.frame_message(memoryview(b"ab")) == b"\x82\x02ab"


@compiled
def test_compiled_masking_keys_differ_and_reset() -> None:
    """Each compiled client frame draws a fresh key; reset_mask_pool() drops the pool."""
    assert speedups.frame_message_masked is not None
    from wshub.protocol import _speedups

    keys = {speedups.frame_message_masked(b"x")[2:6] for _ in range(2000)}
    _speedups.reset_mask_pool()
    keys |= {speedups.frame_message_masked(b"x")[2:6] for _ in range(10)}
    assert len(keys) > 1990
