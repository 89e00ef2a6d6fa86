"""Masking of frame payloads (RFC 6455 §5.3).

Masking XORs every payload octet with a 4-byte key. A byte-by-byte Python loop
would cost ~50 ns per octet; XOR-ing the payload as one big integer runs the
loop in C and costs about as much as two copies of the payload.
"""

from __future__ import annotations

import os

__all__ = ["apply_mask", "new_mask"]


def apply_mask(data: bytes, mask: bytes, offset: int = 0) -> bytes:
    """Mask or unmask ``data`` with the 4-byte ``mask``.

    Args:
        data: payload octets (or a slice of them).
        mask: the frame's masking key.
        offset: position of ``data[0]`` within the frame payload, so a payload
            that arrives in pieces can be unmasked piece by piece.

    Returns:
        The masked (or unmasked: the operation is its own inverse) octets.
    """
    n = len(data)
    if not n:
        return b""
    if offset & 3:
        k = offset & 3
        mask = mask[k:] + mask[:k]
    key = mask * ((n >> 2) + 1)
    return (int.from_bytes(data, "little") ^ int.from_bytes(key[:n], "little")).to_bytes(
        n, "little"
    )


class _MaskSource:
    """Hands out masking keys from a pooled ``os.urandom`` read.

    RFC 6455 §5.3 wants unpredictable keys from a strong entropy source; one
    ``os.urandom`` call per frame is a system call per message, so keys are
    drawn 1024 at a time.
    """

    __slots__ = ("_pool", "_pos")

    def __init__(self) -> None:
        self._pool = b""
        self._pos = 0

    def __call__(self) -> bytes:
        pos = self._pos
        if pos >= len(self._pool):
            self._pool = os.urandom(4096)
            pos = 0
        self._pos = pos + 4
        return self._pool[pos : pos + 4]

    def reset(self) -> None:
        """Forget the pooled keys (a forked child must not reuse its parent's)."""
        self._pool = b""
        self._pos = 0


new_mask = _MaskSource()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=new_mask.reset)
