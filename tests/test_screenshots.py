"""scripts/screenshots.py takes small PNGs of the demo pages from a real ``wshub serve`` run."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest

from wshub.testing import chromium_available

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "screenshots.py"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not chromium_available(), reason="chromium or playwright is missing"),
]


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (and a check that it is a PNG)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_the_board_shot_is_a_small_png_of_the_viewport(tmp_path: Path) -> None:
    """Two people draw on a board; the script writes board.png, a 1120x700 PNG under 150 KB,
    and says so."""
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--pages", "board", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    shot = tmp_path / "board.png"
    assert png_size(shot) == (1120, 700)
    assert shot.stat().st_size < 150 * 1024
    assert "board.png" in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["board.png"]


def test_an_unknown_page_is_a_usage_error(tmp_path: Path) -> None:
    """A page name the script does not know: exit 2 and one usage line, no traceback."""
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--pages", "nope", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "invalid choice" in done.stderr
    assert "Traceback" not in done.stderr
