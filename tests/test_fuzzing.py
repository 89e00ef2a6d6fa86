"""The fuzz targets of fuzzing/ hold on their seed corpus and on every input that once
broke them, and their invariants are real checks (they fail on a broken implementation).

libFuzzer is not needed: a target is a plain ``test_one_input(data)`` function when
imported, so these tests run with the rest of ``make test``; ``make fuzz`` explores.
"""

from __future__ import annotations

import importlib
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from wshub.protocol.extensions.permessage_deflate import PerMessageDeflate

FUZZING = Path(__file__).resolve().parents[1] / "fuzzing"
TARGETS = sorted(p.stem.removeprefix("fuzz_") for p in FUZZING.glob("fuzz_*.py"))


def target(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(FUZZING))
    return importlib.import_module(f"fuzz_{name}")


def inputs() -> list[object]:
    """Every seed (fuzzing/corpus/T/*) and regression (fuzzing/regressions/T/*) input."""
    return [
        pytest.param(path.parent.name, path, id=f"{kind}/{path.parent.name}/{path.name}")
        for kind in ("corpus", "regressions")
        for path in sorted((FUZZING / kind).glob("*/*"))
    ]


def test_every_target_has_a_seed_corpus() -> None:
    """Six targets (issue 8 §3), each with a small seed corpus of its own."""
    assert TARGETS == ["deflate", "frames", "http_request", "http_response", "utf8", "wire"]
    for name in TARGETS:
        seeds = list((FUZZING / "corpus" / name).iterdir())
        assert seeds, name
        assert sum(p.stat().st_size for p in seeds) < 64 * 1024, name


@pytest.mark.parametrize(("name", "path"), inputs())
def test_target_holds_on_input(name: str, path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The target's invariants hold on this input (a broken one raises AssertionError)."""
    target(name, monkeypatch).test_one_input(path.read_bytes())


@pytest.mark.parametrize("name", TARGETS)
def test_target_takes_empty_and_tiny_inputs(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """libFuzzer starts from the empty input: every target accepts inputs of any length."""
    test_one_input: Callable[[bytes], None] = target(name, monkeypatch).test_one_input
    for data in (b"", b"\x00", b"\xff\xff", b"\x01\x02\x03"):
        test_one_input(data)


def test_deflate_target_catches_output_over_max_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """An inflate that ignored max_size would be caught: the output bound is asserted."""
    module = target("deflate", monkeypatch)
    seed = (FUZZING / "corpus" / "deflate" / "bomb").read_bytes()

    def unbounded(
        self: PerMessageDeflate, data: bytes, *, fin: bool, max_size: int | None
    ) -> Iterator[bytes]:
        yield zlib.decompressobj(-self.remote_max_window_bits).decompress(data + b"\0\0\xff\xff")

    monkeypatch.setattr(PerMessageDeflate, "inflate", unbounded)
    with pytest.raises(AssertionError):
        module.test_one_input(seed)


def test_frames_target_catches_a_compiled_path_that_differs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A "compiled" unmasking that differs from the pure one would be caught."""
    module = target("frames", monkeypatch)
    seed = (FUZZING / "corpus" / "frames" / "server_text_binary").read_bytes()

    def wrong_mask(data: bytes, mask: bytes, offset: int = 0) -> bytes:
        return bytes(data)  # forgets to unmask

    monkeypatch.setattr(module.speedups, "COMPILED", True)
    monkeypatch.setattr(module.speedups, "scan_frames", None)
    monkeypatch.setattr(module.speedups, "apply_mask", wrong_mask)
    with pytest.raises(AssertionError):
        module.test_one_input(seed)
