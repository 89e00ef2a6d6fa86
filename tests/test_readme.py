"""The README's Python examples run as printed, and say what their comments promise; the
README links every page of docs/, and what it links or shows exists."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
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


def local_targets(markdown: str) -> set[str]:
    """The repository paths a Markdown text links or shows: ``[text](path)``, ``href="path"``
    and ``src="path"``, without their ``#fragment``; web addresses and in-page anchors left
    out."""
    found = re.findall(r"\]\(([^)\s]+)\)", markdown)
    found += re.findall(r"""(?:href|src)=["']([^"']+)["']""", markdown)
    paths = {target.split("#", 1)[0] for target in found}
    return {path for path in paths if path and not re.match(r"[a-z][a-z0-9+.-]*:", path)}


def test_local_targets_finds_links_and_images_but_not_urls() -> None:
    """The link finder sees Markdown links, HTML links and images; not URLs nor anchors."""
    text = (
        '[a](docs/a.md#x) <a href="docs/b.md"><img src="docs/images/b.png" width="9"></a> '
        "[web](https://example.org/c.md) [here](#section) [mail](mailto:x@example.org)"
    )
    assert local_targets(text) == {"docs/a.md", "docs/b.md", "docs/images/b.png"}


def test_the_readme_links_every_docs_page() -> None:
    """Each docs/*.md is linked from the README, so that no page is unreachable from it."""
    linked = local_targets(README.read_text(encoding="utf-8"))
    pages = {f"docs/{page.name}" for page in DOCS.glob("*.md")}
    assert pages, "no docs pages found"
    assert sorted(pages - linked) == []


@pytest.mark.parametrize("page", [README, *sorted(DOCS.glob("*.md"))], ids=lambda p: p.name)
def test_what_a_page_links_or_shows_exists(page: Path) -> None:
    """Every repository path the README or a docs page links or shows (screenshots included)
    exists."""
    missing = [
        target
        for target in sorted(local_targets(page.read_text(encoding="utf-8")))
        if not (page.parent / target).exists()
    ]
    assert missing == []


def test_the_readme_shows_a_screenshot_of_each_page() -> None:
    """Each demo page's screenshot is in the README, taken by scripts/screenshots.py."""
    shown = local_targets(README.read_text(encoding="utf-8"))
    for image in (
        "chat.png",
        "chat-dark-phone.png",
        "ticker.png",
        "ticker-detail.png",
        "board.png",
    ):
        assert f"docs/images/{image}" in shown
