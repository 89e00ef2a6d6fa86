"""What the fuzz targets share: instrumenting wshub for atheris, and the libFuzzer entry point.

A target is a script with a ``test_one_input(data)`` function. Run as a script it fuzzes
(``python fuzzing/http_request.py -max_total_time=60 corpus/``); imported, it is a plain
function that ``tests/test_fuzzing.py`` feeds the seed corpus and the crash regressions,
so the targets run in ``make test`` even where atheris is not installed.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from typing import Protocol, TypeVar

_M = TypeVar("_M", covariant=True)


class IncrementalParser(Protocol[_M]):
    """What ``RequestParser`` and ``ResponseParser`` have in common."""

    def feed(self, data: bytes, /) -> _M | None: ...

    @property
    def leftover(self) -> bytes: ...


def feed_pieces(parser: IncrementalParser[_M], pieces: list[bytes]) -> tuple[_M | None, bytes]:
    """Feed ``pieces`` in turn: the message (``None`` if incomplete) and the bytes after it."""
    for i, piece in enumerate(pieces):
        message = parser.feed(piece)
        if message is not None:
            return message, parser.leftover + b"".join(pieces[i + 1 :])
    return None, b""


def instrumented(name: str) -> contextlib.AbstractContextManager[object]:
    """Instrument the wshub modules imported in this block when fuzzing, else do nothing.

    Args:
        name: the target's ``__name__``; only ``"__main__"`` (run by libFuzzer) instruments.
    """
    if name != "__main__":
        return contextlib.nullcontext()
    from atheris.import_hook import instrument_imports

    return instrument_imports(include=["wshub"])


def run(test_one_input: Callable[[bytes], None]) -> None:
    """Hand ``test_one_input`` to libFuzzer with the command line's options."""
    import atheris

    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
