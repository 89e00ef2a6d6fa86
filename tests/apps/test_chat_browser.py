"""The chat page in a real browser against a real hub: chat, presence, recovery, history, typing."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
from playwright.async_api import expect

from .conftest import WAIT_MS, ChatServer, Errors, wait_until

# One event loop is enough for browser tests (the hub's own tests cover both): the one
# production runs on.
_LOOP = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_factories=[_LOOP])]


async def send(page: Any, text: str) -> None:
    await page.get_by_test_id("message-input").fill(text)
    await page.get_by_test_id("send-button").click()


def messages(page: Any) -> Any:
    return page.get_by_test_id("message-list").locator(":scope > li")


def delivered(page: Any) -> Any:
    return page.locator("[data-testid=message-list] > li[data-state=delivered]")


async def expect_online(page: Any, *names: str) -> None:
    """The presence list shows exactly these people, once each."""
    people = page.get_by_test_id("presence-list").locator("li")
    await expect(people).to_have_count(len(names), timeout=WAIT_MS)
    for name in names:
        await expect(people.filter(has_text=name)).to_have_count(1)


async def texts(page: Any) -> list[str]:
    return await messages(page).locator(".text").all_inner_texts()


async def offsets(page: Any) -> list[str]:
    return [await li.get_attribute("data-offset") for li in await messages(page).all()]


async def test_two_users_chat_and_see_each_other(
    open_user: Any, chat_server: ChatServer, page_errors: Errors
) -> None:
    """Two pages in one room: both are listed online, and each message shows once on both."""
    async with open_user("Ada") as ada, open_user("Grace") as grace:
        for page in (ada, grace):
            await expect_online(page, "Ada", "Grace")
        await send(ada, "Hello Grace")
        await send(grace, "Hi Ada")
        for page in (ada, grace):
            await expect(messages(page)).to_have_count(2, timeout=WAIT_MS)
            await expect(messages(page).locator(".text")).to_have_text(["Hello Grace", "Hi Ada"])
            await expect(delivered(page)).to_have_count(2)
            assert await offsets(page) == ["1", "2"]
        await expect(grace.get_by_test_id("message-list")).to_contain_text("Ada")
        await expect(ada.get_by_test_id("room-list")).to_contain_text("lobby")
    assert page_errors.seen == []


async def test_message_goes_from_sending_to_delivered(
    open_user: Any, chat_server: ChatServer
) -> None:
    """A message sent while the hub is unreachable shows "sending", then "delivered" once back."""
    async with open_user("Ada") as ada, open_user("Grace") as grace:
        chat_server.refuse(True)
        assert chat_server.drop("Ada") == 1
        await expect(ada.get_by_test_id("connection-status")).to_contain_text("reconnecting")
        await send(ada, "sent while offline")
        pending = messages(ada).last
        await expect(pending).to_have_attribute("data-state", "sending")
        assert await pending.get_attribute("data-offset") == ""
        chat_server.refuse(False)
        await expect(pending).to_have_attribute("data-state", "delivered", timeout=WAIT_MS)
        await expect(pending).to_have_attribute("data-offset", "1")
        await expect(messages(grace).locator(".text")).to_have_text(["sent while offline"])
    history, _ = await chat_server.hub.history("chat:lobby")
    assert [p.offset for p in history] == [1]


async def test_reconnect_recovers_missed_messages_exactly_once(
    open_user: Any, chat_server: ChatServer, page_errors: Errors
) -> None:
    """A page whose connection the server drops shows reconnecting, then every message once."""
    async with open_user("Ada") as ada, open_user("Grace") as grace:
        await send(grace, "before")
        await expect(messages(ada)).to_have_count(1, timeout=WAIT_MS)
        status = ada.get_by_test_id("connection-status")

        chat_server.refuse(True)
        assert chat_server.drop("Ada") == 1
        await expect(status).to_contain_text("reconnecting")
        for text in ("missed 1", "missed 2", "missed 3"):
            await send(grace, text)
        await expect(delivered(grace)).to_have_count(4)
        assert await texts(ada) == ["before"]

        chat_server.refuse(False)
        await expect(status).to_have_text("connected", timeout=WAIT_MS)
        await expect(ada.get_by_test_id("connection-banner")).to_contain_text("Recovered")
        await expect(ada.get_by_test_id("connection-banner")).to_contain_text("3 missed")
        await expect(messages(ada)).to_have_count(4)
        assert await texts(ada) == ["before", "missed 1", "missed 2", "missed 3"]
        assert await offsets(ada) == ["1", "2", "3", "4"]

        # Live again: the next message arrives once too.
        await send(grace, "after")
        await expect(messages(ada)).to_have_count(5, timeout=WAIT_MS)
        assert await offsets(ada) == ["1", "2", "3", "4", "5"]
        # Presence settles back to the two people (the old connection's leave included).
        await expect_online(grace, "Ada", "Grace")
        await wait_until(lambda: len(chat_server.sessions("Ada")) == 1)
    assert page_errors.seen == []


async def test_history_shows_after_reload(open_user: Any, chat_server: ChatServer) -> None:
    """Reloading the page keeps the nickname and shows the room's stored messages."""
    async with open_user("Ada") as ada:
        await send(ada, "first")
        await send(ada, "second")
        await expect(delivered(ada)).to_have_count(2)
        await ada.reload()
        await expect(ada.get_by_test_id("connection-status")).to_have_text("connected")
        await expect(messages(ada).locator(".text")).to_have_text(["first", "second"])
        assert await offsets(ada) == ["1", "2"]
        await expect_online(ada, "Ada")
        async with open_user("Grace") as grace:
            await expect(messages(grace).locator(".text")).to_have_text(["first", "second"])


async def test_typing_indicator_is_shown_and_never_stored(
    open_user: Any, chat_server: ChatServer
) -> None:
    """Typing shows on the other page only, goes away on send, and is not in the history."""
    async with open_user("Ada") as ada, open_user("Grace") as grace:
        await expect_online(grace, "Ada", "Grace")
        await ada.get_by_test_id("message-input").press_sequentially("hel")
        await expect(grace.get_by_test_id("typing-indicator")).to_have_text("Ada is typing…")
        await expect(ada.get_by_test_id("typing-indicator")).to_have_text("")
        await ada.get_by_test_id("message-input").press("Enter")
        await expect(messages(grace).locator(".text")).to_have_text(["hel"])
        await expect(grace.get_by_test_id("typing-indicator")).to_have_text("")
    history, position = await chat_server.hub.history("chat:lobby")
    assert [p.offset for p in history] == [1]
    assert position.offset == 1


async def test_rooms_are_separate_channels(open_user: Any, chat_server: ChatServer) -> None:
    """A room created from the room input is its own channel, with its own history."""
    async with open_user("Ada") as ada, open_user("Grace") as grace:
        await ada.get_by_test_id("room-input").fill("Design Team")
        await ada.get_by_test_id("room-input").press("Enter")
        await expect(ada.get_by_test_id("room-list")).to_contain_text("design-team")
        await expect(ada).to_have_url(chat_server.url + "#design-team")
        await send(ada, "in design")
        await expect(delivered(ada)).to_have_count(1)
        # Grace, in the lobby, sees nothing; she joins the room and gets its history.
        await send(grace, "in lobby")
        await expect(messages(grace).locator(".text")).to_have_text(["in lobby"])
        await expect(ada.get_by_test_id("room-list").locator(".badge")).to_have_text("1")
        await grace.get_by_test_id("room-input").fill("design-team")
        await grace.get_by_test_id("room-input").press("Enter")
        await expect(messages(grace).locator(".text")).to_have_text(["in design"])
        await expect_online(grace, "Ada", "Grace")
    history, _ = await chat_server.hub.history("chat:design-team")
    assert [p.offset for p in history] == [1]


async def test_narrow_screen_keeps_the_chat_usable(open_user: Any, chat_server: ChatServer) -> None:
    """On a phone-sized screen the rooms open as a drawer and messages still send."""
    async with open_user("Ada", width=390) as ada:
        await expect(ada.get_by_test_id("room-list")).not_to_be_visible()
        await ada.get_by_role("button", name="Show rooms").click()
        await expect(ada.get_by_test_id("room-list")).to_be_visible()
        await ada.keyboard.press("Escape")
        await expect(ada.get_by_test_id("room-list")).not_to_be_visible()
        await send(ada, "from a phone")
        await expect(delivered(ada)).to_have_count(1)
