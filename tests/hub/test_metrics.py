"""Tests for wshub.hub.metrics: real scrapes of ``GET /metrics`` on a hub on loopback, and the
transport counters (``wshub.aio.server.ServerStats``) they export."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import wshub
from wshub.exceptions import InvalidResponse
from wshub.hub import HubStats
from wshub.hub.client import ChannelEvent, HubClient
from wshub.hub.metrics import _HUB_METRICS, HubCollector
from wshub.hub.server import HubServer
from wshub.protocol import Opcode
from wshub.testing import RawClient, loopback_server, server_url

from .conftest import API_KEY, demo_hub, http, start_demo_hub

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

#: How long a test waits for something that must happen (never asserted on).
WAIT = 10.0


def parse(text: str) -> Samples:
    """The samples of a text exposition, by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(
    server: HubServer, *, key: str | None = None, headers: dict[str, str] | None = None
) -> Samples:
    """GET /metrics (without the API key unless given); the samples of a 200 answer."""
    status, response_headers, body = await http(server, "GET", "/metrics", key=key, headers=headers)
    assert status == 200, body
    assert response_headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return parse(body.decode())


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def until(predicate: Callable[[], bool]) -> None:
    """Wait until ``predicate()`` holds (the event loop keeps running meanwhile)."""
    async with asyncio.timeout(WAIT):
        while not predicate():
            await asyncio.sleep(0.01)


@asynccontextmanager
async def hub_with(**options: Any) -> AsyncIterator[HubServer]:
    """A hub on a free loopback port with the API key and ``options``."""
    server = await start_demo_hub(
        "127.0.0.1", 0, ephemeral=True, allow_anonymous=True, api_key=API_KEY, **options
    )
    try:
        yield server
    finally:
        await server.close()


def non_loopback_address() -> str | None:
    """An address of this machine that is not loopback (the source of its default route)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: a UDP connect sends nothing
        except OSError:
            return None
        address: str = probe.getsockname()[0]
    return None if address.startswith("127.") or address == "0.0.0.0" else address


# --- what the metrics say -------------------------------------------------------------------


async def test_a_connection_and_a_publish_show_in_the_metrics(hub_server: HubServer) -> None:
    """Sessions, handshakes, publications, messages and close codes move as the hub works."""
    before = await scrape(hub_server)
    assert value(before, "wshub_info", version=wshub.__version__) == 1
    assert value(before, "wshub_hub_sessions_open") == 0
    assert value(before, "wshub_handshakes_total", status="101") == 0
    assert ("process_open_fds", ()) in before

    async with HubClient(hub_server.url()) as client:
        events: list[ChannelEvent] = []
        sub = await client.subscribe("chat:lobby", on_event=events.append)
        await client.publish("chat:lobby", {"text": "hi"})
        assert (await sub.get()).data == {"text": "hi"}
        await until(lambda: [e.kind for e in events] == ["join"])
        during = await scrape(hub_server)
    await until(lambda: not hub_server.server or not hub_server.server.connections)
    after = await scrape(hub_server)

    assert value(during, "wshub_hub_sessions_open") == 1
    assert value(during, "wshub_connections_open") == 1
    assert value(during, "wshub_hub_subscriptions_active") == 1
    assert value(during, "wshub_hub_publications_total") == 1
    assert value(during, "wshub_handshakes_total", status="101") == 1
    # connect, subscribe, publish in; out their three replies, the publication and the join.
    assert value(during, "wshub_messages_received_total") == 3
    assert value(during, "wshub_messages_sent_total") == 5
    assert value(during, "wshub_bytes_received_total") > 0
    assert value(during, "wshub_bytes_sent_total") > 0
    # Two scrapes (and their own answers) before this one.
    assert value(during, "wshub_http_responses_total", status="200") == 1

    assert value(after, "wshub_hub_sessions_open") == 0
    assert value(after, "wshub_hub_sessions_opened_total") == 1
    assert value(after, "wshub_connections_open") == 0
    assert value(after, "wshub_close_codes_received_total", code="1000") == 1
    assert value(after, "wshub_close_codes_sent_total", code="1000") == 1


async def test_a_refused_handshake_counts_by_status(hub_server: HubServer) -> None:
    """An upgrade to the wrong path (404) and a forbidden Origin (403) count as refusals."""
    with pytest.raises(InvalidResponse):
        await wshub.connect(f"ws://127.0.0.1:{hub_server.port}/elsewhere")
    samples = await scrape(hub_server)
    assert value(samples, "wshub_handshakes_total", status="404") == 1
    assert value(samples, "wshub_handshakes_total", status="101") == 0
    assert value(samples, "wshub_connections_open") == 0


async def test_refused_origin_counts_as_403() -> None:
    """The transport's own refusals (Origin not allowed) are counted too."""
    async with hub_with(origins=["https://chat.example"]) as server:
        with pytest.raises(InvalidResponse):
            await wshub.connect(server.url(), origin="https://evil.example")
        samples = await scrape(server)
    assert value(samples, "wshub_handshakes_total", status="403") == 1


def test_every_hub_counter_is_exported() -> None:
    """Each HubStats field has a metric: a new counter cannot be forgotten."""
    assert set(_HUB_METRICS) == {f.name for f in dataclasses.fields(HubStats)}


# --- who may read them ----------------------------------------------------------------------


async def test_local_access_refuses_forwarded_requests_without_the_key(
    hub_server: HubServer,
) -> None:
    """By default a loopback client reads freely, but a request relayed by a proxy on the
    same machine needs the API key."""
    for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP"):
        status, headers, _ = await http(
            hub_server, "GET", "/metrics", key=None, headers={header: "203.0.113.9"}
        )
        assert (status, headers["WWW-Authenticate"]) == (401, "Bearer")
        await scrape(hub_server, key=API_KEY, headers={header: "203.0.113.9"})
    status, _, _ = await http(
        hub_server, "GET", "/metrics", key="wrong", headers={"X-Forwarded-For": "203.0.113.9"}
    )
    assert status == 401


async def get_status(host: str, port: int, path: str, extra: str = "") -> int:
    """Send one raw ``GET`` from this machine to ``host``; return the status of the answer."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode())
        return int((await reader.readline()).split()[1])
    finally:
        writer.close()
        await writer.wait_closed()


async def test_local_access_refuses_a_remote_address_without_the_key() -> None:
    """A client on a non-loopback address needs the API key."""
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    server = await start_demo_hub(address, 0, ephemeral=True, api_key=API_KEY)
    try:
        assert await get_status(address, server.port, "/metrics") == 401
        assert (
            await get_status(address, server.port, "/metrics", f"X-API-Key: {API_KEY}\r\n") == 200
        )
    finally:
        await server.close()


async def test_key_access_needs_the_key_even_on_loopback() -> None:
    """metrics="key": loopback alone is not enough."""
    async with hub_with(metrics="key") as server:
        status, _, _ = await http(server, "GET", "/metrics", key=None)
        assert status == 401
        assert ("wshub_hub_sessions_open", ()) in await scrape(server, key=API_KEY)


async def test_open_access_serves_anyone() -> None:
    """metrics="open": no key, even through a proxy."""
    async with hub_with(metrics="open") as server:
        await scrape(server, headers={"X-Forwarded-For": "203.0.113.9"})


async def test_off_serves_nothing_and_counts_no_traffic() -> None:
    """metrics="off": /metrics is not there, and the transport does not count messages."""
    async with hub_with(metrics="off") as server:
        status, _, _ = await http(server, "GET", "/metrics", key=API_KEY)
        assert status == 404  # not there: the server has nothing at that path
        assert server.server is not None and not server.server.stats.count_traffic


async def test_only_get_is_allowed(hub_server: HubServer) -> None:
    """Other methods get 405 with Allow: GET."""
    status, headers, _ = await http(hub_server, "POST", "/metrics", {}, key=API_KEY)
    assert (status, headers["Allow"]) == (405, "GET")


def test_unknown_access_is_refused() -> None:
    """metrics= takes one of the documented words."""
    with pytest.raises(ValueError, match="metrics must be one of"):
        HubServer(demo_hub(), metrics="public")  # type: ignore[arg-type]


# --- the transport counters, on a plain server ----------------------------------------------


def transport_samples(server: wshub.Server) -> Samples:
    """What a hub's collector would export for ``server``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector(demo_hub(), lambda: server))
    return parse(generate_latest(registry).decode())


async def wait_gone(server: wshub.Server) -> None:
    await until(lambda: not server.connections)


async def test_traffic_counts_frames_and_bytes_exactly() -> None:
    """One 5-byte echo: 11 bytes in (masked), 7 out; the close frames count as bytes only."""

    async def echo_once(ws: wshub.ServerConnection) -> None:
        await ws.send(await ws.recv())
        await ws.wait_closed()

    async with loopback_server(echo_once, compression=None, count_traffic=True) as server:
        async with wshub.connect(server_url(server), compression=None) as client:
            await client.send("hello")
            assert await client.recv() == "hello"
        await wait_gone(server)
        samples = transport_samples(server)
    assert value(samples, "wshub_messages_received_total") == 1
    assert value(samples, "wshub_messages_sent_total") == 1
    assert value(samples, "wshub_bytes_received_total") == 11 + 8  # + the masked close (1000)
    assert value(samples, "wshub_bytes_sent_total") == 7 + 4  # + the close echo
    assert value(samples, "wshub_close_codes_received_total", code="1000") == 1


async def test_without_count_traffic_no_traffic_metrics() -> None:
    """A server made without count_traffic exports no message or byte counters."""
    async with loopback_server(None, compression=None) as server:
        async with wshub.connect(server_url(server), compression=None):
            pass
        await wait_gone(server)
        samples = transport_samples(server)
    assert value(samples, "wshub_handshakes_total", status="101") == 1
    assert not any(name.startswith("wshub_messages") for name, _ in samples)


async def test_timeouts_are_counted() -> None:
    """A client that never finishes its request, and one that never answers a keepalive
    ping, each move their counter."""
    async with loopback_server(
        None, open_timeout=0.05, ping_interval=0.05, ping_timeout=0.05, close_timeout=0.05
    ) as server:
        async with await RawClient.connect("127.0.0.1", server.port) as silent:
            assert await silent.read_until_eof() == b""
        async with await RawClient.connect("127.0.0.1", server.port) as deaf:
            await deaf.handshake()
            assert (await deaf.recv_frame()).opcode == Opcode.PING
            code, _ = await deaf.recv_close()
            assert code == 1011
        await wait_gone(server)
        samples = transport_samples(server)
    assert value(samples, "wshub_handshake_timeouts_total") == 1
    assert value(samples, "wshub_keepalive_timeouts_total") == 1
    assert value(samples, "wshub_close_codes_sent_total", code="1011") == 1


@pytest.mark.parametrize(
    ("policy", "metric"),
    [
        ("skip", "wshub_slow_consumer_skips_total"),
        ("close", "wshub_slow_consumer_disconnects_total"),
    ],
)
async def test_broadcast_slow_consumers_are_counted(policy: str, metric: str) -> None:
    """broadcast() counts the messages it skips and the connections it closes."""
    async with loopback_server(None, compression=None, write_limit=4096, close_timeout=1) as (
        server
    ):
        raw = await RawClient.connect("127.0.0.1", server.port, rcvbuf=4096, limit=4096)
        try:
            await raw.handshake()
            raw.pause_reading()
            await until(lambda: bool(server.connections))
            (conn,) = server.connections
            sent = 0
            while conn.writable:
                assert wshub.broadcast(server.connections, "m" * 8192) == 1
                sent += 1
                assert sent < 10_000, "the slow consumer's buffers never filled"
                await asyncio.sleep(0)
            assert wshub.broadcast(server.connections, "over", slow_consumer=policy) == 0
            samples = transport_samples(server)
        finally:
            raw.abort()
    assert value(samples, metric) == 1
