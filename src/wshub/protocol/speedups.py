"""Selects the compiled speedups when they are built, the pure-Python reference otherwise.

This is the one module that chooses (STYLE convention 8). ``WSHUB_NO_EXTENSIONS=1``
(read by ``wshub.config``) forces the pure path, so the test suite can run both.

Measured on the project's 2-core VM: unmasking 16 KiB costs ~20 µs with the big-integer
XOR of ``mask.py`` and ~1.4 µs compiled.
"""

from __future__ import annotations

from collections.abc import Callable

from .. import config
from .mask import apply_mask as apply_mask_python

__all__ = ["COMPILED", "apply_mask", "apply_mask_python"]

apply_mask: Callable[..., bytes] = apply_mask_python
COMPILED = False

if not config.NO_EXTENSIONS:
    try:
        from .._speedups import apply_mask as _compiled_apply_mask
    except ImportError:  # pragma: no cover - depends on the build
        pass
    else:
        apply_mask = _compiled_apply_mask
        COMPILED = True
