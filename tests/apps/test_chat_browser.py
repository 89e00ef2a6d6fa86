"""The chat page in a real browser against a real hub: chat, presence, recovery, history, typing."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
from typing import Any

import pytest
from playwright.async_api import expect

from wshub.hub import HubLimits
from wshub.hub.auth import make_token
from wshub.hub.client import HubClient

from .conftest import WAIT_MS, ChatServer, Errors, running_chat, wait_until

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


# -- identity: the hub's ids, never the display name ----------------------------------------

SECRET = "chat-browser-tests-secret-0123456789abcdef"


async def names_online(page: Any) -> list[str]:
    return await page.get_by_test_id("presence-list").locator(".name").all_inner_texts()


async def test_two_people_with_one_nickname_stay_two_people(
    open_user: Any, chat_server: ChatServer, page_errors: Errors
) -> None:
    """Two "Sam"s: two presence entries, each other's messages not their own, a leave notice."""
    async with open_user("Sam") as first:
        async with open_user("Sam") as second:
            for page in (first, second):
                await expect(page.get_by_test_id("presence-list").locator("li")).to_have_count(2)
                assert await names_online(page) == ["Sam", "Sam (2)"]
                you = page.get_by_test_id("presence-list").locator("li").first
                await expect(you.locator(".you")).to_have_text("you")
            await send(first, "from the first Sam")
            await expect(delivered(first)).to_have_count(1)
            await send(second, "from the second Sam")
            for page, own_text, other_text in (
                (first, "from the first Sam", "from the second Sam"),
                (second, "from the second Sam", "from the first Sam"),
            ):
                await expect(delivered(page)).to_have_count(2)
                own = messages(page).filter(has_text=own_text)
                other = messages(page).filter(has_text=other_text)
                await expect(own).to_have_class("msg own")
                await expect(own.locator(".author")).to_have_text("Sam")
                await expect(own.locator(".tick svg")).to_have_count(1)
                await expect(other).not_to_have_class("msg own")
                await expect(other.locator(".author")).to_have_text("Sam (2)")
                await expect(other.locator(".tick svg")).to_have_count(0)
        # The second Sam closed the page: the first sees them leave, and is alone.
        await expect(first.get_by_test_id("activity-list")).to_contain_text("Sam (2) left #lobby")
        await expect(first.get_by_test_id("presence-list").locator("li")).to_have_count(1)
        assert await names_online(first) == ["Sam"]
    assert page_errors.seen == []


async def test_own_messages_are_recognised_after_a_reload_by_client_id(
    open_user: Any, chat_server: ChatServer
) -> None:
    """After a reload the page still knows its earlier messages: by its past client ids."""
    async with open_user("Sam") as sam, open_user("Sam") as other:
        await send(sam, "mine")
        await expect(delivered(sam)).to_have_count(1)
        await send(other, "theirs")
        await expect(delivered(sam)).to_have_count(2)
        await sam.reload()
        await expect(sam.get_by_test_id("connection-status")).to_have_text("connected")
        await expect(messages(sam)).to_have_count(2)
        await expect(messages(sam).filter(has_text="mine")).to_have_class("msg own")
        await expect(messages(sam).filter(has_text="theirs")).not_to_have_class("msg own")
        await expect(messages(sam).filter(has_text="theirs").locator(".author")).to_have_text(
            "Sam (2)"
        )


async def test_one_user_on_two_connections_is_one_person(
    open_user: Any, page_errors: Errors
) -> None:
    """With tokens, a user id is a person: Alice's two tabs are one "Sam", Bob is "Sam (2)"."""
    channels = ["chat:*:spr"]
    alice = "?token=" + make_token(SECRET, "alice", channels=channels, meta={"nick": "Sam"})
    bob = "?token=" + make_token(SECRET, "bob", channels=channels, meta={"nick": "Sam"})
    async with (
        running_chat(allow_anonymous=False, secret=SECRET) as hub,
        open_user("Sam", server=hub, query=alice) as tab1,
        open_user("Sam", server=hub, query=alice) as tab2,
        open_user("Sam", server=hub, query=bob) as other,
    ):
        for page in (tab1, tab2, other):
            await expect(page.get_by_test_id("presence-list").locator("li")).to_have_count(2)
            assert await names_online(page) == ["Sam", "Sam (2)"]
        await send(tab2, "from the other tab")
        await expect(delivered(tab1)).to_have_count(1)
        await expect(messages(tab1)).to_have_class("msg own")
        await expect(messages(tab1).locator(".author")).to_have_text("Sam")
        await expect(delivered(other)).to_have_count(1)
        await expect(messages(other)).not_to_have_class("msg own")
        await expect(messages(other).locator(".author")).to_have_text("Sam (2)")
    assert page_errors.seen == []


# -- a refused connection is not a network problem ------------------------------------------


async def test_hub_that_needs_a_token_says_so_and_stops_retrying(
    open_user: Any, page_errors: Errors
) -> None:
    """Without a token a hub with a secret refuses (4001): the page says why, once, for good."""
    async with running_chat(allow_anonymous=False, secret=SECRET) as hub:
        async with open_user("Ada", server=hub, connected=False) as ada:
            status = ada.get_by_test_id("connection-status")
            await expect(status).to_have_text("not signed in")
            await expect(status).to_have_attribute("data-state", "refused")
            banner = ada.get_by_test_id("connection-banner")
            await expect(banner).to_contain_text("This hub needs a sign-in token.")
            await expect(banner).not_to_contain_text("network")
            # Longer than HubClient's first reconnect delays (500 ms, 1 s): no new attempt.
            await ada.wait_for_timeout(2500)
            assert hub.upgrades == 1
            await expect(status).to_have_text("not signed in")
        async with open_user("Ada", server=hub, query="?token=not-a-token", connected=False) as ada:
            banner = ada.get_by_test_id("connection-banner")
            await expect(banner).to_contain_text("This hub needs a sign-in token.")
            await expect(banner).to_contain_text("was refused")
    assert page_errors.seen == []


async def test_expired_token_is_said_so_not_shown_as_offline(
    open_user: Any, page_errors: Errors
) -> None:
    """A token that expires while connected (close 4003, no getToken): "expired", no retrying."""
    token = make_token(SECRET, "ada", ttl=3.0, channels=["chat:*:spr"])
    async with (
        running_chat(allow_anonymous=False, secret=SECRET) as hub,
        open_user("Ada", server=hub, query=f"?token={token}") as ada,
    ):
        banner = ada.get_by_test_id("connection-banner")
        await expect(banner).to_contain_text("Your sign-in token expired.", timeout=WAIT_MS)
        status = ada.get_by_test_id("connection-status")
        await expect(status).to_have_text("not signed in")
        await expect(status).to_have_attribute("data-state", "refused")
        await ada.wait_for_timeout(2500)  # past HubClient's first reconnect delays
        assert hub.upgrades == 1
    assert page_errors.seen == []


# -- typing never costs a message its place -------------------------------------------------

# Types each message key by key (an `input` event per character, which drives the typing
# indicator) and sends it with Enter, all in one task of the page: as fast as a script can,
# far over the hub's publish rate.
TYPE_AND_SEND = """(texts) => {
  const input = document.querySelector("[data-testid=message-input]");
  for (const text of texts) {
    for (const ch of text) {
      input.value += ch;
      input.dispatchEvent(new Event("input", { bubbles: true }));
    }
    input.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
  }
}"""


async def assert_all_delivered_in_order(
    chat: ChatServer, pages: tuple[Any, ...], sent: list[str]
) -> None:
    """Every page and the hub's history hold ``sent`` once each, in order, at offsets 1..n."""
    for page in pages:
        await expect(delivered(page)).to_have_count(len(sent), timeout=60_000)
        assert await texts(page) == sent
        assert await offsets(page) == [str(n) for n in range(1, len(sent) + 1)]
    history, _ = await chat.hub.history("chat:lobby", limit=len(sent) + 10)
    assert [json.loads(p.data)["text"] for p in history] == sent
    assert [p.offset for p in history] == list(range(1, len(sent) + 1))


async def test_sixty_quick_messages_with_typing_all_arrive_in_order(
    open_user: Any, chat_server: ChatServer, page_errors: Errors
) -> None:
    """60 messages typed and sent at script speed, default limits: none lost, doubled or moved."""
    sent = [f"quick {n}" for n in range(60)]
    async with open_user("Ada") as ada, open_user("Grace") as grace:
        await expect_online(ada, "Ada", "Grace")
        stats = chat_server.hub.stats
        ephemeral_before = stats.ephemeral
        await ada.evaluate(TYPE_AND_SEND, sent)
        await assert_all_delivered_in_order(chat_server, (ada, grace), sent)
        await expect(messages(ada).locator(".failed-note")).to_have_count(0)
        # One typing signal for the whole burst (its first key): none after a send, none
        # while messages wait, no "typing: false" per message.
        assert stats.ephemeral - ephemeral_before == 1
    assert page_errors.seen == []


async def test_rate_limited_messages_are_retried_by_themselves_in_order(
    open_user: Any, browser: Any, page_errors: Errors
) -> None:
    """Over a tight publish limit the hub refuses (111); the page retries, keeping the order."""
    limits = HubLimits(publish_rate=2.0, publish_burst=3)
    sent = [f"limited {n}" for n in range(8)]
    async with running_chat(limits=limits) as hub, open_user("Ada", server=hub) as ada:
        await ada.evaluate(TYPE_AND_SEND, sent)
        await assert_all_delivered_in_order(hub, (ada,), sent)
        assert hub.hub.stats.rate_limited >= 1  # the limit was hit: the retry path ran
        await expect(messages(ada).locator(".failed-note")).to_have_count(0)
    assert page_errors.seen == []


# -- text direction and room names ------------------------------------------------------------

# Whether the characters of `part` (in the first text node under `root` holding it) are laid
# out left to right: the first character's box starts left of the last one's.
LEFT_TO_RIGHT = """([root, part]) => {
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const at = node.data.indexOf(part);
    if (at < 0) continue;
    const box = (i) => {
      const range = document.createRange();
      range.setStart(node, i);
      range.setEnd(node, i + 1);
      return range.getBoundingClientRect();
    };
    return box(at).left < box(at + part.length - 1).left;
  }
  throw new Error(`no text ${part}`);
}"""

RLO = "\u202e"  # RIGHT-TO-LEFT OVERRIDE


async def laid_out_left_to_right(page: Any, selector: str, part: str) -> bool:
    root = await page.query_selector(selector)
    assert root is not None, selector
    return bool(await page.evaluate(LEFT_TO_RIGHT, [root, part]))


async def test_right_to_left_override_in_user_text_stays_inside_it(
    open_user: Any, chat_server: ChatServer, page_errors: Errors
) -> None:
    """A U+202E in a name or a message does not reverse the page's text that follows it."""
    async with open_user("Ada") as ada, open_user(f"Mallory{RLO}") as mallory:
        await expect(ada.get_by_test_id("activity-list")).to_contain_text("joined #lobby")
        assert await laid_out_left_to_right(ada, "[data-testid=activity-list]", "joined")
        await mallory.get_by_test_id("message-input").press_sequentially("hi")
        typing = ada.get_by_test_id("typing-indicator")
        await expect(typing).to_contain_text("is typing")
        assert await laid_out_left_to_right(ada, "[data-testid=typing-indicator]", "is typing")
        await mallory.get_by_test_id("message-input").fill(f"abc{RLO}def")
        await mallory.get_by_test_id("send-button").click()
        await send(mallory, "after")
        await expect(messages(ada)).to_have_count(2)
        first = messages(ada).first
        assert await first.locator(".author").evaluate("e => e.tagName") == "BDI"
        style = "e => getComputedStyle(e).unicodeBidi"
        assert await first.locator(".text").evaluate(style) == "isolate"
        # The time after the name, and the next message, read left to right.
        time_text = await first.locator("time").inner_text()
        assert await laid_out_left_to_right(ada, "[data-testid=message-list] > li time", time_text)
        assert await laid_out_left_to_right(
            ada, "[data-testid=message-list] > li:last-child .text", "after"
        )
        assert await laid_out_left_to_right(ada, "[data-testid=presence-list]", "Ada")
    assert page_errors.seen == []


async def test_room_names_keep_their_letters(open_user: Any, chat_server: ChatServer) -> None:
    """ "ÜNÏCØDE" is the room "ünïcøde" (not "ncde"), on an ASCII channel it maps to reversibly."""
    async with open_user("Ada") as ada:
        await ada.get_by_test_id("room-input").fill("ÜNÏCØDE Café")
        await ada.get_by_test_id("room-input").press("Enter")
        room = ada.get_by_test_id("room-list").locator("[aria-current=page] .name")
        await expect(room).to_have_text("ünïcøde-café")
        await expect(ada.locator("#room-name")).to_have_text("ünïcøde-café")
        await send(ada, "grüße")
        await expect(delivered(ada)).to_have_count(1)
        assert ada.url.endswith("#%C3%BCn%C3%AFc%C3%B8de-caf%C3%A9")
        async with open_user("Grace", room="ünïcøde-café") as grace:
            await expect(grace.locator("#room-name")).to_have_text("ünïcøde-café")
            await expect(messages(grace).locator(".text")).to_have_text(["grüße"])
    history, _ = await chat_server.hub.history("chat:~fc,n~ef,c~f8,de-caf~e9,")
    assert [json.loads(p.data)["text"] for p in history] == ["grüße"]


# -- compression shared by the fan-out ------------------------------------------------------


async def test_chromium_reads_a_shared_compression_fan_out(
    open_user: Any, page_errors: Errors
) -> None:
    """compression="deflate-shared": chromium's own offer is answered with
    server_no_context_takeover, and three pages read every message of the room, which the
    hub compressed once for all of them."""
    async with (
        running_chat(compression="deflate-shared") as hub,
        open_user("Ada", server=hub) as ada,
        open_user("Grace", server=hub) as grace,
        open_user("Linus", server=hub) as linus,
    ):
        for nick in ("Ada", "Grace", "Linus"):
            (session,) = hub.sessions(nick)
            response = session.peer.response  # type: ignore[attr-defined]
            extensions = response.headers.get("Sec-WebSocket-Extensions")
            assert extensions is not None and "permessage-deflate" in extensions
            assert "server_no_context_takeover" in extensions
        sent = ["Hello, everyone " * 8, "Hi Ada", "the same words " * 20]
        for page, text in zip((ada, grace, linus), sent, strict=True):
            await send(page, text)
            await expect(delivered(page)).to_have_count(sent.index(text) + 1)
        for page in (ada, grace, linus):
            await expect(messages(page)).to_have_count(3, timeout=WAIT_MS)
            assert await texts(page) == [text.strip() for text in sent]
    assert page_errors.seen == []


# -- presence diffs -------------------------------------------------------------------------


async def test_member_list_follows_presence_diffs(open_user: Any, chat_server: ChatServer) -> None:
    """Bots joining and leaving together arrive in presence diffs; the list follows them."""
    async with open_user("Ada") as ada, contextlib.AsyncExitStack() as stack:
        await expect_online(ada, "Ada")
        bots = [
            await stack.enter_async_context(HubClient(chat_server.ws_url, meta={"nick": f"Bot{i}"}))
            for i in range(6)
        ]
        await asyncio.gather(*(bot.subscribe("chat:lobby") for bot in bots))
        await expect_online(ada, "Ada", *(f"Bot{i}" for i in range(6)))
        await asyncio.gather(*(bot.close() for bot in bots[:3]))
        await expect_online(ada, "Ada", "Bot3", "Bot4", "Bot5")
        hub = chat_server.hub_server
        assert hub is not None
        assert hub.hub.stats.presence_diffs >= 2 and hub.hub.stats.join_leave_pushes == 0
