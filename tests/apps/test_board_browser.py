"""The board page in a real browser against a real hub: drawing, presence, cursors, undo,
clear, a board longer than the history, and recovery after a cut."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import random
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
from playwright.async_api import expect

from wshub.apps.board import BoardApp
from wshub.apps.chat import DEMO_ANONYMOUS_PERMISSIONS, demo_config
from wshub.hub import HubLimits
from wshub.hub.auth import make_token
from wshub.hub.channels import ChannelRegistry
from wshub.hub.client import HubClient
from wshub.hub.server import start_hub
from wshub.hub.wire import ClientInfo

from .board_model import Board
from .conftest import WAIT_MS, AppServer, Errors, wait_until

_LOOP = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_factories=[_LOOP])]

DELIVERED = "[data-testid=board-stroke][data-state=delivered]"


class BoardServer(AppServer):
    """A hub server with the board mounted; users are told apart by their display name."""

    meta_key = "name"

    def url(self, query: str = "") -> str:
        assert self.hub_server is not None
        return f"http://127.0.0.1:{self.hub_server.port}/board{query}"


@asynccontextmanager
async def running_board(
    history_size: int = 1000, *, limits: HubLimits | None = None, secret: str | None = None
) -> AsyncIterator[BoardServer]:
    """A hub whose ``board`` namespace keeps ``history_size`` publications, serving /board
    with the same history size and publication limit."""
    limits = limits or HubLimits()
    demo = demo_config().registry()
    registry = ChannelRegistry(
        {"board": dataclasses.replace(demo["board"], history_size=history_size)}
    )
    board = BoardServer()
    async with await start_hub(
        "127.0.0.1",
        0,
        ephemeral=True,
        allow_anonymous=True,
        anonymous_permissions=DEMO_ANONYMOUS_PERMISSIONS,
        secret=secret,
        registry=registry,
        limits=limits,
        http_handlers=[
            board.gate,
            BoardApp(history_size=history_size, max_publication_size=limits.max_publication_size),
        ],
        close_timeout=1.0,
    ) as hub_server:
        board.hub_server = hub_server
        yield board


@pytest.fixture
async def board_server() -> AsyncIterator[BoardServer]:
    async with running_board() as board:
        yield board


OpenUser = Callable[..., AbstractAsyncContextManager[Any]]


def opener(browser: Any, server: BoardServer, errors: Errors) -> OpenUser:
    @asynccontextmanager
    async def open_user(
        name: str, *, query: str = "", width: int = 1280, scheme: str = "light"
    ) -> AsyncIterator[Any]:
        context = await browser.new_context(
            viewport={"width": width, "height": 800}, color_scheme=scheme
        )
        context.set_default_timeout(WAIT_MS)
        try:
            page = await context.new_page()
            errors.watch(page)
            await page.goto(server.url(query))
            await page.get_by_test_id("board-name-input").fill(name)
            await page.get_by_test_id("board-name-input").press("Enter")  # saves, reloads
            await expect(page.get_by_test_id("board-presence")).to_contain_text(name)
            await expect(page.get_by_test_id("connection-status")).to_have_text("connected")
            yield page
        finally:
            await context.close()

    return open_user


@pytest.fixture
def open_user(browser: Any, board_server: BoardServer, page_errors: Errors) -> OpenUser:
    """``async with open_user("Ada") as page``: a user on the board "main", connected."""
    return opener(browser, board_server, page_errors)


async def draw(page: Any, *points: tuple[float, float]) -> None:
    """Draw one stroke with the mouse through ``points`` (fractions of the canvas box)."""
    box = await page.get_by_test_id("board-canvas").bounding_box()

    def at(fx: float, fy: float) -> tuple[float, float]:
        return box["x"] + fx * box["width"], box["y"] + fy * box["height"]

    await page.mouse.move(*at(*points[0]))
    await page.mouse.down()
    for point in points[1:]:
        await page.mouse.move(*at(*point), steps=4)
    await page.mouse.up()


async def strokes(page: Any) -> list[tuple[int, str]]:
    """(offset, author) of each delivered stroke, in document (paint) order."""
    found = await page.locator(DELIVERED).evaluate_all(
        "nodes => nodes.map(n => [Number(n.dataset.offset), n.dataset.author])"
    )
    return [(offset, author) for offset, author in found]


async def same_strokes(pages: list[Any], count: int) -> list[tuple[int, str]]:
    """Wait until every page shows ``count`` strokes, none pending; return the common list."""
    for page in pages:
        await expect(page.locator(DELIVERED)).to_have_count(count, timeout=WAIT_MS)
        await expect(page.locator("[data-testid=board-stroke][data-state=sending]")).to_have_count(
            0
        )
    shown = [await strokes(page) for page in pages]
    for other in shown[1:]:
        assert other == shown[0]
    offsets = [offset for offset, _ in shown[0]]
    assert offsets == sorted(set(offsets)), "each stroke once, in offset order"
    return shown[0]


async def me(page: Any) -> str:
    """The page's own author key, read from its entry in the presence list."""
    mine = page.get_by_test_id("board-presence").locator("li", has_text="you")
    return str(await mine.get_attribute("data-author"))


async def test_two_pages_draw_and_see_each_other(
    open_user: OpenUser, board_server: BoardServer, page_errors: Errors
) -> None:
    """Strokes of two pages show on both, in the same order; presence lists both people."""
    async with open_user("Ada") as ada, open_user("Grace") as grace:
        for page in (ada, grace):
            people = page.get_by_test_id("board-presence").locator("li")
            await expect(people).to_have_count(2)
            await expect(people.filter(has_text="Ada")).to_have_count(1)
            await expect(people.filter(has_text="Grace")).to_have_count(1)
        await draw(ada, (0.3, 0.3), (0.4, 0.35), (0.5, 0.3))
        await draw(grace, (0.3, 0.6), (0.5, 0.65))
        await draw(ada, (0.6, 0.6), (0.7, 0.5))
        shown = await same_strokes([ada, grace], 3)
        ada_key, grace_key = await me(ada), await me(grace)
        assert ada_key != grace_key
        assert [author for _, author in shown] == [ada_key, grace_key, ada_key]
        history, _ = await board_server.hub.history("board:main")
        assert [p.offset for p in history] == [offset for offset, _ in shown]
    assert page_errors.seen == []


async def test_remote_cursor_shows_and_is_never_stored(
    open_user: OpenUser, board_server: BoardServer
) -> None:
    """Moving the pointer over the board shows a named cursor on the other page only."""
    async with open_user("Ada") as ada, open_user("Grace") as grace:
        await expect(ada.get_by_test_id("board-presence").locator("li")).to_have_count(2)
        box = await ada.get_by_test_id("board-canvas").bounding_box()
        for step in range(5):
            await ada.mouse.move(box["x"] + 200 + 20 * step, box["y"] + 200)
        cursor = grace.get_by_test_id("board-cursor")
        await expect(cursor).to_have_count(1)
        await expect(cursor).to_have_attribute("data-author-name", "Ada")
        await expect(cursor).to_have_attribute("data-author", await me(ada))
        await expect(ada.get_by_test_id("board-cursor")).to_have_count(0)
    history, position = await board_server.hub.history("board:main")
    assert history == [] and position.offset == 0


async def test_a_stroke_shows_on_the_other_page_while_it_is_drawn(
    open_user: OpenUser, board_server: BoardServer
) -> None:
    """While Ada drags, Grace sees the stroke grow as a preview (through the ephemeral cursor
    publications); on release it becomes the published stroke, and the preview goes."""
    async with open_user("Ada") as ada, open_user("Grace") as grace:
        await expect(ada.get_by_test_id("board-presence").locator("li")).to_have_count(2)
        box = await ada.get_by_test_id("board-canvas").bounding_box()
        await ada.mouse.move(box["x"] + 300, box["y"] + 300)
        await ada.mouse.down()
        for step in range(1, 8):
            await ada.mouse.move(box["x"] + 300 + 25 * step, box["y"] + 300 + 10 * step)
        preview = grace.get_by_test_id("board-preview")
        await expect(preview).to_have_count(1)
        await expect(preview).to_have_attribute("data-author", await me(ada))
        await expect(grace.locator(DELIVERED)).to_have_count(0)
        await ada.mouse.up()
        await same_strokes([ada, grace], 1)
        await expect(preview).to_have_count(0)
    history, _ = await board_server.hub.history("board:main")
    assert [json.loads(p.data)["type"] for p in history] == ["stroke"]


async def test_undo_removes_only_the_own_stroke(
    open_user: OpenUser, board_server: BoardServer
) -> None:
    """U undoes the page's last own stroke on both pages; an undo of another's is ignored."""
    async with open_user("Ada") as ada, open_user("Grace") as grace:
        await draw(ada, (0.3, 0.3), (0.5, 0.3))
        await draw(grace, (0.3, 0.6), (0.5, 0.6))
        shown = await same_strokes([ada, grace], 2)
        ada_stroke = shown[0][0]
        # Someone else asks to undo Ada's stroke: every page ignores it.
        async with HubClient(board_server.ws_url, meta={"name": "Mallory", "tab": "ab" * 8}) as m:
            await m.subscribe("board:main")
            await m.publish("board:main", {"type": "undo", "target": ada_stroke})
        await grace.get_by_test_id("board-canvas").focus()
        await grace.keyboard.press("u")
        for page in (ada, grace):
            await expect(page.locator(DELIVERED)).to_have_count(1)
        assert await same_strokes([ada, grace], 1) == [(ada_stroke, await me(ada))]
        await expect(grace.get_by_test_id("board-undo")).to_be_disabled()
        # Ctrl+Z works too, and only on one's own strokes.
        await ada.keyboard.press("Control+z")
        for page in (ada, grace):
            await expect(page.locator(DELIVERED)).to_have_count(0)


async def test_clear_asks_first_then_clears_every_page(
    open_user: OpenUser, board_server: BoardServer
) -> None:
    """Clear opens a confirmation; cancel keeps the strokes, confirm clears both pages."""
    async with open_user("Ada") as ada, open_user("Grace") as grace:
        await draw(ada, (0.3, 0.3), (0.5, 0.3))
        await draw(grace, (0.3, 0.6), (0.5, 0.6))
        await same_strokes([ada, grace], 2)
        dialog = ada.get_by_test_id("board-clear-dialog")
        await ada.get_by_test_id("board-clear").click()
        await expect(dialog).to_be_visible()
        await ada.get_by_test_id("board-clear-cancel").click()
        await expect(dialog).to_be_hidden()
        await same_strokes([ada, grace], 2)
        await ada.get_by_test_id("board-clear").click()
        await ada.get_by_test_id("board-clear-confirm").click()
        for page in (ada, grace):
            await expect(page.locator(DELIVERED)).to_have_count(0)
        # A stroke after the clear shows again.
        await draw(grace, (0.2, 0.2), (0.3, 0.3))
        await same_strokes([ada, grace], 1)
    history, _ = await board_server.hub.history("board:main")
    assert json.loads(history[2].data) == {"type": "clear"}


async def test_board_ten_times_the_history_loads_complete(
    browser: Any, page_errors: Errors
) -> None:
    """A board of 10x the history size of operations, snapshots posted by the pages' rule
    (two of them racing once), loads in a new page with exactly the strokes of a full replay."""
    history_size = 100
    every = history_size // 4
    limits = HubLimits(publish_rate=None, command_rate=None)
    async with running_board(history_size, limits=limits) as server:
        channel = "board:long"
        rng = random.Random(10)
        tabs = [f"{i:02x}" * 8 for i in range(3)]
        clients = [
            HubClient(server.ws_url, meta={"name": f"Bot {i}", "tab": tab})
            for i, tab in enumerate(tabs)
        ]
        model = Board()
        raced = False
        try:
            for client in clients:
                await client.connect()
                await client.subscribe(channel)
            own: list[list[int]] = [[], [], []]

            async def publish(i: int, data: Any) -> int:
                offset = await clients[i].publish(channel, data)
                model.apply(offset, data, clients_info[i])
                return offset

            clients_info = [
                ClientInfo(str(c.client_id), "", {"name": f"Bot {i}", "tab": tabs[i]})
                for i, c in enumerate(clients)
            ]
            for n in range(10 * history_size):
                i = rng.randrange(3)
                roll = rng.random()
                if n == 6 * history_size + 7:
                    data: Any = {"type": "clear"}
                elif roll < 0.15 and own[i]:
                    data = {"type": "undo", "target": own[i].pop(rng.randrange(len(own[i])))}
                elif roll < 0.2 and own[(i + 1) % 3]:
                    # someone else's stroke: must be ignored
                    data = {"type": "undo", "target": own[(i + 1) % 3][-1]}
                else:
                    x, y = rng.randrange(1500), rng.randrange(900)
                    points = [x, y, x + rng.randrange(90), y + rng.randrange(90), x + 5, y + 7]
                    data = {
                        "type": "stroke",
                        "id": f"s{n}",
                        "color": "blue",
                        "width": 4,
                        "points": points,
                    }
                offset = await publish(i, data)
                if data["type"] == "stroke":
                    own[i].append(offset)
                if model.since_snapshot() >= every:
                    if not raced and n > 3 * history_size:
                        # Two writers race: both snapshot the same board; the later one wins.
                        raced = True
                        await publish((i + 1) % 3, model.snapshot_data())
                    await publish(i, model.snapshot_data())
        finally:
            for client in clients:
                await client.close()
        assert raced
        expected = sorted(model.strokes.values())
        old = [s for s in expected if s[0] <= model.last - history_size]
        assert old, "the board must hold strokes older than what the history keeps"
        history, position = await server.hub.history(channel, limit=1000)
        assert history[0].offset > 1 and position.offset == model.last

        async with opener(browser, server, page_errors)("Ada", query="?name=long") as page:
            await expect(page.get_by_test_id("board-name")).to_have_text("long")
            await expect(page.locator(DELIVERED)).to_have_count(len(expected), timeout=WAIT_MS)
            assert await strokes(page) == [(s[0], s[1]) for s in expected]
            await expect(page.get_by_test_id("connection-banner")).to_be_hidden()
    assert page_errors.seen == []


async def test_pages_post_snapshots_so_a_newcomer_sees_strokes_the_history_dropped(
    browser: Any, page_errors: Errors
) -> None:
    """With a history of 8, the drawing page posts snapshots (every 2 publications after the
    last snapshot's base); a page opened after 12 strokes still shows all 12."""
    async with running_board(8) as server:
        users = opener(browser, server, page_errors)
        async with users("Ada") as ada:
            for i in range(12):
                await draw(ada, (0.1 + 0.06 * i, 0.3), (0.12 + 0.06 * i, 0.6))
                await expect(ada.locator(DELIVERED)).to_have_count(i + 1)
            drawn = await strokes(ada)
            history, _ = await server.hub.history("board:main", limit=1000)
            kinds = [json.loads(p.data)["type"] for p in history]
            assert "snapshot" in kinds and history[0].offset > drawn[0][0]
            async with users("Grace") as grace:
                assert await same_strokes([grace, ada], 12) == drawn
    assert page_errors.seen == []


async def test_board_too_big_for_a_snapshot_refuses_new_strokes(
    browser: Any, page_errors: Errors
) -> None:
    """When a stroke would make the board's snapshot exceed the hub's publication limit, the
    page says the board is full and does not publish it; after a clear, drawing works again."""
    async with (
        running_board(limits=HubLimits(max_publication_size=4096)) as server,
        HubClient(server.ws_url, meta={"name": "Bot", "tab": "cd" * 8}) as bot,
    ):
        await bot.subscribe("board:main")
        points = [v for i in range(300) for v in (100 + i, 100 + i % 50)]
        for _ in range(2):
            await bot.publish(
                "board:main", {"type": "stroke", "color": "red", "width": 4, "points": points}
            )
        async with opener(browser, server, page_errors)("Ada") as ada:
            await expect(ada.locator(DELIVERED)).to_have_count(2)
            await draw(ada, (0.2, 0.7), (0.5, 0.8), (0.7, 0.7))
            await expect(ada.get_by_test_id("connection-banner")).to_contain_text("board is full")
            await expect(ada.get_by_test_id("board-stroke")).to_have_count(2)
            _, position = await server.hub.history("board:main")
            assert position.offset == 2
            await ada.get_by_test_id("board-clear").click()
            await ada.get_by_test_id("board-clear-confirm").click()
            await expect(ada.locator(DELIVERED)).to_have_count(0)
            await draw(ada, (0.2, 0.7), (0.5, 0.8))
            await expect(ada.locator(DELIVERED)).to_have_count(1)
    assert page_errors.seen == []


async def test_a_token_user_is_the_author_and_undoes_own_strokes(
    browser: Any, page_errors: Errors
) -> None:
    """With a token, strokes are the verified user's (u:<user>), whose undo works."""
    secret = "board-test-secret-" + "x" * 32
    async with running_board(secret=secret) as server:
        token = make_token(secret, "alice", channels=["board:*:spr"])
        async with opener(browser, server, page_errors)("Alice", query=f"?token={token}") as page:
            await expect(page.get_by_test_id("board-presence").locator("li")).to_have_attribute(
                "data-author", "u:alice"
            )
            await draw(page, (0.3, 0.3), (0.5, 0.4))
            await expect(page.locator(DELIVERED)).to_have_attribute("data-author", "u:alice")
            await page.keyboard.press("u")
            await expect(page.locator(DELIVERED)).to_have_count(0)
    assert page_errors.seen == []


async def test_cut_off_page_recovers_without_loss_or_duplicates(
    open_user: OpenUser, board_server: BoardServer, page_errors: Errors
) -> None:
    """Two pages draw while one is cut off; after it reconnects both show the same strokes,
    each once, in the same order."""
    async with open_user("Ada") as ada, open_user("Grace") as grace:
        await draw(ada, (0.2, 0.2), (0.3, 0.2))
        await draw(grace, (0.2, 0.4), (0.3, 0.4))
        await same_strokes([ada, grace], 2)
        status = ada.get_by_test_id("connection-status")

        board_server.refuse(True)
        assert board_server.drop("Ada") == 1
        await expect(status).to_contain_text("reconnecting")
        await draw(ada, (0.4, 0.2), (0.5, 0.2))
        await draw(grace, (0.4, 0.4), (0.5, 0.4))
        await draw(ada, (0.6, 0.2), (0.7, 0.2))
        await draw(grace, (0.6, 0.4), (0.7, 0.4))
        await expect(ada.locator("[data-testid=board-stroke][data-state=sending]")).to_have_count(2)
        await expect(grace.locator(DELIVERED)).to_have_count(4)

        board_server.refuse(False)
        await expect(status).to_have_text("connected", timeout=WAIT_MS)
        shown = await same_strokes([ada, grace], 6)
        history, _ = await board_server.hub.history("board:main")
        assert [p.offset for p in history] == [offset for offset, _ in shown]
        authors = [author for _, author in shown]
        assert authors.count(await me(ada)) == 3 and authors.count(await me(grace)) == 3
        await wait_until(lambda: len(board_server.sessions("Ada")) == 1)
    assert page_errors.seen == []


async def test_bad_board_name_is_refused_on_the_page(
    browser: Any, board_server: BoardServer
) -> None:
    """A name the hub would refuse is explained on the page; no connection is opened."""
    page = await browser.new_page()
    try:
        await page.goto(board_server.url("?name=no%20spaces"))
        await expect(page.get_by_test_id("connection-banner")).to_contain_text("cannot be used")
        await expect(page.get_by_test_id("connection-status")).to_have_text("offline")
        await expect(page.get_by_test_id("board-canvas")).to_have_attribute("aria-disabled", "true")
        assert board_server.upgrades == 0
    finally:
        await page.close()


async def test_phone_sized_board_draws_with_touch_rules(
    open_user: OpenUser, board_server: BoardServer
) -> None:
    """On a phone-sized screen in the dark theme the board, its tools and presence fit, and
    drawing works."""
    async with open_user("Ada", width=390, scheme="dark") as ada:
        canvas = ada.get_by_test_id("board-canvas")
        await expect(canvas).to_be_visible()
        assert await canvas.evaluate("n => getComputedStyle(n).touchAction") == "none"
        await expect(ada.get_by_test_id("board-undo")).to_be_visible()
        await expect(ada.get_by_test_id("board-presence")).to_be_visible()
        width = await ada.evaluate("document.documentElement.scrollWidth")
        assert width <= 390
        await draw(ada, (0.3, 0.5), (0.6, 0.5))
        await same_strokes([ada], 1)
        # Dark theme: dark paper, light ink.
        paper = await ada.locator(".paper").evaluate("n => getComputedStyle(n).fill")
        ink = await ada.locator(DELIVERED).evaluate("n => getComputedStyle(n).stroke")
        assert paper == "rgb(28, 29, 51)" and ink == "rgb(236, 238, 248)"


async def test_page_cut_off_longer_than_the_history_reloads_from_a_snapshot(
    browser: Any, page_errors: Errors
) -> None:
    """History 8: while Ada is cut off Grace draws 12 strokes, so Ada's position is trimmed
    (recovered: false); Ada rebuilds from the latest snapshot and ends with Grace's board,
    her own stroke drawn while cut off included, each once."""
    async with running_board(8) as server:
        users = opener(browser, server, page_errors)
        async with users("Ada") as ada, users("Grace") as grace:
            await draw(ada, (0.1, 0.1), (0.2, 0.1))
            await same_strokes([ada, grace], 1)
            server.refuse(True)
            assert server.drop("Ada") == 1
            await expect(ada.get_by_test_id("connection-status")).to_contain_text("reconnecting")
            await draw(ada, (0.1, 0.9), (0.2, 0.9))
            for i in range(12):
                await draw(grace, (0.1 + 0.06 * i, 0.4), (0.12 + 0.06 * i, 0.6))
                await expect(grace.locator(DELIVERED)).to_have_count(i + 2)
            history, _ = await server.hub.history("board:main", limit=1000)
            assert history[0].offset > 2  # Ada's position is gone from the history
            server.refuse(False)
            await expect(ada.get_by_test_id("connection-status")).to_have_text("connected")
            shown = await same_strokes([ada, grace], 14)
            authors = [author for _, author in shown]
            assert authors.count(await me(ada)) == 2
    assert page_errors.seen == []
