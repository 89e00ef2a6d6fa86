"""A wshub server on a free loopback port, closed when the test is done with it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from ..aio.client import ClientConnection, connect
from ..aio.server import Server, ServerConnection, serve

__all__ = ["echo", "loopback_server", "server_url", "websocket_pair"]


async def echo(ws: ServerConnection) -> None:
    """A server handler that sends every message back as it came (text as text)."""
    async for message in ws:
        await ws.send(message)


@asynccontextmanager
async def loopback_server(handler: Any = None, /, **options: Any) -> AsyncIterator[Server]:
    """Serve on ``127.0.0.1`` and a port the kernel picks; close the server on exit.

    Args:
        handler: as for :func:`wshub.serve`: a coroutine function, an object with
            ``on_*`` methods, or ``None``.
        options: any keyword argument of :func:`wshub.serve` (``host`` and ``port``
            excepted). Defaults are the library's, so a test sees what users get; a
            test that leaves peers hanging should pass a small ``close_timeout``.

    Example::

        async with loopback_server(echo) as server:
            async with wshub.connect(server_url(server)) as ws:
                ...
    """
    async with serve(handler, "127.0.0.1", 0, **options) as server:
        yield server


def server_url(server: Server, path: str = "/", *, secure: bool = False) -> str:
    """The URL of a loopback server: ``ws://127.0.0.1:PORT/path`` (``wss://`` if secure).

    Use ``secure`` with a certificate for ``127.0.0.1`` (see :func:`self_signed_certificate`).
    """
    scheme = "wss" if secure else "ws"
    return f"{scheme}://127.0.0.1:{server.port}{path}"


@asynccontextmanager
async def websocket_pair(
    path: str = "/",
    *,
    server_options: Mapping[str, Any] | None = None,
    client_options: Mapping[str, Any] | None = None,
) -> AsyncIterator[tuple[ServerConnection, ClientConnection]]:
    """Open a wshub client connected to a wshub server and hand the test both ends.

    Neither end reads unless the test does, so a test drives both sides of one connection
    with ``recv``/``send``/``ping``/``close`` and sees exactly what the other side sees.
    On exit the client closes (if it is still open) and the server stops.

    Args:
        path: the request path.
        server_options: keyword arguments for :func:`wshub.serve` (modern style: no
            ``on_message``).
        client_options: keyword arguments for :func:`wshub.connect`.

    Example::

        async with websocket_pair() as (server_ws, client_ws):
            await client_ws.send("hi")
            assert await server_ws.recv() == "hi"
    """
    accepted: asyncio.Queue[ServerConnection] = asyncio.Queue()

    async def handler(ws: ServerConnection) -> None:
        await accepted.put(ws)
        await ws.wait_closed()

    async with (
        loopback_server(handler, **(server_options or {})) as server,
        connect(server_url(server, path), **(client_options or {})) as client,
    ):
        yield await accepted.get(), client
