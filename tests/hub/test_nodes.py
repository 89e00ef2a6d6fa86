"""Tests for wshub.hub.nodes and the API that reads it (/api/nodes, /api/channels across nodes,
/api/disconnect): real hubs on loopback, a real broker shared by two hubs (in memory, and a
real redis-server)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest

from wshub.exceptions import ConnectionClosedError
from wshub.hub import Hub
from wshub.hub.auth import Authenticator, make_token
from wshub.hub.backends import MemoryBroker
from wshub.hub.client import HubClient
from wshub.hub.nodes import NODES_CHANNEL, NodeDirectory, NodeReport
from wshub.hub.server import HubServer
from wshub.hub.wire import DisconnectCode
from wshub.testing import RedisServer

from .conftest import API_KEY, SECRET, MakeClient, demo_hub, http, start_demo_hub


async def until(predicate: Callable[[], bool]) -> None:
    """Wait for a condition without a deadline of our own (pytest-timeout has one)."""
    while not predicate():
        await asyncio.sleep(0.01)


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_report_round_trips_and_refuses_garbage() -> None:
    """A report parses back equal from what it serializes; a broken one is a ValueError."""
    report = NodeReport("n1", "host:1", "0.1.0", 10.0, 12.5, {"connections": 3}, {"chat:a": 2})
    obj = orjson.loads(report.serialize())
    assert obj["type"] == "report" and obj["uptime"] == 2.5
    assert NodeReport.parse(obj) == report
    for broken in ({**obj, "counters": {"connections": "x"}}, {"node": "n1"}, {**obj, "node": ""}):
        with pytest.raises(ValueError):
            NodeReport.parse(broken)
    with pytest.raises(ValueError):
        NodeDirectory(Hub(expire_interval=None), report_interval=0)
    with pytest.raises(ValueError):
        NodeDirectory(Hub(expire_interval=None), max_report_channels=-1)


async def test_nodes_sharing_a_broker_see_each_other_and_forget_a_silent_one(
    make_client: MakeClient,
) -> None:
    """Two hubs on one broker list both nodes and sum their subscribers; a node silent for
    three intervals is dropped; garbage on the nodes channel is ignored."""
    broker = MemoryBroker()
    clock = Clock()
    one = demo_hub(broker=broker, monotonic=clock, expire_interval=None)
    two = demo_hub(broker=broker, monotonic=clock, expire_interval=None)
    dir_one = NodeDirectory(one, name="one", report_interval=0.05)
    dir_two = NodeDirectory(two, name="two", report_interval=0.05)
    async with one, two:
        await dir_one.start()
        await dir_two.start()
        await dir_one.start()  # idempotent
        client = await make_client(two)
        await client.ok("subscribe", channel="chat:room")
        await until(lambda: [r.name for r in dir_one.nodes()] == ["one", "two"])
        await until(lambda: dir_one.subscribers()["chat:room"] == 1)
        assert [r.name for r in dir_two.nodes()] == ["two", "one"]
        await broker.publish(NODES_CHANNEL, b"not json")
        await broker.publish(NODES_CHANNEL, b'{"type": "report", "node": "x"}')
        assert len(dir_one.nodes()) == 2
        await dir_two.close()
        await dir_two.close()  # idempotent
        clock.now += 3 * 0.05 + 0.01
        assert [r.name for r in dir_one.nodes()] == ["one"]
        await dir_one.close()


async def test_api_nodes_shape_and_live_counters(hub_server: HubServer) -> None:
    """GET /api/nodes: this node with name, version, uptime and counters that follow real
    connections, deliveries and traffic."""
    async with HubClient(hub_server.url()) as client:
        sub = await client.subscribe("chat:nodes")
        await http(hub_server, "POST", "/api/publish", {"channel": "chat:nodes", "data": 1})
        assert (await sub.get()).data == 1
        status, _, body = await http(hub_server, "GET", "/api/nodes")
    assert status == 200
    (node,) = body["nodes"]
    assert node["node"] == body["node"] == hub_server.nodes.node
    assert node["name"].endswith(f":{hub_server.port}")
    assert node["version"] and node["uptime"] >= 0 and node["started"] <= node["time"]
    counters = node["counters"]
    assert counters["connections"] == 1 and counters["subscriptions"] == 1
    assert counters["publications"] == 1 and counters["deliveries"] >= 1
    assert counters["bytes_received"] > 0 and counters["bytes_sent"] > 0
    assert "channels" not in node  # the per-channel map stays between nodes


async def test_api_disconnect_closes_a_users_connections(hub_server: HubServer) -> None:
    """POST /api/disconnect {"user"} closes every connection of the user with 4008, which
    the client does not retry; {"client"} closes one; other users stay."""
    alice = make_token(SECRET, "alice", channels=["chat:*:s"])
    bob = make_token(SECRET, "bob", channels=["chat:*:s"])
    async with (
        HubClient(hub_server.url(), alice) as a1,
        HubClient(hub_server.url(), alice) as a2,
        HubClient(hub_server.url(), bob) as b1,
        HubClient(hub_server.url(), bob) as b2,
    ):
        status, _, body = await http(hub_server, "POST", "/api/disconnect", {"user": "alice"})
        assert (status, body) == (200, {"disconnected": 2})
        await until(lambda: a1.closed and a2.closed)
        assert isinstance(a1.error, ConnectionClosedError)
        assert a1.error.code == DisconnectCode.DISCONNECTED
        status, _, body = await http(
            hub_server, "POST", "/api/disconnect", {"client": b1.client_id}
        )
        assert (status, body) == (200, {"disconnected": 1})
        await until(lambda: b1.closed)
        assert not b2.closed
        assert hub_server.hub.stats.connections == 1
        _, _, again = await http(hub_server, "POST", "/api/disconnect", {"user": "alice"})
        assert again == {"disconnected": 0}


@pytest.mark.parametrize(
    "body",
    [{}, {"user": "a", "client": "b"}, {"user": ""}, {"user": 3}, {"client": None, "user": None}],
)
async def test_api_disconnect_refuses_bad_input(hub_server: HubServer, body: Any) -> None:
    """Exactly one of user and client, a non-empty string: else 400 saying so."""
    status, _, answer = await http(hub_server, "POST", "/api/disconnect", body)
    assert status == 400 and answer["error"]["code"] == 101
    assert answer["error"]["message"].startswith("bad request: ")


async def test_api_nodes_and_disconnect_need_the_key(hub_server: HubServer) -> None:
    """Without the key /api/nodes and /api/disconnect are 401 and disconnect nobody."""
    async with HubClient(hub_server.url()) as client:
        for method, path, body in (
            ("GET", "/api/nodes", None),
            ("POST", "/api/disconnect", {"client": client.client_id}),
        ):
            status, _, answer = await http(hub_server, method, path, body, key="wrong")
            assert (status, answer["error"]["code"]) == (401, 103)
        assert not client.closed and hub_server.hub.stats.connections == 1


@asynccontextmanager
async def redis_node(redis: RedisServer) -> AsyncIterator[HubServer]:
    server = await start_demo_hub(
        "127.0.0.1",
        0,
        redis_url=redis.url,
        redis_prefix="nodes-test",
        allow_anonymous=True,
        secret=SECRET,
        api_key=API_KEY,
        compression=None,
    )
    try:
        yield server
    finally:
        await server.close()


@pytest.mark.redis
@pytest.mark.asyncio(loop_factories=["asyncio"])
async def test_redis_nodes_see_each_other(redis: RedisServer) -> None:
    """Two nodes on one redis-server: either node's API lists both, with their own counters,
    sums channel subscribers across them, and disconnects a user connected to the other."""
    carol = make_token(SECRET, "carol", channels=["chat:*:s"])
    async with (
        redis_node(redis) as one,
        redis_node(redis) as two,
        HubClient(two.url(), carol) as remote,
        HubClient(one.url()) as local,
    ):
        await remote.subscribe("chat:across")
        await local.subscribe("chat:across")

        async def listing() -> dict[str, Any]:
            _, _, body = await http(one, "GET", "/api/nodes")
            return body

        # Node two's report reaches node one within a report interval (1 s).
        body = await listing()
        while [n["counters"]["connections"] for n in body["nodes"]] != [1, 1]:
            await asyncio.sleep(0.05)
            body = await listing()
        assert [n["name"] for n in body["nodes"]] == [one.nodes.name, two.nodes.name]
        assert [n["node"] for n in body["nodes"]] == [one.nodes.node, two.nodes.node]
        assert one.nodes.name != two.nodes.name

        async def subscribers() -> int:
            _, _, body = await http(one, "GET", "/api/channels")
            counts = {c["channel"]: c["subscribers"] for c in body["channels"]}
            return counts.get("chat:across", 0)

        while await subscribers() < 2:
            await asyncio.sleep(0.05)
        status, _, answer = await http(one, "POST", "/api/disconnect", {"user": "carol"})
        assert (status, answer) == (200, {"disconnected": 0})  # none on this node
        await until(lambda: remote.closed)
        assert not local.closed


async def test_recoveries_are_counted(make_client: MakeClient) -> None:
    """A subscribe whose since position recovers everything missed counts one recovery."""
    async with demo_hub(
        auth=Authenticator(allow_anonymous=True, anonymous_permissions=["chat:*:sp"]),
        expire_interval=None,
    ) as hub:
        first = await hub.publish("chat:r", 1)
        await hub.publish("chat:r", 2)
        client = await make_client(hub)
        position = first.position.to_json()
        await client.ok("subscribe", channel="chat:r", since=position)
        assert hub.stats.recoveries == 1
        other = await make_client(hub)
        await other.ok("subscribe", channel="chat:r", since={"offset": 1, "epoch": "gone"})
        assert hub.stats.recoveries == 1


async def test_a_broker_failure_does_not_stop_the_directory(make_client: MakeClient) -> None:
    """Reports that cannot be published are skipped (the loop goes on); a directory that was
    never started disconnects on its own node only; close() is safe after the broker."""
    broker = MemoryBroker()
    async with demo_hub(broker=broker, expire_interval=None) as hub:
        directory = NodeDirectory(hub, report_interval=0.01)
        await directory.start()
        await broker.close()
        await asyncio.sleep(0.05)  # several reports fail meanwhile
        assert [r.node for r in directory.nodes()] == [directory.node]
        await directory.close()
        local = NodeDirectory(hub)
        client = await make_client(hub)
        assert await local.disconnect(client=client.session.client_id) == 1
        await client.peer.closed.wait()
        assert client.peer.close_code == DisconnectCode.DISCONNECTED
        await local.close()  # never started: nothing to stop
