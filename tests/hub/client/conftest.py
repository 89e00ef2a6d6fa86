"""Fixtures and helpers of the HubClient tests: a real hub on loopback, tokens, cuts.

Tests for wshub.hub.client: HubClient against a real hub server on loopback.

Faults are injected at the transport edge: a test aborts the client's TCP connection
(``client.connection.transport.abort()``) or the hub's side of it, or pauses reading so that
a reply is lost with the connection. Where a test needs the client to stay disconnected for a
while, its token is a callable that waits for the test to let it reconnect.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from wshub.hub import HubLimits, make_token
from wshub.hub.client import (
    HubClient,
    Publication,
    Subscription,
)
from wshub.hub.server import HubServer

from ..conftest import start_demo_hub

SECRET = "hub-client-tests-secret-0123456789abcdef"
ALL = ["*:spr"]

MakeClient = Callable[..., Awaitable[HubClient]]


@pytest.fixture
async def server() -> AsyncIterator[HubServer]:
    """A hub on a free loopback port: memory history, anonymous allowed, no rate limits."""
    hub_server = await start_demo_hub(
        "127.0.0.1",
        0,
        ephemeral=True,
        allow_anonymous=True,
        secret=SECRET,
        limits=HubLimits(command_rate=None, publish_rate=None),
        compression=None,
    )
    try:
        yield hub_server
    finally:
        await hub_server.close()


@pytest.fixture
async def make_client(server: HubServer) -> AsyncIterator[MakeClient]:
    """``await make_client(token=None, **options)``: a connected client, closed afterwards."""
    clients: list[HubClient] = []

    async def make(token: Any = None, **options: Any) -> HubClient:
        options.setdefault("backoff_initial", 0.01)
        client = HubClient(server.url(), token, **options)
        clients.append(client)
        await client.connect()
        return client

    yield make
    for client in clients:
        await client.close()


def token(user: str = "alice", channels: list[str] = ALL, ttl: float = 600) -> str:
    return make_token(SECRET, user, ttl, channels)


class Gate:
    """A token source that makes the client wait at the door until the test opens it."""

    def __init__(self, user: str = "gated") -> None:
        self.user = user
        self.open = asyncio.Event()
        self.open.set()
        self.calls = 0

    async def __call__(self) -> str:
        await self.open.wait()
        self.calls += 1
        return token(self.user)


def cut_off(client: HubClient, gate: Gate) -> None:
    """Drop the client's TCP connection; it reconnects only once the gate opens again."""
    gate.open.clear()
    assert client.connection is not None and client.connection.transport is not None
    client.connection.transport.abort()


async def take(sub: Subscription, count: int) -> list[Publication]:
    return [await sub.get() for _ in range(count)]


def server_side(server: HubServer, client: HubClient) -> Any:
    """The hub's connection object for ``client``'s current connection."""
    (session,) = [s for s in server.hub.sessions if s.client_id == client.client_id]
    return session.peer
