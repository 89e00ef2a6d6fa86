"""Tests for wshub.hub.asgi: the hub mounted in a real Starlette app, served by real uvicorn.

Each server runs in the test's event loop (``uvicorn.Server.serve``) on a loopback socket.
Where a behaviour is the standalone server's too, the test runs against both (``endpoint``
is parametrized), so that the mounted hub is held to the same client tests as ``wshub serve``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

import wshub
from wshub.exceptions import ConnectionClosed, HubError, InvalidState
from wshub.hub import Authenticator, ChannelRegistry, Hub, HubLimits, NamespaceOptions, make_token
from wshub.hub.asgi import ASGIPeer, HubASGIApp
from wshub.hub.client import HubClient, Subscription
from wshub.hub.session import Session
from wshub.hub.wire import DisconnectCode
from wshub.testing import UvicornServer

from . import test_server as standalone
from .conftest import API_KEY, SECRET, demo_auth, demo_hub, http, start_demo_hub
from .test_server import Wire

#: The namespaces of these tests (explicit, not the demo's).
REGISTRY = {
    "chat": NamespaceOptions(history_size=100, presence=True, join_leave=True),
    # A small queue that disconnects, to meet the slow-consumer policy quickly.
    "slow": NamespaceOptions(history_size=10, queue_size=4),
}


def make_hub() -> Hub:
    return demo_hub(
        registry=ChannelRegistry(REGISTRY),
        auth=Authenticator(
            secret=SECRET, allow_anonymous=True, anonymous_permissions=["chat:*:spr"]
        ),
        limits=HubLimits(command_rate=None, publish_rate=None),
    )


class Endpoint:
    """A hub reachable over the network: ``wshub serve`` or the mounted app."""

    def __init__(self, hub: Hub, port: int, prefix: str) -> None:
        self.hub = hub
        self.port = port  # what conftest.http() reads
        self.prefix = prefix

    def url(self, path: str = "/ws") -> str:
        return f"ws://127.0.0.1:{self.port}{self.prefix}{path}"

    def path(self, path: str) -> str:
        return self.prefix + path

    def session_of(self, client: HubClient) -> Session:
        (session,) = [s for s in self.hub.sessions if s.client_id == client.client_id]
        return session


def starlette_app(hub_app: HubASGIApp, prefix: str = "/hub") -> Starlette:
    """An application with a page of its own and the hub mounted at ``prefix``."""

    async def home(request: Any) -> PlainTextResponse:
        return PlainTextResponse("the app's own page")

    return Starlette(routes=[Route("/", home), Mount(prefix, app=hub_app)])


@asynccontextmanager
async def mounted(hub: Hub, prefix: str = "/hub", **options: Any) -> AsyncIterator[Endpoint]:
    """``hub`` mounted at ``prefix`` in a Starlette app on uvicorn; the test owns the hub."""
    options.setdefault("api_key", API_KEY)
    server = UvicornServer(starlette_app(HubASGIApp(hub, **options), prefix))
    async with hub:
        await server.start()
        try:
            yield Endpoint(hub, server.port, prefix)
        finally:
            await server.stop()


@pytest.fixture(params=["standalone", "asgi"])
async def endpoint(request: pytest.FixtureRequest) -> AsyncIterator[Endpoint]:
    """The same hub configuration served by ``start_hub`` and by uvicorn + Starlette."""
    hub = make_hub()
    if request.param == "asgi":
        async with mounted(hub) as mounted_endpoint:
            yield mounted_endpoint
        return
    async with await start_demo_hub("127.0.0.1", 0, hub=hub, api_key=API_KEY) as server:
        yield Endpoint(hub, server.port, "")


@pytest.fixture
async def asgi() -> AsyncIterator[Endpoint]:
    """Only the mounted hub (for what the standalone server does not have)."""
    async with mounted(make_hub()) as mounted_endpoint:
        yield mounted_endpoint


@pytest.fixture
async def clients() -> AsyncIterator[list[HubClient]]:
    """Clients a test makes; closed at the end."""
    made: list[HubClient] = []
    yield made
    for client in made:
        await client.close()


async def client_of(
    endpoint: Endpoint, clients: list[HubClient], token: Any = None, **options: Any
) -> HubClient:
    options.setdefault("backoff_initial", 0.01)
    options.setdefault("max_delay", 0.05)
    client = HubClient(endpoint.url(), token, **options)
    clients.append(client)
    await client.connect()
    return client


class Gate:
    """A token source that holds a reconnecting client at the door until opened."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.open.set()

    async def __call__(self) -> str:
        await self.open.wait()
        return make_token(SECRET, "gated", 600, ["*:spr"])


async def take(sub: Subscription, count: int) -> list[Any]:
    return [(await sub.get()).data for _ in range(count)]


# --- the standalone server's own tests, run against the hub mounted at the app's root ----


@pytest.fixture
async def hub_server() -> AsyncIterator[Endpoint]:
    """What the tests taken from test_server get here: the hub that ``start_hub`` builds
    for them (demo namespaces, anonymous allowed), mounted at the root of a Starlette app
    that has a page of its own."""
    hub = demo_hub(auth=demo_auth(secret=SECRET))
    async with mounted(hub, prefix="") as endpoint:
        yield endpoint


test_chat_round_trip = standalone.test_chat_round_trip
test_http_api_publish_reaches_websocket_subscribers = (
    standalone.test_http_api_publish_reaches_websocket_subscribers
)
test_without_the_subprotocol_4007 = standalone.test_without_the_subprotocol_4007
test_upgrade_at_another_path_is_404 = standalone.test_upgrade_at_another_path_is_404
test_garbage_then_4000 = standalone.test_garbage_then_4000
test_refused_token_then_4001 = standalone.test_refused_token_then_4001


# --- HubClient against both servers -------------------------------------------------------


async def test_hub_client_round_trip(endpoint: Endpoint, clients: list[HubClient]) -> None:
    """HubClient connects, subscribes, publishes and receives; presence sees both."""
    token = make_token(SECRET, "bob", 60, ["chat:*:spr"])
    alice = await client_of(endpoint, clients, meta={"nick": "A"})
    bob = await client_of(endpoint, clients, token)
    sub = await alice.subscribe("chat:lobby")
    await bob.subscribe("chat:lobby")
    assert await bob.publish("chat:lobby", {"text": "hi"}) == 1
    publication = await sub.get()
    assert (publication.data, publication.info.user) == ({"text": "hi"}, "bob")
    assert {c.user for c in await alice.presence("chat:lobby")} == {"", "bob"}


async def test_http_api_publish_reaches_a_websocket_subscriber(
    endpoint: Endpoint, clients: list[HubClient]
) -> None:
    """POST /api/publish through the app arrives as a publication on a HubClient."""
    client = await client_of(endpoint, clients)
    sub = await client.subscribe("chat:news")
    status, _, body = await http(
        endpoint, "POST", endpoint.path("/api/publish"), {"channel": "chat:news", "data": 191.5}
    )
    assert (status, body["offset"]) == (200, 1)
    assert (await sub.get()).data == 191.5
    _, _, channels = await http(endpoint, "GET", endpoint.path("/api/channels"))
    assert ("chat:news", 1, 1) in [
        (c["channel"], c["subscribers"], c["offset"]) for c in channels["channels"]
    ]


async def test_http_api_refuses_without_the_key(endpoint: Endpoint) -> None:
    """The API's own errors come through unchanged: 401 with its JSON body."""
    status, headers, body = await http(
        endpoint, "POST", endpoint.path("/api/publish"), {"channel": "chat:x", "data": 1}, key=None
    )
    assert (status, body["error"]["code"], headers["WWW-Authenticate"]) == (401, 103, "Bearer")


async def test_hub_client_raises_the_auth_error(
    endpoint: Endpoint, clients: list[HubClient]
) -> None:
    """HubClient.connect() fails with the AuthError, not a reconnect loop."""
    with pytest.raises(HubError) as refused:
        await client_of(endpoint, clients, "not-a-token")
    assert refused.value.code == 103


async def test_client_side_cut_recovers(endpoint: Endpoint, clients: list[HubClient]) -> None:
    """Publications made while the subscriber was cut off arrive exactly once, in order."""
    gate = Gate()
    reader = await client_of(endpoint, clients, gate)
    writer = await client_of(endpoint, clients)
    sub = await reader.subscribe("chat:rec")
    await writer.subscribe("chat:rec")
    assert [await writer.publish("chat:rec", n) for n in range(3)] == [1, 2, 3]
    assert await take(sub, 3) == [0, 1, 2]
    gate.open.clear()
    assert reader.connection is not None and reader.connection.transport is not None
    reader.connection.transport.abort()
    assert [await writer.publish("chat:rec", n) for n in range(3, 8)] == [4, 5, 6, 7, 8]
    gate.open.set()
    assert await take(sub, 5) == [3, 4, 5, 6, 7]
    assert sub.recovered is True and reader.reconnects == 1
    await writer.publish("chat:rec", "live")
    assert await take(sub, 1) == ["live"]


async def test_server_side_close_recovers(endpoint: Endpoint, clients: list[HubClient]) -> None:
    """The hub closes the client's connection (1001): it reconnects and recovers, no loss."""
    gate = Gate()
    reader = await client_of(endpoint, clients, gate)
    sub = await reader.subscribe("chat:srv")
    await endpoint.hub.publish("chat:srv", "before")
    assert await take(sub, 1) == ["before"]
    gate.open.clear()
    endpoint.session_of(reader).close(DisconnectCode.GOING_AWAY)
    for n in range(4):
        await endpoint.hub.publish("chat:srv", n)
    gate.open.set()
    assert await take(sub, 4) == [0, 1, 2, 3]
    assert sub.recovered is True and reader.reconnects == 1


# --- what only the mounted hub has --------------------------------------------------------


async def test_uvicorn_restart_recovers_without_loss_or_duplicates(
    clients: list[HubClient],
) -> None:
    """uvicorn stops (1012 to clients) and starts again on the same hub: nothing lost."""
    hub = make_hub()
    server = UvicornServer(starlette_app(HubASGIApp(hub)))
    async with hub:
        await server.start()
        endpoint = Endpoint(hub, server.port, "/hub")
        try:
            client = await client_of(endpoint, clients)
            sub = await client.subscribe("chat:restart")
            await hub.publish("chat:restart", "first")
            assert await take(sub, 1) == ["first"]
            await server.stop()
            assert hub.sessions == frozenset()
            for n in range(5):
                await hub.publish("chat:restart", n)
            await server.start()
            assert await take(sub, 5) == [0, 1, 2, 3, 4]
            assert sub.recovered is True and client.reconnects >= 1
            await hub.publish("chat:restart", "live")
            assert await take(sub, 1) == ["live"]
            publications, _ = await hub.history("chat:restart", limit=100)
            assert len(publications) == 7  # every publication once
        finally:
            await server.stop()


async def test_the_app_keeps_its_own_routes(asgi: Endpoint) -> None:
    """The mount takes only /hub: the Starlette app still answers its own pages."""
    status, _, body = await http(asgi, "GET", "/", key=None)
    assert (status, body) == (200, b"the app's own page")
    status, _, _ = await http(asgi, "GET", "/hub/nothing-here", key=None)
    assert status == 404


async def test_healthz_metrics_and_head(asgi: Endpoint, clients: list[HubClient]) -> None:
    """/healthz (GET and HEAD) and /metrics are served below the mount point."""
    await client_of(asgi, clients)
    status, _, body = await http(asgi, "GET", "/hub/healthz", key=None)
    assert (status, body) == (200, {"status": "ok", "connections": 1})
    status, headers, body = await http(asgi, "HEAD", "/hub/healthz", key=None)
    assert (status, body, headers["Content-Type"]) == (200, b"", "application/json")
    status, _, metrics = await http(asgi, "GET", "/hub/metrics", key=None)
    assert status == 200 and b"wshub_hub_sessions_open 1.0" in metrics


async def test_hub_drain_under_asgi(asgi: Endpoint) -> None:
    """Hub.drain on a mounted hub: 1012 to its clients, /healthz 503 "draining", and a
    connection the ASGI server still accepts is closed with 1012 at once."""
    ws = await wshub.connect(asgi.url(), subprotocols=["wshub.v1"])
    await ws.send('{"id": 1, "cmd": "connect"}')
    assert "result" in orjson.loads(await ws.recv())
    assert await asgi.hub.drain(drain_period=0, drain_timeout=10) == 0
    await ws.wait_closed()
    assert (ws.close_code, ws.close_reason) == (1012, "service restart")
    status, _, body = await http(asgi, "GET", "/hub/healthz", key=None)
    assert (status, body) == (503, {"status": "draining", "connections": 0})
    async with wshub.connect(asgi.url(), subprotocols=["wshub.v1"]) as late:
        await late.wait_closed()
        assert late.close_code == DisconnectCode.SERVICE_RESTART


async def test_metrics_from_a_forwarded_request_need_the_key() -> None:
    """metrics="local" judges the ASGI client address as standalone judges the peer's."""
    async with mounted(make_hub()) as endpoint:
        forwarded = {"X-Forwarded-For": "203.0.113.9"}
        status, _, _ = await http(endpoint, "GET", "/hub/metrics", key=None, headers=forwarded)
        assert status == 401
        status, _, _ = await http(endpoint, "GET", "/hub/metrics", headers=forwarded)
        assert status == 200


async def test_history_query_and_quoted_channel(asgi: Endpoint) -> None:
    """The request-target reaches the API as sent: query string and percent-encoding."""
    for n in range(3):
        await asgi.hub.publish("chat:a+b@c", n)
    status, _, body = await http(asgi, "GET", "/hub/api/history/chat%3Aa%2Bb%40c?limit=2")
    assert status == 200
    assert [p["data"] for p in body["publications"]] == [1, 2]


async def test_too_large_request_is_413() -> None:
    """A body over max_request_size is refused with 413, announced or streamed."""
    async with mounted(make_hub(), max_request_size=1000) as endpoint:
        body = {"channel": "chat:big", "data": "x" * 2000}
        status, _, refused = await http(endpoint, "POST", "/hub/api/publish", body)
        assert status == 413
        assert refused["error"]["code"] == 114  # the API's JSON shape, as standalone
        status, _, reply = await http(
            endpoint, "POST", "/hub/api/publish", {"channel": "chat:big", "data": "x"}
        )
        assert (status, reply["offset"]) == (200, 1)


async def test_too_large_message_is_1009() -> None:
    """A WebSocket message over max_size closes the connection with 1009."""
    async with (
        mounted(make_hub(), max_size=1000) as endpoint,
        wshub.connect(endpoint.url(), subprotocols=["wshub.v1"]) as ws,
    ):
        assert "result" in await Wire(ws).call("connect")
        await ws.send("x" * 1001)
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.code == 1009
    assert endpoint.hub.sessions == frozenset()


async def test_slow_consumer_is_disconnected_with_bounded_buffers() -> None:
    """A client that stops reading: the peer's buffer stays under write_limit plus one
    message, the subscription queue fills, and the session is closed with 4004."""
    hub = make_hub()
    payload = "x" * 50_000
    async with (
        mounted(hub, write_limit=100_000, close_timeout=0.2) as endpoint,
        wshub.connect(endpoint.url(), subprotocols=["wshub.v1"], compression=None) as ws,
    ):
        wire = Wire(ws)
        await wire.call("connect", token=make_token(SECRET, "slow", 600, ["*:spr"]))
        assert "result" in await wire.call("subscribe", channel="slow:feed")
        (session,) = hub.sessions
        peer = session.peer
        assert isinstance(peer, ASGIPeer)
        assert ws.transport is not None
        ws.transport.pause_reading()
        published = 0
        # Enough to fill the kernel's buffers on both sides, uvicorn's transport buffer,
        # the peer's buffer and the queue (each publication waits for its fan-out).
        while session in hub.sessions and published < 2000:
            await hub.publish("slow:feed", payload)
            published += 1
            assert peer.buffered <= 100_000 + len(payload) + 200
            await asyncio.sleep(0)
        assert session not in hub.sessions, f"still connected after {published}"
        assert hub.stats.slow_consumer_disconnects == 1
        ws.transport.abort()  # the client's side: it never read the close frame either
    # The hub closed: it waited for the peer's close, which gave up after close_timeout.
    assert peer.buffered == 0


async def test_served_directly_the_app_runs_the_hub_lifespan(clients: list[HubClient]) -> None:
    """Without a framework, the lifespan protocol starts the hub and closes it at shutdown."""
    hub = make_hub()
    server = UvicornServer(HubASGIApp(hub))
    await server.start()
    try:
        client = await client_of(Endpoint(hub, server.port, ""), clients)
        sub = await client.subscribe("chat:direct")
        await client.publish("chat:direct", "hello")
        assert await take(sub, 1) == ["hello"]
    finally:
        await server.stop()
    with pytest.raises(InvalidState):
        hub.session(ASGIPeer(_never_called))


async def _never_called(message: Any) -> None:
    raise AssertionError("nothing may be sent")


def _closing_order(messages: list[dict[str, Any]]) -> Iterator[str]:
    for message in messages:
        yield message.get("text") or message["type"]


async def test_peer_sends_what_is_buffered_before_the_close() -> None:
    """Buffered messages go out, in order, before websocket.close; then sends are refused."""
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(dict(message))

    peer = ASGIPeer(send, write_limit=10)
    peer.start()
    peer.send_nowait("one")
    peer.send_nowait("two")
    await peer.close(4001, "unauthorized")
    assert list(_closing_order(sent)) == ["one", "two", "websocket.close"]
    assert sent[-1] == {"type": "websocket.close", "code": 4001, "reason": "unauthorized"}
    with pytest.raises(ConnectionClosed) as refused:
        peer.send_nowait("three")
    assert refused.value.code == 4001


async def test_peer_write_limit_and_drain() -> None:
    """Over write_limit the peer is not writable; drain() returns below a quarter of it."""
    release = asyncio.Event()
    sent: list[str | bytes] = []

    async def send(message: Any) -> None:
        await release.wait()
        sent.append(message.get("text") or message.get("bytes") or message["type"])

    peer = ASGIPeer(send, write_limit=8)
    peer.start()
    peer.send_nowait("12345")
    assert peer.writable
    peer.send_nowait(b"6789")
    assert not peer.writable and peer.buffered == 9
    drained = asyncio.create_task(peer.drain())
    await asyncio.sleep(0)
    assert not drained.done()
    release.set()
    await drained
    assert peer.writable and peer.buffered <= 2
    await peer.close()
    assert sent == ["12345", b"6789", "websocket.close"]


async def test_peer_after_a_failed_send_reports_the_connection_lost() -> None:
    """The ASGI server's send fails (client gone): sends and drain raise ConnectionClosed."""

    async def send(message: Any) -> None:
        raise OSError("client disconnected")

    peer = ASGIPeer(send)
    peer.start()
    peer.send_nowait("lost")
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    with pytest.raises(ConnectionClosed) as refused:
        peer.send_nowait("more")
    assert refused.value.code == 1006
    with pytest.raises(ConnectionClosed):
        await peer.drain()
    await peer.close()  # nothing left to close: returns at once


def test_bad_limits_are_refused() -> None:
    """Limits out of range fail when the app or peer is built."""
    hub = make_hub()
    with pytest.raises(ValueError, match="write_limit"):
        HubASGIApp(hub, write_limit=-1)
    with pytest.raises(ValueError, match="max_size"):
        HubASGIApp(hub, max_size=0)
    with pytest.raises(ValueError, match="max_request_size"):
        HubASGIApp(hub, max_request_size=0)
    with pytest.raises(ValueError, match="metrics"):
        HubASGIApp(hub, metrics="everyone")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="write_limit"):
        ASGIPeer(_never_called, write_limit=-1)


async def test_peer_close_gives_up_after_close_timeout() -> None:
    """An ASGI server whose send never returns (a client that does not read): close()
    returns after close_timeout, drops what was buffered and refuses further sends."""
    stuck = asyncio.Event()

    async def send(message: Any) -> None:
        await stuck.wait()

    peer = ASGIPeer(send, write_limit=4, close_timeout=0.01)
    peer.start()
    peer.send_nowait("waiting forever")
    peer.send_nowait("never sent")
    assert not peer.writable
    await peer.close(4004, "slow consumer")
    assert (peer.buffered, peer.writable) == (0, True)
    with pytest.raises(ConnectionClosed) as refused:
        peer.send_nowait("after")
    assert refused.value.code == 4004
    with pytest.raises(ConnectionClosed):
        await peer.drain()


async def test_binary_messages_are_refused_as_standalone(endpoint: Endpoint) -> None:
    """wshub.v1 is text: a binary message gets the same 101 error from both servers."""
    async with wshub.connect(endpoint.url(), subprotocols=["wshub.v1"]) as ws:
        await ws.send(orjson.dumps({"id": 1, "cmd": "connect"}))
        reply = orjson.loads(await ws.recv())
    assert reply == {"id": None, "error": {"code": 101, "message": "bad request: binary message"}}


async def test_a_closed_hub_refuses_new_connections_with_1001(asgi: Endpoint) -> None:
    """The hub closed while the ASGI server still accepts: 1001, as at a standalone shutdown."""
    await asgi.hub.close()
    async with wshub.connect(asgi.url(), subprotocols=["wshub.v1"]) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.code == 1001


async def test_a_chunked_body_over_the_limit_is_413() -> None:
    """Without a Content-Length, the body is refused as soon as it passes max_request_size."""
    async with mounted(make_hub(), max_request_size=1000) as endpoint:
        reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
        head = (
            "POST /hub/api/publish HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {API_KEY}\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"x" * 600
        writer.write(head.encode() + (b"%x\r\n%s\r\n" % (len(chunk), chunk)) * 2 + b"0\r\n\r\n")
        status_line = await reader.readline()
        writer.close()
        await writer.wait_closed()
    assert status_line.split()[1] == b"413"
