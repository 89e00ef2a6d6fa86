"""Incremental UTF-8 decoding that fails as early as the bytes allow (RFC 6455 §8.1).

A text message may arrive in many frames, and a frame in many reads; §8.1 asks
an endpoint to fail the connection as soon as it sees invalid UTF-8, so text is
decoded piece by piece. CPython's incremental decoder already rejects most
invalid prefixes at once; the one prefix it holds back is a UTF-16 surrogate
(``ED A0..BF``), which :class:`Utf8Decoder` checks itself.
"""

from __future__ import annotations

import codecs

__all__ = ["Utf8Decoder"]

_BaseDecoder = codecs.getincrementaldecoder("utf-8")


class Utf8Decoder:
    """Decode UTF-8 in pieces, raising ``UnicodeDecodeError`` on the first bad byte."""

    __slots__ = ("_decoder",)

    def __init__(self) -> None:
        self._decoder = _BaseDecoder("strict")

    def decode(self, data: bytes, final: bool = False) -> str:
        """Decode ``data``; with ``final`` an incomplete trailing sequence is an error."""
        text = self._decoder.decode(data, final)
        if not final:
            pending = self._decoder.getstate()[0]
            if len(pending) > 1 and pending[0] == 0xED and pending[1] >= 0xA0:
                raise UnicodeDecodeError("utf-8", pending, 0, 2, "surrogate code point")
        return text
