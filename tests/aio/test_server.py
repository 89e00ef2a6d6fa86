"""Tests for wshub.aio.server: the handshake, HTTP on the same port, fan-out and shutdown.

Refusals are checked through a raw socket, so the exact status line and headers that
a client would see are asserted, not what wshub's own client makes of them.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from collections.abc import Awaitable, Iterable
from typing import Any

import pytest

import wshub
from wshub import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidResponse,
    Request,
    Response,
    Server,
    ServerConnection,
    broadcast,
    connect,
    serve,
)
from wshub.aio import send_prepared_many
from wshub.protocol import Frame, Opcode, PreparedMessage
from wshub.testing import (
    RawClient,
    echo,
    loopback_server,
    segments_sent,
    server_url,
    websocket_pair,
)

from . import UNIT, WAIT, PeerCloses, wait_for


def upgrade_headers(
    replace: dict[str, str | None] | None = None, add: Iterable[tuple[str, str]] = ()
) -> list[tuple[str, str]]:
    """A valid upgrade request's headers, some replaced (``None`` removes one)."""
    base = {
        "Host": "127.0.0.1",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "Sec-WebSocket-Version": "13",
    }
    base.update(replace or {})
    return [(k, v) for k, v in base.items() if v is not None] + list(add)


async def exchange(server: Server, data: bytes) -> tuple[Response, bytes]:
    """Send raw bytes, read the HTTP response, then everything until the server closes."""
    async with await RawClient.connect("127.0.0.1", server.port) as raw:
        raw.write(data)
        response = await wait_for(raw.read_response())
        rest = await wait_for(raw.read_until_eof())
    return response, rest


def request(path: str = "/", headers: Iterable[tuple[str, str]] = (), **kwargs: Any) -> bytes:
    return Request(kwargs.pop("method", "GET"), path, list(headers), **kwargs).serialize()


# -- handshake refusals ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("replace", "status"),
    [
        ({"Sec-WebSocket-Version": "8"}, 426),
        ({"Sec-WebSocket-Key": "not base64!"}, 400),
        ({"Sec-WebSocket-Key": base64.b64encode(b"short").decode()}, 400),
        ({"Sec-WebSocket-Key": None}, 400),
        ({"Connection": "keep-alive"}, 400),
        ({"Host": None}, 400),
        ({"Upgrade": None}, 426),
    ],
    ids=[
        "wrong-version",
        "key-not-base64",
        "key-wrong-length",
        "key-missing",
        "no-connection-upgrade",
        "no-host",
        "no-upgrade",
    ],
)
async def test_invalid_upgrade_is_refused_with_its_status(
    replace: dict[str, str | None], status: int
) -> None:
    """Each malformed upgrade request gets the HTTP status RFC 6455 §4.2 assigns to it."""
    async with loopback_server(echo) as server:
        response, rest = await exchange(server, request(headers=upgrade_headers(replace)))
        assert response.status == status
        assert rest == b""
        assert response.headers.get("Sec-WebSocket-Accept") is None
        assert server.connections == set()


async def test_wrong_version_names_the_supported_one() -> None:
    """A 426 for another version carries ``Sec-WebSocket-Version: 13`` (§4.2.2)."""
    async with loopback_server(echo) as server:
        response, _ = await exchange(
            server, request(headers=upgrade_headers({"Sec-WebSocket-Version": "8"}))
        )
        assert response.status == 426
        assert response.headers.get_all("Sec-WebSocket-Version") == ["13"]


async def test_missing_upgrade_is_426_with_upgrade_header() -> None:
    """A request without ``Upgrade: websocket`` is told which upgrade is required."""
    async with loopback_server(echo) as server:
        response, _ = await exchange(server, request(headers=upgrade_headers({"Upgrade": None})))
        assert response.status == 426
        assert response.headers["Upgrade"] == "websocket"
        assert response.headers["Sec-WebSocket-Version"] == "13"


async def test_post_upgrade_is_405() -> None:
    """Only GET can be upgraded; another method gets 405 with ``Allow: GET``."""
    async with loopback_server(echo) as server:
        response, _ = await exchange(server, request(headers=upgrade_headers(), method="POST"))
        assert response.status == 405
        assert response.headers["Allow"] == "GET"


async def test_plain_http_without_process_request_is_426() -> None:
    """A plain GET to a WebSocket-only server is answered 426 Upgrade Required."""
    async with loopback_server(echo) as server:
        response, rest = await exchange(
            server, request(headers=[("Host", "127.0.0.1"), ("Accept", "text/html")])
        )
        assert response.status == 426
        assert response.headers["Connection"].lower() == "close"
        assert rest == b""


async def test_malformed_http_is_400() -> None:
    """Bytes that are not an HTTP request get 400 and the connection is closed."""
    async with loopback_server(echo) as server:
        response, rest = await exchange(server, b"HELLO\r\n\r\n")
        assert response.status == 400
        assert rest == b""


@pytest.mark.parametrize(
    ("origin", "allowed", "status"),
    [
        ("https://good.example", ["https://good.example"], 101),
        ("https://evil.example", ["https://good.example"], 403),
        (None, ["https://good.example"], 403),
        (None, ["https://good.example", None], 101),
        ("https://any.example", None, 101),
    ],
    ids=["listed", "not-listed", "missing", "missing-allowed", "no-allowlist"],
)
async def test_origins_allowlist(
    origin: str | None, allowed: list[str | None] | None, status: int
) -> None:
    """Only listed ``Origin`` values are upgraded; others get 403 (§10.2)."""
    add = [("Origin", origin)] if origin is not None else []
    async with (
        loopback_server(echo, origins=allowed) as server,
        await RawClient.connect("127.0.0.1", server.port) as raw,
    ):
        if status == 101:
            response = await wait_for(raw.handshake(headers=add))
            assert response.status == 101
            raw.send_text("hi")
            assert (await wait_for(raw.recv_frame())).payload == b"hi"
            raw.send_close(1000)
            assert await wait_for(raw.recv_close()) == (1000, "")
        else:
            raw.send_request("/", upgrade_headers(add=add))
            response = await wait_for(raw.read_response())
            assert response.status == status
            assert response.body == b"origin not allowed\n"


async def test_client_origin_option_passes_the_allowlist() -> None:
    """``connect(origin=...)`` sends the Origin header the server checks."""
    async with loopback_server(echo, origins=["https://app.example"]) as server:
        async with connect(server_url(server), origin="https://app.example") as ws:
            await ws.send("ok")
            assert await wait_for(ws.recv()) == "ok"
        with pytest.raises(InvalidResponse) as exc_info:
            await connect(server_url(server), origin="https://other.example")
        assert exc_info.value.status == 403


async def test_max_connections_refuses_with_503() -> None:
    """Above ``max_connections`` open connections, upgrades get 503 until one closes."""
    async with loopback_server(echo, max_connections=1) as server:
        async with connect(server_url(server)) as first:
            await first.send("x")
            assert await wait_for(first.recv()) == "x"
            response, _ = await exchange(server, request(headers=upgrade_headers()))
            assert response.status == 503
            with pytest.raises(InvalidResponse) as exc_info:
                await connect(server_url(server))
            assert exc_info.value.status == 503
        await first.wait_closed()
        async with connect(server_url(server)) as second:
            await second.send("y")
            assert await wait_for(second.recv()) == "y"


async def test_oversized_request_head_is_431() -> None:
    """A request head over ``max_request_size`` gets 431."""
    async with loopback_server(echo, max_request_size=1024) as server:
        headers = upgrade_headers(add=[(f"X-Filler-{n}", "f" * 100) for n in range(12)])
        response, _ = await exchange(server, request(headers=headers))
        assert response.status == 431


async def test_oversized_header_line_is_431() -> None:
    """A single header line over the line limit gets 431 even without a total limit."""
    async with loopback_server(echo, max_request_size=None) as server:
        headers = upgrade_headers(add=[("X-Big", "b" * 9000)])
        response, _ = await exchange(server, request(headers=headers))
        assert response.status == 431


async def test_oversized_request_body_is_413() -> None:
    """A ``Content-Length`` that would exceed ``max_request_size`` gets 413 at once."""
    async with loopback_server(echo, max_request_size=4096) as server:
        head = [("Host", "127.0.0.1"), ("Content-Length", "100000")]
        response, _ = await exchange(server, request("/upload", head, method="POST"))
        assert response.status == 413


# -- process_request -------------------------------------------------------------------------


PAGE = "<!doctype html><title>wshub</title><p>hello</p>"


def route(connection: ServerConnection, req: Request) -> Response | None:
    """A page at /, 401 for upgrades to /private, the upgrade everywhere else."""
    if req.path == "/":
        return Response.html(200, PAGE)
    if req.path == "/private" and req.headers.get("Authorization") != "Bearer ok":
        return Response.text(401, "who are you?\n", [("WWW-Authenticate", "Bearer")])
    if req.path == "/echo-body":
        return Response.bytes(200, req.body, "application/octet-stream")
    return None


async def route_async(connection: ServerConnection, req: Request) -> Response | None:
    await asyncio.sleep(0)
    return route(connection, req)


def route_deferred(connection: ServerConnection, req: Request) -> Awaitable[Response | None]:
    """A plain hook that returns an awaitable: the server waits for it (in a Task)."""
    return route_async(connection, req)


@pytest.mark.parametrize(
    "process_request", [route, route_async, route_deferred], ids=["plain", "async", "deferred"]
)
async def test_process_request_serves_plain_http(process_request: Any) -> None:
    """A Response from process_request answers a plain GET on the WebSocket port."""
    async with loopback_server(echo, process_request=process_request) as server:
        response, rest = await exchange(server, request("/", [("Host", "127.0.0.1")]))
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        assert response.body == PAGE.encode()
        assert rest == b""
        # The request body is read and handed over.
        body = os.urandom(300)
        response, _ = await exchange(
            server,
            request(
                "/echo-body",
                [("Host", "127.0.0.1"), ("Content-Length", str(len(body)))],
                method="POST",
                body=body,
            ),
        )
        assert response.status == 200
        assert response.body == body


@pytest.mark.parametrize(
    "process_request", [route, route_async, route_deferred], ids=["plain", "async", "deferred"]
)
async def test_process_request_can_refuse_an_upgrade(process_request: Any) -> None:
    """A Response for an upgrade request is sent instead of the 101."""
    async with loopback_server(echo, process_request=process_request) as server:
        response, _ = await exchange(server, request("/private", upgrade_headers()))
        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        with pytest.raises(InvalidResponse) as exc_info:
            await connect(server_url(server, "/private"))
        assert exc_info.value.status == 401
        assert server.connections == set()


@pytest.mark.parametrize(
    "process_request", [route, route_async, route_deferred], ids=["plain", "async", "deferred"]
)
async def test_process_request_returning_none_upgrades(process_request: Any) -> None:
    """``None`` from process_request lets the upgrade go on, with the request's headers."""
    async with (
        loopback_server(echo, process_request=process_request) as server,
        connect(
            server_url(server, "/private"), additional_headers={"Authorization": "Bearer ok"}
        ) as ws,
    ):
        await ws.send("let me in")
        assert await wait_for(ws.recv()) == "let me in"


async def broken(connection: ServerConnection, req: Request) -> Response | None:
    raise RuntimeError("SELECT * FROM secrets")


def broken_sync(connection: ServerConnection, req: Request) -> Response | None:
    raise RuntimeError("SELECT * FROM secrets")


@pytest.mark.parametrize("process_request", [broken_sync, broken], ids=["plain", "async"])
async def test_process_request_error_is_500_without_details(
    process_request: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A raising process_request gets 500; the body names no exception, no traceback."""
    async with loopback_server(echo, process_request=process_request) as server:
        for data in (request("/", [("Host", "127.0.0.1")]), request("/", upgrade_headers())):
            response, _ = await exchange(server, data)
            assert response.status == 500
            assert b"SELECT" not in response.body
            assert b"Traceback" not in response.body
            assert b"RuntimeError" not in response.body
    assert "process_request failed" in caplog.text


async def test_process_request_sees_the_connection() -> None:
    """process_request gets the connection, whose remote address is known already."""
    seen: list[Any] = []

    def remember(connection: ServerConnection, req: Request) -> None:
        seen.append((connection.remote_address[0], req.method, req.path))

    async with (
        loopback_server(echo, process_request=remember) as server,
        connect(server_url(server, "/p?q=1")) as ws,
    ):
        await ws.send("x")
        assert await wait_for(ws.recv()) == "x"
    assert seen == [("127.0.0.1", "GET", "/p?q=1")]


# -- open_timeout ----------------------------------------------------------------------------


@pytest.mark.parametrize("partial", [b"", b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"])
async def test_open_timeout_drops_an_unfinished_request(partial: bytes) -> None:
    """A client that does not finish its request within ``open_timeout`` is dropped unanswered."""
    async with (
        loopback_server(echo, open_timeout=UNIT) as server,
        await RawClient.connect("127.0.0.1", server.port) as raw,
    ):
        raw.write(partial)
        assert await wait_for(raw.read_until_eof()) == b""


async def test_open_timeout_does_not_touch_open_connections() -> None:
    """``open_timeout`` bounds the handshake only: an open connection outlives it."""
    async with (
        loopback_server(
            echo, open_timeout=2 * UNIT, ping_interval=UNIT, ping_timeout=WAIT
        ) as server,
        await RawClient.connect("127.0.0.1", server.port) as raw,
    ):
        await wait_for(raw.handshake())
        # The server's own keepalive pings, ping_interval apart, show that several
        # open_timeouts have passed.
        for _ in range(5):
            ping = await wait_for(raw.recv_frame())
            assert ping.opcode == Opcode.PING
            raw.send_frame(Opcode.PONG, ping.payload)
        raw.send_text("still here")
        frame = await wait_for(raw.recv_frame())
        while frame.opcode == Opcode.PING:
            frame = await wait_for(raw.recv_frame())
        assert frame.payload == b"still here"


# -- handlers --------------------------------------------------------------------------------


async def test_handler_return_closes_with_1000() -> None:
    """When the handler returns, the connection is closed normally."""

    async def greet(ws: ServerConnection) -> None:
        await ws.send(f"hello {ws.request.path}")  # type: ignore[union-attr]

    async with loopback_server(greet) as server, connect(server_url(server, "/bob")) as ws:
        assert await wait_for(ws.recv()) == "hello /bob"
        with pytest.raises(ConnectionClosedOK):
            await wait_for(ws.recv())
        assert ws.close_code == 1000


async def test_server_attributes() -> None:
    """``port``, ``sockets`` and ``connections`` describe the listening server."""
    async with websocket_pair() as (server_ws, client):
        server = server_ws.server
        assert server.port == server.sockets[0].getsockname()[1]
        assert server.sockets[0].getsockname()[0] == "127.0.0.1"
        assert server.connections == {server_ws}
        await client.close()
        await wait_for(server_ws.wait_closed())
        assert server.connections == set()


async def test_serve_is_awaitable_and_start_is_idempotent() -> None:
    """``await serve(...)`` starts listening; starting again changes nothing."""
    server = await serve(echo, "127.0.0.1", 0)
    try:
        port = server.port
        assert await server.start() is server
        assert server.port == port
        async with connect(server_url(server)) as ws:
            await ws.send("a")
            assert await wait_for(ws.recv()) == "a"
    finally:
        server.close()
        await server.wait_closed()


async def test_serve_on_a_given_socket() -> None:
    """``sock=`` serves on a socket the caller bound."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    async with serve(echo, sock=sock) as server:
        assert server.port == sock.getsockname()[1]
        async with connect(server_url(server)) as ws:
            await ws.send(b"b")
            assert await wait_for(ws.recv()) == b"b"


@pytest.mark.parametrize(
    "options",
    [
        {"on_message": lambda ws, m: None},
        {"compression": "gzip"},
        {"max_size": 0},
        {"max_queue": 0},
        {"write_limit": -1},
    ],
    ids=["handler-and-on_message", "unknown-compression", "max_size", "max_queue", "write_limit"],
)
def test_serve_rejects_invalid_options(options: dict[str, Any]) -> None:
    """Invalid options fail when ``serve`` is called, not on the first connection."""

    async def handler(ws: ServerConnection) -> None:  # pragma: no cover - never runs
        pass

    with pytest.raises(ValueError):
        serve(handler, "127.0.0.1", 0, **options)


async def test_subprotocol_follows_server_preference() -> None:
    """The server picks its most preferred subprotocol among the client's offers."""
    async with websocket_pair(
        server_options={"subprotocols": ["chat.v2", "chat.v1"]},
        client_options={"subprotocols": ["chat.v1", "chat.v2"]},
    ) as (server_ws, client):
        assert server_ws.subprotocol == "chat.v2"
        assert client.subprotocol == "chat.v2"


# -- broadcast -------------------------------------------------------------------------------


async def test_broadcast_reaches_every_open_connection() -> None:
    """``broadcast`` writes to every open connection and counts them."""
    async with loopback_server(echo) as server:
        clients = [await connect(server_url(server)) for _ in range(3)]
        try:
            for ws in clients:  # every connection is registered once it echoes
                await ws.send("ready")
                assert await wait_for(ws.recv()) == "ready"
            assert broadcast(server.connections, "news") == 3
            assert server.broadcast(b"\x00\x01") == 3
            for ws in clients:
                assert await wait_for(ws.recv()) == "news"
                assert await wait_for(ws.recv()) == b"\x00\x01"
            everyone = set(server.connections)
            await clients[0].close()
            # A closed connection is passed over; the open ones still get the message.
            assert broadcast(everyone, "more") == 2
            for ws in clients[1:]:
                assert await wait_for(ws.recv()) == "more"
        finally:
            for ws in clients:
                await ws.close()


async def test_broadcast_from_clients_masks_each_frame() -> None:
    """Client connections must mask, so ``broadcast`` frames the message per connection."""
    received: asyncio.Queue[str | bytes] = asyncio.Queue()

    async def collect(ws: ServerConnection) -> None:
        async for message in ws:
            await received.put(message)

    async with loopback_server(collect) as server:
        clients = [await connect(server_url(server)) for _ in range(2)]
        try:
            assert broadcast(clients, "from clients") == 2
            assert [await wait_for(received.get()) for _ in clients] == ["from clients"] * 2
        finally:
            for ws in clients:
                await ws.close()


async def test_send_prepared_nowait_shares_frames_and_compression() -> None:
    """A PreparedMessage reaches every server connection: plain clients, clients whose
    compression is shared (deflate-shared) and clients with context takeover alike; a
    closed connection raises ConnectionClosed."""
    async with loopback_server(echo, compression="deflate-shared") as server:
        clients = [
            await connect(server_url(server), compression=compression)
            for compression in (None, "deflate", "deflate-shared")
        ]
        try:
            for ws in clients:
                await ws.send("ready")
                assert await wait_for(ws.recv()) == "ready"
            prepared = PreparedMessage("news " * 50)
            conns = list(server.connections)
            for conn in conns:
                conn.send_prepared_nowait(prepared)
                conn.send_prepared_nowait(PreparedMessage(b"\x00\x01"))
            for ws in clients:
                assert await wait_for(ws.recv()) == "news " * 50
                assert await wait_for(ws.recv()) == b"\x00\x01"
            await clients[0].close()
            closed = [conn for conn in conns if not conn.open]
            while not closed:
                await asyncio.sleep(0)
                closed = [conn for conn in conns if not conn.open]
            with pytest.raises(ConnectionClosed):
                closed[0].send_prepared_nowait(prepared)
        finally:
            for ws in clients:
                await ws.close()


async def test_send_prepared_many_batches_shared_frames_and_counts_once() -> None:
    """send_prepared_many writes each open connection the frame it can share (plain,
    deflate-shared, or its own compression), two in one iteration in order, counts the
    traffic (count_traffic) exactly once per message, and returns the index of a closed
    connection for the caller to deal with."""
    async with loopback_server(echo, compression="deflate-shared", count_traffic=True) as (server):
        clients = [
            await connect(server_url(server), compression=compression)
            for compression in (None, "deflate", "deflate-shared", None)
        ]
        try:
            for ws in clients:
                await ws.send("ready")
                assert await wait_for(ws.recv()) == "ready"
            conns = list(server.connections)
            await clients[3].close()
            while all(conn.open for conn in conns):
                await asyncio.sleep(0)
            closed = [i for i, conn in enumerate(conns) if not conn.open]
            sent_before = server.stats.messages_sent
            first, second = PreparedMessage("news " * 50), PreparedMessage(b"\x00\x01")
            assert send_prepared_many(conns, first) == closed
            assert send_prepared_many(conns, second) == closed
            for ws in clients[:3]:
                assert await wait_for(ws.recv()) == "news " * 50
                assert await wait_for(ws.recv()) == b"\x00\x01"
            assert server.stats.messages_sent - sent_before == 6
            assert send_prepared_many([], first) == []
        finally:
            for ws in clients:
                await ws.close()


async def test_send_prepared_many_counts_each_server_apart() -> None:
    """Connections of two counting servers in one call: each server counts its own."""
    async with (
        loopback_server(echo, compression=None, count_traffic=True) as one,
        loopback_server(echo, compression=None, count_traffic=True) as two,
    ):
        clients = [await connect(server_url(s), compression=None) for s in (one, two, one)]
        try:
            for ws in clients:
                await ws.send("ready")
                assert await wait_for(ws.recv()) == "ready"
            before = (one.stats.messages_sent, two.stats.messages_sent)
            first, *rest = one.connections
            conns = [first, *two.connections, *rest]
            assert send_prepared_many(conns, PreparedMessage("both")) == []
            for ws in clients:
                assert await wait_for(ws.recv()) == "both"
            assert one.stats.messages_sent - before[0] == 2
            assert two.stats.messages_sent - before[1] == 1
        finally:
            for ws in clients:
                await ws.close()


async def test_send_prepared_many_leaves_a_connection_above_its_limit_to_the_caller() -> None:
    """A connection whose write buffer is above write_limit is neither written nor closed:
    its index comes back, and the connections that keep up get the message."""
    async with loopback_server(echo, compression=None, write_limit=4096, close_timeout=WAIT) as (
        server
    ):
        raw, slow, fast = await _slow_consumer_setup(server, 2)
        try:
            chunk = PreparedMessage("m" * 8192)
            while slow.writable:
                slow.send_nowait(chunk.message)
                await asyncio.sleep(0)
            conns = [c for c in server.connections if c is not slow] + [slow]
            assert send_prepared_many(conns, PreparedMessage("after")) == [2]
            assert slow.open
            for ws in fast:
                assert await wait_for(ws.recv()) == "after"
        finally:
            raw.abort()
            for ws in fast:
                await ws.close()


def test_broadcast_rejects_an_unknown_policy() -> None:
    """``slow_consumer`` is "skip" or "close"; anything else is a ValueError."""
    with pytest.raises(ValueError):
        broadcast([], "x", slow_consumer="wait")


async def _slow_consumer_setup(
    server: Server, fast_count: int
) -> tuple[RawClient, ServerConnection, list[wshub.ClientConnection]]:
    """One raw client that never reads, and ``fast_count`` clients that read."""
    fast = [await connect(server_url(server), compression=None) for _ in range(fast_count)]
    for ws in fast:
        await ws.send("ready")
        assert await wait_for(ws.recv()) == "ready"
    known = set(server.connections)
    raw = await RawClient.connect("127.0.0.1", server.port, rcvbuf=4096, limit=4096)
    await raw.handshake()
    raw.send_text("ready")
    assert (await wait_for(raw.recv_frame())).payload == b"ready"
    raw.pause_reading()
    (slow,) = set(server.connections) - known
    return raw, slow, fast


async def _read_all(ws: wshub.ClientConnection, until: str) -> list[str | bytes]:
    messages: list[str | bytes] = []
    while (message := await ws.recv()) != until:
        messages.append(message)
    return messages


@pytest.mark.parametrize("policy", ["skip", "close"])
async def test_broadcast_slow_consumer_policy(policy: str) -> None:
    """A consumer over ``write_limit`` is skipped (or closed 1008); the others get everything."""
    async with loopback_server(echo, compression=None, write_limit=4096, close_timeout=WAIT) as (
        server
    ):
        raw, slow, fast = await _slow_consumer_setup(server, 2)
        readers = [asyncio.ensure_future(_read_all(ws, "the end")) for ws in fast]
        fast_side = [c for c in server.connections if c is not slow]
        chunk = "m" * 8192
        sent = []
        try:
            count = 0
            while slow.writable:
                assert broadcast(server.connections, f"{count:06d}{chunk}") == 3
                sent.append(f"{count:06d}{chunk}")
                count += 1
                assert count < 10_000, "the slow consumer's buffers never filled"
                for conn in fast_side:  # the fast ones keep up: wait for them to drain
                    await wait_for(conn.drain())
            # Now the slow consumer is over its limit.
            n = broadcast(server.connections, "after", slow_consumer=policy)
            sent.append("after")
            assert n == 2
            assert broadcast(server.connections, "the end") == 2
            for reader in readers:
                assert await wait_for(reader) == sent
            if policy == "skip":
                assert slow.open
                raw.resume_reading()
                frames = [await wait_for(raw.recv_frame()) for _ in range(count)]
                assert [f.payload.decode() for f in frames] == sent[:-1]
                raw.send_close(1000)
                # "after" and "the end" were skipped: the next frame is the close.
                assert await wait_for(raw.recv_close(skip=())) == (1000, "")
            else:
                assert not slow.open
                raw.resume_reading()
                code, reason = await wait_for(raw.recv_close(skip=(Opcode.TEXT,)))
                assert (code, reason) == (1008, "slow consumer")
                await wait_for(slow.wait_closed())
        finally:
            await raw.close()
            for ws in fast:
                await ws.close()


async def _ready_clients(server: Server, count: int) -> list[wshub.ClientConnection]:
    clients = [
        await connect(server_url(server), compression=None, ping_interval=None)
        for _ in range(count)
    ]
    for ws in clients:  # every connection is registered once it echoes
        await ws.send("ready")
        assert await wait_for(ws.recv()) == "ready"
    return clients


@pytest.mark.skipif(not hasattr(socket, "TCP_INFO"), reason="needs Linux TCP_INFO")
async def test_broadcasts_of_one_loop_iteration_share_one_write_per_subscriber() -> None:
    """Frames fanned out in one iteration are corked and reach each peer in one ``write``."""
    async with loopback_server(echo, compression=None, ping_interval=None) as server:
        clients = await _ready_clients(server, 20)
        try:
            conns = list(server.connections)
            before = [segments_sent(c) for c in conns]
            for i in range(3):
                assert broadcast(server.connections, f"m{i}") == 20
            # Nothing has left yet: every frame waits in its connection's cork.
            assert [segments_sent(c) for c in conns] == before
            for ws in clients:
                assert [await wait_for(ws.recv()) for _ in range(3)] == ["m0", "m1", "m2"]
            # One segment (one write) per subscriber carried all three messages.
            assert [segments_sent(c) - b for c, b in zip(conns, before, strict=True)] == [1] * 20
        finally:
            for ws in clients:
                await ws.close()


async def test_corked_broadcast_keeps_order_with_direct_sends() -> None:
    """A message sent to one connection between two broadcasts arrives between them."""
    async with loopback_server(echo, compression=None, ping_interval=None) as server:
        clients = await _ready_clients(server, 3)
        try:
            target = next(iter(server.connections))
            broadcast(server.connections, "first")
            target.send_nowait("direct")
            broadcast(server.connections, "second")
            got = [[await wait_for(ws.recv()) for _ in range(2)] for ws in clients]
            assert sorted(got) == [["first", "direct"]] + [["first", "second"]] * 2
            (direct_client,) = [ws for ws, g in zip(clients, got, strict=True) if g[1] == "direct"]
            assert await wait_for(direct_client.recv()) == "second"
        finally:
            for ws in clients:
                await ws.close()


async def test_a_burst_that_never_yields_still_meets_flow_control() -> None:
    """Corks are written out early during a long burst, so slow consumers are still seen.

    Without that, nothing would reach a transport before the burst ends: no connection
    would ever look slow, and every frame of the burst would sit in memory.
    """
    async with loopback_server(echo, compression=None, write_limit=4096, close_timeout=WAIT) as (
        server
    ):
        raw, slow, fast = await _slow_consumer_setup(server, 1)
        reader = asyncio.ensure_future(_read_all(fast[0], "the end"))
        fast_side = [c for c in server.connections if c is not slow]
        try:
            sent = []
            for i in range(5000):  # 10 MB each, far beyond what the slow peer's buffers hold
                message = f"{i:06d}" + "x" * 2000
                if broadcast(server.connections, message) == 2:
                    sent.append(message)
            assert not slow.writable
            assert len(sent) < 5000  # the slow consumer was skipped during the burst
            for conn in fast_side:
                await wait_for(conn.drain())
            assert broadcast(fast_side, "the end") == 1
            got = await wait_for(reader)
            # The fast peer gets its messages in order, none twice (some may have been
            # skipped for it too while the burst filled its buffers).
            assert got == sorted(set(got)) and set(sent) <= set(got)
        finally:
            await raw.close()
            for ws in fast:
                await ws.close()


async def test_connection_aborted_before_the_flush_does_not_stop_the_others() -> None:
    """A subscriber whose transport is gone by flush time is passed over; the rest get it."""
    async with loopback_server(echo, compression=None, ping_interval=None) as server:
        clients = await _ready_clients(server, 3)
        try:
            victim = next(iter(server.connections))
            assert broadcast(server.connections, "news") == 3
            assert victim.transport is not None
            victim.transport.abort()
            received = []
            for ws in clients:
                try:
                    received.append(await wait_for(ws.recv()))
                except ConnectionClosed:
                    received.append(None)
            assert sorted(received, key=str) == [None, "news", "news"]
        finally:
            for ws in clients:
                await ws.close()


# -- shutdown --------------------------------------------------------------------------------


async def test_close_sends_1001_and_wait_closed_waits_for_handlers() -> None:
    """``close()`` closes every connection with 1001; ``wait_closed`` waits for handlers."""
    finished: list[str] = []

    async def handler(ws: ServerConnection) -> None:
        try:
            async for message in ws:
                await ws.send(message)
        finally:
            await asyncio.sleep(0)  # cleanup that needs the loop
            finished.append(ws.request.path)  # type: ignore[union-attr]

    server = await serve(handler, "127.0.0.1", 0, close_timeout=WAIT)
    url = server_url(server)
    clients = [await connect(server_url(server, f"/{n}")) for n in range(3)]
    for ws in clients:
        await ws.send("up")
        assert await wait_for(ws.recv()) == "up"
    server.close()
    await wait_for(server.wait_closed())
    assert sorted(finished) == ["/0", "/1", "/2"]
    for ws in clients:
        with pytest.raises(ConnectionClosedOK):
            await wait_for(ws.recv())
        assert ws.close_code == 1001
        await ws.wait_closed()
    with pytest.raises(OSError):  # no longer listening
        await connect(url)


async def test_wait_closed_cancels_handlers_after_close_timeout() -> None:
    """A handler still running ``close_timeout`` after ``close()`` is cancelled."""
    cancelled: list[bool] = []
    started = asyncio.Event()

    async def stubborn(ws: ServerConnection) -> None:
        started.set()
        try:
            await asyncio.Event().wait()  # ignores the closing connection
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    server = await serve(stubborn, "127.0.0.1", 0, close_timeout=UNIT)
    async with connect(server_url(server)) as ws:
        await wait_for(started.wait())
        server.close()
        await wait_for(server.wait_closed())
        assert cancelled == [True]
        with pytest.raises(ConnectionClosed):  # 1001, or 1006 if the machine is slow
            await wait_for(ws.recv())


async def test_close_drops_connections_still_in_the_handshake() -> None:
    """Connections that have not finished their handshake are dropped by ``close()``."""
    server = await serve(echo, "127.0.0.1", 0)
    async with await RawClient.connect("127.0.0.1", server.port) as raw:
        raw.write(b"GET / HTTP/1.1\r\n")
        await raw.drain()
        # The server knows the connection once it has read from it: ask it with a ping
        # of the event loop, until it has.
        while not server._pending:
            await asyncio.sleep(0)
        server.close()
        assert await wait_for(raw.read_until_eof()) == b""
    await wait_for(server.wait_closed())


async def test_serve_forever_closes_on_cancel() -> None:
    """Cancelling ``serve_forever`` closes the connections with 1001."""
    server = serve(echo, "127.0.0.1", 0)
    await server.start()
    serving = asyncio.ensure_future(server.serve_forever())
    async with connect(server_url(server)) as ws:
        await ws.send("x")
        assert await wait_for(ws.recv()) == "x"
        serving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await serving
        with pytest.raises(ConnectionClosedOK):
            await wait_for(ws.recv())
        assert ws.close_code == 1001


async def test_handler_failing_after_the_close_does_not_close_again() -> None:
    """A handler error after the peer left still ends cleanly (no second close)."""

    async def late_failure(ws: ServerConnection) -> None:
        await ws.wait_closed()
        raise RuntimeError("after the fact")

    async with loopback_server(late_failure) as server:
        async with connect(server_url(server)) as ws:
            pass
        with pytest.raises(ConnectionClosedOK):
            await ws.recv()
        assert ws.close_code == 1000


async def test_abnormal_client_leaves_handler_with_connection_closed_error() -> None:
    """A handler sees ConnectionClosedError(1006) when its client vanishes."""
    peer = PeerCloses()
    async with (
        loopback_server(peer.handler) as server,
        await RawClient.connect("127.0.0.1", server.port) as raw,
    ):
        await raw.handshake()
        raw.abort()
        assert await peer.code_and_reason() == (1006, "")
        assert isinstance(peer.closed.result(), ConnectionClosedError)


async def test_wait_closed_covers_handlers_of_connections_already_gone() -> None:
    """A handler still running after its connection closed is waited for, then cancelled."""
    cancelled: list[str] = []
    left = asyncio.Event()

    async def lingering(ws: ServerConnection) -> None:
        await ws.wait_closed()
        left.set()
        try:
            await asyncio.Event().wait()  # e.g. cleanup stuck on a slow database
        except asyncio.CancelledError:
            cancelled.append("handler")
            raise

    server = await serve(lingering, "127.0.0.1", 0, close_timeout=UNIT)
    async with connect(server_url(server)):
        pass
    await wait_for(left.wait())
    assert server.connections == set()
    server.close()
    await wait_for(server.wait_closed())
    assert cancelled == ["handler"]


async def test_wait_closed_cancels_a_pending_async_process_request() -> None:
    """An async process_request still running at shutdown is cancelled, not abandoned."""
    cancelled: list[str] = []
    entered = asyncio.Event()

    async def slow_check(connection: ServerConnection, req: Request) -> Response | None:
        entered.set()
        try:
            await asyncio.Event().wait()  # e.g. an authentication service that hangs
        except asyncio.CancelledError:
            cancelled.append("process_request")
            raise
        return None  # pragma: no cover

    server = await serve(echo, "127.0.0.1", 0, process_request=slow_check, close_timeout=UNIT)
    async with await RawClient.connect("127.0.0.1", server.port) as raw:
        raw.send_request("/", upgrade_headers())
        await wait_for(entered.wait())
        server.close()
        assert await wait_for(raw.read_until_eof()) == b""
    await wait_for(server.wait_closed())
    assert cancelled == ["process_request"]


async def test_client_leaving_during_async_process_request() -> None:
    """A client that leaves while process_request runs is cleaned up once it returns."""
    entered = asyncio.Event()
    release = asyncio.Event()
    finished = asyncio.Event()

    async def slow_check(connection: ServerConnection, req: Request) -> Response | None:
        entered.set()
        await release.wait()
        finished.set()
        return None  # go on with the upgrade, if the client were still there

    async with loopback_server(echo, process_request=slow_check) as server:
        async with await RawClient.connect("127.0.0.1", server.port) as raw:
            raw.send_request("/gone", upgrade_headers())
            await wait_for(entered.wait())
            raw.abort()
        release.set()
        await wait_for(finished.wait())
        # With reading paused, the server may learn about the reset only after the 101
        # went out; either way the connection ends and is forgotten.
        for conn in list(server.connections):
            await wait_for(conn.wait_closed())
        assert server.connections == set()


@pytest.mark.parametrize("split", [1, 20, -3], ids=["first-byte", "mid-line", "before-end"])
async def test_request_in_pieces_upgrades_as_one_in_a_single_read(split: int) -> None:
    """A request split over several reads (the line-by-line path) upgrades like a whole one."""
    accepting_paths: list[str] = []

    async def remember(ws: ServerConnection) -> None:
        assert ws.request is not None
        accepting_paths.append(ws.request.path)
        await ws.send("hi")

    async with (
        loopback_server(remember) as server,
        await RawClient.connect("127.0.0.1", server.port) as raw,
    ):
        request = Request("GET", "/pieces?x=1", upgrade_headers()).serialize()
        raw.write(request[:split])
        await raw.drain()
        await asyncio.sleep(UNIT)  # let the server read the first piece alone
        raw.write(request[split:] + Frame(Opcode.TEXT, b"after").serialize(b"abcd"))
        response = await wait_for(raw.read_response())
        assert response.status == 101
        frame = await wait_for(raw.recv_frame())
        assert (frame.opcode, frame.payload) == (Opcode.TEXT, b"hi")
    assert accepting_paths == ["/pieces?x=1"]


def test_serve_refuses_a_handler_it_cannot_call() -> None:
    """An object with no on_* method and no async __call__ is a mistake, said at once."""
    with pytest.raises(TypeError, match="coroutine function or have on_open"):
        wshub.serve(object())


async def test_a_handler_object_with_async_call_is_a_modern_handler() -> None:
    """``serve(obj)`` where ``obj.__call__`` is ``async def`` runs it per connection."""

    class Echo:
        async def __call__(self, ws: ServerConnection) -> None:
            async for message in ws:
                await ws.send(message)

    async with (
        loopback_server(Echo()) as server,
        wshub.connect(server_url(server)) as client,
    ):
        await client.send("round trip")
        assert await wait_for(client.recv()) == "round trip"
