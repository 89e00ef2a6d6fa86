"""Running a coroutine on the fastest available event loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

from .. import config

__all__ = ["new_event_loop", "run", "uvloop_available"]

T = TypeVar("T")
logger = logging.getLogger("wshub.server")


def uvloop_available() -> bool:
    """Whether uvloop can be used (installed, and not switched off by ``WSHUB_NO_UVLOOP``)."""
    if config.NO_UVLOOP:
        return False
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def new_event_loop(*, use_uvloop: bool = True) -> asyncio.AbstractEventLoop:
    """A new event loop: uvloop's when available and wanted, else asyncio's."""
    if use_uvloop and uvloop_available():
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        return loop
    return asyncio.new_event_loop()


def run(main: Coroutine[Any, Any, T], *, use_uvloop: bool = True, debug: bool = False) -> T:
    """Like ``asyncio.run``, on uvloop unless ``use_uvloop=False`` or ``WSHUB_NO_UVLOOP=1``.

    uvloop roughly halves the event loop's share of the time per message; it is a
    declared dependency, so this is the default.
    """
    with asyncio.Runner(
        debug=debug, loop_factory=lambda: new_event_loop(use_uvloop=use_uvloop)
    ) as runner:
        return runner.run(main)
