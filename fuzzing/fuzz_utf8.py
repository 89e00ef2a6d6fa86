"""Fuzz target: UTF-8 validation of text messages (RFC 6455 §8.1), compiled and pure.

Invariants, for any bytes:

* :class:`~wshub.protocol.utf8.Utf8Decoder` fed in two pieces accepts exactly what
  ``bytes.decode("utf-8")`` accepts, gives the same text, and fails no later than the
  end of the piece that holds the first invalid byte (it never fails on a valid prefix);
* a text frame carrying the bytes is delivered or refused with 1007 identically on the
  pure path and through the compiled frame scanner, which validates UTF-8 in C.
"""

from __future__ import annotations

from _harness import instrumented, run

with instrumented(__name__):
    from wshub.protocol import connection as module
    from wshub.protocol import speedups
    from wshub.protocol.connection import Connection, Side
    from wshub.protocol.events import Message
    from wshub.protocol.frames import build_frame
    from wshub.protocol.utf8 import Utf8Decoder


def reference(data: bytes) -> str | int:
    """The text, or the offset of the first invalid byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start


def incremental(first: bytes, second: bytes) -> str | int:
    """The text, or which piece (1 or 2) the decoder failed in."""
    decoder = Utf8Decoder()
    try:
        text = decoder.decode(first)
    except UnicodeDecodeError:
        return 1
    try:
        return text + decoder.decode(second, True)
    except UnicodeDecodeError:
        return 2


def delivered(data: bytes, *, compiled: bool) -> object:
    saved = module._scan_frames
    module._scan_frames = speedups.scan_frames if compiled else None
    try:
        conn = Connection(Side.CLIENT, max_size=None)
        conn.receive_data(build_frame(0x1, data))
    finally:
        module._scan_frames = saved
    return conn.events_received(), conn.failure and conn.failure.code


def test_one_input(data: bytes) -> None:
    cut = data[0] if data else 0
    text = data[1:]
    expected = reference(text)
    first, second = text[:cut], text[cut:]
    got = incremental(first, second)
    if isinstance(expected, str):
        assert got == expected, (got, expected)
    else:
        assert isinstance(got, int)
        # The first piece may fail only if the bad byte is in it (or ends it incomplete
        # in a way no continuation can fix); a valid first piece never fails.
        if got == 1:
            assert expected < len(first), (expected, len(first))

    pure = delivered(text, compiled=False)
    if isinstance(expected, str):
        assert pure == ([Message(expected)], None), pure
    else:
        assert pure == ([], 1007), pure
    if speedups.COMPILED:
        assert delivered(text, compiled=True) == pure


if __name__ == "__main__":
    run(test_one_input)
