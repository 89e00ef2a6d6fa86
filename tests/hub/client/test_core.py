"""Tests for wshub.hub.client.core: HubClient connecting and its commands, on a real hub."""

from __future__ import annotations

import ast
import asyncio
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import wshub
import wshub.hub.client
from wshub.exceptions import (
    AuthError,
    HubError,
    InvalidState,
    InvalidURI,
    NegotiationError,
)
from wshub.hub import make_token
from wshub.hub.client import (
    ClientState,
    HubClient,
    Position,
)
from wshub.hub.config import AuthConfig, HubConfig, ListenConfig
from wshub.hub.server import HubServer, start_hub
from wshub.hub.wire import ClientInfo

from .conftest import ALL, SECRET, MakeClient, take, token


def test_bad_options_are_refused() -> None:
    """Limits that cannot work fail at construction."""
    with pytest.raises(ValueError):
        HubClient("ws://127.0.0.1:1/ws", queue_size=1)
    with pytest.raises(ValueError):
        HubClient("ws://127.0.0.1:1/ws", max_pending=0)
    with pytest.raises(ValueError):
        HubClient("ws://127.0.0.1:1/ws", backoff_initial=5, max_delay=1)


async def test_connect_anonymous(make_client: MakeClient) -> None:
    """An anonymous client gets a client id, user "" and no expiry."""
    client = await make_client(meta={"nick": "Anon"})
    assert client.state is ClientState.CONNECTED
    assert client.client_id is not None and len(client.client_id) == 32
    assert (client.user, client.expires) == ("", None)
    assert client.connection is not None and client.connection.subprotocol == "wshub.v1"


async def test_connect_with_token_and_context_manager(server: HubServer) -> None:
    """``async with`` connects with the token's user and closes on exit."""
    async with HubClient(server.url(), token("alice")) as client:
        assert client.user == "alice"
        assert client.expires is not None
        assert await client.ping() >= 0
    assert client.closed and client.error is None
    with pytest.raises(InvalidState):
        await client.publish("chat:x", 1)


@pytest.mark.parametrize(
    ("bad", "code"),
    [("not-a-jwt", 103), (make_token("another-secret-0123456789abcdef-0123", "eve"), 103)],
)
async def test_refused_token_raises_auth_error(server: HubServer, bad: str, code: int) -> None:
    """A forged or malformed token fails connect() with AuthError 103; no retry."""
    client = HubClient(server.url(), bad)
    with pytest.raises(AuthError) as info:
        await client.connect()
    assert info.value.code == code
    assert client.closed


async def test_expired_token_raises_113(server: HubServer) -> None:
    """A correctly signed but expired token fails with 113."""
    client = HubClient(server.url(), make_token(SECRET, "old", ttl=-10))
    with pytest.raises(AuthError) as info:
        await client.connect()
    assert info.value.code == 113


async def test_unreachable_hub_fails_fast() -> None:
    """The first connection is not retried: a wrong port raises OSError at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = HubClient(f"ws://127.0.0.1:{port}/ws")
    with pytest.raises(OSError):
        await client.connect()
    assert client.closed


async def test_calls_before_connect_and_twice(server: HubServer) -> None:
    """Using a client before connect(), or connecting twice, is our misuse."""
    client = HubClient(server.url())
    with pytest.raises(InvalidState):
        await client.publish("chat:x", 1)
    await client.connect()
    try:
        with pytest.raises(InvalidState):
            await client.connect()
    finally:
        await client.close()


async def test_publish_and_iterate(make_client: MakeClient) -> None:
    """Publish returns consecutive offsets; the subscriber reads every field in order."""
    alice = await make_client(token("alice"))
    bob = await make_client(meta={"nick": "Bob"})
    sub = await alice.subscribe("chat:room")
    await bob.subscribe("chat:room")
    offsets = [await bob.publish("chat:room", {"n": n}) for n in range(3)]
    assert offsets == [1, 2, 3]
    pubs = await take(sub, 3)
    assert [p.offset for p in pubs] == offsets
    assert [p.data for p in pubs] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert {p.channel for p in pubs} == {"chat:room"}
    assert len({p.epoch for p in pubs}) == 1
    assert pubs[0].info == ClientInfo(bob.client_id or "", "", {"nick": "Bob"})
    assert sub.position == pubs[-1].position
    assert sub.recoverable is True and sub.recovered is None
    assert sub.statistics().accepted == 3


async def test_presence(make_client: MakeClient) -> None:
    """presence lists the subscribed clients with their meta."""
    alice = await make_client(token("alice"), meta={"nick": "A"})
    bob = await make_client(meta={"nick": "B"})
    await alice.subscribe("chat:p")
    await bob.subscribe("chat:p")
    clients = await alice.presence("chat:p")
    assert sorted((c.user, c.meta["nick"]) for c in clients) == [("", "B"), ("alice", "A")]


async def test_history_latest_and_since(make_client: MakeClient) -> None:
    """history returns the latest ``limit``, or pages on after ``since``."""
    client = await make_client()
    await client.subscribe("chat:h")
    for n in range(6):
        await client.publish("chat:h", n)
    latest = await client.history("chat:h", limit=2)
    assert [p.data for p in latest.publications] == [4, 5]
    assert latest.position.offset == 6
    page = await client.history("chat:h", since=Position(1, latest.position.epoch), limit=3)
    assert [p.offset for p in page.publications] == [2, 3, 4]
    with pytest.raises(HubError) as info:
        await client.history("chat:h", since=Position(1, "other-epoch"))
    assert info.value.code == 116


@pytest.mark.parametrize(
    ("call", "code", "cls"),
    [
        (lambda c: c.subscribe("no colon"), 107, HubError),
        (lambda c: c.subscribe("nowhere:x"), 108, HubError),
        (lambda c: c.publish("chat:not-subscribed", 1), 110, HubError),
        (lambda c: c.publish("ticker:AAPL", 1), 104, AuthError),
        (lambda c: c.presence("ticker:AAPL"), 115, HubError),
        (lambda c: c.publish("chat:big", "x" * 70000), 114, HubError),
    ],
)
async def test_hub_errors(
    make_client: MakeClient, call: Callable[[HubClient], Awaitable[Any]], code: int, cls: type
) -> None:
    """Refusals raise HubError/AuthError carrying the hub's code."""
    client = await make_client(token("alice", ALL), max_size=2**20)
    await client.subscribe("chat:big")
    with pytest.raises(HubError) as info:
        await call(client)
    assert type(info.value) is cls
    assert info.value.code == code
    assert client.state is ClientState.CONNECTED


async def test_refresh(make_client: MakeClient) -> None:
    """refresh swaps the token (new expiry); another user's token is refused with 103."""
    client = await make_client(token("alice", ttl=60))
    first = client.expires
    assert first is not None
    assert await client.refresh(token("alice", ttl=3600)) == client.expires
    assert client.expires is not None and client.expires > first
    with pytest.raises(AuthError) as info:
        await client.refresh(token("mallory"))
    assert info.value.code == 103
    assert client.state is ClientState.CONNECTED


async def test_no_reply_to_connect_times_out() -> None:
    """A server that never answers connect: connect() raises TimeoutError."""

    async def silent(ws: wshub.ServerConnection) -> None:
        async for _ in ws:
            pass

    async with wshub.serve(silent, "127.0.0.1", 0, subprotocols=["wshub.v1"]) as ws_server:
        client = HubClient(f"ws://127.0.0.1:{ws_server.port}/ws", open_timeout=0.05)
        with pytest.raises(TimeoutError):
            await client.connect()
        assert client.closed


async def test_a_server_without_the_subprotocol_is_refused() -> None:
    """No wshub.v1 in the handshake: NegotiationError, no retry."""

    async def plain(ws: wshub.ServerConnection) -> None:
        await ws.wait_closed()

    async with wshub.serve(plain, "127.0.0.1", 0) as ws_server:
        client = HubClient(f"ws://127.0.0.1:{ws_server.port}/ws")
        with pytest.raises(NegotiationError):
            await client.connect()


def test_a_wrong_url_fails_at_once() -> None:
    """The URL is checked when the client is made."""
    with pytest.raises(InvalidURI):
        HubClient("http://127.0.0.1/ws")
    with pytest.raises(InvalidURI):
        HubClient(["ws://127.0.0.1/ws", "http://127.0.0.1/ws"])  # every one of a list
    with pytest.raises(ValueError, match="at least one URL"):
        HubClient([])


async def test_a_client_sent_away_by_a_draining_node_moves_to_the_next_url() -> None:
    """HubClient([a, b]): connected to a; a drains (1012): it reconnects to b."""
    config = HubConfig(listen=ListenConfig(port=0), auth=AuthConfig(allow_anonymous=True))
    async with await start_hub(config) as first, await start_hub(config) as second:
        client = HubClient([first.url(), second.url()], backoff_initial=0.05)
        async with client:
            assert client.urls == (first.url(), second.url())
            assert client.url == first.url()
            assert await first.drain(drain_period=0, drain_timeout=5) == 0
            while client.reconnects == 0:
                await asyncio.sleep(0.01)
            assert client.url == second.url()
            assert client.state is ClientState.CONNECTED
            assert len(second.hub.sessions) == 1


# --- the package ----------------------------------------------------------------------------


def test_public_names_keep_their_import_paths() -> None:
    """``from wshub import HubClient`` and ``from wshub.hub.client import ...`` still work."""
    package = wshub.hub.client
    assert wshub.HubClient is package.HubClient
    assert wshub.Subscription is package.Subscription
    for name in package.__all__:
        assert getattr(package, name) is not None


def test_no_module_of_the_client_reaches_into_private_attributes() -> None:
    """``x._name`` only on ``self``: the modules talk through named methods."""
    root = Path(wshub.hub.client.__file__).parent
    offenders = []
    for path in sorted(root.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id == "self")
            ):
                offenders.append(f"{path.name}:{node.lineno} .{node.attr}")
    assert offenders == []
