"""Take the screenshots of the demo pages shown in README.md and docs/ from a real run.

Starts ``wshub serve`` (in-memory history, a throwaway API key, the ticker's simulated feed)
on a free loopback port, drives Debian's chromium through Playwright
(:func:`wshub.testing.launch_chromium`), makes each page look alive the way a person would
(two people chatting, the feed running, two people drawing, an operator logged in) and
writes small PNGs into ``docs/images/``.

Usage (``make screenshots`` runs the first form)::

    .venv/bin/python scripts/screenshots.py
    .venv/bin/python scripts/screenshots.py --out /tmp/shots --pages chat board

A page that the hub does not serve (404, e.g. ``/console`` before it exists) is skipped with
a note, and the others are still taken. Exit status: 0 when every page served was taken, 2
on a usage error or when the hub does not start.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from wshub.testing import chromium_available, launch_chromium

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "images"

#: Desktop shots: small enough to stay well under ~150 KB as plain PNG (no Pillow here to
#: quantize them), large enough for the desktop layouts to show.
DESKTOP = {"width": 1120, "height": 700}
#: The phone shot (a common phone's CSS size).
PHONE = {"width": 390, "height": 760}
#: What the browser may wait for, in milliseconds (a ceiling, not a measure of speed).
WAIT_MS = 20_000
#: The simulated feed's rate (ticks per second, ``wshub serve --ticker-rate``): faster than
#: the demo's default, so that a few seconds fill the charts.
FEED_RATE = 200
#: How long the ticker page watches the feed before its shot, in seconds.
FEED_SECONDS = 8.0

Browser = Any  # playwright.async_api.Browser; playwright is a test dependency
Page = Any


class Shooter:
    """Opens pages of one hub in fresh browser contexts and saves their screenshots."""

    def __init__(self, browser: Browser, base: str, out: Path, api_key: str) -> None:
        self.browser = browser
        self.base = base
        self.out = out
        self.api_key = api_key
        self.written: list[Path] = []

    @asynccontextmanager
    async def page(
        self, path: str, *, viewport: dict[str, int] = DESKTOP, scheme: str = "light"
    ) -> AsyncIterator[Page]:
        """A page at ``path`` in its own context (own storage: one person per context)."""
        context = await self.browser.new_context(
            viewport=viewport, device_scale_factor=1, color_scheme=scheme
        )
        context.set_default_timeout(WAIT_MS)
        try:
            page = await context.new_page()
            response = await page.goto(self.base + path)
            if response is None or response.status == 404:
                raise PageMissing(path)
            yield page
        finally:
            await context.close()

    async def save(self, page: Page, name: str) -> None:
        """Screenshot the viewport (no animation mid-way, no text caret) into ``name``."""
        await page.mouse.move(0, 0)
        target = self.out / name
        await page.screenshot(path=str(target), animations="disabled", caret="hide")
        self.written.append(target)
        shown = target.relative_to(ROOT) if target.is_relative_to(ROOT) else target
        print(f"screenshots: {shown} ({target.stat().st_size // 1024} KB)", flush=True)


class PageMissing(Exception):
    """The hub answered 404 for a page: it is not served by this version or configuration."""


async def connected(page: Page) -> None:
    """Wait until the page's connection pill says ``connected``."""
    status = page.get_by_test_id("connection-status")
    await status.filter(has_text=re.compile(r"^\s*connected")).wait_for()


# --- chat ---------------------------------------------------------------------------------

CONVERSATION = [
    ("Ada", "Morning! Is the deploy still on for today?"),
    ("Grace", "Yes — the hub passed the Autobahn suite overnight, 517 of 517."),
    ("Ada", "Nice. I'll watch the console while it rolls out."),
    ("Grace", "The ticker's feed keeps publishing during the restart, so we'll see the recovery."),
    ("Ada", "Ship it!"),
]
#: What a third person says from a phone, in the dark theme.
PHONE_MESSAGE = "Joining from my phone, the board is next."


async def join_chat(page: Page, nick: str) -> None:
    await page.get_by_test_id("nickname-input").fill(nick)
    await page.get_by_test_id("join-button").click()
    await connected(page)


async def say(page: Page, text: str) -> None:
    await page.get_by_test_id("message-input").fill(text)
    await page.get_by_test_id("message-input").press("Enter")


async def shoot_chat(shooter: Shooter) -> None:
    """Two people exchange a few messages; Ada's view, then Grace's on a dark phone."""
    async with shooter.page("/") as ada, shooter.page("/") as grace:
        await join_chat(ada, "Ada")
        await join_chat(grace, "Grace")
        users = {"Ada": ada, "Grace": grace}
        for nick, text in CONVERSATION:
            await say(users[nick], text)
            for page in users.values():
                await page.get_by_text(text).wait_for()
        await ada.get_by_test_id("presence-list").get_by_text("Grace").wait_for()
        await shooter.save(ada, "chat.png")
        async with shooter.page("/", viewport=PHONE, scheme="dark") as phone:
            await join_chat(phone, "Lin")
            await phone.get_by_text(CONVERSATION[-1][1]).wait_for()
            await say(phone, PHONE_MESSAGE)
            await phone.get_by_text(PHONE_MESSAGE).wait_for()
            await shooter.save(phone, "chat-dark-phone.png")


# --- ticker -------------------------------------------------------------------------------


async def shoot_ticker(shooter: Shooter) -> None:
    """The dashboard after the feed has run a few seconds, then one instrument's detail."""
    async with shooter.page("/ticker") as page:
        await connected(page)
        await page.get_by_test_id("ticker-row").first.wait_for()
        await asyncio.sleep(FEED_SECONDS)  # the feed moves prices; the sparklines fill
        await shooter.save(page, "ticker.png")
        await page.get_by_test_id("ticker-row").nth(2).click()
        await page.get_by_test_id("detail-chart").wait_for()
        await asyncio.sleep(2.0)  # a few more ticks on the big chart
        await shooter.save(page, "ticker-detail.png")


# --- board --------------------------------------------------------------------------------

# Strokes as (colour, points), points as fractions of the canvas box.
HOUSE = [
    ("blue", [(0.18, 0.62), (0.18, 0.36), (0.32, 0.2), (0.46, 0.36), (0.46, 0.62), (0.18, 0.62)]),
    ("orange", [(0.27, 0.62), (0.27, 0.47), (0.35, 0.47), (0.35, 0.62)]),
]
SKETCH = [
    ("green", [(0.58, 0.7), (0.64, 0.6), (0.7, 0.66), (0.76, 0.52), (0.82, 0.58), (0.9, 0.38)]),
    ("red", [(0.66, 0.22), (0.7, 0.16), (0.75, 0.2), (0.72, 0.27), (0.66, 0.22)]),
    ("violet", [(0.1, 0.82), (0.3, 0.86), (0.5, 0.8), (0.7, 0.86), (0.9, 0.8)]),
]


async def join_board(page: Page, name: str) -> None:
    await page.get_by_test_id("board-name-input").fill(name)
    await page.get_by_test_id("board-name-input").press("Enter")  # saves, reloads
    await page.get_by_test_id("board-presence").get_by_text(name).wait_for()
    await connected(page)


async def draw(page: Page, color: str, points: Sequence[tuple[float, float]]) -> None:
    """Pick ``color`` and draw one stroke through ``points`` with pointer events."""
    await page.locator(f'[data-color="{color}"]').click()
    box = await page.get_by_test_id("board-canvas").bounding_box()
    assert box is not None

    def at(fx: float, fy: float) -> tuple[float, float]:
        return box["x"] + fx * box["width"], box["y"] + fy * box["height"]

    await page.mouse.move(*at(*points[0]))
    await page.mouse.down()
    for point in points[1:]:
        await page.mouse.move(*at(*point), steps=6)
    await page.mouse.up()


async def shoot_board(shooter: Shooter) -> None:
    """Two people draw on one board; Ada's view shows both people's strokes and Grace's cursor."""
    name = f"demo-{secrets.token_hex(3)}"
    async with (
        shooter.page(f"/board?name={name}") as ada,
        shooter.page(f"/board?name={name}") as grace,
    ):
        await join_board(ada, "Ada")
        await join_board(grace, "Grace")
        for color, points in HOUSE:
            await draw(ada, color, points)
        for color, points in SKETCH:
            await draw(grace, color, points)
        strokes = len(HOUSE) + len(SKETCH)
        await ada.get_by_test_id("board-stroke").nth(strokes - 1).wait_for()
        # Grace's pointer rests on the board: Ada sees her named cursor.
        box = await grace.get_by_test_id("board-canvas").bounding_box()
        assert box is not None
        await grace.mouse.move(box["x"] + box["width"] * 0.55, box["y"] + box["height"] * 0.3)
        await ada.get_by_test_id("board-cursor").first.wait_for()
        await shooter.save(ada, "board.png")


# --- console ------------------------------------------------------------------------------


async def shoot_console(shooter: Shooter) -> None:
    """The operator console, logged in with the hub's API key, with some traffic to show."""
    async with shooter.page("/") as ada, shooter.page("/console") as page:
        await join_chat(ada, "Ada")
        await page.get_by_test_id("console-api-key").fill(shooter.api_key)
        await page.get_by_test_id("console-login").click()
        await page.get_by_test_id("console-node").first.wait_for()
        await page.get_by_test_id("console-channel").first.wait_for()
        await asyncio.sleep(4.0)  # a few seconds of the live charts (updated every second)
        await shooter.save(page, "console.png")


PAGES: dict[str, Callable[[Shooter], Awaitable[None]]] = {
    "chat": shoot_chat,
    "ticker": shoot_ticker,
    "board": shoot_board,
    "console": shoot_console,
}


# --- the hub ------------------------------------------------------------------------------


@asynccontextmanager
async def running_hub(api_key: str) -> AsyncIterator[str]:
    """``wshub serve`` on a free loopback port, as ``make run`` runs it; yields its base URL.

    The environment's ``WSHUB_*`` settings are left out, so that the run is the demo's.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSHUB_")}
    wshub = Path(sys.executable).with_name("wshub")
    process = await asyncio.create_subprocess_exec(
        str(wshub),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--ephemeral",
        f"--api-key={api_key}",  # one argument: a key may start with "-"
        "--ticker-rate",
        str(FEED_RATE),
        "--log-level",
        "warning",
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    assert process.stdout is not None
    try:
        base = None
        while base is None:
            line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
            if not line:
                raise RuntimeError(f"wshub serve exited with status {await process.wait()}")
            found = re.search(r"hub on ws://[^:]+:(\d+)/", line)
            if found:
                base = f"http://127.0.0.1:{found.group(1)}"
        # keep reading its output, so that it never blocks on a full pipe
        drain = asyncio.create_task(process.stdout.read())
        yield base
        drain.cancel()
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()


async def take(names: Sequence[str], out: Path) -> list[str]:
    """Take the screenshots of ``names``; returns the pages skipped (not served)."""
    api_key = secrets.token_urlsafe(24)
    out.mkdir(parents=True, exist_ok=True)
    skipped = []
    async with running_hub(api_key) as base, launch_chromium() as context:
        shooter = Shooter(context.browser, base, out, api_key)
        for name in names:
            try:
                await PAGES[name](shooter)
            except PageMissing as missing:
                print(f"screenshots: skipped {name}: {missing} is not served (404)", flush=True)
                skipped.append(name)
    return skipped


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="where the PNGs go (default: docs/images)"
    )
    parser.add_argument(
        "--pages",
        nargs="+",
        choices=list(PAGES),
        default=list(PAGES),
        help="which pages (default: all)",
    )
    args = parser.parse_args(argv)
    if not chromium_available():
        print("screenshots: chromium or playwright is missing (make deps)", file=sys.stderr)
        return 2
    try:
        asyncio.run(take(args.pages, args.out))
    except (OSError, RuntimeError, TimeoutError) as exc:
        print(f"screenshots: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
