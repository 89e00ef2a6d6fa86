"""Fuzz target: permessage-deflate decompression with a small ``max_size`` (RFC 7692).

The input is a compressed message split into frames. Invariants, for any bytes:

* decompression only refuses with :class:`~wshub.exceptions.ProtocolError` (1007 for bad
  data) or :class:`~wshub.exceptions.PayloadTooBig` (1009);
* the output is bounded: never more than ``max_size`` bytes before the refusal, and no
  piece larger than 64 KiB, whatever the input's compression ratio;
* what our compressor produces from the input decompresses back to the input.
"""

from __future__ import annotations

from _harness import instrumented, run

with instrumented(__name__):
    from wshub.exceptions import PayloadTooBig, ProtocolError
    from wshub.protocol.extensions.permessage_deflate import PerMessageDeflate

PIECE = 2**16


def extension(bits: int, takeover: bool) -> PerMessageDeflate:
    return PerMessageDeflate(
        remote_no_context_takeover=not takeover,
        local_no_context_takeover=not takeover,
        remote_max_window_bits=bits,
        local_max_window_bits=bits,
    )


def test_one_input(data: bytes) -> None:
    if len(data) < 3:
        return
    bits = 8 + data[0] % 8
    takeover = bool(data[0] & 0x80)
    max_size = data[1] * 64  # 0 .. 16 KiB
    cut = data[2]
    payload = data[3:]
    frames = [payload[:cut], payload[cut:]] if cut < len(payload) else [payload]

    receiver = extension(bits, takeover)
    produced = 0
    try:
        for i, frame in enumerate(frames):
            fin = i == len(frames) - 1
            for piece in receiver.inflate(frame, fin=fin, max_size=max_size - produced):
                assert 0 < len(piece) <= PIECE
                produced += len(piece)
                assert produced <= max_size, (produced, max_size)
    except PayloadTooBig as exc:
        assert exc.code == 1009
    except ProtocolError as exc:
        assert exc.code == 1007, exc
    assert produced <= max_size

    sender, back = extension(bits, takeover), extension(bits, takeover)
    assert back.decompress(sender.compress(payload), fin=True, max_size=None) == payload


if __name__ == "__main__":
    run(test_one_input)
