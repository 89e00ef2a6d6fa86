"""What the kernel says a TCP connection sent: for tests that count writes, not bytes."""

from __future__ import annotations

import socket
import sys

from wshub.aio.connection import WebSocketConnection

__all__ = ["segments_sent"]


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
    transport = conn.transport
    assert transport is not None, "the connection is not open"
    sock = transport.get_extra_info("socket")
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    assert len(info) >= 160, "this kernel's TCP_INFO has no tcpi_data_segs_out"

    def u32(offset: int) -> int:  # struct tcp_info: fields at fixed byte offsets
        return int.from_bytes(info[offset : offset + 4], sys.byteorder)

    return u32(156) - u32(100)  # tcpi_data_segs_out - tcpi_total_retrans
