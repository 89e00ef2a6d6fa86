"""Fuzz target: the frame parser of :class:`wshub.protocol.connection.Connection`.

The input chooses a side (server: masked frames expected; client: unmasked), a
``max_size`` and a split of the rest into reads. Invariants, for any bytes:

* bad input from the peer never raises (STYLE convention 1): at most, the connection fails
  with 1002, 1007 or 1009 and sends one close frame;
* no message is longer than ``max_size``, and text messages are valid UTF-8;
* the compiled speedups (frame scanner, unmasking) change nothing: the events, the bytes
  written (server side; a client masks with random keys) and the failure are those of
  the pure-Python reference. Without the compiled module, the pure path runs alone.
"""

from __future__ import annotations

from _harness import instrumented, run

with instrumented(__name__):
    from wshub.protocol import connection as module
    from wshub.protocol import mask, speedups
    from wshub.protocol.connection import Connection, Side
    from wshub.protocol.events import Message

MAX_SIZES = (None, 0, 1, 125, 126, 1000, 70000)
FAILURE_CODES = frozenset({1002, 1007, 1009})


def receive(side: Side, max_size: int | None, reads: list[bytes], *, compiled: bool) -> object:
    """Everything one connection reports for ``reads``, on one path."""
    # connection.py binds both speedups at import time (speedups.py chose them); swap them.
    saved = module._scan_frames, vars(module)["apply_mask"]
    if compiled:
        module._scan_frames = speedups.scan_frames
        setattr(module, "apply_mask", speedups.apply_mask)  # noqa: B010
    else:
        module._scan_frames = None
        setattr(module, "apply_mask", mask.apply_mask)  # noqa: B010
    try:
        conn = Connection(side, max_size=max_size)
        for data in reads:
            conn.receive_data(data)
    finally:
        module._scan_frames = saved[0]
        setattr(module, "apply_mask", saved[1])  # noqa: B010
    events = conn.events_received()
    for event in events:
        if isinstance(event, Message):
            size = len(event.data.encode() if isinstance(event.data, str) else event.data)
            assert max_size is None or size <= max_size, (size, max_size)
    failure = conn.failure
    if failure is not None:
        assert failure.code in FAILURE_CODES, failure
        assert conn.close_sent is not None and conn.close_sent[0] == failure.code
    writes = b"".join(conn.data_to_send()) if side is Side.SERVER else b""
    return events, writes, failure and (failure.code, str(failure))


def test_one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    side = Side.SERVER if data[0] & 1 else Side.CLIENT
    max_size = MAX_SIZES[(data[0] >> 1) % len(MAX_SIZES)]
    cut = data[1]
    rest = data[2:]
    reads = [rest[:cut], rest[cut:]] if cut < len(rest) else [rest]
    pure = receive(side, max_size, reads, compiled=False)
    if speedups.COMPILED:
        assert receive(side, max_size, reads, compiled=True) == pure


if __name__ == "__main__":
    run(test_one_input)
