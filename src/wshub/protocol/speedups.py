"""Selects the compiled speedups when they are built, the pure-Python reference otherwise.

This is the one module that chooses (STYLE convention 8). ``WSHUB_NO_EXTENSIONS=1``
(read by ``wshub.config``) forces the pure path, so the test suite can run both.

Measured on the project's 2-core VM: unmasking 16 KiB costs ~20 µs with the big-integer
XOR of ``mask.py`` and ~1.4 µs compiled.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from .. import config
from .mask import apply_mask as apply_mask_python

__all__ = [
    "COMPILED",
    "apply_mask",
    "apply_mask_python",
    "frame_message",
    "frame_message_masked",
    "scan_frames",
]

apply_mask: Callable[..., bytes] = apply_mask_python
#: Delivers the leading whole, simple data frames of a read (see ``_speedups.c``); ``None``
#: on the pure path, where ``Connection.receive_data`` parses everything itself.
scan_frames: Callable[[bytes, bool, int, Callable[[str | bytes], object]], int] | None = None
#: One unmasked (server) or masked (client) frame holding a whole message, or ``None``.
frame_message: Callable[[str | bytes], bytes] | None = None
frame_message_masked: Callable[[str | bytes], bytes] | None = None
COMPILED = False

if not config.NO_EXTENSIONS:
    try:
        from . import _speedups
    except ImportError:  # pragma: no cover - depends on the build
        pass
    else:
        apply_mask = _speedups.apply_mask
        scan_frames = _speedups.scan_frames
        frame_message = _speedups.frame_message
        frame_message_masked = _speedups.frame_message_masked
        # The compiled key pool, like the pure one, must not be shared with a forked child.
        os.register_at_fork(after_in_child=_speedups.reset_mask_pool)
        COMPILED = True
