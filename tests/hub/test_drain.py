"""Drains (Hub.drain, HubServer.drain, SIGTERM of `wshub serve`) and a rolling restart."""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import signal
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

import wshub
from wshub.exceptions import ConfigError, InvalidResponse
from wshub.hub import Authenticator, Hub
from wshub.hub.client import HubClient
from wshub.hub.config import AuthConfig, HubConfig, ListenConfig
from wshub.hub.server import HubServer, start_hub
from wshub.hub.wire import SUBPROTOCOL, DisconnectCode
from wshub.testing import RedisServer


def http_get(port: int, path: str) -> tuple[int, Any]:
    """GET ``path`` on the loopback ``port``: the status and the decoded JSON body."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


async def hub_connection(url: str) -> wshub.ClientConnection:
    """A raw WebSocket connection to the hub that has sent ``connect`` and got its reply."""
    ws = await wshub.connect(url, subprotocols=[SUBPROTOCOL])
    await ws.send('{"id": 1, "cmd": "connect"}')
    reply = orjson.loads(await ws.recv())
    assert reply["id"] == 1 and "result" in reply
    return ws


async def stuck_client(port: int) -> asyncio.StreamWriter:
    """A client that upgrades, then never reads again: it never answers a close frame."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        (
            "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {SUBPROTOCOL}\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    return writer


ANONYMOUS = AuthConfig(allow_anonymous=True)


def test_drain_settings_are_checked() -> None:
    """drain_period >= 0, drain_timeout > 0, and the period fits in the timeout."""
    assert ListenConfig().drain_period == 5.0 and ListenConfig().drain_timeout == 30.0
    defaults = inspect.signature(Hub.drain).parameters
    assert defaults["drain_period"].default == ListenConfig().drain_period
    assert defaults["drain_timeout"].default == ListenConfig().drain_timeout
    with pytest.raises(ConfigError, match="drain_period: must be >= 0"):
        ListenConfig(drain_period=-1)
    with pytest.raises(ConfigError, match="drain_timeout: must be > 0"):
        ListenConfig(drain_timeout=0)
    with pytest.raises(ConfigError, match="drain_period: must not exceed drain_timeout"):
        ListenConfig(drain_period=10, drain_timeout=5)
    parsed = HubConfig.parse({"listen": {"drain_period": 1, "drain_timeout": 2}}).listen
    assert (parsed.drain_period, parsed.drain_timeout) == (1.0, 2.0)


async def test_drain_spreads_the_1012_closes_and_says_draining() -> None:
    """HubServer.drain: /healthz answers 503 "draining", upgrades get 503, each session is
    closed with 1012 "service restart", the closes spread over the drain period."""
    config = HubConfig(listen=ListenConfig(port=0), auth=ANONYMOUS)
    period = 1.0
    async with await start_hub(config) as server:
        assert await asyncio.to_thread(http_get, server.port, "/healthz") == (
            200,
            {"status": "ok", "connections": 0},
        )
        clients = [await hub_connection(server.url()) for _ in range(8)]
        loop = asyncio.get_running_loop()
        closed_at: list[float] = []

        async def watch(ws: wshub.ClientConnection) -> None:
            await ws.wait_closed()
            closed_at.append(loop.time())

        watchers = [asyncio.ensure_future(watch(ws)) for ws in clients]
        drain = asyncio.ensure_future(server.drain(drain_period=period, drain_timeout=20))
        await asyncio.sleep(0)
        assert server.hub.draining
        status, body = await asyncio.to_thread(http_get, server.port, "/healthz")
        assert status == 503 and body["status"] == "draining"
        with pytest.raises(InvalidResponse) as refused:
            await wshub.connect(server.url(), subprotocols=[SUBPROTOCOL])
        assert refused.value.status == 503
        assert await drain == 0
        await asyncio.gather(*watchers)
        for ws in clients:
            assert (ws.close_code, ws.close_reason) == (1012, "service restart")
        # A lower bound only: under load the closes spread further, never less.
        assert max(closed_at) - min(closed_at) >= period / 2


async def test_a_session_made_while_draining_is_sent_away() -> None:
    """A connection that slips in during a drain (a server that does not refuse upgrades,
    as an ASGI server) gets its session closed with 1012 at once."""
    async with Hub(auth=Authenticator(allow_anonymous=True)) as hub:
        assert await hub.drain(drain_period=0, drain_timeout=1) == 0

        handler = HubServer(hub).handle  # the standalone server's handler, without its refusal
        async with wshub.serve(handler, "127.0.0.1", 0, subprotocols=[SUBPROTOCOL]) as server:
            url = f"ws://127.0.0.1:{server.port}/"
            async with wshub.connect(url, subprotocols=[SUBPROTOCOL]) as ws:
                await ws.wait_closed()
                assert (ws.close_code, ws.close_reason) == (1012, "service restart")
        with pytest.raises(ValueError, match="drain_period <= drain_timeout"):
            await hub.drain(drain_period=2, drain_timeout=1)


async def test_drain_gives_up_on_a_client_that_never_goes() -> None:
    """A client that never answers the close frame: the drain ends at drain_timeout with
    one connection left, and close() drops it."""
    config = HubConfig(
        listen=ListenConfig(port=0),
        auth=ANONYMOUS,
        transport=wshub.TransportOptions(close_timeout=3.0),
    )
    async with await start_hub(config) as server:
        writer = await stuck_client(server.port)
        while not server.hub.sessions:
            await asyncio.sleep(0.01)
        assert await server.drain(drain_period=0, drain_timeout=0.5) == 1
    assert not server.hub.sessions
    writer.close()


# --- wshub serve: signals -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Node:
    """One `wshub serve` process."""

    process: asyncio.subprocess.Process
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def healthz(self) -> tuple[int, Any]:
        return await asyncio.to_thread(http_get, self.port, "/healthz")

    async def stop(self, signum: int = signal.SIGTERM) -> int:
        self.process.send_signal(signum)
        return await self.process.wait()


async def start_node(port: int, log: Path, *args: str) -> Node:
    """``python -m wshub serve --port PORT ARGS`` until it says where the hub is."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("WSHUB_")}
    with log.open("ab") as stderr:
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "wshub", "--log-level", "info", "serve"),
            *("--port", str(port), "--no-chat", "--no-ticker", "--no-board", "--no-console"),
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            env=environment,
        )
    assert process.stdout is not None
    while True:
        line = (await process.stdout.readline()).decode()
        assert line, f"wshub serve exited early: {log.read_text()}"
        if re.match(r"wshub: hub on ws://", line):
            return Node(process, port, log)


@asynccontextmanager
async def node(tmp_path: Path, *args: str) -> AsyncIterator[Node]:
    started = await start_node(free_port(), tmp_path / "node.log", *args)
    try:
        yield started
    finally:
        if started.process.returncode is None:
            started.process.kill()
            await started.process.wait()


# The server runs in its own process: one client-side loop is enough.
@pytest.mark.asyncio(loop_factories=["asyncio"])
async def test_sigterm_drains_and_exits_0(tmp_path: Path) -> None:
    """SIGTERM: 1012 "service restart" to each client, then exit code 0."""
    async with node(tmp_path, "--ephemeral", "--drain-period", "0.2") as served:
        clients = [await hub_connection(served.url) for _ in range(3)]
        assert await served.stop() == 0
        for ws in clients:
            await ws.wait_closed()
            assert ws.close_code == DisconnectCode.SERVICE_RESTART
    assert "draining 3 connections" in served.log.read_text()


@pytest.mark.asyncio(loop_factories=["asyncio"])
async def test_a_second_signal_stops_the_drain_at_once(tmp_path: Path) -> None:
    """SIGTERM then SIGINT: the client the drain had not reached yet gets 1001."""
    args = ("--ephemeral", "--drain-period", "60", "--drain-timeout", "120")
    async with node(tmp_path, *args) as served:
        clients = [await hub_connection(served.url) for _ in range(2)]
        served.process.send_signal(signal.SIGTERM)
        # The drain closes one at once, the other one 30 s later.
        waits = {asyncio.ensure_future(ws.wait_closed()): ws for ws in clients}
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        (first,) = [waits[future] for future in done]
        (second,) = [ws for ws in clients if ws is not first]
        assert first.close_code == 1012
        assert await served.stop(signal.SIGINT) == 0
        await asyncio.gather(*waits)
        assert second.close_code == 1001
    assert "second signal: stopping at once" in served.log.read_text()


@pytest.mark.asyncio(loop_factories=["asyncio"])
async def test_sigint_closes_with_1001_at_once(tmp_path: Path) -> None:
    """SIGINT (Ctrl-C) keeps the fast shutdown: 1001 to every client, exit code 0."""
    async with node(tmp_path, "--ephemeral") as served:
        ws = await hub_connection(served.url)
        assert await served.stop(signal.SIGINT) == 0
        await ws.wait_closed()
        assert ws.close_code == 1001
    assert "draining" not in served.log.read_text()


@pytest.mark.asyncio(loop_factories=["asyncio"])
async def test_sigterm_exits_after_drain_timeout_with_a_client_that_never_goes(
    tmp_path: Path,
) -> None:
    """A client that never answers the close: the node gives up at drain_timeout, exits 0."""
    args = ("--ephemeral", "--drain-period", "0", "--drain-timeout", "1", "--close-timeout", "5")
    async with node(tmp_path, *args) as served:
        writer = await stuck_client(served.port)
        await asyncio.sleep(0.2)  # let the session start; the test holds either way
        assert await served.stop() == 0
        writer.close()
    assert "drain timed out: 1 connections left" in served.log.read_text()


# --- a rolling restart of a three-node cluster ----------------------------------------------

CHANNEL = "board:rolling"


@pytest.mark.redis
@pytest.mark.asyncio(loop_factories=["asyncio"])
async def test_a_rolling_restart_loses_and_duplicates_nothing(
    redis: RedisServer, tmp_path: Path
) -> None:
    """Three nodes on Redis, each SIGTERMed, restarted and healthy before the next: every
    subscriber gets every acknowledged publication exactly once, in order."""
    ports = [free_port() for _ in range(3)]
    urls = [f"ws://127.0.0.1:{port}/ws" for port in ports]
    args = ("--redis", redis.url, "--drain-period", "1", "--drain-timeout", "15")
    logs = [tmp_path / f"node{i}.log" for i in range(3)]
    nodes = [await start_node(port, log, *args) for port, log in zip(ports, logs, strict=True)]
    # Each client starts on another node and moves to the next URL at every reconnection.
    subscribers = [HubClient(urls[i:] + urls[:i]) for i in range(3)]
    publishers = [HubClient(urls[i + 1 :] + urls[: i + 1]) for i in range(2)]
    received: list[list[Any]] = [[] for _ in subscribers]
    acked: list[list[int]] = [[] for _ in publishers]
    stop = asyncio.Event()
    try:
        for client in (*subscribers, *publishers):
            await client.connect()
        subs = [await client.subscribe(CHANNEL) for client in subscribers]
        for client in publishers:  # the namespace lets subscribers publish
            await client.subscribe(CHANNEL)

        async def consume(index: int) -> None:
            async for publication in subs[index]:
                received[index].append(publication.data)

        async def publish(index: int) -> None:
            n = 0
            while not stop.is_set():
                data = {"p": index, "n": n}
                message_id = f"p{index}-{n}"
                await publishers[index].publish(CHANNEL, data, message_id=message_id)
                acked[index].append(n)
                n += 1
                await asyncio.sleep(0.1)  # 10/s each: under the demo's publish_rate

        consumers = [asyncio.ensure_future(consume(i)) for i in range(3)]
        producers = [asyncio.ensure_future(publish(i)) for i in range(2)]
        for i, port in enumerate(ports):
            await asyncio.sleep(1.0)
            assert await nodes[i].stop() == 0, logs[i].read_text()
            nodes[i] = await start_node(port, logs[i], *args)
            assert (await nodes[i].healthz())[0] == 200
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*producers)

        def complete() -> bool:
            return all(
                sum(1 for item in got if item["p"] == p) >= len(acked[p])
                for got in received
                for p in range(len(publishers))
            )

        async with asyncio.timeout(60):  # a bound on a hang, not a speed measurement
            while not complete():
                await asyncio.sleep(0.05)
        for consumer in consumers:
            consumer.cancel()
        for index, got in enumerate(received):
            for p in range(len(publishers)):
                numbers = [item["n"] for item in got if item["p"] == p]
                # Exactly once and in order: every acked one, then at most unacked ones.
                assert numbers[: len(acked[p])] == acked[p], f"subscriber {index}"
                assert len(numbers) == len(set(numbers))
        assert all(len(numbers) >= 20 for numbers in acked)
        # Every subscriber was sent away at least once (its node drained) and came back.
        assert all(client.reconnects >= 1 for client in subscribers)
    finally:
        for client in (*subscribers, *publishers):
            await client.close()
        for each in nodes:
            if each.process.returncode is None:
                each.process.kill()
                await each.process.wait()
    for log in logs:
        assert "drained: no connection left" in log.read_text()
