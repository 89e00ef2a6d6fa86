"""Tests for wshub.aio.connection: what both ends of an open connection do.

Each test opens real loopback connections; faults come from raw peers
(``wshub.testing.RawClient`` / ``raw_server``) that break the protocol at the transport
edge. Nothing under test is mocked.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest

from wshub import (
    ClientConnection,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidState,
    Server,
    ServerConnection,
    connect,
)
from wshub.aio.connection import CORK_MAX_FRAMES, SLOW_CONSUMER_FACTOR, Deadlines
from wshub.protocol import Frame, Opcode, Request, Response
from wshub.protocol.server import accept_key
from wshub.testing import (
    RawClient,
    echo,
    loopback_server,
    raw_peer_pair,
    raw_server,
    segments_sent,
    server_url,
    websocket_pair,
)

from . import UNIT, WAIT, wait_for

NO_COMPRESSION = {"compression": None}
MESSAGES = {
    "text": "héllo wörld ✓",
    "binary": bytes(range(256)),
    "empty-text": "",
    "empty-binary": b"",
    "1MiB-text": "x" * 2**20,
    "1MiB-binary": bytes(range(256)) * 4096,
}


async def hold_open(ws: ServerConnection) -> None:
    """A handler that leaves the connection to the test: it only waits for the end."""
    await ws.wait_closed()


class Accepting:
    """Hands each server connection to the test (``handler``), then waits for its end."""

    def __init__(self) -> None:
        self.connections: asyncio.Queue[ServerConnection] = asyncio.Queue()

    async def handler(self, ws: ServerConnection) -> None:
        await self.connections.put(ws)
        await ws.wait_closed()

    async def next(self) -> ServerConnection:
        return await wait_for(self.connections.get())


# -- messages --------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["deflate", None])
@pytest.mark.parametrize("message", MESSAGES.values(), ids=MESSAGES.keys())
async def test_messages_cross_both_ways(message: str | bytes, compression: str | None) -> None:
    """Text arrives as str and binary as bytes, empty and 1 MiB alike, both ways."""
    options = {"compression": compression}
    async with websocket_pair(server_options=options, client_options=options) as (server, client):
        await client.send(message)
        received = await wait_for(server.recv())
        assert type(received) is type(message)
        assert received == message
        await server.send(message)
        echoed = await wait_for(client.recv())
        assert type(echoed) is type(message)
        assert echoed == message


@pytest.mark.parametrize(
    ("server_compression", "client_compression"),
    [("deflate", None), (None, "deflate")],
    ids=["client-declines", "server-declines"],
)
async def test_compression_mismatch_falls_back_to_none(
    server_compression: str | None, client_compression: str | None
) -> None:
    """When one side disables compression nothing is negotiated and messages still flow."""
    async with websocket_pair(
        server_options={"compression": server_compression},
        client_options={"compression": client_compression},
    ) as (server, client):
        assert client.response is not None
        assert "Sec-WebSocket-Extensions" not in client.response.headers
        await client.send("a" * 10_000)
        assert await wait_for(server.recv()) == "a" * 10_000
        await server.send(b"b" * 10_000)
        assert await wait_for(client.recv()) == b"b" * 10_000


async def test_compression_is_negotiated_and_used() -> None:
    """With permessage-deflate negotiated, the server sends RSV1 frames that inflate back."""
    async with (
        loopback_server(hold_open) as server,
        await RawClient.connect("127.0.0.1", server.port) as raw,
    ):
        response = await raw.handshake(headers=[("Sec-WebSocket-Extensions", "permessage-deflate")])
        # The server's default keeps its compressor small: 12-bit windows (RFC 7692 §7.1.2.1).
        assert (
            response.headers["Sec-WebSocket-Extensions"]
            == "permessage-deflate; server_max_window_bits=12"
        )
        ws = next(iter(server.connections))
        await ws.send("z" * 1000)
        frame = await wait_for(raw.recv_frame())
        assert frame.opcode == Opcode.TEXT
        assert frame.rsv1
        assert len(frame.payload) < 100
        inflated = zlib.decompressobj(-15).decompress(frame.payload + b"\x00\x00\xff\xff")
        assert inflated == b"z" * 1000
        raw.send_close(1000)
        assert await wait_for(raw.recv_close()) == (1000, "")


async def test_server_keeps_frames_sent_with_the_request() -> None:
    """A frame in the same segment as the upgrade request is not lost by the server."""
    key = base64.b64encode(os.urandom(16)).decode()
    request = Request(
        "GET",
        "/",
        [
            ("Host", "127.0.0.1"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", key),
            ("Sec-WebSocket-Version", "13"),
        ],
    )
    frame = Frame(Opcode.TEXT, b"early bird").serialize(mask=os.urandom(4))
    async with (
        loopback_server(echo) as server,
        await RawClient.connect("127.0.0.1", server.port) as raw,
    ):
        raw.write(request.serialize() + frame)
        response = await wait_for(raw.read_response())
        assert response.status == 101
        assert await wait_for(raw.recv_frame()) == Frame(Opcode.TEXT, b"early bird")
        raw.send_close(1000)
        assert await wait_for(raw.recv_close()) == (1000, "")


async def test_client_keeps_frames_sent_with_the_101() -> None:
    """A frame in the same segment as the 101 response is not lost by the client."""
    async with raw_server() as listener:
        opening = asyncio.ensure_future(connect(listener.url(), compression=None))
        peer = await wait_for(listener.accept())
        request = await wait_for(peer.read_request())
        response = Response(
            101,
            "",
            [
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Accept", accept_key(request.headers["Sec-WebSocket-Key"])),
            ],
        )
        peer.write(response.serialize() + Frame(Opcode.BINARY, b"first").serialize())
        ws = await wait_for(opening)
        assert await wait_for(ws.recv()) == b"first"
        peer.send_close(1000)
        assert await wait_for(peer.recv_close()) == (1000, "")


# -- the modern API --------------------------------------------------------------------------


async def test_connection_attributes() -> None:
    """request, response, remote_address, id, open and the close fields describe the link."""
    async with websocket_pair(
        "/room/1?x=y", client_options={"additional_headers": {"X-Token": "t0k"}}
    ) as (server, client):
        assert server.request is not None
        assert server.request.method == "GET"
        assert server.request.path == "/room/1?x=y"
        assert server.request.headers["X-Token"] == "t0k"
        assert server.response is not None and server.response.status == 101
        assert client.request is not None and client.request.path == "/room/1?x=y"
        assert client.response is not None and client.response.status == 101
        host, port = server.remote_address[:2]
        assert host == "127.0.0.1"
        assert port == client.transport.get_extra_info("sockname")[1]  # type: ignore[union-attr]
        assert server.remote_address[:2] != client.remote_address[:2]
        assert len(server.id) == 32 and server.id == server.id
        assert server.id != client.id
        assert server.open and client.open
        assert server.close_code is None and server.close_reason is None
        assert client.close_code is None and client.close_reason is None
        assert server.subprotocol is None and client.subprotocol is None
        assert server.writable and server.write_buffer_size == 0
    assert not client.open and not server.open
    assert client.close_code == 1000 and server.close_code == 1000


async def test_async_for_ends_on_normal_close() -> None:
    """``async for`` stops without an error when the peer closes with 1000."""
    async with websocket_pair() as (server, client):
        for n in range(3):
            await server.send(f"m{n}")
        await server.close()
        received = [message async for message in client]
    assert received == ["m0", "m1", "m2"]


async def test_async_for_ends_on_going_away() -> None:
    """``async for`` stops without an error when the peer closes with 1001."""
    async with websocket_pair() as (server, client):
        await server.close(1001, "bye")
        assert [m async for m in client] == []
        assert client.close_code == 1001
        assert client.close_reason == "bye"


async def test_error_close_code_raises_with_code_and_reason() -> None:
    """A close with an application code ends ``recv`` with ConnectionClosedError(code, reason)."""
    async with websocket_pair() as (server, client):
        await server.send("last words")
        await server.close(4001, "see you")
        assert await wait_for(client.recv()) == "last words"
        with pytest.raises(ConnectionClosedError) as exc_info:
            await wait_for(client.recv())
        assert exc_info.value.code == 4001
        assert exc_info.value.reason == "see you"
        assert exc_info.value.rcvd_then_sent is True
        assert client.close_code == 4001
        assert client.close_reason == "see you"
        # The server sees the code echoed back (§5.5.1), without a reason.
        assert server.close_code == 4001
        assert server.close_reason == ""


async def test_client_close_code_and_reason_reach_the_server() -> None:
    """``close(code, reason)`` from the client is what the server's ``recv`` reports."""
    async with websocket_pair() as (server, client):
        await client.close(4000, "done here")
        with pytest.raises(ConnectionClosedError) as exc_info:
            await wait_for(server.recv())
        assert (exc_info.value.code, exc_info.value.reason) == (4000, "done here")
        assert server.close_code == 4000 and server.close_reason == "done here"
        assert client.close_code == 4000


async def test_send_and_recv_after_close_raise_connection_closed() -> None:
    """Once closed, ``send``, ``send_nowait`` and ``ping`` raise and ``recv`` reports the end."""
    async with websocket_pair() as (server, client):
        await client.close()
        with pytest.raises(ConnectionClosedOK):
            await client.recv()
        with pytest.raises(ConnectionClosed):
            await client.send("late")
        with pytest.raises(ConnectionClosed):
            client.send_nowait("late")
        with pytest.raises(ConnectionClosed):
            await client.ping()
        await server.wait_closed()
        with pytest.raises(ConnectionClosedOK):
            await server.recv()


async def test_abnormal_closure_is_1006() -> None:
    """A TCP connection dropped without a close frame ends ``recv`` with 1006."""
    async with websocket_pair() as (server, client):
        assert client.transport is not None
        client.transport.abort()
        with pytest.raises(ConnectionClosedError) as exc_info:
            await wait_for(server.recv())
        assert exc_info.value.code == 1006
        assert server.close_code == 1006
        assert server.close_reason == ""


async def test_concurrent_recv_is_refused() -> None:
    """Two ``recv`` calls at once would race for messages: the second raises InvalidState."""
    async with websocket_pair() as (server, client):
        first = asyncio.ensure_future(client.recv())
        await asyncio.sleep(0)  # let the first call start waiting
        with pytest.raises(InvalidState):
            await client.recv()
        await server.send("for the first")
        assert await wait_for(first) == "for the first"


async def test_ping_returns_latency() -> None:
    """``ping()`` waits for the pong and returns the round trip; ``latency`` keeps it."""
    async with websocket_pair() as (server, client):
        assert client.latency == 0.0
        latency = await wait_for(client.ping())
        assert isinstance(latency, float)
        assert latency > 0.0
        assert client.latency == latency
        assert await wait_for(server.ping(b"custom")) > 0.0


async def test_ping_with_data_in_flight_is_refused() -> None:
    """Two pings with the same data could not be told apart: the second raises InvalidState."""
    async with websocket_pair() as (_server, client):
        first = asyncio.ensure_future(client.ping(b"same"))
        await asyncio.sleep(0)
        with pytest.raises(InvalidState):
            await client.ping(b"same")
        assert await wait_for(first) >= 0.0


async def test_pending_ping_fails_when_the_connection_drops() -> None:
    """A ping waiting for its pong raises ConnectionClosed when the connection is lost."""
    async with (
        loopback_server(hold_open) as server,
        await RawClient.connect("127.0.0.1", server.port) as raw,
    ):
        await raw.handshake()
        ws = next(iter(server.connections))
        pinging = asyncio.ensure_future(ws.ping())
        assert (await wait_for(raw.recv_frame())).opcode == Opcode.PING
        raw.abort()
        with pytest.raises(ConnectionClosedError):
            await wait_for(pinging)


async def test_recv_is_not_available_with_on_message() -> None:
    """A connection with an ``on_message`` callback has no message queue for ``recv``."""
    async with (
        websocket_pair() as (server, _),
        connect(server_url(server.server), on_message=lambda ws, m: None) as client,
    ):
        with pytest.raises(InvalidState):
            await client.recv()


# -- flow control ----------------------------------------------------------------------------


def fill_write_buffer(ws: ServerConnection | ClientConnection, chunk: bytes) -> int:
    """Write ``chunk`` with ``send_nowait`` until the write buffer is over its limit."""
    count = 0
    while ws.writable:
        ws.send_nowait(chunk)
        count += 1
    return count


async def block_sender(
    ws: ServerConnection | ClientConnection, chunk: bytes
) -> tuple[int, asyncio.Future[None]]:
    """Send ``chunk`` until a ``send`` stays pending: the peer has stopped reading.

    The kernel's socket buffers grow while they fill, so one full write buffer is not
    proof yet; the test goes on until a ``send`` waits, and fails if far more than any
    kernel buffers could hold went out (the peer never stopped reading).

    Returns:
        How many chunks were sent (the pending one included) and the pending ``send``.
    """
    count = 0
    while True:
        count += fill_write_buffer(ws, chunk) + 1
        sending = asyncio.ensure_future(ws.send(chunk))
        done, _ = await asyncio.wait([sending], timeout=2 * UNIT)
        if not done:
            return count, sending
        assert count * len(chunk) < 2**27, "the peer never stopped reading"


# Pairs where one side's reading pauses as soon as a few messages are unread.
CHUNK = b"x" * 65536
SLOW_CLIENT: dict[str, Any] = {
    "server_options": {"compression": None, "write_limit": 65536},
    "client_options": {"compression": None, "max_queue": 1},
}
SLOW_SERVER: dict[str, Any] = {
    "server_options": {"compression": None, "max_queue": 4},
    "client_options": {"compression": None, "write_limit": 65536},
}


@pytest.mark.parametrize("server_sends", [True, False], ids=["server-sends", "client-sends"])
async def test_send_waits_while_the_peer_does_not_read(server_sends: bool) -> None:
    """Above ``max_queue`` unread messages the receiver stops reading, so ``send`` waits.

    It returns once the receiver reads again (``recv`` resumes reading).
    """
    async with websocket_pair(**(SLOW_CLIENT if server_sends else SLOW_SERVER)) as pair:
        sender, receiver = pair if server_sends else pair[::-1]
        count, sending = await block_sender(sender, CHUNK)
        for _ in range(count):
            assert await wait_for(receiver.recv()) == CHUNK
        await wait_for(sending)
        assert sender.writable


async def test_drain_returns_once_the_buffer_empties() -> None:
    """``drain`` waits for a full write buffer to go below its low-water mark."""
    async with websocket_pair(**SLOW_CLIENT) as (server, client):
        count = fill_write_buffer(server, CHUNK)
        draining = asyncio.ensure_future(server.drain())
        for _ in range(count):
            await wait_for(client.recv())
        await wait_for(draining)
        assert server.writable


async def test_drain_raises_when_the_connection_drops() -> None:
    """A ``send`` waiting for the peer to read fails with ConnectionClosed if it goes away."""
    async with websocket_pair(**SLOW_CLIENT) as (server, client):
        fill_write_buffer(server, CHUNK)
        sending = asyncio.ensure_future(server.send(b"last"))
        assert client.transport is not None
        client.transport.abort()
        with pytest.raises(ConnectionClosed):
            await wait_for(sending)


# -- backpressure on every handler style -----------------------------------------------------

#: The most a transport reads at once (asyncio's selector transports: 256 KiB; uvloop:
#: 256,000 bytes). What one read brings is processed in full before reading pauses, so
#: it is part of every bound below.
MAX_READ = 256 * 1024


async def until(predicate: Callable[[], bool]) -> None:
    """Wait until ``predicate()`` holds (checked every fifth of a UNIT); fail after WAIT."""

    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(UNIT / 5)

    await wait_for(poll())


@asynccontextmanager
async def silent_peer(**options: Any) -> AsyncIterator[tuple[Server, ServerConnection, RawClient]]:
    """A server connection whose raw peer has stopped reading; plain frames, no keepalive."""
    accepting = Accepting()
    async with loopback_server(
        accepting.handler, compression=None, ping_interval=None, **options
    ) as server:
        raw = await raw_websocket(server)
        try:
            raw.pause_reading()
            yield server, await accepting.next(), raw
        finally:
            await raw.close()


def callback_server(
    on_message: Callable[..., Any], **options: Any
) -> AbstractAsyncContextManager[Server]:
    """A loopback server with an ``on_message`` callback: plain frames, no keepalive."""
    return loopback_server(
        on_message=on_message,
        compression=None,
        ping_interval=None,
        close_timeout=WAIT,
        **options,
    )


async def raw_websocket(server: Server) -> RawClient:
    """A raw client that has completed its handshake (no extension: plain frames)."""
    raw = await RawClient.connect("127.0.0.1", server.port)
    await raw.handshake()
    return raw


async def test_a_peer_that_sends_and_never_reads_meets_a_bounded_callback_echo() -> None:
    """Above ``write_limit`` the server stops reading: a plain callback echo stays bounded.

    The raw peer offers 100 MiB of 64 KiB binary messages to an ``on_message`` echo that
    answers with ``send_nowait``, and reads nothing. The server's buffered bytes never
    exceed ``write_limit`` plus what one read brings, the peer's writes stall (the server
    read far less than was offered), another client is served meanwhile; once the peer
    reads, the server reads again and every message comes back.
    """
    write_limit = 65536
    peak = 0

    def on_message(ws: ServerConnection, message: str | bytes) -> None:
        nonlocal peak
        peak = max(peak, ws.write_buffer_size)
        ws.send_nowait(message)

    frame = Frame(Opcode.BINARY, bytes(range(256)) * 256).serialize(b"mask")
    total = 1600  # 100 MiB
    async with callback_server(on_message, write_limit=write_limit, count_traffic=True) as server:
        raw = await raw_websocket(server)
        raw.pause_reading()
        (conn,) = server.connections

        async def flood() -> None:
            for _ in range(total):
                raw.write(frame)
                await raw.drain()

        sender = asyncio.ensure_future(flood())
        try:
            # Watch until the server has stopped reading for good (ten looks in a row), or
            # the peer got everything through (what happens without backpressure).
            settled = 0

            def stalled() -> bool:
                nonlocal settled
                assert conn.transport is not None
                settled = 0 if conn.transport.is_reading() else settled + 1
                return sender.done() or settled >= 10

            await until(stalled)
            peak = max(peak, conn.write_buffer_size)
            bound = write_limit + MAX_READ + 2 * len(frame)
            assert peak <= bound
            assert not sender.done()
            assert server.stats.bytes_received < total * len(frame) // 4
            async with connect(server_url(server), compression=None) as other:
                await other.send("still served")
                assert await wait_for(other.recv()) == "still served"
            raw.resume_reading()
            echoed = total * (len(frame) - 4)  # unmasked: no masking key
            received = 0
            while received < echoed:
                received += len(await wait_for(raw.reader.read(2**20)))
            assert received == echoed
            await wait_for(sender)
            assert peak <= bound
        finally:
            sender.cancel()
            await raw.close()


@pytest.mark.parametrize("catches", [True, False], ids=["callback-catches", "callback-raises"])
async def test_send_nowait_far_beyond_the_write_limit_closes_the_slow_consumer(
    catches: bool,
) -> None:
    """``send_nowait`` beyond SLOW_CONSUMER_FACTOR times ``write_limit`` buffered closes with 1008.

    A plain callback keeps sending to a peer that reads nothing: sends go on above
    ``write_limit``, the message that finds the buffer over SLOW_CONSUMER_FACTOR times it is
    dropped and the connection closes with 1008 "slow consumer" (counted in the server's
    stats); the next send raises ConnectionClosed, which is not reported to ``on_error``
    if the callback lets it out. What was buffered never went past the limit by more than
    one cork, and the peer gets the close frame after the messages sent before it.
    """
    write_limit = 65536
    chunk = b"y" * 4096
    sent = peak = 0
    raised: list[ConnectionClosed] = []
    errors: list[Exception] = []

    def on_message(ws: ServerConnection, message: str | bytes) -> None:
        nonlocal sent, peak
        try:
            for _ in range(2**14):  # 64 MiB at most: far more than kernel buffers hold
                ws.send_nowait(chunk)
                sent += 1
                peak = max(peak, ws.write_buffer_size)
        except ConnectionClosed as exc:
            raised.append(exc)
            if not catches:
                raise

    async with callback_server(
        on_message, write_limit=write_limit, on_error=lambda ws, exc: errors.append(exc)
    ) as server:
        raw = await raw_websocket(server)
        try:
            raw.pause_reading()
            raw.send_text("go")
            await until(lambda: bool(raised))
            # The limit is checked at each send; a read's cork holds up to CORK_MAX_FRAMES
            # frames before it meets the transport.
            assert write_limit < peak
            assert peak <= SLOW_CONSUMER_FACTOR * write_limit + CORK_MAX_FRAMES * (len(chunk) + 4)
            assert server.stats.slow_consumer_disconnects == 1
            raw.resume_reading()
            for _ in range(sent - 1):  # the last one found the buffer full: dropped
                frame = await wait_for(raw.recv_frame())
                assert (frame.opcode, frame.payload) == (Opcode.BINARY, chunk)
            assert await wait_for(raw.recv_close(skip=())) == (1008, "slow consumer")
            assert errors == []
        finally:
            await raw.close()


async def test_a_closing_server_reads_on_so_that_the_close_handshake_completes() -> None:
    """Reading paused for a full write buffer resumes once the server has sent its close
    frame: the peer's close must be seen, and nothing more can be sent."""
    async with silent_peer() as (_, ws, raw):
        assert ws.transport is not None
        transport = ws.transport
        count, sending = await block_sender(ws, CHUNK)
        assert not transport.is_reading()
        closing = asyncio.ensure_future(ws.close(4000, "bye"))
        await until(transport.is_reading)
        raw.resume_reading()
        for _ in range(count - 1):  # the pending send never got written
            assert (await wait_for(raw.recv_frame())).payload == CHUNK
        assert await wait_for(raw.recv_close(skip=())) == (4000, "bye")
        raw.send_close(4000, "bye")
        await wait_for(closing)
        with pytest.raises(ConnectionClosed):
            await wait_for(sending)


async def test_a_client_send_nowait_is_not_limited_to_the_slow_consumer_bound() -> None:
    """The slow-consumer limit is the server's: a client may queue past it and stays open."""
    async with raw_peer_pair(compression=None, ping_interval=None, write_limit=4096) as (
        ws,
        peer,
    ):
        peer.pause_reading()
        sent = 0
        while ws.write_buffer_size <= 2 * SLOW_CONSUMER_FACTOR * 4096:
            ws.send_nowait(CHUNK)
            sent += 1
            assert sent * len(CHUNK) < 2**27, "the peer never stopped reading"
        assert ws.open
        peer.resume_reading()
        for _ in range(sent):
            assert (await wait_for(peer.recv_frame())).payload == CHUNK


async def test_concurrent_sends_wait_instead_of_being_closed_as_slow_consumers() -> None:
    """``send`` waits before writing: many tasks sending to a peer that does not read all
    wait, holding one message each; none is closed as a slow consumer, and all arrive."""
    async with silent_peer(write_limit=4096) as (server, ws, raw):
        count, first = await block_sender(ws, CHUNK)
        senders = [asyncio.ensure_future(ws.send(CHUNK)) for _ in range(64)]
        await asyncio.sleep(UNIT)  # let them all reach their wait
        assert ws.open and not any(s.done() for s in [first, *senders])
        assert server.stats.slow_consumer_disconnects == 0
        raw.resume_reading()
        for _ in range(count + len(senders)):
            assert (await wait_for(raw.recv_frame())).payload == CHUNK
        await wait_for(asyncio.gather(first, *senders))


async def test_coroutine_on_message_waits_in_a_queue_bounded_by_max_queue() -> None:
    """An ``async def on_message`` is queued like ``recv()``: reading pauses at ``max_queue``.

    20,000 messages arrive in one write; at no time do more than ``max_queue``, plus what
    one read brings, wait for the callback, and every one is handled, in order.
    """
    max_queue = 16
    count = 20_000
    got: list[str | bytes] = []
    peak = 0
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def on_message(ws: ServerConnection, message: str | bytes) -> None:
        nonlocal peak
        got.append(message)
        peak = max(peak, ws.server.stats.messages_received - len(got))
        if len(got) == count:
            done.set_result(None)
        await asyncio.sleep(0)

    messages = [f"{i:05d}".ljust(1000, ".") for i in range(count)]
    frames = [Frame(Opcode.TEXT, m.encode()).serialize(os.urandom(4)) for m in messages]
    async with callback_server(on_message, max_queue=max_queue, count_traffic=True) as server:
        raw = await raw_websocket(server)
        try:
            raw.write(b"".join(frames))
            await wait_for(done)
            assert got == messages
            assert peak <= max_queue + MAX_READ // len(frames[0]) + 1
        finally:
            await raw.close()


async def test_reading_resumes_only_when_every_reason_to_pause_is_gone() -> None:
    """A full ``recv()`` queue and a full write buffer both pause reading.

    Emptying the queue does not resume reading while the buffer is still full; once the
    peer reads and the buffer drains, the server reads again.
    """
    async with silent_peer(max_queue=4) as (_, ws, raw):
        assert ws.transport is not None
        transport = ws.transport
        # One write, so that one read brings all twelve: the queue holds them all.
        raw.write(
            b"".join(
                Frame(Opcode.TEXT, f"m{i}".encode()).serialize(os.urandom(4)) for i in range(12)
            )
        )
        await until(lambda: not transport.is_reading())  # max_queue: paused
        count, sending = await block_sender(ws, CHUNK)  # and the write buffer is full
        assert [await wait_for(ws.recv()) for _ in range(12)] == [f"m{i}" for i in range(12)]
        assert not transport.is_reading()  # the queue is empty, the buffer is not
        raw.send_text("after")
        raw.resume_reading()
        for _ in range(count):
            frame = await wait_for(raw.recv_frame())
            assert frame.payload == CHUNK
        await wait_for(sending)
        assert await wait_for(ws.recv()) == "after"
        assert transport.is_reading()


# -- keepalive -------------------------------------------------------------------------------


async def test_keepalive_closes_when_pings_go_unanswered() -> None:
    """A peer that never answers the keepalive ping is closed with 1011."""
    async with (
        loopback_server(
            hold_open, ping_interval=UNIT, ping_timeout=UNIT, close_timeout=UNIT
        ) as server,
        await RawClient.connect("127.0.0.1", server.port) as raw,
    ):
        await raw.handshake()
        ping = await wait_for(raw.recv_frame())
        assert ping.opcode == Opcode.PING
        code, _ = await wait_for(raw.recv_close())
        assert code == 1011
        assert await wait_for(raw.read_until_eof()) == b""


async def test_keepalive_keeps_a_responsive_peer_and_measures_latency() -> None:
    """A peer that answers every keepalive ping stays open, ping after ping."""
    accepting = Accepting()
    async with (
        loopback_server(accepting.handler, ping_interval=UNIT, ping_timeout=WAIT) as server,
        await RawClient.connect("127.0.0.1", server.port) as raw,
    ):
        await raw.handshake()
        ws = await accepting.next()
        for _ in range(3):
            ping = await wait_for(raw.recv_frame())
            assert ping.opcode == Opcode.PING, "the connection was closed instead of pinged"
            raw.send_frame(Opcode.PONG, ping.payload)
        assert ws.open
        assert ws.latency > 0.0
        raw.send_close(1000)
        assert await wait_for(raw.recv_close()) == (1000, "")


async def test_a_quiet_connection_gives_back_its_compressor_at_a_keepalive_ping() -> None:
    """After a keepalive period without sending, the server drops its compressor; later
    messages still reach the client intact (the client's inflater keeps its window)."""
    accepting = Accepting()
    async with (
        loopback_server(accepting.handler, ping_interval=UNIT, ping_timeout=WAIT) as server,
        connect(server_url(server), compression="deflate", ping_interval=None) as client,
    ):
        ws = await accepting.next()
        message = "the same words again and again, " * 30
        await ws.send(message)
        assert await wait_for(client.recv()) == message
        deflate = ws._core._deflate  # type: ignore[union-attr]
        assert deflate is not None and deflate._compressor is not None  # type: ignore[attr-defined]
        while deflate._compressor is not None:  # type: ignore[attr-defined]
            await asyncio.sleep(UNIT / 4)  # keepalive pings come and go; the client answers
        await ws.send(message)
        await ws.send(message + "!")
        assert await wait_for(client.recv()) == message
        assert await wait_for(client.recv()) == message + "!"


@pytest.mark.skipif(not hasattr(socket, "TCP_INFO"), reason="needs Linux TCP_INFO")
@asynccontextmanager
async def _plain_pair() -> AsyncIterator[tuple[ServerConnection, ClientConnection]]:
    """A server connection and its client, without compression or keepalive."""
    accepting = Accepting()
    async with (
        loopback_server(accepting.handler, compression=None, ping_interval=None) as server,
        connect(server_url(server), compression=None, ping_interval=None) as client,
    ):
        yield await accepting.next(), client


async def test_cork_sends_one_iterations_messages_in_one_write() -> None:
    """After ``cork()`` what is sent waits for the end of the iteration, then leaves at once."""
    async with _plain_pair() as (ws, client):
        before = segments_sent(ws)
        for text in ("one", "two", "three"):
            ws.cork()  # once is enough; again is harmless
            ws.send_nowait(text)
        assert segments_sent(ws) == before  # held
        assert [await wait_for(client.recv()) for _ in range(3)] == ["one", "two", "three"]
        assert segments_sent(ws) == before + 1  # one write carried all three


@pytest.mark.skipif(not hasattr(socket, "TCP_INFO"), reason="needs Linux TCP_INFO")
async def test_a_long_corked_burst_is_written_out_as_it_goes() -> None:
    """A cork is written out early every CORK_MAX_FRAMES frames, so nothing piles up unseen."""
    async with _plain_pair() as (ws, client):
        before = segments_sent(ws)
        count = 3 * CORK_MAX_FRAMES + 1
        for i in range(count):
            ws.cork()
            ws.send_nowait(str(i))
        assert segments_sent(ws) - before >= 2  # written out during the burst
        assert [await wait_for(client.recv()) for _ in range(count)] == [
            str(i) for i in range(count)
        ]


async def test_cork_on_a_closed_connection_is_harmless() -> None:
    """A connection that is gone has nothing to hold; cork() does nothing."""
    async with _plain_pair() as (ws, client):
        await client.close()
        await wait_for(ws.wait_closed())
        ws.cork()
        with pytest.raises(ConnectionClosed):
            ws.send_nowait("too late")


async def test_client_keepalive_closes_when_the_server_is_silent() -> None:
    """The client's keepalive closes with 1011 when the server never answers its ping."""
    timeouts = {"ping_interval": UNIT, "ping_timeout": UNIT, "close_timeout": UNIT}
    async with raw_peer_pair(**timeouts) as (ws, peer):
        ping = await wait_for(peer.recv_frame())
        assert ping.opcode == Opcode.PING
        code, _ = await wait_for(peer.recv_close())
        assert code == 1011
        await wait_for(ws.wait_closed())
        assert ws.close_code == 1006


# -- timeouts --------------------------------------------------------------------------------


async def test_server_drops_a_peer_that_never_answers_its_close() -> None:
    """After ``close_timeout`` without the peer's close frame the server drops TCP."""
    closed: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()

    async def close_at_once(ws: ServerConnection) -> None:
        await ws.close(1000, "now")
        closed.set_result(ws.close_code)

    async with (
        loopback_server(close_at_once, close_timeout=UNIT) as server,
        await RawClient.connect("127.0.0.1", server.port) as raw,
    ):
        await raw.handshake()
        assert await wait_for(raw.recv_close()) == (1000, "now")
        # No answer: the server must give up on its own.
        assert await wait_for(raw.read_until_eof()) == b""
        assert await wait_for(closed) == 1006


async def test_client_drops_a_server_that_never_answers_its_close() -> None:
    """The client's ``close`` returns after ``close_timeout`` when the server is silent."""
    async with raw_peer_pair(close_timeout=UNIT) as (ws, peer):
        closing = asyncio.ensure_future(ws.close(4000, "bye"))
        assert await wait_for(peer.recv_close()) == (4000, "bye")
        await wait_for(closing)
        assert ws.close_code == 1006
        assert await wait_for(peer.read_until_eof()) == b""


async def test_client_waits_for_the_server_to_close_tcp() -> None:
    """After the close handshake the client leaves closing TCP to the server (§7.1.1)."""
    async with raw_peer_pair(close_timeout=WAIT) as (ws, peer):
        peer.send_close(1000, "server says bye")
        assert await wait_for(peer.recv_close()) == (1000, "")
        assert ws.close_code == 1000 and ws.close_reason == "server says bye"
        assert not ws.open
        await peer.close()
        await wait_for(ws.wait_closed())
        assert ws.close_code == 1000


# -- event style -----------------------------------------------------------------------------


class Recorder:
    """Event-style callbacks that record what they see (plain methods)."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[object] = loop.create_future()
        self.closed: asyncio.Future[tuple[int, str]] = loop.create_future()
        self.errors: list[Exception] = []
        self.messages: list[str | bytes] = []

    def on_open(self, ws: Any) -> None:
        self.opened.set_result(ws)

    def on_message(self, ws: Any, message: str | bytes) -> None:
        self.messages.append(message)
        ws.send_nowait(message)

    def on_close(self, ws: Any, code: int, reason: str) -> None:
        self.closed.set_result((code, reason))

    def on_error(self, ws: Any, exc: Exception) -> None:
        self.errors.append(exc)


class AsyncRecorder(Recorder):
    """The same callbacks as coroutines."""

    async def on_open(self, ws: Any) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        self.opened.set_result(ws)

    async def on_message(self, ws: Any, message: str | bytes) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        self.messages.append(message)
        await ws.send(message)

    async def on_close(self, ws: Any, code: int, reason: str) -> None:  # type: ignore[override]
        self.closed.set_result((code, reason))

    async def on_error(self, ws: Any, exc: Exception) -> None:  # type: ignore[override]
        self.errors.append(exc)


@pytest.mark.parametrize("recorder_class", [Recorder, AsyncRecorder], ids=["plain", "async"])
async def test_server_event_style_object(recorder_class: type[Recorder]) -> None:
    """An object's on_open/on_message/on_close run for each connection, in order."""
    recorder = recorder_class()
    async with loopback_server(recorder) as server, connect(server_url(server)) as client:
        ws = await wait_for(recorder.opened)
        assert isinstance(ws, ServerConnection)
        for message in ["one", b"two", "three"]:
            await client.send(message)
            assert await wait_for(client.recv()) == message
        await client.close(4000, "bye")
        assert await wait_for(recorder.closed) == (4000, "bye")
    assert recorder.messages == ["one", b"two", "three"]
    assert recorder.errors == []


@pytest.mark.parametrize("recorder_class", [Recorder, AsyncRecorder], ids=["plain", "async"])
async def test_server_event_style_keywords(recorder_class: type[Recorder]) -> None:
    """The callbacks can be given as keyword arguments instead of an object."""
    recorder = recorder_class()
    async with (
        loopback_server(
            on_open=recorder.on_open,
            on_message=recorder.on_message,
            on_close=recorder.on_close,
        ) as server,
        connect(server_url(server)) as client,
    ):
        await wait_for(recorder.opened)
        await client.send("ping?")
        assert await wait_for(client.recv()) == "ping?"
    assert await wait_for(recorder.closed) == (1000, "")


@pytest.mark.parametrize("recorder_class", [Recorder, AsyncRecorder], ids=["plain", "async"])
async def test_client_event_style(recorder_class: type[Recorder]) -> None:
    """The client takes the same callbacks; on_close gets the server's code and reason."""

    async def handler(ws: ServerConnection) -> None:
        async for message in ws:
            if message == "stop":
                await ws.close(4002, "as asked")
            else:
                await ws.send(message)

    recorder = recorder_class()
    async with loopback_server(handler) as server:
        connector = connect(
            server_url(server),
            on_open=recorder.on_open,
            on_message=recorder.on_message,
            on_close=recorder.on_close,
            on_error=recorder.on_error,
        )
        ws = await wait_for(connector)
        assert await wait_for(recorder.opened) is ws
        # The recorder echoes what it gets, so send one message that stops the loop.
        await ws.send("stop")
        assert await wait_for(recorder.closed) == (4002, "as asked")
        await connector.close()
    assert recorder.errors == []


class FailingPlain:
    """Event-style callbacks whose on_message raises."""

    def __init__(self) -> None:
        self.errors: asyncio.Queue[Exception] = asyncio.Queue()

    def on_message(self, ws: Any, message: str | bytes) -> None:
        raise ValueError("secret internal detail")

    def on_error(self, ws: Any, exc: Exception) -> None:
        self.errors.put_nowait(exc)


class FailingAsync(FailingPlain):
    """The same, with coroutine callbacks."""

    async def on_message(self, ws: Any, message: str | bytes) -> None:  # type: ignore[override]
        raise ValueError("secret internal detail")

    async def on_error(self, ws: Any, exc: Exception) -> None:  # type: ignore[override]
        self.errors.put_nowait(exc)


@pytest.mark.parametrize("failing_class", [FailingPlain, FailingAsync], ids=["plain", "async"])
async def test_callback_error_goes_to_on_error_and_closes_1011(
    failing_class: type[FailingPlain],
) -> None:
    """A raising callback is reported to on_error and closes with 1011 and no detail."""
    callbacks = failing_class()
    async with loopback_server(callbacks) as server, connect(server_url(server)) as client:
        await client.send("boom")
        with pytest.raises(ConnectionClosedError) as exc_info:
            await wait_for(client.recv())
        assert exc_info.value.code == 1011
        assert exc_info.value.reason == ""
        error = await wait_for(callbacks.errors.get())
        assert isinstance(error, ValueError)
        assert str(error) == "secret internal detail"


async def test_a_reply_sent_before_the_callback_fails_leaves_once_before_the_close() -> None:
    """What a failing callback sent in the same read goes out once, before the 1011 close."""

    def on_message(ws: ServerConnection, message: str | bytes) -> None:
        ws.send_nowait("reply")
        raise ValueError("after the reply")

    async with callback_server(on_message) as server:
        raw = await raw_websocket(server)
        try:
            raw.send_text("go")
            frame = await wait_for(raw.recv_frame())
            assert (frame.opcode, frame.payload) == (Opcode.TEXT, b"reply")
            assert await wait_for(raw.recv_close(skip=())) == (1011, "")
            raw.send_close(1011)
            assert await wait_for(raw.read_until_eof()) == b""  # nothing after the close
        finally:
            await raw.close()


async def test_handler_error_goes_to_on_error_and_closes_1011() -> None:
    """A modern handler that raises closes with 1011 and reports the error to on_error."""
    errors: asyncio.Queue[Exception] = asyncio.Queue()

    async def handler(ws: ServerConnection) -> None:
        await ws.recv()
        raise RuntimeError("database password is hunter2")

    async with (
        loopback_server(handler, on_error=lambda ws, exc: errors.put_nowait(exc)) as server,
        connect(server_url(server)) as client,
    ):
        await client.send("go")
        with pytest.raises(ConnectionClosedError) as exc_info:
            await wait_for(client.recv())
        assert (exc_info.value.code, exc_info.value.reason) == (1011, "")
        error = await wait_for(errors.get())
        assert isinstance(error, RuntimeError)


async def test_protocol_error_is_reported_to_on_error() -> None:
    """A peer that breaks the protocol is reported to on_error as a ProtocolError."""
    recorder = Recorder()
    async with (
        loopback_server(recorder) as server,
        await RawClient.connect("127.0.0.1", server.port) as raw,
    ):
        await raw.handshake()
        raw.send_frame(Opcode.TEXT, b"unmasked", mask=False)
        code, _ = await wait_for(raw.recv_close())
        assert code == 1002
    assert await wait_for(recorder.closed) == (1006, "")
    assert [type(e).__name__ for e in recorder.errors] == ["ProtocolError"]


async def test_unsolicited_pong_is_ignored() -> None:
    """A pong nobody asked for is a heartbeat (§5.5.3): nothing breaks."""
    async with (
        loopback_server(echo) as server,
        await RawClient.connect("127.0.0.1", server.port) as raw,
    ):
        await raw.handshake()
        raw.send_frame(Opcode.PONG, b"heartbeat")
        raw.send_text("still fine")
        assert (await wait_for(raw.recv_frame())).payload == b"still fine"
        raw.send_close(1000)
        assert await wait_for(raw.recv_close()) == (1000, "")


async def test_messages_without_on_message_are_dropped() -> None:
    """An event-style server without on_message discards messages and stays open."""
    opened: asyncio.Queue[ServerConnection] = asyncio.Queue()
    async with (
        loopback_server(on_open=lambda ws: opened.put_nowait(ws)) as server,
        connect(server_url(server)) as client,
    ):
        ws = await wait_for(opened.get())
        await client.send("into the void")
        assert await wait_for(client.ping()) > 0.0  # the message was read before the ping
        assert ws.open
        with pytest.raises(InvalidState):
            await ws.recv()


async def test_raising_on_open_closes_with_1011() -> None:
    """on_open failing is reported to on_error, and the connection closes with 1011."""
    errors: asyncio.Queue[Exception] = asyncio.Queue()

    def on_open(ws: Any) -> None:
        raise LookupError("no such room")

    async with (
        loopback_server(on_open=on_open, on_error=lambda ws, e: errors.put_nowait(e)) as server,
        connect(server_url(server)) as client,
    ):
        with pytest.raises(ConnectionClosedError) as exc_info:
            await wait_for(client.recv())
        assert (exc_info.value.code, exc_info.value.reason) == (1011, "")
        assert isinstance(await wait_for(errors.get()), LookupError)


@pytest.mark.parametrize("asynchronous", [False, True], ids=["plain", "async"])
async def test_failing_on_error_is_logged(
    asynchronous: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """An on_error that raises itself is logged, not called again; the close is 1011."""
    calls: list[Exception] = []

    def on_message(ws: Any, message: str | bytes) -> None:
        raise ValueError("first")

    def on_error(ws: Any, exc: Exception) -> None:
        calls.append(exc)
        raise RuntimeError("second")

    async def on_error_async(ws: Any, exc: Exception) -> None:
        on_error(ws, exc)

    async with (
        loopback_server(
            on_message=on_message, on_error=on_error_async if asynchronous else on_error
        ) as server,
        connect(server_url(server)) as client,
    ):
        await client.send("x")
        with pytest.raises(ConnectionClosedError) as exc_info:
            await wait_for(client.recv())
        assert exc_info.value.code == 1011
    assert [type(e) for e in calls] == [ValueError]
    assert "on_error callback failed" in caplog.text


async def test_callback_error_without_on_error_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    """Without on_error, a raising callback is logged and the connection closes with 1011."""

    def on_message(ws: Any, message: str | bytes) -> None:
        raise ValueError("nobody listens")

    async with (
        loopback_server(on_message=on_message) as server,
        connect(server_url(server)) as client,
    ):
        await client.send("x")
        with pytest.raises(ConnectionClosedError) as exc_info:
            await wait_for(client.recv())
        assert exc_info.value.code == 1011
    assert "callback failed" in caplog.text


async def test_refused_ping_leaves_nothing_behind() -> None:
    """A ping over 125 bytes is refused each time, and never counts as in flight."""
    async with websocket_pair() as (_server, client):
        for _ in range(2):
            with pytest.raises(InvalidState, match="125 bytes"):
                await client.ping(b"x" * 126)
        assert await wait_for(client.ping(b"x" * 125)) > 0.0


# -- handshake messages kept as bytes; deadlines on one timing wheel ---------------------------


@pytest.mark.parametrize("compression", ["deflate", None])
async def test_server_reads_back_the_handshake_as_it_crossed_the_wire(
    compression: str | None,
) -> None:
    """ws.request and ws.response, kept as bytes until read, parse to what crossed the wire."""
    options = {"compression": compression}
    async with websocket_pair(
        "/a?b=c",
        server_options=options,
        client_options={**options, "additional_headers": [("X-Two", "1"), ("x-two", "2")]},
    ) as (server, client):
        assert client.request is not None and client.response is not None
        request = server.request
        assert request is not None and request is server.request  # parsed once, then kept
        assert (request.method, request.path) == ("GET", "/a?b=c")
        assert request.headers.items() == client.request.headers.items()
        response = server.response
        assert response is not None and response is server.response
        assert response == client.response
        assert response.serialize() == client.response.serialize()
        await client.send("still works")
        assert await wait_for(server.recv()) == "still works"


async def test_deadlines_are_forgotten_with_their_connections() -> None:
    """Open, keepalive and closed connections leave no deadline and no pending entry behind."""
    accepting = Accepting()
    async with loopback_server(accepting.handler, ping_interval=UNIT, open_timeout=WAIT) as server:
        raw = await RawClient.connect("127.0.0.1", server.port)
        clients = [await connect(server_url(server)) for _ in range(5)]
        conns = [await accepting.next() for _ in clients]
        deadlines = conns[0]._opts.deadlines(asyncio.get_running_loop())
        while not server._pending:
            await asyncio.sleep(0)
        # five keepalives and one open_timeout (the raw client never sends its request)
        assert len(deadlines) == 6
        for client in clients:
            await client.close()
        await raw.close()
        for conn in conns:
            await wait_for(conn.wait_closed())
        while server._pending:
            await asyncio.sleep(0)
        assert len(deadlines) == 0


class _Armed:
    """The part of a connection that Deadlines drives: one deadline slot and its callback."""

    def __init__(self, name: str, fired: list[str]) -> None:
        self.name = name
        self.fired = fired
        self._deadline: set[Any] | None = None

    def _deadline_passed(self) -> None:
        self.fired.append(self.name)


async def test_deadlines_fire_in_order_once_and_not_when_disarmed() -> None:
    """Deadlines fire in time order, each once; a discarded one never fires."""
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop, resolution=UNIT / 8)
    fired: list[str] = []
    armed = {name: _Armed(name, fired) for name in "abcd"}
    for name, delay in (("c", 3 * UNIT), ("a", UNIT), ("b", 2 * UNIT), ("d", 2 * UNIT)):
        armed[name]._deadline = deadlines.arm(armed[name], delay)  # type: ignore[arg-type]
    slot = armed["d"]._deadline
    assert slot is not None
    slot.discard(armed["d"])
    armed["d"]._deadline = None
    assert len(deadlines) == 3

    async def three_fired() -> None:
        while len(fired) < 3:
            await asyncio.sleep(UNIT / 4)

    await wait_for(three_fired())
    assert fired == ["a", "b", "c"]
    assert len(deadlines) == 0
    assert all(a._deadline is None for a in armed.values())


class _Failing(_Armed):
    def _deadline_passed(self) -> None:
        super()._deadline_passed()
        raise RuntimeError("deadline callback failed")


async def test_a_failing_deadline_does_not_stop_the_others() -> None:
    """A deadline callback that raises is reported to the loop; the rest of its slot fires."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: reported.append(context))
    try:
        deadlines = Deadlines(loop, resolution=UNIT)
        fired: list[str] = []
        armed = [_Failing("x", fired), _Armed("y", fired), _Failing("z", fired)]
        for a in armed:
            a._deadline = deadlines.arm(a, UNIT)  # type: ignore[arg-type]

        async def all_fired() -> None:
            while len(fired) < 3:
                await asyncio.sleep(UNIT / 4)

        await wait_for(all_fired())
    finally:
        loop.set_exception_handler(previous)
    assert sorted(fired) == ["x", "y", "z"]
    assert [type(c["exception"]) for c in reported] == [RuntimeError, RuntimeError]
