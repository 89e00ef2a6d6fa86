"""A real browser for interoperability tests: Debian's chromium driven by Playwright.

Playwright normally downloads its own browser builds; here the system's chromium is used
instead (``executable_path``), so nothing is fetched at test time and ``playwright
install`` is never needed. Playwright is a test dependency, imported only when a browser
is launched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext

__all__ = ["CHROMIUM", "CHROMIUM_FLAGS", "chromium_available", "launch_chromium"]

#: Where Debian's ``chromium`` package installs the browser.
CHROMIUM = "/usr/bin/chromium"

#: Flags for a quiet, self-contained headless browser: no sandbox (tests may run as
#: root), no GPU, no QUIC, and none of the background traffic (updates, sync, first-run
#: pages) that would reach beyond the loopback interface.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium_available(executable: str = CHROMIUM) -> bool:
    """Whether the browser and Playwright are both there (for ``pytest.mark.skipif``)."""
    if not os.access(executable, os.X_OK):
        return False
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return False
    return True


@asynccontextmanager
async def launch_chromium(
    *,
    executable_path: str = CHROMIUM,
    extra_args: Sequence[str] = (),
    timeout: float = 30.0,
) -> AsyncIterator[BrowserContext]:
    """Start chromium with a temporary profile; close it and delete the profile on exit.

    Args:
        executable_path: the browser binary.
        extra_args: more command-line flags, after :data:`CHROMIUM_FLAGS`.
        timeout: seconds the browser may take to start.

    Yields:
        A Playwright ``BrowserContext`` (async API): ``await context.new_page()``.

    Example::

        async with launch_chromium() as browser:
            page = await browser.new_page()
            await page.goto(server_url(server).replace("ws", "http", 1))
    """
    from playwright.async_api import async_playwright

    profile = tempfile.mkdtemp(prefix="wshub-chromium-")
    try:
        async with async_playwright() as playwright:
            # A persistent context is Playwright's way to pass --user-data-dir: the
            # profile is ours, temporary, and never the user's.
            context = await playwright.chromium.launch_persistent_context(
                profile,
                executable_path=executable_path,
                headless=True,
                args=[*CHROMIUM_FLAGS, *extra_args],
                timeout=timeout * 1000,
            )
            try:
                yield context
            finally:
                await context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
