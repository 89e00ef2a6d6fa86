"""Tests for ``wshub sub`` and ``wshub pub`` against a real hub on loopback."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from wshub import Request, Response
from wshub.apps.chat import DEMO_ANONYMOUS_PERMISSIONS, demo_config
from wshub.commands.common import CommandError
from wshub.commands.pubsub import api_publish_url
from wshub.hub.auth import make_token
from wshub.hub.client import HubClient
from wshub.hub.server import HubServer
from wshub.hub.server import start_hub as start_library_hub
from wshub.protocol.server import is_upgrade_request
from wshub.testing import TLSCertificate

from .conftest import WAIT, Running, assert_one_line_error, environment, running, wshub

SECRET = "commands-tests-secret-0123456789abcdef"
API_KEY = "commands-tests-api-key"


async def start_hub(*args: Any, **options: Any) -> HubServer:
    """``start_hub`` on the chat demo's namespaces and anonymous permissions (the library's
    own defaults declare no namespace and let nobody in)."""
    options.setdefault("registry", demo_config().registry())
    options.setdefault("anonymous_permissions", DEMO_ANONYMOUS_PERMISSIONS)
    return await start_library_hub(*args, **options)


@pytest.fixture
async def hub() -> AsyncIterator[HubServer]:
    """A hub with in-memory history, anonymous users, tokens and the HTTP API."""
    server = await start_hub(
        "127.0.0.1",
        0,
        ephemeral=True,
        allow_anonymous=True,
        secret=SECRET,
        api_key=API_KEY,
        close_timeout=1.0,
    )
    try:
        yield server
    finally:
        await server.close()


async def subscribed(hub: HubServer, channel: str, count: int = 1) -> None:
    """Wait until ``count`` sessions are subscribed to ``channel`` (pytest-timeout bounds it)."""
    while len(list(hub.hub.subscribers(channel))) < count:
        await asyncio.sleep(0.01)


async def history_data(hub: HubServer, channel: str) -> list[Any]:
    async with HubClient(hub.url(), make_token(SECRET, "reader", 60, [f"{channel}:r"])) as c:
        page = await c.history(channel)
    return [pub.data for pub in page.publications]


async def lines(sub: Running, count: int) -> list[dict[str, Any]]:
    return [orjson.loads(await sub.line()) for _ in range(count)]


# -- wshub sub -----------------------------------------------------------------------------------


async def test_sub_prints_publications_as_json_lines(hub: HubServer) -> None:
    """Publications of two channels, made by another client, come out one JSON line each."""
    async with running("sub", hub.url(), "chat:lobby", "board:b1", "--count", "3") as sub:
        await subscribed(hub, "chat:lobby")
        await subscribed(hub, "board:b1")
        async with HubClient(hub.url(), meta={"nick": "ada"}) as other:
            await other.subscribe("chat:lobby")
            await other.subscribe("board:b1")
            await other.publish("chat:lobby", {"text": "hi"})
            await other.publish("board:b1", [1, 2])
            await other.publish("chat:lobby", "third")
        result = await sub.wait()
    assert result.status == 0 and result.err == ""
    got = [orjson.loads(line) for line in result.out.splitlines()]
    assert sorted((g["channel"], g["offset"], g["data"]) for g in got) == [
        ("board:b1", 1, [1, 2]),
        ("chat:lobby", 1, {"text": "hi"}),
        ("chat:lobby", 2, "third"),
    ]
    first = next(g for g in got if g["channel"] == "chat:lobby")
    assert set(first) == {"channel", "offset", "epoch", "time", "data", "info"}
    assert first["info"]["meta"] == {"nick": "ada"} and first["time"] > 0
    assert first["epoch"]


async def test_sub_recent_and_server_publications(hub: HubServer) -> None:
    """--recent prints what was published before; server publications carry no info."""
    await hub.hub.publish("chat:old", "before")
    async with running("sub", hub.url(), "chat:old", "--recent", "5", "--count", "2") as sub:
        assert (await lines(sub, 1))[0]["data"] == "before"
        await hub.hub.publish("chat:old", "after")
        after = (await lines(sub, 1))[0]
        assert (after["offset"], after["data"]) == (2, "after") and "info" not in after
        assert (await sub.wait()).status == 0


async def test_sub_recovers_after_a_cut(hub: HubServer) -> None:
    """The hub drops the connection; what was published meanwhile comes once, in order."""
    async with running("sub", hub.url(), "chat:cut", "--count", "4") as sub:
        await subscribed(hub, "chat:cut")
        await hub.hub.publish("chat:cut", 1)
        assert [p["data"] for p in await lines(sub, 1)] == [1]
        for session in hub.hub.sessions:
            session.peer.transport.abort()  # type: ignore[attr-defined]
        await hub.hub.publish("chat:cut", 2)
        await hub.hub.publish("chat:cut", 3)
        await subscribed(hub, "chat:cut")
        await hub.hub.publish("chat:cut", 4)
        got = await lines(sub, 3)
        assert [(p["offset"], p["data"]) for p in got] == [(2, 2), (3, 3), (4, 4)]
        result = await sub.wait()
    assert result.status == 0
    assert "Traceback" not in result.err


class Gate:
    """An HTTP handler in front of the hub that answers upgrades with 503 while closed."""

    def __init__(self) -> None:
        self.closed = False

    def __call__(self, connection: Any, request: Request) -> Response | None:
        if self.closed and is_upgrade_request(request):
            return Response.text(503, "Service Unavailable\n")
        return None


async def test_sub_says_when_publications_were_lost() -> None:
    """A gap the hub's history cannot fill (a ticker keeps 1): one warning line, then on."""
    gate = Gate()
    hub = await start_hub(
        "127.0.0.1", 0, ephemeral=True, allow_anonymous=True, http_handlers=[gate]
    )
    try:
        async with running("sub", hub.url(), "ticker:GAP", "--count", "2") as sub:
            await subscribed(hub, "ticker:GAP")
            await hub.hub.publish("ticker:GAP", 1)
            assert [p["data"] for p in await lines(sub, 1)] == [1]
            gate.closed = True  # the client cannot come back while 2, 3, 4 are published
            before = set(hub.hub.sessions)
            for session in before:
                session.peer.transport.abort()  # type: ignore[attr-defined]
            for price in (2, 3, 4):
                await hub.hub.publish("ticker:GAP", price)
            gate.closed = False
            while not set(hub.hub.subscribers("ticker:GAP")) - before:
                await asyncio.sleep(0.01)
            await hub.hub.publish("ticker:GAP", 5)
            after = (await lines(sub, 1))[0]
            result = await sub.wait()
    finally:
        await hub.close()
    assert (after["offset"], after["data"]) == (5, 5)
    assert result.status == 0
    lost = [line for line in result.err_lines if "publications were lost" in line]
    assert lost == ["wshub sub: ticker:GAP: publications were lost (position unrecoverable)"]


async def test_sub_recovers_across_a_hub_restart(tmp_path: Path) -> None:
    """A hub restarted on the same port with its SQLite history: nothing lost or repeated."""
    options: dict[str, Any] = {"data_dir": tmp_path, "allow_anonymous": True, "close_timeout": 1.0}
    server = await start_hub("127.0.0.1", 0, **options)
    port = server.port
    try:
        async with running("sub", server.url(), "chat:restart", "--count", "3") as sub:
            await subscribed(server, "chat:restart")
            await server.hub.publish("chat:restart", "one")
            first = (await lines(sub, 1))[0]
            await server.close()
            server = await start_hub("127.0.0.1", port, **options)
            await server.hub.publish("chat:restart", "two")  # before the client is back
            await subscribed(server, "chat:restart")
            await server.hub.publish("chat:restart", "three")
            rest = await lines(sub, 2)
            result = await sub.wait()
    finally:
        await server.close()
    assert [(p["offset"], p["data"]) for p in [first, *rest]] == [
        (1, "one"),
        (2, "two"),
        (3, "three"),
    ]
    assert {p["epoch"] for p in [first, *rest]} == {first["epoch"]}
    assert result.status == 0


async def test_sub_ctrl_c_exits_0_quietly(hub: HubServer) -> None:
    """SIGINT (Ctrl-C) ends sub with status 0 and nothing on standard error."""
    async with running("sub", hub.url(), "chat:quiet") as sub:
        await subscribed(hub, "chat:quiet")
        sub.process.send_signal(signal.SIGINT)
        result = await sub.wait()
    assert (result.status, result.err) == (0, "")


async def test_sub_stops_quietly_when_its_reader_goes_away(hub: HubServer) -> None:
    """Like ``wshub sub ... | head -1``: once stdout's reader is gone, exit 0 without a word."""
    read_end, write_end = os.pipe()
    process = subprocess.Popen(
        [sys.executable, "-m", "wshub", "sub", hub.url(), "chat:head"],
        stdin=subprocess.DEVNULL,
        stdout=write_end,
        stderr=subprocess.PIPE,
        env=environment(),
    )
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as reader:
            await subscribed(hub, "chat:head")
            await hub.hub.publish("chat:head", "first")
            line = await asyncio.to_thread(reader.readline)
            assert orjson.loads(line)["data"] == "first"
        await hub.hub.publish("chat:head", "nobody reads this")
        status = await asyncio.wait_for(asyncio.to_thread(process.wait), WAIT)
        assert process.stderr is not None
        assert (status, process.stderr.read()) == (0, b"")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


async def test_sub_token_and_refusals(hub: HubServer) -> None:
    """With --token the user's permissions apply; a refusal is one line and exit 1."""
    token = make_token(SECRET, "ops", 60, ["ticker:*:s"])
    async with running("sub", hub.url(), "ticker:ACME", "--token", token, "--count", "1") as sub:
        await subscribed(hub, "ticker:ACME")
        await hub.hub.publish("ticker:ACME", {"price": 1.5})
        assert (await lines(sub, 1))[0]["data"] == {"price": 1.5}
        assert (await sub.wait()).status == 0
    denied = await wshub("sub", hub.url(), "chat:lobby", "--token", token)
    assert_one_line_error(denied, 1, "cannot subscribe to chat:lobby", "permission denied")
    forged = await wshub("sub", hub.url(), "chat:lobby", "--token", "not.a.token")
    assert_one_line_error(forged, 1, "refused the connection", "unauthorized")
    unknown = await wshub("sub", hub.url(), "nope:x")
    assert_one_line_error(unknown, 1, "unknown namespace")


async def test_sub_ends_with_an_error_when_the_hub_unsubscribes_it(hub: HubServer) -> None:
    """A hub that ends the connection for good (4000 bad command): one line, exit 1."""
    async with running("sub", hub.url(), "chat:end") as sub:
        await subscribed(hub, "chat:end")
        for session in hub.hub.sessions:
            await session.peer.close(4000, "bad command")
        result = await sub.wait()
    assert result.status == 1
    assert result.err_lines[-1].startswith("wshub sub: error: chat:end:")
    assert "Traceback" not in result.err


# -- wshub pub -----------------------------------------------------------------------------------


async def test_pub_over_the_websocket(hub: HubServer) -> None:
    """Anonymous in chat (subscribes first, the namespace wants it), then with a token."""
    first = await wshub("pub", hub.url(), "chat:pub", '{"text": "hi"}')
    assert (first.status, first.out, first.err) == (0, "1\n", "")
    token = make_token(SECRET, "bot", 60, ["chat:*:sp"])
    second = await wshub("pub", hub.url(), "chat:pub", "plain", "--text", "--token", token)
    assert (second.status, second.out) == (0, "2\n")
    assert await history_data(hub, "chat:pub") == [{"text": "hi"}, "plain"]


async def test_pub_through_the_http_api(hub: HubServer) -> None:
    """--api-key: the http base URL or the ws URL; DATA from stdin; message ids dedupe."""
    base = f"http://127.0.0.1:{hub.port}"
    one = await wshub("pub", base, "ticker:ACME", "12.5", "--api-key", API_KEY)
    assert (one.status, one.out) == (0, "1\n")
    two = await wshub(
        "pub", hub.url(), "ticker:ACME", "-", "--api-key", API_KEY, stdin=b'{"price": 13}\n'
    )
    assert (two.status, two.out) == (0, "2\n")
    args = ("pub", base + "/", "chat:api", "-", "--text", "--api-key", API_KEY)
    retry = ("--message-id", "once")
    three = await wshub(*args, *retry, stdin=b"line of text\n")
    again = await wshub(*args, *retry, stdin=b"line of text\n")
    assert three.out == again.out == "1\n"
    assert await history_data(hub, "chat:api") == ["line of text"]


async def test_pub_errors(hub: HubServer) -> None:
    """Every error: one line on standard error; 2 for bad input, 1 for refusals."""
    url = hub.url()
    assert_one_line_error(await wshub("pub", url, "chat:x", "not json"), 2, "not JSON", "--text")
    assert_one_line_error(await wshub("pub", url, "ticker:X", "1"), 1, "permission denied")
    assert_one_line_error(await wshub("pub", url, "nope:x", "1"), 1, "unknown namespace")
    wrong_key = await wshub("pub", url, "chat:x", "1", "--api-key", "wrong")
    assert_one_line_error(wrong_key, 1, "HTTP 401", "unauthorized")
    bad_channel = await wshub("pub", url, "chat x", "1", "--api-key", API_KEY)
    assert_one_line_error(bad_channel, 1, "HTTP 400")
    both = await wshub("pub", url, "chat:x", "1", "--api-key", API_KEY, "--token", "t")
    assert_one_line_error(both, 2, "not allowed with")
    assert_one_line_error(await wshub("pub", url, "chat:x"), 2, "required: DATA")
    assert_one_line_error(await wshub("pub", "ftp://h/", "c:x", "1", "--api-key", "k"), 2, "ftp")
    assert_one_line_error(await wshub("pub", "http://h/", "c:x", "1"), 2, "ws:// or wss://")


async def test_tls_hub_with_cafile_and_insecure(
    tls_certificate: TLSCertificate, tmp_path: Path
) -> None:
    """wss:// and https://: --cafile trusts the hub's CA, --insecure skips the check."""
    cafile = tmp_path / "ca.pem"
    cafile.write_bytes(tls_certificate.cert_pem)
    hub = await start_hub(
        "127.0.0.1",
        0,
        ephemeral=True,
        allow_anonymous=True,
        api_key=API_KEY,
        ssl=tls_certificate.server_context(),
    )
    wss = f"wss://127.0.0.1:{hub.port}/ws"
    try:
        async with running("sub", wss, "chat:tls", "--insecure", "--count", "2") as sub:
            await subscribed(hub, "chat:tls")
            over_wss = await wshub("pub", wss, "chat:tls", '"wss"', "--cafile", str(cafile))
            https = f"https://127.0.0.1:{hub.port}"
            over_api = await wshub(
                "pub", https, "chat:tls", '"api"', "--api-key", API_KEY, "--cafile", str(cafile)
            )
            assert (over_wss.status, over_wss.out, over_api.out) == (0, "1\n", "2\n")
            assert [p["data"] for p in await lines(sub, 2)] == ["wss", "api"]
        unverified = await wshub("pub", https, "chat:tls", "1", "--api-key", API_KEY)
    finally:
        await hub.close()
    assert_one_line_error(unverified, 1, "certificate verification failed")


async def test_unreachable_hub_is_exit_1() -> None:
    """Nothing listens: sub, pub and pub --api-key say so in one line, exit 1."""
    server = await start_hub("127.0.0.1", 0, ephemeral=True, allow_anonymous=True)
    port = server.port
    await server.close()
    url = f"ws://127.0.0.1:{port}/ws"
    assert_one_line_error(await wshub("sub", url, "chat:x"), 1, "cannot connect", "refused")
    assert_one_line_error(await wshub("pub", url, "chat:x", "1"), 1, "cannot connect")
    http = await wshub("pub", url, "chat:x", "1", "--api-key", "k")
    assert_one_line_error(http, 1, f"cannot reach http://127.0.0.1:{port}/api/publish")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://h:8765", "http://h:8765/api/publish"),
        ("http://h:8765/", "http://h:8765/api/publish"),
        ("https://h/hub/", "https://h/hub/api/publish"),
        ("ws://h:8765/ws", "http://h:8765/api/publish"),
        ("wss://h/ws", "https://h/api/publish"),
    ],
)
def test_api_publish_url(url: str, expected: str) -> None:
    """A base URL keeps its path prefix; a WebSocket URL's path is dropped."""
    assert api_publish_url(url) == expected


@pytest.mark.parametrize("url", ["ftp://h/", "http://", "h:8765"])
def test_api_publish_url_refuses_other_urls(url: str) -> None:
    """Other schemes, or no host: a usage error (exit 2)."""
    with pytest.raises(CommandError) as info:
        api_publish_url(url)
    assert info.value.status == 2
