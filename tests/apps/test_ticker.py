"""The ticker's Python side: its data, the feed's schedule, publishing in process and over
HTTP to a real hub, the page's files, and the ``wshub feed`` / ``wshub serve`` commands."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest

from wshub import Request, Response
from wshub.apps.chat import DEMO_ANONYMOUS_PERMISSIONS, demo_config
from wshub.apps.ticker import (
    HttpPublisher,
    HubPublisher,
    Instrument,
    PriceFeed,
    Snapshot,
    Tick,
    TickerApp,
    run_feed,
    ticker_routes,
)
from wshub.apps.ticker.feed import (
    DEFAULT_INSTRUMENTS,
    INDEX_CHANNEL,
    MAX_INSTRUMENTS,
    run_http_feed,
)
from wshub.cli import main
from wshub.exceptions import HubError
from wshub.hub.client import HubClient
from wshub.hub.server import HubServer, start_hub
from wshub.protocol.frames import Opcode
from wshub.testing import RawClient, RedisServer, loopback_server

from .conftest import wait_until
from .test_chat import http

API_KEY = "ticker-tests-api-key"

# The async tests talk to a hub in the same process or a subprocess: one loop is enough.
ONE_LOOP = pytest.mark.asyncio(loop_factories=["asyncio"])


@pytest.fixture
async def hub_server() -> AsyncIterator[HubServer]:
    """A hub with the demo namespaces, its HTTP API on, anonymous subscribers allowed."""
    async with await start_hub(
        "127.0.0.1",
        0,
        ephemeral=True,
        allow_anonymous=True,
        anonymous_permissions=DEMO_ANONYMOUS_PERMISSIONS,
        registry=demo_config().registry(),  # the demo's ticker namespace
        api_key=API_KEY,
    ) as server:
        yield server


async def latest(server: HubServer, channel: str) -> tuple[int, Any]:
    """The channel's current offset and the data of its newest stored publication."""
    pubs, position = await server.hub.history(channel)
    return position.offset, orjson.loads(pubs[-1].data) if pubs else None


class FakeTime:
    """A clock that moves only when the feed sleeps, and a publisher that records when."""

    def __init__(self, cost: float = 0.0) -> None:
        self.now = 1000.0
        self.cost = cost  # seconds each publication takes
        self.sent: list[tuple[float, str, Any]] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.now += seconds

    async def publish(self, channel: str, data: Any) -> int:
        self.sent.append((self.now, channel, data))
        self.now += self.cost
        return len(self.sent)

    def ticks(self) -> list[tuple[float, str, Any]]:
        return [entry for entry in self.sent if entry[1] != INDEX_CHANNEL]


# --- the data -----------------------------------------------------------------------------


def test_tick_and_snapshot_round_trip() -> None:
    """serialize() and parse() agree, and the demo has at least 50 valid instruments."""
    assert 50 <= len(DEFAULT_INSTRUMENTS) <= MAX_INSTRUMENTS
    tick = Tick("ACME", 128.41, 128.4)
    assert Tick.parse(orjson.loads(orjson.dumps(tick.serialize()))) == tick
    assert tick.channel == "ticker:ACME"
    snapshot = PriceFeed(seed=1, wall_clock=lambda: 1700000000.5).sample()
    again = Snapshot.parse(orjson.loads(orjson.dumps(snapshot.serialize())))
    assert again.time == 1700000000500
    assert [i.symbol for i in again.instruments] == [i.symbol for i in DEFAULT_INSTRUMENTS]
    assert again.series == tuple((i.open,) for i in DEFAULT_INSTRUMENTS)


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        {"symbol": "acme", "price": 1.0, "open": 1.0},
        {"symbol": "ACME", "price": 0, "open": 1.0},
        {"symbol": "ACME", "price": True, "open": 1.0},
        {"symbol": "ACME", "price": "1.0", "open": 1.0},
        {"symbol": "TOOLONGSYM", "price": 1.0, "open": 1.0},
        {"symbol": "ACME", "price": 1.0},
    ],
)
def test_bad_ticks_are_refused(data: Any) -> None:
    """parse() refuses what is not a tick: wrong types, symbols, non-positive prices."""
    with pytest.raises(ValueError):
        Tick.parse(data)


@pytest.mark.parametrize(
    "data",
    [
        {"time": 1, "interval": 5, "instruments": "ACME"},
        {"time": 1, "interval": 5, "instruments": [{"symbol": "ACME", "open": 1.0}]},
        {"time": 1, "interval": 5, "instruments": [1]},
        {
            "time": 1.5,
            "interval": 5,
            "instruments": [{"symbol": "A", "name": "a", "open": 1, "series": []}],
        },
        {
            "time": 1,
            "interval": 0,
            "instruments": [{"symbol": "A", "name": "a", "open": 1, "series": []}],
        },
        {"time": 1, "interval": 5, "instruments": []},
        {
            "time": 1,
            "interval": 5,
            "instruments": [{"symbol": "A", "name": "a", "open": 1, "series": [0]}],
        },
        {
            "time": 1,
            "interval": 5,
            "instruments": [{"symbol": "A", "name": "a", "open": 1, "series": []}] * 2,
        },
    ],
)
def test_bad_snapshots_are_refused(data: Any) -> None:
    """parse() refuses malformed snapshots, empty ones and duplicate symbols."""
    with pytest.raises(ValueError):
        Snapshot.parse(data)


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("acme", "Acme", 1.0), {}),
        (("ACME", "", 1.0), {}),
        (("ACME", "Acme", -1.0), {}),
        (("ACME", "Acme", 1.0), {"volatility": 0.5}),
    ],
)
def test_bad_instruments_are_refused(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """An instrument needs an uppercase symbol, a name, a positive price, a sane volatility."""
    with pytest.raises(ValueError):
        Instrument(*args, **kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"instruments": ()},
        {"instruments": [Instrument("A", "a", 1.0)] * 2},
        {"instruments": [Instrument(f"A{i}", "a", 1.0) for i in range(MAX_INSTRUMENTS + 1)]},
        {"rate": 0},
        {"rate": float("nan")},
        {"sample_interval": 0},
        {"sample_interval": 10, "window": 5},
        {"sample_interval": 1, "window": 1000},
    ],
)
def test_bad_feed_settings_are_refused(kwargs: dict[str, Any]) -> None:
    """The feed refuses settings whose snapshots or schedule could not work."""
    with pytest.raises(ValueError):
        PriceFeed(**kwargs)


def test_the_walk_moves_one_instrument_per_tick_by_small_cent_steps() -> None:
    """Each step moves one price by a few volatilities at most, to a whole cent, and a seed
    makes the walk reproducible."""
    feed = PriceFeed(seed=7)
    before = dict(feed.prices)
    for _ in range(500):
        old = dict(feed.prices)
        tick = feed.step()
        changed = {s for s in old if old[s] != feed.prices[s]}
        assert changed <= {tick.symbol}
        assert tick.price == feed.prices[tick.symbol] == round(tick.price, 2)
        assert abs(tick.price / old[tick.symbol] - 1) < 0.03
        assert tick.open == before[tick.symbol]
    replay = PriceFeed(seed=7)
    for _ in range(500):
        replay.step()
    assert replay.prices == feed.prices
    assert feed.ticks == 500


# --- the schedule ---------------------------------------------------------------------------


@ONE_LOOP
async def test_ticks_follow_the_rate_and_snapshots_the_interval() -> None:
    """At rate 10, tick k goes out at start + k/10; a snapshot every sample_interval."""
    fake = FakeTime()
    feed = PriceFeed(rate=10, sample_interval=2, window=6, clock=fake.clock, sleep=fake.sleep)
    await feed.run(fake, ticks=51)
    ticks = fake.ticks()
    assert len(ticks) == 51
    assert [round(t - 1000, 6) for t, _, _ in ticks] == [k / 10 for k in range(51)]
    indexes = [
        (t, Snapshot.parse(data)) for t, channel, data in fake.sent if channel == INDEX_CHANNEL
    ]
    assert [round(t - 1000, 6) for t, _ in indexes] == [0, 2, 4]
    # The window holds window / sample_interval + 1 samples, the newest last.
    assert [len(s.series[0]) for _, s in indexes] == [1, 2, 3]
    for _, channel, data in ticks:
        tick = Tick.parse(data)
        assert channel == tick.channel


@ONE_LOOP
async def test_a_feed_that_falls_behind_skips_instead_of_bursting() -> None:
    """When each publication takes 3 intervals, ticks still never exceed rate x elapsed + 1."""
    fake = FakeTime(cost=0.3)
    feed = PriceFeed(rate=10, clock=fake.clock, sleep=fake.sleep)
    await feed.run(fake, ticks=20)
    times = [t for t, _, _ in fake.ticks()]
    assert len(times) == 20
    for k, t in enumerate(times):
        assert t - times[0] >= k / 10 - 1e-9  # never ahead of the schedule
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 0.3 - 1e-9  # one at a time, no catch-up burst


@ONE_LOOP
async def test_failures_are_logged_once_and_the_feed_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A hub that refuses for a while: one warning, the ticks go on, then "publishing again"."""
    fake = FakeTime()
    refusals = iter(range(5))

    async def flaky(channel: str, data: Any) -> int:
        if next(refusals, None) is not None:
            raise ConnectionRefusedError("hub restarting")
        return await fake.publish(channel, data)

    class Flaky:
        publish = staticmethod(flaky)

    feed = PriceFeed(rate=100, clock=fake.clock, sleep=fake.sleep)
    with caplog.at_level("INFO", logger="wshub.hub"):
        await feed.run(Flaky(), ticks=10)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("publishing failed" in m for m in messages) == 1
    assert sum("publishing again" in m for m in messages) == 1
    assert feed.ticks == 10 and len(fake.ticks()) == 10 - 4  # the index took the first refusal


# --- publishing into a real hub -------------------------------------------------------------


@ONE_LOOP
async def test_in_process_feed_publishes_well_formed_ticks(hub_server: HubServer) -> None:
    """run_feed: every instrument's channel holds its newest tick, the index a snapshot, and a
    subscriber receives ticks in offset order."""
    ws_url = hub_server.url()
    async with HubClient(ws_url) as client:
        sub = await client.subscribe("ticker:ACME")
        task = asyncio.create_task(run_feed(hub_server.hub, rate=500))
        try:
            received = []
            async for pub in sub:
                received.append(pub)
                if len(received) == 3:
                    break
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert [p.offset for p in received] == [1, 2, 3]
    assert all(Tick.parse(p.data).symbol == "ACME" for p in received)
    for instrument in DEFAULT_INSTRUMENTS:
        offset, data = await latest(hub_server, instrument.channel)
        assert offset >= 1
        assert Tick.parse(data).open == instrument.open
    _, index = await latest(hub_server, INDEX_CHANNEL)
    assert len(Snapshot.parse(index).instruments) == len(DEFAULT_INSTRUMENTS)
    # The namespace keeps one publication per channel: the current price.
    pubs, _ = await hub_server.hub.history("ticker:ACME")
    assert len(pubs) == 1 and demo_config().registry()["ticker"].slow_consumer == "latest"


@ONE_LOOP
async def test_a_subscriber_that_falls_behind_gets_the_newest_price_of_each_instrument(
    hub_server: HubServer,
) -> None:
    """A client subscribed to every instrument stops reading (a small receive buffer) while
    the feed publishes thousands of ticks: when it reads again it gets, per instrument, its
    ticks in offset order ending with the newest one, and fewer than were published: beyond
    what the sockets buffer, the namespace's ``latest`` policy kept only the newest tick of
    each instrument waiting."""
    channels = [i.channel for i in DEFAULT_INSTRUMENTS]
    async with await RawClient.connect("127.0.0.1", hub_server.port, rcvbuf=4096) as raw:
        await raw.handshake("/ws", [("Sec-WebSocket-Protocol", "wshub.v1")])
        raw.send_text('{"id": 1, "cmd": "connect"}')
        for n, channel in enumerate(channels, start=2):
            raw.send_text(orjson.dumps({"id": n, "cmd": "subscribe", "channel": channel}).decode())
        replies = 0
        while replies < len(channels) + 1:
            frame = await raw.recv_frame()
            if frame.opcode == Opcode.TEXT and "id" in orjson.loads(frame.payload):
                replies += 1

        raw.pause_reading()
        feed = PriceFeed(seed=2)
        publisher = HubPublisher(hub_server.hub)
        published = 0
        # Publish until the hub has conflated a good number of ticks: how many fit in the
        # sockets' buffers first depends on the kernel (a few MB on Linux loopback).
        while hub_server.hub.stats.drops < 1000:
            assert published < 500_000, "the hub never conflated the backlog"
            for _ in range(1000):
                tick = feed.step()
                await publisher.publish(tick.channel, tick.serialize())
            published += 1000
        newest = {channel: (await latest(hub_server, channel))[0] for channel in channels}
        assert sum(newest.values()) == published
        raw.resume_reading()

        seen: dict[str, list[int]] = {channel: [] for channel in channels}
        while any(not offsets or offsets[-1] < newest[c] for c, offsets in seen.items()):
            frame = await raw.recv_frame()
            if frame.opcode != Opcode.TEXT:
                continue
            push = orjson.loads(frame.payload)
            assert push["push"] == "pub"
            assert Tick.parse(push["data"]).price > 0
            seen[push["channel"]].append(push["offset"])
    for channel, offsets in seen.items():
        assert offsets == sorted(set(offsets)), channel
        assert offsets[-1] == newest[channel]
    received = sum(len(offsets) for offsets in seen.values())
    # What the kernel's buffers held came through; the rest waited in the hub, one per channel.
    assert hub_server.hub.stats.drops > 0
    assert received + hub_server.hub.stats.drops == published


@ONE_LOOP
async def test_in_process_feed_without_the_namespace_logs_and_stops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A hub without a ticker namespace: run_feed logs why and returns."""
    from wshub.hub.channels import ChannelRegistry, NamespaceOptions

    registry = ChannelRegistry({"chat": NamespaceOptions()})
    async with await start_hub("127.0.0.1", 0, ephemeral=True, registry=registry) as server:
        with caplog.at_level("ERROR", logger="wshub.hub"):
            await run_feed(server.hub)
    assert any("ticker feed: not started" in r.getMessage() for r in caplog.records)


@ONE_LOOP
async def test_http_feed_publishes_through_the_api(hub_server: HubServer) -> None:
    """HttpPublisher: ticks reach the hub over POST /api/publish, offsets in order."""
    publisher = HttpPublisher(f"http://127.0.0.1:{hub_server.port}", API_KEY)
    feed = PriceFeed(rate=1000, seed=3)
    await feed.publish_all(publisher)
    await feed.run(publisher, ticks=40)
    total = 0
    for instrument in DEFAULT_INSTRUMENTS:
        offset, data = await latest(hub_server, instrument.channel)
        assert Tick.parse(data).price == feed.prices[instrument.symbol]
        total += offset
    assert total == len(DEFAULT_INSTRUMENTS) + 40
    assert (
        await publisher.publish("ticker:ACME", Tick("ACME", 1.5, 1.0).serialize())
        == (await latest(hub_server, "ticker:ACME"))[0]
    )


@ONE_LOOP
async def test_run_http_feed_until_cancelled(hub_server: HubServer) -> None:
    """run_http_feed publishes the starting state, then ticks, until cancelled."""
    task = asyncio.create_task(
        run_http_feed(f"http://127.0.0.1:{hub_server.port}/", API_KEY, rate=200, seed=1)
    )
    try:
        await wait_until(lambda: hub_server.hub.stats.publications >= len(DEFAULT_INSTRUMENTS) + 20)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()


@ONE_LOOP
async def test_http_publisher_errors(hub_server: HubServer) -> None:
    """A wrong key is HubError 103, a closed port OSError, a non-hub answer HubError 100."""
    base = f"http://127.0.0.1:{hub_server.port}"
    with pytest.raises(HubError) as refused:
        await HttpPublisher(base, "wrong").publish("ticker:ACME", {})
    assert refused.value.code == 103
    with pytest.raises(HubError) as bad_channel:
        await HttpPublisher(base, API_KEY).publish("nope:ACME", {})
    assert bad_channel.value.code == 108
    async with loopback_server(process_request=lambda c, r: Response.text(404, "no\n")) as plain:
        port = plain.port
        with pytest.raises(HubError) as not_a_hub:
            await HttpPublisher(f"http://127.0.0.1:{port}", API_KEY).publish("ticker:A", {})
    assert not_a_hub.value.code == 100
    # The port is closed now.
    with pytest.raises(OSError):
        await HttpPublisher(f"http://127.0.0.1:{port}", API_KEY).publish("ticker:A", {})


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("https://example.com", "k"),
        ("127.0.0.1:8765", "k"),
        ("http://", "k"),
        ("http://host:99999", "k"),
        ("http://host/?q", "k"),
        ("http://host", ""),
        ("http://host", "a\nb"),
    ],
)
def test_http_publisher_refuses_bad_urls_and_keys(url: str, key: str) -> None:
    """Only http://HOST[:PORT][/prefix] URLs and single-line keys."""
    with pytest.raises(ValueError):
        HttpPublisher(url, key)


@ONE_LOOP
async def test_http_publisher_gives_up_on_a_hub_that_hangs() -> None:
    """A server that accepts and never answers: TimeoutError (an OSError) after the timeout."""
    hung: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hung.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(OSError):
            await HttpPublisher(f"http://127.0.0.1:{port}", API_KEY, timeout=0.2).publish("t:A", {})
    finally:
        for writer in hung:
            writer.close()
        server.close()
        await server.wait_closed()


@ONE_LOOP
async def test_http_publisher_reports_a_closed_connection() -> None:
    """A server that closes without answering, or answers garbage: ConnectionError."""

    async def close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.close()

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.write(b"SPDY/9 what\r\n\r\n")
        await writer.drain()
        writer.close()

    for handler in (close, garbage):
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            with pytest.raises(ConnectionError):
                await HttpPublisher(f"http://127.0.0.1:{port}", API_KEY).publish("ticker:A", {})
        finally:
            server.close()
            await server.wait_closed()


# --- the page's files -----------------------------------------------------------------------


def test_page_routes_and_headers() -> None:
    """/ticker, its script and stylesheet, the shared ui.css and ui.js, wshub.js; a strict
    CSP; links to the other pages."""
    routes = ticker_routes(prefix="/", ws_path="/hub")
    assert sorted(routes) == [
        "/ticker",
        "/ticker.css",
        "/ticker.js",
        "/ui.css",
        "/ui.js",
        "/wshub.js",
    ]
    page = routes["/ticker"].body.decode()
    assert '<meta name="wshub-ws-path" content="/hub">' in page
    for name in ("ticker.js", "ticker.css", "ui.css", "ui.js", "wshub.js"):
        assert f"/{name}?v={routes['/' + name].version}" in page
    assert f'"wshub-ui":"/ui.js?v={routes["/ui.js"].version}"' in page
    assert "%" not in re.sub(r"data:image/svg\+xml,[^\"]+", "", page)
    for href in ('href="/"', 'href="/ticker"', 'href="/board"', 'href="/console"'):
        assert href in page
    csp = dict(routes["/ticker"].headers)["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "style-src 'self'" in csp
    assert 'data-testid="connection-status"' in page


@ONE_LOOP
async def test_ticker_app_serves_the_page_on_a_real_socket() -> None:
    """GET /ticker answers the page; other paths and upgrades go on to the hub."""
    app = TickerApp()
    async with loopback_server(process_request=app) as server:
        response = await http(server.port, "GET", "/ticker")
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        assert b'data-testid="ticker-list"' in response.body
    assert app.handle(Request("GET", "/ticker/x")) is None
    upgrade = Request("GET", "/ticker", [("Connection", "Upgrade"), ("Upgrade", "websocket")])
    assert app.handle(upgrade) is None
    with pytest.raises(ValueError):
        TickerApp(prefix="ticker/")


# --- the commands ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", "ftp://x", "--api-key", "k"], "the hub URL must look like http://HOST:PORT"),
        (["--url", "http://127.0.0.1:9", "--api-key", "k", "--rate", "fast"], "--rate must be"),
        (["--url", "http://127.0.0.1:9", "--api-key", "k", "--rate", "-1"], "rate must be > 0"),
        (["--url", "http://127.0.0.1:9"], "an API key is needed"),
        (["--url", "http://127.0.0.1:9", "--api-key", "k"], "cannot publish to the hub at"),
    ],
)
def test_feed_command_refuses_bad_input_in_one_line(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    message: str,
) -> None:
    """wshub feed: a bad URL, rate or key, or no hub there: one line, exit status 2."""
    monkeypatch.delenv("WSHUB_API_KEY", raising=False)
    with pytest.raises(SystemExit) as exited:
        main(["feed", *args])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("wshub: error: ") and message in err


async def run_command(*args: str) -> asyncio.subprocess.Process:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("WSHUB_")}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wshub",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environment,
    )


@ONE_LOOP
async def test_feed_command_against_a_real_hub(hub_server: HubServer) -> None:
    """wshub feed publishes into a hub in another process until SIGINT, then exits 0; with a
    wrong key it says so in one line and exits 2."""
    url = f"http://127.0.0.1:{hub_server.port}"
    wrong = await run_command("feed", "--url", url, "--api-key", "wrong")
    _, err = await wrong.communicate()
    assert wrong.returncode == 2
    assert err.decode().strip().splitlines()[-1].endswith("103: unauthorized")

    process = await run_command("feed", "--url", url, "--api-key", API_KEY, "--rate", "100")
    try:
        await wait_until(lambda: hub_server.hub.stats.publications >= len(DEFAULT_INSTRUMENTS) + 20)
    finally:
        process.send_signal(signal.SIGINT)
        _, err = await process.communicate()
    assert process.returncode == 0, err
    assert b"Traceback" not in err
    offset, data = await latest(hub_server, "ticker:ACME")
    assert offset >= 1 and Tick.parse(data).symbol == "ACME"


@asynccontextmanager
async def served(*args: str, store: str = "--ephemeral") -> AsyncIterator[tuple[int, list[str]]]:
    """``wshub serve --port 0 --ephemeral ARGS`` in a subprocess, until it printed its port."""
    process = await run_command("serve", "--port", "0", store, "--api-key", API_KEY, *args)
    assert process.stdout is not None
    lines: list[str] = []
    try:
        while not (
            found := re.match(r"wshub: hub on ws://127\.0\.0\.1:(\d+)", lines[-1] if lines else "")
        ):
            line = (await process.stdout.readline()).decode()
            assert line, f"wshub serve exited early: {lines}"
            lines.append(line)
        yield int(found.group(1)), lines
    finally:
        process.send_signal(signal.SIGTERM)
        assert await process.wait() == 0


async def get_json(port: int, path: str) -> tuple[int, Any]:
    response = await http(port, "GET", path, {"Authorization": f"Bearer {API_KEY}"})
    return response.status, orjson.loads(response.body) if response.body.startswith(b"{") else None


async def poll(check: Callable[[], Awaitable[bool]]) -> None:
    while not await check():
        await asyncio.sleep(0.05)


@ONE_LOOP
async def test_serve_runs_the_feed_and_serves_the_page() -> None:
    """wshub serve: /ticker answers, and the feed's ticks reach ticker:* channels."""
    async with served("--ticker-rate", "200") as (port, lines):
        assert f"wshub: live prices on http://127.0.0.1:{port}/ticker\n" in lines
        assert (await http(port, "GET", "/ticker")).status == 200

        async def moving() -> bool:
            status, body = await get_json(port, "/api/history/ticker:ACME")
            return status == 200 and body["offset"] >= 2

        await poll(moving)
        _, body = await get_json(port, f"/api/history/{INDEX_CHANNEL}")
        assert len(Snapshot.parse(body["publications"][-1]["data"]).instruments) >= 50


@ONE_LOOP
@pytest.mark.redis
async def test_serve_with_redis_serves_the_page_but_runs_no_feed(redis: RedisServer) -> None:
    """With --redis every node serves /ticker, and none runs a feed of its own: one
    `wshub feed` for the whole hub publishes, through any node."""
    # A database of its own: other tests' hubs share this Redis under the default prefix.
    url = redis.url.removesuffix("/0") + "/13"
    async with served("--redis", url, store="--no-chat") as (port, lines):
        assert any(
            "/ticker (no feed here: run `wshub feed` once for the hub)" in line for line in lines
        )
        assert (await http(port, "GET", "/ticker")).status == 200
        status, body = await get_json(port, "/api/history/ticker:ACME")
        assert status == 200 and body["publications"] == []
        publisher = HttpPublisher(f"http://127.0.0.1:{port}", API_KEY)
        await PriceFeed(seed=1).publish_all(publisher)
        status, body = await get_json(port, "/api/history/ticker:ACME")
        assert [p["offset"] for p in body["publications"]] == [1]


@ONE_LOOP
async def test_serve_without_the_ticker() -> None:
    """--no-ticker: no page, no feed; a bad --ticker-rate is one line and exit 2."""
    async with served("--no-ticker", "--no-chat") as (port, lines):
        assert not any("live prices" in line or "chat on" in line for line in lines)
        assert (await http(port, "GET", "/ticker")).status != 200
        status, body = await get_json(port, "/api/history/ticker:ACME")
        assert status == 200 and body["publications"] == []
    bad = await run_command("serve", "--port", "0", "--ephemeral", "--ticker-rate", "0")
    _, err = await bad.communicate()
    assert bad.returncode == 2 and err.decode().count("\n") == 1


@ONE_LOOP
async def test_in_process_publisher_returns_offsets(hub_server: HubServer) -> None:
    """HubPublisher returns the offset the hub assigned."""
    publisher = HubPublisher(hub_server.hub)
    assert await publisher.publish("ticker:ACME", Tick("ACME", 2.0, 1.0).serialize()) == 1
    assert await publisher.publish("ticker:ACME", Tick("ACME", 2.5, 1.0).serialize()) == 2
    assert (await latest(hub_server, "ticker:ACME"))[1]["price"] == 2.5
