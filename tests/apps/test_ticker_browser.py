"""The ticker page in a real browser against a real hub: prices from history, live ticks,
the detail view, the keyboard, a phone-sized screen, and a cut while the feed publishes."""

from __future__ import annotations

import asyncio
import importlib.util
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import orjson
import pytest
from playwright.async_api import expect

from wshub.apps.chat import DEMO_ANONYMOUS_PERMISSIONS, demo_config
from wshub.apps.ticker import HubPublisher, PriceFeed, Tick, TickerApp
from wshub.apps.ticker.feed import DEFAULT_INSTRUMENTS
from wshub.hub.server import start_hub

from .conftest import WAIT_MS, ChatServer, Errors, wait_until

_LOOP = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_factories=[_LOOP])]

SYMBOLS = [i.symbol for i in DEFAULT_INSTRUMENTS]


class TickerServer(ChatServer):
    """The hub with the ticker mounted behind the chat tests' gate (refuse / allow upgrades)."""

    @property
    def url(self) -> str:
        assert self.hub_server is not None
        return f"http://127.0.0.1:{self.hub_server.port}/ticker"

    def drop_all(self) -> int:
        """Abort every connection's TCP stream (the page sees a 1006 closure)."""
        dropped = 0
        for session in self.hub.sessions:
            transport = getattr(session.peer, "transport", None)
            if transport is not None:
                transport.abort()
                dropped += 1
        return dropped

    async def latest(self, symbol: str) -> tuple[int, float]:
        """The offset and price of the instrument's newest publication."""
        pubs, position = await self.hub.history(f"ticker:{symbol}")
        return position.offset, Tick.parse(orjson.loads(pubs[-1].data)).price


@asynccontextmanager
async def running_ticker() -> AsyncIterator[TickerServer]:
    """A hub serving /ticker (in-memory history, anonymous subscribers), no feed yet."""
    server = TickerServer()
    async with await start_hub(
        "127.0.0.1",
        0,
        ephemeral=True,
        allow_anonymous=True,
        anonymous_permissions=DEMO_ANONYMOUS_PERMISSIONS,
        registry=demo_config().registry(),  # the demo's ticker namespace
        http_handlers=[server.gate, TickerApp(ws_path="/ws")],
        close_timeout=1.0,
    ) as hub_server:
        server.hub_server = hub_server
        yield server


@pytest.fixture
async def ticker() -> AsyncIterator[TickerServer]:
    """A hub serving /ticker, with every instrument's price published once (offset 1)."""
    async with running_ticker() as server:
        await PriceFeed(seed=11).publish_all(HubPublisher(server.hub))
        yield server


@pytest.fixture
def open_page(
    browser: Any, ticker: TickerServer, page_errors: Errors
) -> Callable[..., AbstractAsyncContextManager[Any]]:
    """``async with open_page() as page``: the ticker in its own context, connected."""

    @asynccontextmanager
    async def open_page(*, width: int = 1280, hash: str = "") -> AsyncIterator[Any]:
        context = await browser.new_context(viewport={"width": width, "height": 900})
        context.set_default_timeout(WAIT_MS)
        try:
            page = await context.new_page()
            page_errors.watch(page)
            await page.goto(ticker.url + hash)
            await expect(page.get_by_test_id("connection-status")).to_have_text("connected")
            yield page
        finally:
            await context.close()

    return open_page


def row(page: Any, symbol: str) -> Any:
    return page.locator(f'[data-testid="ticker-row"][data-symbol="{symbol}"]')


async def expect_row(page: Any, symbol: str, offset: int, price: float) -> None:
    """The row shows this publication: its offset, and its price as the number displayed."""
    target = row(page, symbol)
    await expect(target).to_have_attribute("data-offset", str(offset), timeout=WAIT_MS)
    await expect(target).to_have_attribute("data-price", f"{price:.2f}")
    await expect(target.locator(".price")).to_have_text(f"{price:.2f}")


async def publish(ticker: TickerServer, symbol: str, price: float) -> int:
    open_price = next(i.open for i in DEFAULT_INSTRUMENTS if i.symbol == symbol)
    return await HubPublisher(ticker.hub).publish(
        f"ticker:{symbol}", Tick(symbol, price, open_price).serialize()
    )


async def test_every_instrument_shows_its_price_from_history_then_live_ones(
    open_page: Any, ticker: TickerServer, page_errors: Errors
) -> None:
    """At load, 60 rows show each instrument's stored price; a publication moves its row."""
    async with open_page() as page:
        rows = page.get_by_test_id("ticker-row")
        await expect(rows).to_have_count(len(SYMBOLS))
        assert len(SYMBOLS) >= 50
        assert [await r.get_attribute("data-symbol") for r in await rows.all()] == SYMBOLS
        for symbol in SYMBOLS:
            offset, price = await ticker.latest(symbol)
            await expect_row(page, symbol, offset, price)
        await expect(page.get_by_test_id("ticker-count")).to_have_text(
            f"{len(SYMBOLS)} instruments"
        )

        offset = await publish(ticker, "ACME", 140.0)
        assert offset == 2
        await expect_row(page, "ACME", 2, 140.0)
        await expect(row(page, "ACME")).to_have_attribute("data-direction", "up")
        await expect(row(page, "ACME").locator(".change")).to_have_text("+11.60 (+9.03%)")
        offset = await publish(ticker, "ACME", 100.0)
        await expect_row(page, "ACME", offset, 100.0)
        await expect(row(page, "ACME")).to_have_attribute("data-direction", "down")
        # The sparkline is drawn from the snapshot and the ticks.
        line = row(page, "ACME").locator(".spark-line")
        await expect(line).to_have_attribute("d", re.compile(r"^M.+L.+"))
    assert page_errors.seen == []


async def test_prices_and_offsets_move_while_the_feed_runs(
    open_page: Any, ticker: TickerServer
) -> None:
    """With the feed running, rows take new prices and offsets as they are published."""
    async with open_page() as page:
        await expect(page.get_by_test_id("ticker-row")).to_have_count(len(SYMBOLS))
        feed = PriceFeed(rate=200, seed=5)
        task = asyncio.create_task(feed.run(HubPublisher(ticker.hub), ticks=400))
        await task
        for symbol in SYMBOLS:
            offset, price = await ticker.latest(symbol)
            await expect_row(page, symbol, offset, price)
        moved = [s for s in SYMBOLS if (await ticker.latest(s))[0] > 1]
        assert len(moved) > len(SYMBOLS) // 2


async def test_detail_view_opens_with_click_or_enter_and_closes_with_escape(
    open_page: Any, ticker: TickerServer
) -> None:
    """A click or Enter on a row opens its detail view with a larger chart; Esc goes back to
    the list with the row focused; the arrows step through instruments."""
    async with open_page() as page:
        detail = page.get_by_test_id("ticker-detail")
        await row(page, "APEX").click()
        await expect(detail).to_be_visible()
        await expect(page.get_by_test_id("detail-symbol")).to_have_text("APEX")
        offset, price = await ticker.latest("APEX")
        await expect(page.get_by_test_id("detail-price")).to_have_text(f"{price:.2f}")
        await expect(page.get_by_test_id("detail-offset")).to_have_text(str(offset))
        # Live in the detail view too.
        offset = await publish(ticker, "APEX", 250.5)
        await expect(page.get_by_test_id("detail-price")).to_have_text("250.50")
        await expect(page.get_by_test_id("detail-offset")).to_have_text(str(offset))
        chart = page.get_by_test_id("detail-chart")
        await expect(chart.locator("path.line")).to_have_count(1)
        await expect(page.get_by_test_id("ticker-list")).not_to_be_visible()

        await page.keyboard.press("ArrowRight")
        await expect(page.get_by_test_id("detail-symbol")).to_have_text("AQUA")
        await page.keyboard.press("Escape")
        await expect(detail).to_be_hidden()
        await expect(row(page, "AQUA")).to_be_focused()

        # Keyboard only: move down a row, Enter opens it, Esc closes it.
        await page.keyboard.press("ArrowDown")
        await expect(row(page, "ARCL")).to_be_focused()
        await page.keyboard.press("Enter")
        await expect(page.get_by_test_id("detail-symbol")).to_have_text("ARCL")
        await expect(page).to_have_url(ticker.url + "#ARCL")
        await page.keyboard.press("Escape")
        await expect(detail).to_be_hidden()
        await expect(page).to_have_url(ticker.url)


async def test_a_detail_link_opens_directly_and_the_filter_narrows_the_list(
    open_page: Any, ticker: TickerServer
) -> None:
    """/ticker#NOVA opens NOVA's detail; "/" focuses the filter, which hides other rows."""
    async with open_page(hash="#NOVA") as page:
        await expect(page.get_by_test_id("detail-symbol")).to_have_text("NOVA")
        await page.get_by_test_id("detail-back").click()
        await expect(page.get_by_test_id("ticker-list")).to_be_visible()
        await page.keyboard.press("/")
        await expect(page.get_by_test_id("ticker-filter")).to_be_focused()
        await page.keyboard.type("solar")
        await expect(page.locator('[data-testid="ticker-row"]:visible')).to_have_count(1)
        await expect(row(page, "DUNE")).to_be_visible()
        await page.keyboard.press("Escape")
        await expect(page.locator('[data-testid="ticker-row"]:visible')).to_have_count(len(SYMBOLS))


async def test_phone_sized_screen(open_page: Any, ticker: TickerServer) -> None:
    """At 390 px wide, in the dark theme, the list fits the screen and the detail view still
    opens."""
    async with open_page(width=390) as page:
        await page.emulate_media(color_scheme="dark")
        background = "getComputedStyle(document.body).backgroundColor"
        assert await page.evaluate(background) == "rgb(15, 16, 32)"
        await page.emulate_media(color_scheme="light")
        assert await page.evaluate(background) == "rgb(244, 245, 250)"
        await expect(page.get_by_test_id("ticker-row")).to_have_count(len(SYMBOLS))
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390
        await expect(row(page, "ACME").locator(".change")).to_be_hidden()
        await row(page, "ACME").click()
        await expect(page.get_by_test_id("detail-chart")).to_be_visible()


async def test_a_page_opened_before_the_feed_waits_for_it(
    browser: Any, page_errors: Errors
) -> None:
    """With no feed yet the page says it is waiting; when the feed starts, the rows appear."""
    async with running_ticker() as server:
        context = await browser.new_context()
        context.set_default_timeout(WAIT_MS)
        try:
            page = await context.new_page()
            page_errors.watch(page)
            await page.goto(server.url)
            await expect(page.get_by_test_id("connection-status")).to_have_text("connected")
            await expect(page.get_by_test_id("ticker-empty")).to_be_visible()
            await expect(page.get_by_test_id("ticker-row")).to_have_count(0)
            await PriceFeed(seed=4).publish_all(HubPublisher(server.hub))
            await expect(page.get_by_test_id("ticker-row")).to_have_count(len(SYMBOLS))
            await expect(page.get_by_test_id("ticker-empty")).to_be_hidden()
            offset, price = await server.latest("ZEST")
            await expect_row(page, "ZEST", offset, price)
        finally:
            await context.close()
    assert page_errors.seen == []


# The page records, for each row, any offset lower than one it showed before (same epoch).
WATCH_OFFSETS = """() => {
  window.__backwards = [];
  const seen = new Map();
  const check = (row) => {
    const offset = Number(row.dataset.offset);
    const before = seen.get(row.dataset.symbol) || 0;
    if (offset < before) window.__backwards.push([row.dataset.symbol, before, offset]);
    seen.set(row.dataset.symbol, Math.max(before, offset));
  };
  document.querySelectorAll('[data-testid="ticker-row"]').forEach(check);
  new MutationObserver((records) => records.forEach((r) => check(r.target))).observe(
    document.getElementById("rows"),
    { attributes: true, attributeFilter: ["data-offset"], subtree: true },
  );
}"""


async def test_cut_while_the_feed_publishes_then_recover_the_latest_prices(
    open_page: Any, ticker: TickerServer, page_errors: Errors
) -> None:
    """The server cuts the page's WebSocket while the feed publishes: the page says
    reconnecting, then shows every instrument's newest offset and price, then live ones; no
    row's offset ever goes backwards."""
    async with open_page() as page:
        await expect(page.get_by_test_id("ticker-row")).to_have_count(len(SYMBOLS))
        await page.evaluate(WATCH_OFFSETS)
        status = page.get_by_test_id("connection-status")
        publisher = HubPublisher(ticker.hub)
        feed = PriceFeed(rate=300, seed=9)
        running = asyncio.create_task(feed.run(publisher))
        try:
            await wait_until(lambda: feed.ticks >= 100)
            ticker.refuse(True)
            assert ticker.drop_all() == 1
            await expect(status).to_have_text("reconnecting…")
            await expect(page.get_by_test_id("connection-banner")).to_contain_text("reconnecting")
            frozen = await row(page, "ACME").get_attribute("data-offset")
            cut_at = feed.ticks
            await wait_until(lambda: feed.ticks >= cut_at + 600)  # ~10 ticks per instrument
            assert await row(page, "ACME").get_attribute("data-offset") == frozen
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
        ticker.refuse(False)
        await expect(status).to_have_text("connected", timeout=WAIT_MS)
        await expect(page.get_by_test_id("connection-banner")).to_contain_text("Back online")
        for symbol in SYMBOLS:
            offset, price = await ticker.latest(symbol)
            await expect_row(page, symbol, offset, price)
        # Live again.
        offset = await publish(ticker, "ZEST", 31.25)
        await expect_row(page, "ZEST", offset, 31.25)
        assert await page.evaluate("window.__backwards") == []
    assert page_errors.seen == []
    await wait_until(lambda: len(ticker.hub.sessions) <= 1)
