"""Tests of wshub.aio, the asyncio server and client, on real loopback sockets.

``UNIT`` is the one time unit of these tests, in seconds: every timeout, interval and
backoff they configure is a multiple of it. Nothing is asserted about elapsed time; the
unit only bounds how long a test waits for something that must happen.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from wshub import ConnectionClosed, ServerConnection

T = TypeVar("T")

UNIT = 0.05

#: How long a test waits for an event that must come (a generous multiple of UNIT).
WAIT = 100 * UNIT


async def wait_for(aw: Awaitable[T], timeout: float = WAIT) -> T:
    """Await something that must happen; fail the test instead of hanging."""
    return await asyncio.wait_for(aw, timeout)


class PeerCloses:
    """A server handler that waits for the peer to close, and keeps how it closed."""

    def __init__(self) -> None:
        self.closed: asyncio.Future[ConnectionClosed] = asyncio.get_running_loop().create_future()

    async def handler(self, ws: ServerConnection) -> None:
        try:
            await ws.recv()
        except ConnectionClosed as exc:
            self.closed.set_result(exc)

    async def code_and_reason(self) -> tuple[int, str]:
        """Wait for the close; return the code and reason the handler saw."""
        exc = await wait_for(self.closed)
        return exc.code, exc.reason
