"""Tests for wshub.hub.session: every command, error code and close code of docs/protocol.md."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
from collections.abc import Coroutine, Sequence
from typing import Any

import orjson
import pytest

from wshub.aio import ServerConnection
from wshub.aio.connection import CORK_MAX_FRAMES
from wshub.hub import (
    Authenticator,
    ChannelRegistry,
    Hub,
    HubLimits,
    MemoryHistory,
    NamespaceOptions,
    make_token,
)
from wshub.hub._outbox import POS
from wshub.hub.backends import AppendResult
from wshub.hub.host import SessionHost
from wshub.hub.server import HubServer
from wshub.hub.session import MAX_CORKED_REPLY, Session, SessionState
from wshub.hub.stats import HubStats
from wshub.hub.subscription import SessionSubscription
from wshub.hub.wire import (
    SUBPROTOCOL,
    ClientInfo,
    ConnectResult,
    HistoryResult,
    Position,
    PublishResult,
    Reply,
    StoredPublication,
    SubscribeResult,
    parse_message,
)
from wshub.protocol.frames import Opcode
from wshub.testing import RawClient

from .conftest import FakePeer, MakeClient, demo_auth, demo_hub, demo_registry, start_demo_hub

SECRET = "session-tests-secret-0123456789abcdef"
NOW = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def token(
    user: str = "alice", ttl: float = 60, channels: Sequence[str] = ("chat:*:spr",), **kw: Any
) -> str:
    return make_token(SECRET, user, ttl, channels, now=NOW, **kw)


def make_hub(clock: Clock | None = None, *, limits: HubLimits | None = None, **kw: Any) -> Hub:
    clock = clock or Clock()
    auth = demo_auth(secret=SECRET, clock=clock)
    return demo_hub(auth=auth, clock=clock, limits=limits, expire_interval=None, **kw)


# --- connect ---------------------------------------------------------------------------


async def test_connect_anonymous(make_client: MakeClient) -> None:
    """Anonymous connect: a 32-hex client id, user "", no expiry, self-declared meta."""
    async with make_hub() as hub:
        client = await make_client(hub, connect=False)
        result = await client.ok("connect", meta={"nick": "Ann"})
        assert re.fullmatch(r"[0-9a-f]{32}", result["client"])
        assert result == {
            "client": client.session.client_id,
            "user": "",
            "expires": None,
            "meta": {"nick": "Ann"},
        }
        assert client.session.state == SessionState.CONNECTED


async def test_connect_with_token_meta_overrides_client_meta(make_client: MakeClient) -> None:
    """With a token: its sub and exp; its meta claim wins over the client's."""
    async with make_hub() as hub:
        client = await make_client(hub, connect=False)
        result = await client.ok(
            "connect", token=token(meta={"nick": "Real"}), meta={"nick": "Fake"}
        )
        assert (result["user"], result["expires"], result["meta"]) == (
            "alice",
            NOW + 60,
            {"nick": "Real"},
        )


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"token": "garbage"}, 103),
        ({"token": make_token("another-secret-0123456789abcdef!!", "x", now=NOW)}, 103),
        ({"token": make_token(SECRET, "x", 10, now=NOW - 20)}, 113),
    ],
)
async def test_connect_refused_then_closed_4001(
    make_client: MakeClient, fields: dict[str, Any], code: int
) -> None:
    """A refused token gets its error reply, then close 4001."""
    async with make_hub() as hub:
        client = await make_client(hub, connect=False)
        assert await client.error("connect", **fields) == code
        await client.peer.closed.wait()
        assert (client.peer.close_code, client.peer.close_reason) == (4001, "unauthorized")
        assert hub.stats.auth_failures == 1
        # The reply was written before the close.
        assert client.peer.messages()[-1]["error"]["code"] == code


async def test_connect_without_token_when_anonymous_is_off(make_client: MakeClient) -> None:
    """No token and no anonymous mode: 103 and 4001."""
    async with demo_hub(auth=Authenticator(secret=SECRET), expire_interval=None) as hub:
        client = await make_client(hub, connect=False)
        assert await client.error("connect") == 103
        await client.peer.closed.wait()
        assert client.peer.close_code == 4001


async def test_connect_meta_too_large(make_client: MakeClient) -> None:
    """Self-declared meta over max_meta_size is a bad request (the connection stays)."""
    async with make_hub(limits=HubLimits(max_meta_size=10)) as hub:
        client = await make_client(hub, connect=False)
        assert await client.error("connect", meta={"nick": "x" * 20}) == 101
        assert await client.ok("connect", meta="short") is not None


async def test_second_connect_is_106(make_client: MakeClient) -> None:
    """connect twice → 106."""
    async with make_hub() as hub:
        client = await make_client(hub)
        assert await client.error("connect") == 106


@pytest.mark.parametrize(
    ("cmd", "fields"),
    [
        ("subscribe", {"channel": "chat:a"}),
        ("unsubscribe", {"channel": "chat:a"}),
        ("publish", {"channel": "chat:a", "data": 1}),
        ("presence", {"channel": "chat:a"}),
        ("history", {"channel": "chat:a"}),
        ("refresh", {"token": "x"}),
    ],
)
async def test_commands_before_connect_are_105(
    make_client: MakeClient, cmd: str, fields: dict[str, Any]
) -> None:
    """Only connect and ping are allowed before connect."""
    async with make_hub() as hub:
        client = await make_client(hub, connect=False)
        assert await client.error(cmd, **fields) == 105
        assert await client.ok("ping") == {}


async def test_connect_timeout_closes_4002(make_client: MakeClient) -> None:
    """No connect within connect_timeout → close 4002."""
    async with make_hub(limits=HubLimits(connect_timeout=0.0)) as hub:
        client = await make_client(hub, connect=False)
        await client.peer.closed.wait()
        assert (client.peer.close_code, client.peer.close_reason) == (4002, "connect timeout")


async def test_connections_per_user(make_client: MakeClient) -> None:
    """Over max_connections_per_user: 112 then 4006; a closed connection frees a place."""
    async with make_hub(limits=HubLimits(max_connections_per_user=2)) as hub:
        first = await make_client(hub, token=token())
        await make_client(hub, token=token())
        third = await make_client(hub, connect=False)
        assert await third.error("connect", token=token()) == 112
        await third.peer.closed.wait()
        assert third.peer.close_code == 4006
        await make_client(hub, token=token("bob"))  # other users are not affected
        await make_client(hub)  # nor anonymous ones
        await first.lost()
        await make_client(hub, token=token())


# --- token expiry and refresh ------------------------------------------------------------


async def test_token_expiry_closes_4003(make_client: MakeClient) -> None:
    """When the token expires without refresh the hub closes with 4003."""
    clock = Clock()
    async with make_hub(clock) as hub:
        client = await make_client(hub, token=token(ttl=60))
        assert client.session.check_expiry() is False
        clock.now += 61
        assert client.session.check_expiry() is True
        await client.peer.closed.wait()
        assert (client.peer.close_code, client.peer.close_reason) == (4003, "token expired")


async def test_token_expiry_allows_the_leeway(make_client: MakeClient) -> None:
    """A token let in by the leeway is closed when exp + leeway passes, not at once."""
    clock = Clock()
    auth = Authenticator(secret=SECRET, clock=clock, leeway=30)
    async with demo_hub(auth=auth, clock=clock, expire_interval=None) as hub:
        clock.now += 70  # 10 s past exp: refused without leeway, admitted with 30 s
        client = await make_client(hub, token=token(ttl=60))
        assert client.session.check_expiry() is False
        assert client.peer.close_code is None
        clock.now += 19  # exp + 29
        assert client.session.check_expiry() is False
        clock.now += 2  # exp + 31
        assert client.session.check_expiry() is True
        await client.peer.closed.wait()
        assert client.peer.close_code == 4003


async def test_refresh_extends_expiry(make_client: MakeClient) -> None:
    """refresh with a new token of the same user replaces the expiry."""
    clock = Clock()
    async with make_hub(clock) as hub:
        client = await make_client(hub, token=token(ttl=60))
        result = await client.ok("refresh", token=token(ttl=600))
        assert result == {"expires": NOW + 600}
        clock.now += 61
        assert client.session.check_expiry() is False
        assert client.peer.close_code is None


async def test_refresh_errors_keep_the_connection(make_client: MakeClient) -> None:
    """Another user, a forged or expired token, or anonymous: 103/113, still connected."""
    async with make_hub() as hub:
        client = await make_client(hub, token=token())
        assert await client.error("refresh", token=token("mallory")) == 103
        assert await client.error("refresh", token="forged") == 103
        assert (
            await client.error("refresh", token=make_token(SECRET, "alice", 1, now=NOW - 5)) == 113
        )
        assert client.peer.close_code is None
        assert await client.ok("ping") == {}
        anonymous = await make_client(hub)
        assert await anonymous.error("refresh", token=token()) == 103


async def test_refresh_revokes_channels(make_client: MakeClient) -> None:
    """A refresh that removes a permission ends that subscription with an unsubscribe push."""
    async with make_hub() as hub:
        client = await make_client(hub, token=token(channels=["chat:*:spr"]))
        await client.ok("subscribe", channel="chat:a")
        await client.ok("subscribe", channel="chat:vip")
        await client.ok("refresh", token=token(channels=["chat:a:spr"]))
        assert client.peer.pushes("unsubscribe") == [
            {
                "push": "unsubscribe",
                "channel": "chat:vip",
                "code": 104,
                "message": "permission denied",
            }
        ]
        assert set(client.session.subscriptions) == {"chat:a"}
        await hub.publish("chat:vip", "secret")
        assert client.pubs("chat:vip") == []


# --- subscribe / unsubscribe ---------------------------------------------------------------


def per_event_registry() -> ChannelRegistry:
    """``chat`` with one join or leave push per event (``join_leave_interval=None``)."""
    chat = NamespaceOptions(history_size=100, presence=True, join_leave=True)
    return ChannelRegistry({"chat": dataclasses.replace(chat, join_leave_interval=None)})


async def test_subscribe_reply_and_own_join(make_client: MakeClient) -> None:
    """The subscribe reply gives the position; the client's own join follows it (pushed
    per event with ``join_leave_interval=None``)."""
    async with make_hub(registry=per_event_registry()) as hub:
        client = await make_client(hub, meta={"nick": "A"})
        result = await client.ok("subscribe", channel="chat:a")
        assert result["channel"] == "chat:a"
        assert (result["offset"], result["recoverable"], result["publications"]) == (0, True, [])
        assert "recovered" not in result
        reply_index = next(i for i, m in enumerate(client.peer.messages()) if m.get("id") == 2)
        join = client.peer.messages()[reply_index + 1]
        assert join == {
            "push": "join",
            "channel": "chat:a",
            "info": {"client": client.session.client_id, "user": "", "meta": {"nick": "A"}},
        }


async def test_subscribe_recent(make_client: MakeClient) -> None:
    """recent delivers the last publications in the reply, oldest first."""
    async with make_hub() as hub:
        for i in range(5):
            await hub.publish("chat:a", i)
        client = await make_client(hub)
        result = await client.ok("subscribe", channel="chat:a", recent=2)
        assert [(p["offset"], p["data"]) for p in result["publications"]] == [(4, 3), (5, 4)]
        assert result["offset"] == 5


@pytest.mark.parametrize(
    ("channel", "code"),
    [("nonamespace", 107), ("chat:bad name", 107), ("nope:x", 108), ("ticker:AAPL", 104)],
)
async def test_subscribe_errors(make_client: MakeClient, channel: str, code: int) -> None:
    """Invalid name 107, unknown namespace 108, missing permission 104."""
    async with make_hub() as hub:
        client = await make_client(hub, token=token(channels=["chat:*:s"]))
        assert await client.error("subscribe", channel=channel) == code


async def test_subscribe_twice_and_channel_limit(make_client: MakeClient) -> None:
    """Subscribing twice is 109; over max_channels is 112."""
    async with make_hub(limits=HubLimits(max_channels=2)) as hub:
        client = await make_client(hub)
        await client.ok("subscribe", channel="chat:a")
        assert await client.error("subscribe", channel="chat:a") == 109
        await client.ok("subscribe", channel="chat:b")
        assert await client.error("subscribe", channel="chat:c") == 112
        await client.ok("unsubscribe", channel="chat:b")
        await client.ok("subscribe", channel="chat:c")


async def test_unsubscribe(make_client: MakeClient) -> None:
    """unsubscribe: 110 when not subscribed; nothing of the channel after the reply."""
    async with make_hub() as hub:
        client = await make_client(hub)
        other = await make_client(hub)
        assert await client.error("unsubscribe", channel="chat:a") == 110
        assert await client.error("unsubscribe", channel="bad") == 107
        await client.ok("subscribe", channel="chat:a")
        await other.ok("subscribe", channel="chat:a")
        hub.flush_presence("chat:a")  # the joins
        await client.ok("unsubscribe", channel="chat:a")
        count = len(client.peer.sent)
        await hub.publish("chat:a", "after")
        assert len(client.peer.sent) == count
        hub.flush_presence("chat:a")
        await other.peer.wait_until(lambda: len(other.peer.pushes("presence_diff")) == 2)
        diff = other.peer.pushes("presence_diff", "chat:a")[-1]
        assert diff["leaves"] == [{"client": client.session.client_id, "user": ""}]
        assert diff["joins"] == []


# --- publish -------------------------------------------------------------------------------


async def test_publish_ack_and_echo(make_client: MakeClient) -> None:
    """publish returns epoch/offset; subscribers (the publisher too) get the pub push."""
    async with make_hub() as hub:
        alice = await make_client(hub, token=token(meta={"nick": "A"}))
        bob = await make_client(hub)
        sub = await alice.ok("subscribe", channel="chat:a")
        await bob.ok("subscribe", channel="chat:a")
        ack = await alice.ok("publish", channel="chat:a", data={"text": "hi"})
        assert ack == {"epoch": sub["epoch"], "offset": 1}
        for client in (alice, bob):
            [pub] = client.pubs("chat:a")
            assert pub["data"] == {"text": "hi"} and pub["offset"] == 1
            assert pub["info"]["user"] == "alice" and pub["info"]["meta"] == {"nick": "A"}
            assert pub["epoch"] == sub["epoch"]


async def test_publish_idempotent_by_message_id(make_client: MakeClient) -> None:
    """The same message_id is a no-op: same offset, duplicate flag, no second push."""
    async with make_hub() as hub:
        client = await make_client(hub)
        await client.ok("subscribe", channel="chat:a")
        first = await client.ok("publish", channel="chat:a", data=1, message_id="m-1")
        again = await client.ok("publish", channel="chat:a", data=1, message_id="m-1")
        assert again == {**first, "duplicate": True}
        assert [p["offset"] for p in client.pubs("chat:a")] == [1]
        assert (hub.stats.publications, hub.stats.duplicates) == (1, 1)


async def test_publish_errors(make_client: MakeClient) -> None:
    """104 without p or in a server-only namespace, 110 when not subscribed, 114 too large."""
    async with make_hub(limits=HubLimits(max_publication_size=10)) as hub:
        reader = await make_client(hub, token=token(channels=["chat:*:s", "ticker:*:sp"]))
        await reader.ok("subscribe", channel="chat:a")
        assert await reader.error("publish", channel="chat:a", data=1) == 104
        await reader.ok("subscribe", channel="ticker:X")
        assert await reader.error("publish", channel="ticker:X", data=1) == 104
        writer = await make_client(hub)
        assert await writer.error("publish", channel="chat:a", data=1) == 110
        await writer.ok("subscribe", channel="chat:a")
        assert await writer.error("publish", channel="chat:a", data="x" * 20) == 114
        assert await writer.error("publish", channel="nope:a", data=1) == 108
        assert hub.stats.publications == 0


async def test_publish_any_namespace_needs_no_subscription(make_client: MakeClient) -> None:
    """With publish="any", a client with p may publish without subscribing."""
    registry = ChannelRegistry({"notes": NamespaceOptions(history_size=5, publish="any")})
    async with make_hub(registry=registry) as hub:
        client = await make_client(hub, token=token(channels=["notes:*:p"]))
        assert (await client.ok("publish", channel="notes:x", data=1))["offset"] == 1


async def test_anonymous_cannot_publish_where_it_may_not(make_client: MakeClient) -> None:
    """Anonymous users publish in chat, never in ticker or unlisted namespaces."""
    registry = ChannelRegistry(
        {
            **{n: demo_registry()[n] for n in demo_registry()},
            "admin": NamespaceOptions(publish="any"),
        }
    )
    async with make_hub(registry=registry) as hub:
        anonymous = await make_client(hub)
        await anonymous.ok("subscribe", channel="ticker:AAPL")
        assert await anonymous.error("publish", channel="ticker:AAPL", data=1) == 104
        assert await anonymous.error("publish", channel="admin:x", data=1) == 104
        assert await anonymous.error("subscribe", channel="admin:x") == 104
        await anonymous.ok("subscribe", channel="chat:a")
        assert (await anonymous.ok("publish", channel="chat:a", data=1))["offset"] == 1


async def test_ephemeral_publish(make_client: MakeClient) -> None:
    """Ephemeral: pushed to subscribers, no offset, not stored, message_id ignored."""
    async with make_hub() as hub:
        alice = await make_client(hub)
        bob = await make_client(hub)
        await alice.ok("subscribe", channel="chat:a")
        await bob.ok("subscribe", channel="chat:a")
        ack = await alice.ok(
            "publish", channel="chat:a", data={"typing": True}, ephemeral=True, message_id="x"
        )
        assert ack == {}
        [push] = bob.peer.pushes("ephemeral")
        assert push["data"] == {"typing": True} and "offset" not in push
        assert push["info"]["client"] == alice.session.client_id
        history = await alice.ok("history", channel="chat:a")
        assert (history["offset"], history["publications"]) == (0, [])
        assert hub.stats.ephemeral == 1


# --- presence and history ------------------------------------------------------------------


async def test_presence(make_client: MakeClient) -> None:
    """presence lists subscribed clients; 104 without r; 115 where presence is off."""
    async with make_hub() as hub:
        alice = await make_client(hub, token=token(meta={"nick": "A"}))
        bob = await make_client(hub, token=token("bob", channels=["chat:*:s", "ticker:*:sr"]))
        await alice.ok("subscribe", channel="chat:a")
        await bob.ok("subscribe", channel="chat:a")
        result = await alice.ok("presence", channel="chat:a")
        assert result == {
            "channel": "chat:a",
            "clients": [
                {"client": alice.session.client_id, "user": "alice", "meta": {"nick": "A"}},
                {"client": bob.session.client_id, "user": "bob"},
            ],
        }
        assert await bob.error("presence", channel="chat:a") == 104
        assert await bob.error("presence", channel="ticker:X") == 115
        assert await bob.error("presence", channel="bad") == 107


async def test_history(make_client: MakeClient) -> None:
    """history: latest by default, since pages, 116 for a lost position, 115 without history."""
    async with make_hub() as hub:
        for i in range(5):
            await hub.publish("chat:a", i)
        client = await make_client(hub)
        latest = await client.ok("history", channel="chat:a", limit=2)
        assert [p["data"] for p in latest["publications"]] == [3, 4]
        assert latest["offset"] == 5
        page = await client.ok(
            "history", channel="chat:a", limit=2, since={"offset": 1, "epoch": latest["epoch"]}
        )
        assert [p["offset"] for p in page["publications"]] == [2, 3]
        assert (
            await client.error("history", channel="chat:a", since={"offset": 1, "epoch": "gone"})
            == 116
        )
        assert await client.error("history", channel="ticker:X") == 104
        no_history = ChannelRegistry({"live": NamespaceOptions()})
        async with make_hub(registry=no_history) as other:
            plain = await make_client(other, token=token(channels=["*:r"]))
            assert await plain.error("history", channel="live:x") == 115


# --- garbage, rate limits, internal errors ---------------------------------------------------


async def test_bad_commands_then_4000(make_client: MakeClient) -> None:
    """Malformed (101) and unknown (102) commands; max_bad_commands in a row → 4000."""
    async with make_hub(limits=HubLimits(max_bad_commands=3)) as hub:
        client = await make_client(hub)
        await client.send("not json")
        await client.send(b"\x00binary")
        assert client.peer.messages()[-2:] == [
            {"id": None, "error": {"code": 101, "message": "bad request: invalid JSON"}},
            {"id": None, "error": {"code": 101, "message": "bad request: binary message"}},
        ]
        assert await client.ok("ping") == {}  # a good command resets the count
        assert await client.error("frobnicate") == 102
        assert await client.error("subscribe") == 101
        assert client.peer.close_code is None
        await client.send("[]")
        await client.peer.closed.wait()
        assert (client.peer.close_code, client.peer.close_reason) == (4000, "bad commands")
        assert hub.stats.bad_commands == 5
        count = len(client.peer.sent)
        await client.send('{"id": 1, "cmd": "ping"}')
        assert len(client.peer.sent) == count  # a closing session ignores input


async def test_command_rate_limit_then_4005() -> None:
    """Over the command bucket: 111; max_rate_limited in a row → 4005."""
    ticks = Clock()
    limits = HubLimits(command_rate=1.0, command_burst=2, max_rate_limited=3)
    async with make_hub(limits=limits, monotonic=ticks) as hub:
        from .conftest import Client

        client = Client(hub)
        await client.ok("connect")
        await client.ok("ping")
        assert await client.error("ping") == 111
        ticks.now += 1.0
        assert await client.ok("ping") == {}
        assert await client.error("ping") == 111
        assert await client.error("ping") == 111
        assert client.peer.close_code is None
        assert await client.error("ping") == 111
        await client.peer.closed.wait()
        assert client.peer.close_code == 4005
        assert hub.stats.rate_limited == 4


async def test_publish_rate_limit(make_client: MakeClient) -> None:
    """Publishes have their own, smaller bucket."""
    async with make_hub(limits=HubLimits(publish_rate=0.001, publish_burst=2)) as hub:
        client = await make_client(hub)
        await client.ok("subscribe", channel="chat:a")
        await client.ok("publish", channel="chat:a", data=1)
        await client.ok("publish", channel="chat:a", data=2)
        assert await client.error("publish", channel="chat:a", data=3) == 111
        assert await client.ok("ping") == {}


class BrokenHistory(MemoryHistory):
    """A store whose backend fails (fault injected at the storage edge)."""

    async def latest(self, channel: str, *, limit: int) -> tuple[list[StoredPublication], Any]:
        raise RuntimeError("disk on fire")


async def test_internal_error_is_100_without_detail(make_client: MakeClient) -> None:
    """A backend failure becomes 100 "internal error"; the session survives."""
    async with make_hub(history=BrokenHistory()) as hub:
        client = await make_client(hub)
        answer = await client.call("history", channel="chat:a")
        assert answer["error"] == {"code": 100, "message": "internal error"}
        assert await client.ok("ping") == {}


# --- closing -------------------------------------------------------------------------------


async def test_connection_lost_cleans_presence_and_sends_leave(make_client: MakeClient) -> None:
    """A dead connection leaves every channel: presence emptied, leave pushed, counters down."""
    async with make_hub(registry=per_event_registry()) as hub:
        alice = await make_client(hub)
        bob = await make_client(hub)
        for channel in ("chat:a", "chat:b"):
            await alice.ok("subscribe", channel=channel)
            await bob.ok("subscribe", channel=channel)
        assert hub.stats.subscriptions == 4
        await alice.lost()
        assert alice.session.state == SessionState.CLOSED
        assert [p["channel"] for p in bob.peer.pushes("leave")] == ["chat:a", "chat:b"]
        clients = (await bob.ok("presence", channel="chat:a"))["clients"]
        assert [c["client"] for c in clients] == [bob.session.client_id]
        assert (hub.stats.subscriptions, hub.stats.connections) == (2, 1)


async def test_hub_close_sends_1001(make_client: MakeClient) -> None:
    """Closing the hub closes every session with 1001 going away."""
    hub = make_hub()
    client = await make_client(hub)
    await client.ok("subscribe", channel="chat:a")
    await hub.close()
    assert (client.peer.close_code, client.peer.close_reason) == (1001, "going away")
    assert client.session.state == SessionState.CLOSED
    assert hub.stats.connections == 0


# --- hostile peers on a real hub (docs/hub.md, "Clients that do not read") ---------------------

WRITE_LIMIT = 2**16


async def raw_hub_client(server: HubServer) -> tuple[RawClient, Session]:
    """A raw client, connected to the hub (``connect`` answered), and its session."""
    raw = await RawClient.connect("127.0.0.1", server.port, rcvbuf=4096, limit=4096)
    await raw.handshake(server.path, [("Sec-WebSocket-Protocol", SUBPROTOCOL)])
    raw.send_text('{"id": 1, "cmd": "connect"}')
    assert orjson.loads((await raw.recv_frame()).payload)["id"] == 1
    (session,) = server.hub.sessions
    return raw, session


def assert_bounded(
    session: Session, limits: HubLimits, largest_message: int, *, corked: int = CORK_MAX_FRAMES
) -> None:
    """What the hub holds for ``session``: its outbox and its transport's write buffer."""
    assert session.queued_size <= max(limits.max_queued_size or 0, largest_message)
    assert session.queued_messages <= limits.max_pending_replies + 256  # + one channel queue
    peer = session.peer
    assert isinstance(peer, ServerConnection)
    # Below the high-water mark one more message is taken; pushes are corked, and a cork
    # holds up to CORK_MAX_FRAMES frames before the transport (and its flow control) sees them.
    assert peer.write_buffer_size <= WRITE_LIMIT + (corked + 1) * largest_message


async def close_code_after_reading(raw: RawClient) -> tuple[int, str]:
    """Start reading again and skip what the hub had written before its close frame."""
    raw.resume_reading()
    return await raw.recv_close(skip=(Opcode.TEXT, Opcode.PING, Opcode.PONG))


async def test_subscriber_that_never_reads_is_bounded_then_closed_4004() -> None:
    """A subscriber of a busy channel that reads nothing costs at most max_queued_size plus
    the write buffer, whatever the channel's queue allows, then is closed 4004."""
    limits = HubLimits()
    server = await start_demo_hub(
        "127.0.0.1", 0, ephemeral=True, allow_anonymous=True, limits=limits, compression=None
    )
    async with server:
        raw, session = await raw_hub_client(server)
        async with raw:
            raw.send_text('{"id": 2, "cmd": "subscribe", "channel": "chat:busy"}')
            assert orjson.loads((await raw.recv_frame()).payload)["id"] == 2
            raw.pause_reading()
            payload = "x" * 32768
            published = 0
            while session.state == SessionState.CONNECTED:
                await server.hub.publish("chat:busy", payload)
                published += 1
                assert_bounded(session, limits, len(payload) + 200)
            # 4 MiB queued at most, while 256 publications of 32 KiB fit the channel's queue.
            assert published * len(payload) > limits.max_queued_size  # type: ignore[operator]
            assert await close_code_after_reading(raw) == (4004, "slow consumer")
            assert server.hub.stats.slow_consumer_disconnects == 1


async def test_client_that_floods_commands_unread_is_bounded_then_closed_4004() -> None:
    """Commands whose replies are never read: without a rate limit the replies wait up to
    max_queued_size (then 4004), the transport's buffer stays at its high-water mark."""
    limits = HubLimits(command_rate=None)
    server = await start_demo_hub(
        "127.0.0.1", 0, ephemeral=True, allow_anonymous=True, limits=limits, compression=None
    )
    async with server:
        for n in range(100):
            await server.hub.publish("chat:h", {"n": n, "text": "y" * 1000})
        raw, session = await raw_hub_client(server)
        async with raw:
            raw.pause_reading()
            command = '{"id": 3, "cmd": "history", "channel": "chat:h", "limit": 100}'
            sent = 0
            with contextlib.suppress(ConnectionError):
                while session.state == SessionState.CONNECTED:
                    for _ in range(20):
                        raw.send_text(command)
                    sent += 20
                    await raw.drain()
                    assert_bounded(session, limits, 120_000, corked=0)  # large replies: no cork
            assert sent * 100_000 > limits.max_queued_size  # type: ignore[operator]
            assert await close_code_after_reading(raw) == (4004, "slow consumer")


async def test_client_that_floods_commands_is_closed_4005_by_default() -> None:
    """With the default rate limits, a flood ends in 4005 long before any queue fills."""
    server = await start_demo_hub("127.0.0.1", 0, ephemeral=True, allow_anonymous=True)
    async with server:
        raw, _ = await raw_hub_client(server)
        async with raw:
            raw.pause_reading()
            for n in range(400):
                raw.send_text(f'{{"id": {n + 10}, "cmd": "ping"}}')
            await raw.drain()
            assert await close_code_after_reading(raw) == (4005, "rate limited")
            assert server.hub.stats.rate_limited >= HubLimits().max_rate_limited


# --- a session hosted by a fake host: Session depends on SessionHost, not on Hub --------------


class FakeHost:
    """A :class:`SessionHost` that records what its sessions ask: no Hub, stores or broker."""

    def __init__(self) -> None:
        self.registry = ChannelRegistry({"chat": NamespaceOptions(history_size=10)})
        self.auth = Authenticator(allow_anonymous=True, anonymous_permissions=["chat:*:spr"])
        self.limits = HubLimits()
        self.stats = HubStats()
        self.clock = Clock()
        self.monotonic = Clock()
        self.calls: list[tuple[str, Any]] = []
        self.subs: list[SessionSubscription] = []
        self.tasks: list[asyncio.Task[Any]] = []

    def count_user(self, user: str) -> None:
        self.calls.append(("count_user", user))

    def release_user(self, user: str) -> None:
        self.calls.append(("release_user", user))

    async def attach(
        self, sub: SessionSubscription, since: Position | None, recent: int
    ) -> tuple[SubscribeResult, Position]:
        self.subs.append(sub)
        self.calls.append(("attach", (sub.channel, since, recent)))
        position = Position(4, "ep")
        return SubscribeResult(sub.channel, position, True), position

    def detach(self, sub: SessionSubscription) -> None:
        self.calls.append(("detach", sub.channel))

    async def announce_join(self, sub: SessionSubscription) -> None:
        self.calls.append(("join", sub.channel))

    async def announce_leave(self, sub: SessionSubscription) -> None:
        self.calls.append(("leave", sub.channel))

    async def publish_encoded(
        self,
        channel: str,
        options: NamespaceOptions,
        data: bytes,
        info: bytes | None,
        message_id: str | None,
    ) -> AppendResult:
        self.calls.append(("publish", (channel, data, message_id)))
        return AppendResult(Position(5, "ep"), StoredPublication(5, NOW, data, info))

    async def publish_ephemeral_encoded(
        self, channel: str, data: bytes, info: bytes | None
    ) -> None:
        self.calls.append(("ephemeral", (channel, data)))

    async def presence(self, channel: str) -> list[ClientInfo]:
        return [ClientInfo("c9", "u9")]

    async def history(
        self, channel: str, *, limit: int = 100, since: Position | None = None
    ) -> tuple[Sequence[StoredPublication], Position]:
        return [StoredPublication(4, NOW, b'"h"')], Position(4, "ep")

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        self.tasks.append(asyncio.get_running_loop().create_task(coro))

    def session_closed(self, session: Session) -> None:
        self.calls.append(("closed", session.client_id))


async def test_session_runs_on_a_fake_host() -> None:
    """Every command reaches the host through SessionHost's public methods, and the replies
    are the typed results the host returned."""
    host = FakeHost()
    assert isinstance(host, SessionHost)
    peer = FakePeer()
    session = Session(host, peer)

    async def call(command: str) -> Any:
        await session.handle(command)
        return parse_message(peer.sent[-1])

    assert (await call('{"id": 1, "cmd": "connect"}')) == Reply(
        1, ConnectResult(session.client_id, "", None).to_json()
    )
    subscribed = await call('{"id": 2, "cmd": "subscribe", "channel": "chat:a"}')
    assert isinstance(subscribed, Reply) and isinstance(subscribed.result, dict)
    assert SubscribeResult.parse(subscribed.result).position == Position(4, "ep")
    published = await call('{"id": 3, "cmd": "publish", "channel": "chat:a", "data": [1]}')
    assert isinstance(published, Reply) and isinstance(published.result, dict)
    assert PublishResult.parse(published.result) == PublishResult(Position(5, "ep"))
    presence = await call('{"id": 4, "cmd": "presence", "channel": "chat:a"}')
    assert isinstance(presence, Reply) and presence.result == {
        "channel": "chat:a",
        "clients": [{"client": "c9", "user": "u9"}],
    }
    history = await call('{"id": 5, "cmd": "history", "channel": "chat:a"}')
    assert isinstance(history, Reply) and isinstance(history.result, dict)
    assert HistoryResult.parse(history.result).publications[0].data == b'"h"'
    # What the host feeds the subscription is written to the peer.
    (sub,) = host.subs
    sub.feed(POS, 5, "ep", '{"push":"pub"}')
    assert peer.sent[-1] == '{"push":"pub"}'
    await session.connection_lost()
    assert host.calls == [
        ("attach", ("chat:a", None, 0)),
        ("join", "chat:a"),
        ("publish", ("chat:a", b"[1]", None)),
        ("detach", "chat:a"),
        ("leave", "chat:a"),
        ("closed", session.client_id),
    ]
    assert session.state == SessionState.CLOSED


async def test_only_small_replies_join_the_cork(make_client: MakeClient) -> None:
    """A small reply is corked (pipelined replies share a write); a large one is written
    at once, so that a cork never holds large replies past the write limit."""
    async with demo_hub(expire_interval=None) as hub:
        client = await make_client(hub)
        for n in range(20):
            await hub.publish("chat:big", "z" * 1000, info={"n": n})
        corks = client.peer.corks
        await client.ok("ping")
        assert client.peer.corks == corks + 1
        result = await client.ok("history", channel="chat:big", limit=20)
        assert len(client.peer.sent[-1]) > MAX_CORKED_REPLY
        assert len(result["publications"]) == 20
        assert client.peer.corks == corks + 1
