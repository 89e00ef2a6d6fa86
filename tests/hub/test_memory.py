"""Per-connection memory of the hub: the objects every connection has stay small.

``benchmarks/session_memory.py`` measures RSS and the allocation sites of 10,000 subscribed
connections; these tests guard the structure that keeps it low (no ``__dict__``, lazily
made queues) and bound the hub's own Python allocations per subscribed connection, counted
by ``tracemalloc`` (allocations, not RSS: the same on every run).
"""

from __future__ import annotations

import asyncio
import base64
import gc
import os
import socket
import tracemalloc
from collections import deque

from wshub.aio.connection import WebSocketConnection
from wshub.aio.server import ServerConnection
from wshub.hub._outbox import ChannelQueue, Outbox
from wshub.hub.auth import Identity
from wshub.hub.ratelimit import TokenBucket
from wshub.hub.server import HubServer
from wshub.hub.subscription import SessionSubscription
from wshub.hub.wire import ClientInfo

from .conftest import start_demo_hub

#: The hub's own Python allocations per subscribed connection (connection, session,
#: subscription, channel state), as this test counts them: about 15 KiB before the memory
#: work of the hub performance issue, about 5.3 KiB after it.
MAX_TRACED_PER_CONNECTION = 8 * 1024


def test_per_connection_objects_have_no_dict() -> None:
    """Every object a connection owns has ``__slots__`` only (no per-instance ``__dict__``);
    ``Session`` keeps its ``__dict__`` (Python 3.11 stores its values inline: 56 bytes)."""
    per_connection = [
        SessionSubscription,
        ChannelQueue,
        Outbox,
        TokenBucket,
        Identity,
        ClientInfo,
        WebSocketConnection,
        ServerConnection,
    ]
    with_dict = [cls.__name__ for cls in per_connection if cls.__dictoffset__ != 0]
    assert with_dict == []


def _deques(*objects: object) -> int:
    return sum(isinstance(ref, deque) for obj in objects for ref in gc.get_referents(obj))


def test_an_idle_outbox_and_queue_hold_no_deque() -> None:
    """An outbox and a channel queue allocate their deques on first use, drop them on clear."""
    outbox = Outbox(max_pending_replies=4, max_queued_size=None)
    queue = ChannelQueue("disconnect", 4)
    assert _deques(outbox, queue) == 0
    assert outbox.add_reply("r") and outbox.add(queue, 0, "m") == 0
    assert _deques(outbox, queue) == 3
    assert [outbox.pop(), outbox.pop()] == ["r", "m"]
    outbox.clear()
    queue.clear()
    assert _deques(outbox, queue) == 0
    assert outbox.pending == 0 and len(queue) == 0


def _frame(text: str) -> bytes:
    payload = text.encode()
    mask = os.urandom(4)
    return (
        bytes([0x81, 0x80 | len(payload)])
        + mask
        + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    )


def _open_subscribed(port: int, count: int) -> list[socket.socket]:
    """Blocking raw clients: handshake, ``connect``, ``subscribe`` to ``chat:u<i>``."""
    socks = []
    for i in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Protocol: wshub.v1\r\n\r\n".encode()
        )
        sock.sendall(
            _frame('{"id":1,"cmd":"connect"}')
            + _frame(f'{{"id":2,"cmd":"subscribe","channel":"chat:u{i}"}}')
        )
        data = b""
        while b'"id":2,"result"' not in data:
            chunk = sock.recv(65536)
            assert chunk and b'"error"' not in chunk, data + chunk
            data += chunk
        socks.append(sock)
    return socks


async def _traced_per_connection(server: HubServer, count: int) -> float:
    """wshub's traced allocations per subscribed connection (innermost frame in wshub)."""
    warm = await asyncio.to_thread(_open_subscribed, server.port, 1)
    gc.collect()
    tracemalloc.start(1)
    try:
        before = tracemalloc.take_snapshot()
        socks = await asyncio.to_thread(_open_subscribed, server.port, count)
        await asyncio.sleep(0)
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    only_wshub = [tracemalloc.Filter(True, f"*{os.sep}wshub{os.sep}*")]
    diff = after.filter_traces(only_wshub).compare_to(before.filter_traces(only_wshub), "filename")
    for sock in [*warm, *socks]:
        sock.close()
    return sum(stat.size_diff for stat in diff) / count


async def test_a_subscribed_connection_allocates_little() -> None:
    """100 subscribed connections cost the hub under 8 KiB of Python allocations each."""
    server = await start_demo_hub(
        "127.0.0.1", 0, ephemeral=True, allow_anonymous=True, compression=None
    )
    try:
        per_connection = await _traced_per_connection(server, 100)
    finally:
        await server.close()
    assert 0 < per_connection < MAX_TRACED_PER_CONNECTION
