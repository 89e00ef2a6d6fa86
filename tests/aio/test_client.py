"""Tests for wshub.aio.client: connect(), the opening handshake as a client, reconnection."""

from __future__ import annotations

import asyncio
import base64
import ssl
from typing import Any

import pytest

from wshub import (
    ClientConnection,
    ConnectionClosed,
    ConnectionClosedError,
    InvalidResponse,
    InvalidURI,
    NegotiationError,
    Request,
    Response,
    ServerConnection,
    connect,
)
from wshub.protocol import Opcode
from wshub.testing import (
    echo,
    loopback_server,
    raw_peer_pair,
    raw_server,
    server_url,
    websocket_pair,
)

from . import UNIT, PeerCloses, wait_for

# -- the request -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offered", "supported", "chosen"),
    [
        (["v2", "v1"], ["v1", "v2"], "v1"),
        (["v1"], ["v1", "v2"], "v1"),
        (["v3"], ["v1", "v2"], None),
        (None, ["v1"], None),
        (["v1"], None, None),
    ],
    ids=["server-preference", "single", "no-overlap", "none-offered", "none-supported"],
)
async def test_subprotocol_negotiation(
    offered: list[str] | None, supported: list[str] | None, chosen: str | None
) -> None:
    """The negotiated subprotocol is the same on both ends (or ``None`` on both)."""
    async with websocket_pair(
        server_options={"subprotocols": supported}, client_options={"subprotocols": offered}
    ) as (server, client):
        assert client.subprotocol == chosen
        assert server.subprotocol == chosen
        offer = server.request.headers.get("Sec-WebSocket-Protocol")  # type: ignore[union-attr]
        assert offer == (", ".join(offered) if offered else None)


@pytest.mark.parametrize(
    "headers",
    [{"X-Trace": "abc", "Authorization": "Bearer t"}, [("X-Trace", "abc"), ("X-Trace", "def")]],
    ids=["mapping", "pairs"],
)
async def test_additional_headers_reach_the_server(headers: Any) -> None:
    """``additional_headers`` (a mapping or pairs) are sent with the upgrade request."""
    async with websocket_pair(client_options={"additional_headers": headers}) as (server, _):
        received = server.request.headers  # type: ignore[union-attr]
        pairs = headers.items() if isinstance(headers, dict) else headers
        for name, value in pairs:
            assert value in received.get_all(name)
        assert received.get_all("Host") == [f"127.0.0.1:{server.server.port}"]


async def test_origin_and_user_agent() -> None:
    """``origin`` and ``user_agent`` set their headers; ``user_agent=None`` omits it."""
    async with websocket_pair(
        client_options={"origin": "https://app.example", "user_agent": "probe/1"}
    ) as (server, _):
        headers = server.request.headers  # type: ignore[union-attr]
        assert headers["Origin"] == "https://app.example"
        assert headers["User-Agent"] == "probe/1"
    async with websocket_pair(client_options={"user_agent": None}) as (server, _):
        headers = server.request.headers  # type: ignore[union-attr]
        assert "User-Agent" not in headers
        assert "Origin" not in headers


async def test_credentials_in_the_url_become_basic_auth() -> None:
    """``ws://user:pass@host/`` sends ``Authorization: Basic`` (RFC 7617)."""
    seen: list[str | None] = []

    def check(connection: ServerConnection, request: Request) -> None:
        seen.append(request.headers.get("Authorization"))

    async with loopback_server(echo, process_request=check) as server:
        url = f"ws://alice:s3cret@127.0.0.1:{server.port}/"
        async with connect(url) as ws:
            await ws.send("hi")
            assert await wait_for(ws.recv()) == "hi"
    assert seen == ["Basic " + base64.b64encode(b"alice:s3cret").decode()]


# -- refusals and failures -------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "ws://",
        "ws:///path",
        "ws://127.0.0.1:99999/",
        "ws://127.0.0.1/#fragment",
        "not a url",
    ],
)
def test_invalid_uri(url: str) -> None:
    """A URL that is not a usable ws:// or wss:// URL raises InvalidURI at once."""
    with pytest.raises(InvalidURI):
        connect(url)


def test_ssl_context_needs_wss() -> None:
    """An ``ssl`` context with a ``ws://`` URL is a mistake, refused with InvalidURI."""
    with pytest.raises(InvalidURI):
        connect("ws://127.0.0.1/", ssl=ssl.create_default_context())


def test_unknown_compression_is_refused() -> None:
    """Only ``"deflate"`` and ``None`` are supported compression settings."""
    with pytest.raises(ValueError):
        connect("ws://127.0.0.1/", compression="br")


async def test_non_101_answer_is_invalid_response_with_status() -> None:
    """A server that answers with another status raises InvalidResponse carrying it."""

    def forbid(connection: ServerConnection, request: Request) -> Response:
        return Response.text(403, "no\n")

    async with loopback_server(echo, process_request=forbid) as server:
        with pytest.raises(InvalidResponse) as exc_info:
            await connect(server_url(server))
        assert exc_info.value.status == 403


@pytest.mark.parametrize(
    ("answer", "error", "status"),
    [
        (Response.html(200, "<p>not a websocket</p>"), InvalidResponse, 200),
        (
            Response(101, "", [("Upgrade", "websocket"), ("Connection", "Upgrade")]),
            InvalidResponse,
            101,
        ),
    ],
    ids=["200-page", "101-without-accept"],
)
async def test_invalid_answers_from_a_raw_server(
    answer: Response, error: type[Exception], status: int
) -> None:
    """Answers that are not a valid 101 for our key raise InvalidResponse."""
    async with raw_server() as listener:
        opening = asyncio.ensure_future(connect(listener.url()))
        peer = await wait_for(listener.accept())
        await wait_for(peer.read_request())
        peer.respond(answer)
        with pytest.raises(error) as exc_info:
            await wait_for(opening)
        assert exc_info.value.status == status  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "extra",
    [
        [("Sec-WebSocket-Protocol", "never-offered")],
        [("Sec-WebSocket-Extensions", "x-unknown")],
    ],
    ids=["subprotocol", "extension"],
)
async def test_server_choosing_what_was_not_offered_is_refused(
    extra: list[tuple[str, str]],
) -> None:
    """A 101 that picks a subprotocol or extension we did not offer raises NegotiationError."""
    async with raw_server() as listener:
        opening = asyncio.ensure_future(connect(listener.url(), subprotocols=["chat"]))
        peer = await wait_for(listener.accept())
        await wait_for(peer.accept(extra))
        with pytest.raises(NegotiationError):
            await wait_for(opening)


async def test_connection_closed_during_handshake() -> None:
    """A server that hangs up before answering raises InvalidResponse with status 0."""
    async with raw_server() as listener:
        opening = asyncio.ensure_future(connect(listener.url()))
        peer = await wait_for(listener.accept())
        await wait_for(peer.read_request())
        await peer.close()
        with pytest.raises(InvalidResponse) as exc_info:
            await wait_for(opening)
        assert exc_info.value.status == 0


async def test_open_timeout() -> None:
    """A server that never answers the upgrade makes ``connect`` time out, saying so."""
    async with raw_server() as listener:
        opening = asyncio.ensure_future(connect(listener.url(), open_timeout=UNIT))
        peer = await wait_for(listener.accept())
        await wait_for(peer.read_request())
        with pytest.raises(TimeoutError, match="did not answer the WebSocket upgrade"):
            await wait_for(opening)
        assert await wait_for(peer.read_until_eof()) == b""


async def test_connection_refused() -> None:
    """Nothing listening: ``connect`` raises the OSError of the socket."""
    async with raw_server() as listener:
        url = listener.url()
    with pytest.raises(OSError):
        await connect(url)


async def test_client_max_size_fails_with_1009() -> None:
    """A message over the client's ``max_size`` closes the connection with 1009."""
    async with websocket_pair(client_options={"max_size": 1000}) as (server, client):
        await server.send(b"x" * 1001)
        with pytest.raises(ConnectionClosedError) as exc_info:
            await wait_for(server.recv())
        assert exc_info.value.code == 1009
        with pytest.raises(ConnectionClosedError):
            await wait_for(client.recv())


async def test_server_frames_are_checked_for_masking() -> None:
    """A masked frame from a server breaks §5.1: the client fails with 1002."""
    async with raw_peer_pair() as (ws, peer):
        peer.send_frame(Opcode.TEXT, b"masked", mask=True)
        code, _ = await wait_for(peer.recv_close())
        assert code == 1002
        await peer.close()
        with pytest.raises(ConnectionClosedError):
            await wait_for(ws.recv())


# -- reconnecting ----------------------------------------------------------------------------


class DropFirst:
    """A server handler that drops the first connection at the TCP level, then echoes."""

    def __init__(self) -> None:
        self.connections = 0

    async def handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        if self.connections == 1:
            await ws.recv()
            assert ws.transport is not None
            ws.transport.abort()  # no close frame: an abnormal closure (1006)
            await ws.wait_closed()
            return
        await echo(ws)


async def test_async_for_reconnects_after_the_server_drops() -> None:
    """``async for ws in connect(url)`` yields a new connection after an abnormal closure."""
    server_side = DropFirst()
    seen: list[str] = []
    async with loopback_server(server_side.handler) as server:
        connector = connect(server_url(server), backoff_initial=UNIT)
        async for ws in connector:
            try:
                await ws.send("hello")
                seen.append(await wait_for(ws.recv()))
                break
            except ConnectionClosed as exc:
                seen.append(f"lost {exc.code}")
                continue
        await connector.close()
        assert not ws.open
    assert seen == ["lost 1006", "hello"]
    assert server_side.connections == 2


async def test_async_for_retries_5xx_and_gives_up_on_4xx() -> None:
    """While reconnecting, 5xx answers are retried; a 4xx answer ends the loop."""
    answers = [
        Response.text(503, "busy\n"),
        Response.text(503, "still busy\n"),
        None,
        Response.text(403, "banned\n"),
    ]

    def gatekeeper(connection: ServerConnection, request: Request) -> Response | None:
        return answers.pop(0)

    async with loopback_server(echo, process_request=gatekeeper) as server:
        connector = connect(server_url(server), backoff_initial=UNIT)
        opened: list[ClientConnection] = []
        with pytest.raises(InvalidResponse) as exc_info:
            async for ws in connector:
                opened.append(ws)
                await ws.close(1011, "try again")  # not 1000: the loop reconnects
        assert exc_info.value.status == 403
        assert len(opened) == 1
        assert answers == []
        await connector.close()


async def test_callbacks_reconnect_after_abnormal_closure() -> None:
    """With ``reconnect=True``, on_open runs again for the new connection."""
    server_side = DropFirst()
    opened: asyncio.Queue[ClientConnection] = asyncio.Queue()
    messages: asyncio.Queue[str | bytes] = asyncio.Queue()
    closes: list[int] = []
    async with loopback_server(server_side.handler) as server:
        connector = connect(
            server_url(server),
            on_open=lambda ws: opened.put_nowait(ws),
            on_message=lambda ws, m: messages.put_nowait(m),
            on_close=lambda ws, code, reason: closes.append(code),
            reconnect=True,
            backoff_initial=UNIT,
        )
        first = await wait_for(connector)
        assert await wait_for(opened.get()) is first
        first.send_nowait("drop me")
        second = await wait_for(opened.get())
        assert second is not first
        assert first.close_code == 1006
        second.send_nowait("echo me")
        assert await wait_for(messages.get()) == "echo me"
        await connector.close()
        assert not second.open
        assert connector.connection is second
    assert closes == [1006, 1000]
    assert server_side.connections == 2


async def test_callbacks_do_not_reconnect_after_normal_closure() -> None:
    """A normal closure by the server ends a ``reconnect=True`` client for good."""
    opened: asyncio.Queue[ClientConnection] = asyncio.Queue()

    async def close_at_once(ws: ServerConnection) -> None:
        await ws.close(1000, "bye")

    async with loopback_server(close_at_once) as server:
        closed: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()
        connector = connect(
            server_url(server),
            on_open=lambda ws: opened.put_nowait(ws),
            on_close=lambda ws, code, reason: closed.set_result((code, reason)),
            reconnect=True,
            backoff_initial=UNIT,
        )
        first = await wait_for(connector)
        assert await wait_for(closed) == (1000, "bye")
        await wait_for(first.wait_closed())
        await connector.close()
    assert opened.qsize() == 1


async def test_connect_close_with_code() -> None:
    """``Connect.close(code, reason)`` closes the current connection with them."""
    peer = PeerCloses()
    async with loopback_server(peer.handler) as server:
        connector = connect(server_url(server))
        ws = await wait_for(connector)
        assert connector.connection is ws
        await connector.close(4100, "leaving")
        assert await peer.code_and_reason() == (4100, "leaving")


async def test_sent_frames_are_masked_with_fresh_keys() -> None:
    """Every client frame is masked (§5.1) and keys differ from frame to frame (§5.3)."""
    async with raw_peer_pair() as (ws, peer):
        for _ in range(3):
            await ws.send("same")
        keys = []
        for _ in range(3):
            head = await wait_for(peer.read_exactly(2))
            assert head[1] & 0x80, "an unmasked client frame"
            keys.append(await wait_for(peer.read_exactly(4)))
            await wait_for(peer.read_exactly(head[1] & 0x7F))
        assert len(set(keys)) == 3
        peer.send_close(1000)
        assert await wait_for(peer.recv_close()) == (1000, "")


async def test_async_for_closes_the_previous_connection() -> None:
    """A loop body that moves on leaves its connection to the iterator, which closes it."""
    async with loopback_server(echo) as server:
        connector = connect(server_url(server), backoff_initial=UNIT)
        opened: list[ClientConnection] = []
        async for ws in connector:
            opened.append(ws)
            await ws.send("hi")
            assert await wait_for(ws.recv()) == "hi"
            if len(opened) == 2:
                break
        assert not opened[0].open and opened[0].close_code == 1000
        assert opened[1].open
        await connector.close()
        assert not opened[1].open


async def test_callbacks_reconnect_gives_up_on_4xx(caplog: pytest.LogCaptureFixture) -> None:
    """A 4xx answer while reconnecting stops the supervisor, logged, with nothing left over."""
    server_side = DropFirst()
    answers: list[Response | None] = [None, Response.text(401, "token expired\n")]

    def gatekeeper(connection: ServerConnection, request: Request) -> Response | None:
        return answers.pop(0)

    closed: asyncio.Queue[int] = asyncio.Queue()
    async with loopback_server(server_side.handler, process_request=gatekeeper) as server:
        connector = connect(
            server_url(server),
            on_message=lambda ws, m: None,
            on_close=lambda ws, code, reason: closed.put_nowait(code),
            reconnect=True,
            backoff_initial=UNIT,
        )
        first = await wait_for(connector)
        first.send_nowait("drop me")
        assert await wait_for(closed.get()) == 1006
        supervisor = connector._supervisor
        assert supervisor is not None
        await wait_for(asyncio.shield(supervisor))  # ends without an exception
        assert answers == []
        await connector.close()
    assert "giving up" in caplog.text


async def test_async_for_backs_off_after_normal_closes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that accepts and closes at once gets growing delays, not a tight loop."""
    import wshub.aio.client as client_module

    delays: list[float] = []
    real_sleep = asyncio.sleep

    async def recorded_sleep(delay: float) -> None:
        delays.append(delay)
        await real_sleep(0)

    # The jitter is uniform(0, delay): make it return the bound, to read the delays back.
    monkeypatch.setattr(client_module.random, "uniform", lambda low, high: high)
    monkeypatch.setattr(client_module.asyncio, "sleep", recorded_sleep)

    async def close_at_once(ws: ServerConnection) -> None:
        await ws.close(1000)

    async with loopback_server(close_at_once) as server:
        connector = connect(server_url(server), backoff_initial=0.5, backoff_factor=2.0)
        rounds = 0
        async for ws in connector:
            await ws.wait_closed()
            rounds += 1
            if rounds == 4:
                break
        await connector.close()
    assert delays == [1.0, 2.0, 4.0]
