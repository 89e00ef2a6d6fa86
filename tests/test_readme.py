"""The README's Python examples run as printed, and say what their comments promise."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
EXPECTED = [
    ["hello", "round trip:"],
    ["welcome", "hi, everyone", "left with 1000"],
    ["True {'text': 'hi Bob'}"],
]


def test_the_readme_has_the_three_examples() -> None:
    """A modern-style, an event-style and a hub example."""
    assert len(BLOCKS) == len(EXPECTED)


@pytest.mark.parametrize(("code", "expected"), list(zip(BLOCKS, EXPECTED, strict=False)))
def test_readme_example_runs(code: str, expected: list[str], tmp_path: Path) -> None:
    """The example exits 0 within its time and prints what its comments say."""
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    for line in expected:
        assert line in done.stdout
