"""Tests for wshub.hub.client.requests: replies matched to commands across lost connections."""

from __future__ import annotations

import asyncio

import orjson
import pytest

import wshub
from wshub.exceptions import (
    ConnectionClosedOK,
)
from wshub.hub.client import (
    ClientState,
    HubClient,
)

from .conftest import Gate, MakeClient, cut_off, take


async def test_unacknowledged_publish_is_retried_once(make_client: MakeClient) -> None:
    """A publish whose reply was lost is resent with its message id: one publication."""
    observer = await make_client()
    publisher = await make_client(Gate())
    seen = await observer.subscribe("chat:once")
    own = await publisher.subscribe("chat:once")
    assert publisher.connection is not None
    publisher.connection.transport.pause_reading()  # the reply will never be read
    task = asyncio.create_task(publisher.publish("chat:once", "once", message_id="m-1"))
    first = await seen.get()  # the hub accepted it
    publisher.connection.transport.abort()
    assert await task == first.offset
    await publisher.publish("chat:once", "after")
    second = await seen.get()
    assert (second.offset, second.data) == (first.offset + 1, "after")
    assert [p.data for p in await take(own, 2)] == ["once", "after"]
    page = await observer.history("chat:once")
    assert [p.data for p in page.publications] == ["once", "after"]
    assert publisher.reconnects == 1


async def test_calls_wait_for_the_reconnection(make_client: MakeClient) -> None:
    """Publishing while disconnected waits, then goes out after the re-subscription."""
    gate = Gate()
    client = await make_client(gate)
    sub = await client.subscribe("chat:wait")
    cut_off(client, gate)
    task = asyncio.create_task(client.publish("chat:wait", "queued"))
    late = asyncio.create_task(client.subscribe("chat:late"))
    await asyncio.sleep(0)
    assert not task.done()
    gate.open.set()
    assert await task == 1
    assert (await sub.get()).data == "queued"
    assert (await late).channel == "chat:late"


async def test_close_fails_waiting_calls(make_client: MakeClient) -> None:
    """close() while a call waits for a reconnection: ConnectionClosedOK; iteration stops."""
    gate = Gate()
    client = await make_client(gate)
    sub = await client.subscribe("chat:bye")
    cut_off(client, gate)
    task = asyncio.create_task(client.publish("chat:bye", 1))
    await asyncio.sleep(0)
    await client.close()
    with pytest.raises(ConnectionClosedOK):
        await task
    assert [p async for p in sub] == []


async def test_garbage_from_the_hub_is_logged_and_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A message that is not wshub.v1 does not break the connection."""

    async def odd_hub(ws: wshub.ServerConnection) -> None:
        async for message in ws:
            command = orjson.loads(message)
            await ws.send("this is not JSON")
            await ws.send("[1, 2]")
            await ws.send(orjson.dumps({"id": command["id"], "result": {"client": "c"}}).decode())

    async with (
        wshub.serve(odd_hub, "127.0.0.1", 0, subprotocols=["wshub.v1"]) as ws_server,
        HubClient(f"ws://127.0.0.1:{ws_server.port}/ws") as client,
    ):
        assert await client.ping() >= 0
        assert client.state is ClientState.CONNECTED
    assert sum("not wshub.v1" in r.message for r in caplog.records) >= 2
