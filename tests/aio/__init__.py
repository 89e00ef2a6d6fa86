"""Tests of wshub.aio, the asyncio server and client, on real loopback sockets.

``UNIT`` is the one time unit of these tests, in seconds: every timeout, interval and
backoff they configure is a multiple of it. Nothing is asserted about elapsed time; the
unit only bounds how long a test waits for something that must happen.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Awaitable
from typing import TypeVar

from wshub import ConnectionClosed, ServerConnection
from wshub.aio.connection import WebSocketConnection

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


def segments_sent(conn: WebSocketConnection) -> int:
    """Data segments the kernel has sent on this connection, retransmissions left out.

    From TCP_INFO (Linux 4.6+): ``tcpi_data_segs_out - tcpi_total_retrans``. Not
    ``tcpi_segs_out``, which also counts pure ACKs (this end sends one whenever the peer's
    data arrives, a delayed ACK at any moment); and not ``tcpi_data_segs_out`` alone: on a
    busy machine the peer's ACK can come after the tail-loss-probe timer, and the kernel
    then sends the last segment again, counted there too (both seen under load, as 2
    where one write was meant). With TCP_NODELAY (asyncio and uvloop set it) each small
    ``write`` leaves as one new data segment, so this counts the writes that reached the
    socket. Linux only.
    """
    sock = conn.transport.get_extra_info("socket")  # type: ignore[union-attr]
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    assert len(info) >= 160, "this kernel's TCP_INFO has no tcpi_data_segs_out"

    def u32(offset: int) -> int:  # struct tcp_info: fields at fixed byte offsets
        return int.from_bytes(info[offset : offset + 4], sys.byteorder)

    return u32(156) - u32(100)  # tcpi_data_segs_out - tcpi_total_retrans
