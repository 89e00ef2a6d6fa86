"""Tests for wshub.hub.server: the hub over real WebSocket connections on loopback."""

from __future__ import annotations

import asyncio
import inspect
import socket
import uuid
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest

import wshub
from wshub.exceptions import ConnectionClosed, InvalidResponse
from wshub.hub import make_token
from wshub.hub.channels import ChannelRegistry, NamespaceOptions
from wshub.hub.js import client_source
from wshub.hub.server import HubServer, start_hub
from wshub.protocol.headers import Headers
from wshub.protocol.http11 import Request, Response
from wshub.testing import RedisServer, segments_sent

from .conftest import SECRET, http, start_demo_hub


class Wire:
    """A minimal wshub.v1 client over a real connection (commands in, JSON out)."""

    def __init__(self, ws: wshub.ClientConnection) -> None:
        self.ws = ws
        self.next_id = 0
        self.pushes: list[dict[str, Any]] = []

    async def call(self, cmd: str, **fields: Any) -> dict[str, Any]:
        self.next_id += 1
        await self.ws.send(orjson.dumps({"id": self.next_id, "cmd": cmd, **fields}).decode())
        while True:
            message = orjson.loads(await self.ws.recv())
            if message.get("id") == self.next_id:
                return message  # type: ignore[no-any-return]
            self.pushes.append(message)

    async def push(self) -> dict[str, Any]:
        if self.pushes:
            return self.pushes.pop(0)
        return orjson.loads(await self.ws.recv())  # type: ignore[no-any-return]


def hub_connect(server: HubServer, **kw: Any) -> wshub.Connect:
    return wshub.connect(server.url(), subprotocols=["wshub.v1"], **kw)


async def test_chat_round_trip(hub_server: HubServer) -> None:
    """Two real clients: connect, subscribe, publish, receive, presence."""
    async with hub_connect(hub_server) as a, hub_connect(hub_server) as b:
        assert a.subprotocol == "wshub.v1"
        alice, bob = Wire(a), Wire(b)
        alice_id = (await alice.call("connect", meta={"nick": "A"}))["result"]["client"]
        token = make_token(SECRET, "bob", 60, ["chat:*:spr"])
        connected = await bob.call("connect", token=token)
        assert connected["result"]["user"] == "bob"
        await alice.call("subscribe", channel="chat:lobby")
        await bob.call("subscribe", channel="chat:lobby")
        ack = await bob.call("publish", channel="chat:lobby", data={"text": "hi"}, message_id="1")
        assert ack["result"]["offset"] == 1
        # The pub, and both joins in one presence_diff or two (the interval decides).
        pushes: list[dict[str, Any]] = []
        joined: set[str] = set()
        while len(joined) < 2 or not any(p["push"] == "pub" for p in pushes):
            pushes.append(await alice.push())
            joined.update(i["client"] for i in pushes[-1].get("joins", ()))
        assert joined == {connected["result"]["client"], alice_id}
        pub = next(p for p in pushes if p["push"] == "pub")
        assert (pub["data"], pub["info"]["user"]) == ({"text": "hi"}, "bob")
        presence = await alice.call("presence", channel="chat:lobby")
        assert len(presence["result"]["clients"]) == 2


async def test_http_api_publish_reaches_websocket_subscribers(hub_server: HubServer) -> None:
    """A backend's POST /api/publish arrives as a pub push on a WebSocket."""
    async with hub_connect(hub_server) as ws:
        client = Wire(ws)
        await client.call("connect")
        await client.call("subscribe", channel="ticker:AAPL")
        status, _, _ = await http(
            hub_server, "POST", "/api/publish", {"channel": "ticker:AAPL", "data": 191.5}
        )
        assert status == 200
        push = await client.push()
        assert (push["push"], push["channel"], push["data"], push["offset"]) == (
            "pub",
            "ticker:AAPL",
            191.5,
            1,
        )
        _, _, channels = await http(hub_server, "GET", "/api/channels")
        assert ("ticker:AAPL", 1, 1) in [
            (c["channel"], c["subscribers"], c["offset"]) for c in channels["channels"]
        ]


@pytest.mark.skipif(not hasattr(socket, "TCP_INFO"), reason="needs Linux TCP_INFO")
async def test_a_feed_updating_several_channels_reaches_a_subscriber_in_one_write(
    hub_server: HubServer,
) -> None:
    """Pushes fanned out in one loop iteration share one write per subscriber (corked)."""
    names = [f"ticker:S{i}" for i in range(8)]
    async with hub_connect(hub_server) as ws:
        client = Wire(ws)
        await client.call("connect")
        for name in names:
            await client.call("subscribe", channel=name)
        assert hub_server.server is not None
        (conn,) = hub_server.server.connections
        before = segments_sent(conn)
        await asyncio.gather(*(hub_server.hub.publish(name, {"price": 1}) for name in names))
        pushes = [await client.push() for _ in names]
        assert sorted(p["channel"] for p in pushes) == sorted(names)
        assert segments_sent(conn) - before < len(names)  # fewer writes than pushes


async def test_without_the_subprotocol_4007(hub_server: HubServer) -> None:
    """A connection that did not negotiate wshub.v1 is closed with 4007."""
    async with wshub.connect(hub_server.url()) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.code == 4007


async def test_upgrade_at_another_path_is_404(hub_server: HubServer) -> None:
    """Only the configured path upgrades."""
    with pytest.raises(InvalidResponse) as refused:
        async with wshub.connect(
            f"ws://127.0.0.1:{hub_server.port}/other", subprotocols=["wshub.v1"]
        ):
            pass
    assert refused.value.status == 404


@pytest.mark.parametrize("path", ["/", "/favicon.ico", "/nope", "/ws/extra", "/wsx"])
@pytest.mark.parametrize("method", ["GET", "HEAD", "POST"])
async def test_unknown_paths_are_404(hub_server: HubServer, method: str, path: str) -> None:
    """A plain request for a path the hub does not serve is 404, not 426 (426 says "upgrade
    here", which is only true of the WebSocket path)."""
    status, _, _ = await http(hub_server, method, path, key=None)
    assert status == 404


async def test_plain_request_at_the_websocket_path_is_426(hub_server: HubServer) -> None:
    """The WebSocket path without upgrade headers answers 426 naming the upgrade."""
    status, headers, _ = await http(hub_server, "GET", "/ws?x=1", key=None)
    assert status == 426
    assert headers["Upgrade"] == "websocket"


async def test_http_1_0_upgrade_is_400_never_101(hub_server: HubServer) -> None:
    """RFC 6455 §4.1: an upgrade in HTTP/1.0 is refused with 400, the connection closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", hub_server.port)
    try:
        writer.write(
            b"GET /ws HTTP/1.0\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: wshub.v1\r\n\r\n"
        )
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:40]
    assert b"HTTP/1.1" in answer.partition(b"\r\n\r\n")[2]


async def test_garbage_then_4000(hub_server: HubServer) -> None:
    """Error replies for garbage, then close 4000 after ten in a row."""
    async with hub_connect(hub_server) as ws:
        for _ in range(10):
            await ws.send("garbage")
        replies = []
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                replies.append(orjson.loads(await ws.recv()))
    assert closed.value.code == 4000 and closed.value.reason == "bad commands"
    assert (
        replies
        == [{"id": None, "error": {"code": 101, "message": "bad request: invalid JSON"}}] * 10
    )


async def test_refused_token_then_4001(hub_server: HubServer) -> None:
    """A forged token: the 103 reply arrives, then close 4001."""
    async with hub_connect(hub_server) as ws:
        client = Wire(ws)
        answer = await client.call("connect", token="not-a-token")
        assert answer["error"] == {"code": 103, "message": "unauthorized"}
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.code == 4001


async def test_shutdown_closes_1001() -> None:
    """Closing the hub server closes its connections with 1001."""
    server = await start_demo_hub("127.0.0.1", 0, ephemeral=True, allow_anonymous=True)
    async with hub_connect(server) as ws:
        await Wire(ws).call("connect")
        await server.close()
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.code == 1001


async def test_http_handlers_and_order() -> None:
    """Extra handlers answer their paths; the hub API comes first."""

    async def hello(connection: Any, request: Request) -> Response | None:
        if request.path in ("/hello", "/healthz"):
            return Response.text(200, "hello\n")
        return None

    async with await start_demo_hub(
        "127.0.0.1", 0, ephemeral=True, http_handlers=[hello]
    ) as server:
        status, _, body = await http(server, "GET", "/hello", key=None)
        assert (status, body) == (200, b"hello\n")
        status, _, health = await http(server, "GET", "/healthz", key=None)
        assert health["status"] == "ok"
        status, _, _ = await http(server, "GET", "/api/channels")
        assert status == 401  # no api_key configured: the API refuses everything


async def test_handlers_after_an_async_one_still_answer_and_upgrades_need_no_task() -> None:
    """A handler after one that awaited and answered nothing still gets its path; the hook
    decides an upgrade to the WebSocket path at once, without a coroutine."""

    async def maybe(connection: Any, request: Request) -> Response | None:
        await asyncio.sleep(0)
        return Response.text(200, "maybe\n") if request.path == "/maybe" else None

    def plain(connection: Any, request: Request) -> Response | None:
        return Response.text(200, "plain\n") if request.path == "/plain" else None

    async def later(connection: Any, request: Request) -> Response | None:
        await asyncio.sleep(0)
        return Response.text(200, "later\n") if request.path == "/later" else None

    handlers = [maybe, plain, later]
    async with await start_demo_hub(
        "127.0.0.1", 0, ephemeral=True, allow_anonymous=True, http_handlers=handlers
    ) as server:
        for path in ("/maybe", "/plain", "/later"):
            status, _, body = await http(server, "GET", path, key=None)
            assert (status, body) == (200, f"{path[1:]}\n".encode())
        status, _, _ = await http(server, "GET", "/nowhere", key=None)
        assert status == 404
        # an upgrade to the hub's path passes every handler
        upgrade = Request("GET", server.path, Headers([("Upgrade", "websocket")]))
        pending = server.route(None, upgrade)
        assert inspect.isawaitable(pending)
        assert await pending is None
        assert await server.process_request(None, upgrade) is None
    async with await start_demo_hub(
        "127.0.0.1", 0, ephemeral=True, allow_anonymous=True, http_handlers=[plain]
    ) as server:
        assert server.route(None, Request("GET", server.path, Headers())) is None
        async with hub_connect(server) as ws:
            assert (await Wire(ws).call("connect"))["result"]["client"]


async def test_history_survives_restart_over_the_wire(tmp_path: Path) -> None:
    """With a data_dir, a client recovers after the hub restarts."""
    options: dict[str, Any] = {"data_dir": tmp_path, "allow_anonymous": True}
    async with await start_demo_hub("127.0.0.1", 0, **options) as server, hub_connect(server) as ws:
        client = Wire(ws)
        await client.call("connect")
        await client.call("subscribe", channel="chat:lobby")
        acks = [await client.call("publish", channel="chat:lobby", data=i) for i in range(3)]
    last = acks[0]["result"]
    assert (tmp_path / "history.db").exists()
    async with await start_demo_hub("127.0.0.1", 0, **options) as server, hub_connect(server) as ws:
        client = Wire(ws)
        await client.call("connect")
        result = (await client.call("subscribe", channel="chat:lobby", since=last))["result"]
    assert result["recovered"] is True
    assert [p["data"] for p in result["publications"]] == [1, 2]


async def test_start_hub_needs_a_data_dir_or_ephemeral() -> None:
    """Refusing to guess where to store history."""
    with pytest.raises(ValueError):
        await start_demo_hub("127.0.0.1", 0)


# --- settings of the hub start_hub builds ---------------------------------------------------


class Clock:
    """Wall-clock time that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def signed(**claims: Any) -> str:
    """A token for SECRET with the given claims on top of a valid subject and permissions."""
    return jwt.encode({"sub": "eve", "channels": ["chat:*:spr"], **claims}, SECRET, "HS256")


async def connect_reply(server: HubServer, token: str) -> dict[str, Any]:
    """The reply to ``connect`` with ``token`` over a real connection."""
    async with hub_connect(server) as ws:
        return await Wire(ws).call("connect", token=token)


@pytest.mark.parametrize(
    ("option", "claim", "right", "wrong"),
    [
        ("token_audience", "aud", "chat-service", "billing-service"),
        ("token_issuer", "iss", "https://auth.example", "https://evil.example"),
    ],
)
async def test_token_audience_and_issuer_are_checked(
    option: str, claim: str, right: str, wrong: str
) -> None:
    """With token_audience/token_issuer, only tokens carrying that aud/iss get in."""
    clock = Clock()
    options: dict[str, Any] = {"ephemeral": True, "secret": SECRET, "clock": clock, option: right}
    exp = clock.now + 60
    async with await start_demo_hub("127.0.0.1", 0, **options) as server:
        accepted = await connect_reply(server, signed(exp=exp, **{claim: right}))
        assert accepted["result"]["user"] == "eve"
        for token in (signed(exp=exp, **{claim: wrong}), signed(exp=exp)):
            refused = await connect_reply(server, token)
            assert refused["error"] == {"code": 103, "message": "unauthorized"}


async def test_token_leeway_admits_a_token_that_just_expired() -> None:
    """A token expired 5 s ago is refused (113) without leeway and accepted with 30 s."""
    clock = Clock()
    token = signed(exp=clock.now - 5)
    options: dict[str, Any] = {"ephemeral": True, "secret": SECRET, "clock": clock}
    async with await start_demo_hub("127.0.0.1", 0, **options) as server:
        assert (await connect_reply(server, token))["error"]["code"] == 113
    async with await start_demo_hub("127.0.0.1", 0, token_leeway=30, **options) as server:
        assert (await connect_reply(server, token))["result"]["user"] == "eve"


@pytest.fixture(params=["ephemeral", "data_dir", pytest.param("redis", marks=pytest.mark.redis)])
def store_options(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """start_hub's options for each kind of persistent store it can build."""
    if request.param == "ephemeral":
        return {"ephemeral": True}
    if request.param == "data_dir":
        return {"data_dir": tmp_path}
    redis: RedisServer = request.getfixturevalue("redis")
    return {"redis_url": redis.url, "redis_prefix": f"test-{uuid.uuid4().hex}"}


async def test_dedupe_window_reaches_every_store(store_options: dict[str, Any]) -> None:
    """A message_id repeated within dedupe_window is a duplicate; after it, a new publication.

    Both a persistent namespace (the store start_hub built) and a non-persistent one (the
    hub's own in-memory store) follow the window given to start_hub.
    """
    clock = Clock()
    registry = ChannelRegistry(
        {"kept": NamespaceOptions(), "volatile": NamespaceOptions(persistent=False)}
    )
    options: dict[str, Any] = {"secret": SECRET, "dedupe_window": 10.0, "clock": clock}
    options["registry"] = registry
    token = signed(exp=clock.now + 3600, channels=["kept:*:spr", "volatile:*:spr"])
    async with (
        await start_demo_hub("127.0.0.1", 0, **options, **store_options) as server,
        hub_connect(server) as ws,
    ):
        client = Wire(ws)
        assert "result" in await client.call("connect", token=token)
        for channel in ("kept:dedupe", "volatile:dedupe"):
            assert "result" in await client.call("subscribe", channel=channel)
            first = await client.call("publish", channel=channel, data=1, message_id="m")
            clock.now += 9.5
            again = await client.call("publish", channel=channel, data=1, message_id="m")
            assert again["result"] == {**first["result"], "duplicate": True}
            clock.now += 1.0  # 10.5 s after the first: forgotten
            later = await client.call("publish", channel=channel, data=1, message_id="m")
            assert "duplicate" not in later["result"]
            assert later["result"]["offset"] == first["result"]["offset"] + 1


@pytest.mark.parametrize(
    "options",
    [{"dedupe_window": 0.0}, {"dedupe_window": -1.0}, {"token_leeway": -1.0}],
)
async def test_start_hub_refuses_bad_windows(options: dict[str, Any]) -> None:
    """A dedupe window must be positive and a leeway non-negative."""
    with pytest.raises(ValueError):
        await start_demo_hub("127.0.0.1", 0, ephemeral=True, **options)


async def test_the_hub_serves_its_browser_client_without_any_app() -> None:
    """/wshub.js comes from the hub itself (no app mounted): GET, HEAD, 304, 405."""
    server = await start_hub("127.0.0.1", 0, ephemeral=True)
    try:
        status, headers, body = await http(server, "GET", "/wshub.js", key=None)
        assert status == 200 and headers["Content-Type"].startswith("text/javascript")
        assert b"export class HubClient" in body
        etag = headers["ETag"]
        status, headers, body = await http(server, "HEAD", "/wshub.js", key=None)
        assert (status, body, headers["ETag"]) == (200, b"", etag)
        assert headers["Content-Length"] == str(len(client_source()[0]))
        status, _, _ = await http(
            server, "GET", "/wshub.js", key=None, headers={"If-None-Match": etag}
        )
        assert status == 304
        status, headers, _ = await http(server, "POST", "/wshub.js", key=None, raw=b"")
        assert status == 405 and headers["Allow"] == "GET, HEAD"
    finally:
        await server.close()
