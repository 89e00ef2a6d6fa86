"""Interoperability with the ``websockets`` library: our server with its client, and back.

``websockets`` is an independent implementation of RFC 6455 and RFC 7692, so agreeing
with it on messages, compression and closing handshakes checks both our reading of the
RFCs and our wire format against another one.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import ServerConnection as WsServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed as WsConnectionClosed

from wshub import ConnectionClosed, ConnectionClosedError, ServerConnection, connect
from wshub.testing import echo, loopback_server, server_url

from . import PeerCloses, wait_for

MESSAGES = {
    "text": "héllo ✓",
    "binary": bytes(range(256)),
    "empty": "",
    "1MiB-text": "t" * 2**20,
    "1MiB-binary": bytes(range(256)) * 4096,
}
COMPRESSION = pytest.mark.parametrize("compression", ["deflate", None])


async def ws_echo(ws: WsServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


# -- our server, their client ----------------------------------------------------------------


@COMPRESSION
@pytest.mark.parametrize("message", MESSAGES.values(), ids=MESSAGES.keys())
async def test_their_client_our_server_messages(message: str | bytes, compression: Any) -> None:
    """Messages of every kind make the round trip, with and without compression."""
    async with (
        loopback_server(echo, compression=compression) as server,
        ws_connect(server_url(server), compression=compression, proxy=None) as ws,
    ):
        await ws.send(message)
        echoed = await wait_for(ws.recv())
        assert type(echoed) is type(message)
        assert echoed == message
        negotiated = ws.response.headers.get("Sec-WebSocket-Extensions")
        if compression is None:
            assert negotiated is None
        else:
            assert negotiated is not None and negotiated.startswith("permessage-deflate")


@pytest.mark.parametrize(
    ("ours", "theirs"), [("deflate", None), (None, "deflate")], ids=["they-decline", "we-decline"]
)
async def test_their_client_our_server_compression_mismatch(ours: Any, theirs: Any) -> None:
    """When one side does not compress, nothing is negotiated and messages still flow."""
    async with (
        loopback_server(echo, compression=ours) as server,
        ws_connect(server_url(server), compression=theirs, proxy=None) as ws,
    ):
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
        await ws.send("z" * 50_000)
        assert await wait_for(ws.recv()) == "z" * 50_000


async def test_their_client_closes_with_code_and_reason() -> None:
    """Their ``close(4000, reason)`` reaches our handler as ConnectionClosedError."""
    peer = PeerCloses()
    async with loopback_server(peer.handler) as server:
        async with ws_connect(server_url(server), proxy=None) as ws:
            await ws.close(4000, "their reason")
        assert await peer.code_and_reason() == (4000, "their reason")
        assert isinstance(peer.closed.result(), ConnectionClosedError)
        assert ws.close_code == 4000


async def test_our_server_closes_with_code_and_reason() -> None:
    """Our ``close(4001, reason)`` reaches their client, which echoes the code."""
    closed: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()

    async def handler(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.close(4001, "our reason")
        closed.set_result(ws.close_code)

    async with (
        loopback_server(handler) as server,
        ws_connect(server_url(server), proxy=None) as ws,
    ):
        await ws.send("close please")
        with pytest.raises(WsConnectionClosed) as exc_info:
            await wait_for(ws.recv())
        assert exc_info.value.rcvd is not None
        assert (exc_info.value.rcvd.code, exc_info.value.rcvd.reason) == (4001, "our reason")
        assert await wait_for(closed) == 4001


async def test_their_client_pings_our_server() -> None:
    """Their ping gets our pong; their keepalive does not disturb the connection."""
    async with (
        loopback_server(echo) as server,
        ws_connect(server_url(server), proxy=None) as ws,
    ):
        pong_waiter = await ws.ping(b"data")
        latency = await wait_for(pong_waiter)
        assert latency >= 0.0


# -- their server, our client ----------------------------------------------------------------


@COMPRESSION
@pytest.mark.parametrize("message", MESSAGES.values(), ids=MESSAGES.keys())
async def test_our_client_their_server_messages(message: str | bytes, compression: Any) -> None:
    """Messages of every kind make the round trip, with and without compression."""
    async with ws_serve(ws_echo, "127.0.0.1", 0, compression=compression) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        async with connect(url, compression=compression) as ws:
            await ws.send(message)
            echoed = await wait_for(ws.recv())
            assert type(echoed) is type(message)
            assert echoed == message
            assert ws.response is not None
            negotiated = ws.response.headers.get("Sec-WebSocket-Extensions")
            assert (negotiated is None) is (compression is None)
            assert await wait_for(ws.ping()) > 0.0


async def test_our_client_closes_with_code_and_reason() -> None:
    """Our ``close(4002, reason)`` reaches their handler."""
    seen: asyncio.Future[tuple[int | None, str | None]] = asyncio.get_running_loop().create_future()

    async def handler(ws: WsServerConnection) -> None:
        try:
            await ws.recv()
        except WsConnectionClosed:
            seen.set_result((ws.close_code, ws.close_reason))

    async with ws_serve(handler, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        async with connect(url) as ws:
            await ws.close(4002, "our reason")
        assert await wait_for(seen) == (4002, "our reason")
        assert ws.close_code == 4002


async def test_their_server_closes_with_code_and_reason() -> None:
    """Their ``close(4003, reason)`` ends our ``recv`` with ConnectionClosedError."""

    async def handler(ws: WsServerConnection) -> None:
        await ws.recv()
        await ws.close(4003, "their reason")

    async with ws_serve(handler, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        async with connect(url) as ws:
            await ws.send("close please")
            with pytest.raises(ConnectionClosed) as exc_info:
                await wait_for(ws.recv())
            assert (exc_info.value.code, exc_info.value.reason) == (4003, "their reason")
            await wait_for(ws.wait_closed())
        assert ws.close_code == 4003


async def test_our_client_subprotocol_with_their_server() -> None:
    """Subprotocol negotiation agrees with theirs."""
    async with ws_serve(ws_echo, "127.0.0.1", 0, subprotocols=["b", "a"]) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        async with connect(url, subprotocols=["a", "b"]) as ws:
            assert ws.subprotocol == "b"
