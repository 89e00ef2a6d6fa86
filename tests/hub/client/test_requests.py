"""Tests for wshub.hub.client.requests: replies matched to commands across lost connections."""

from __future__ import annotations

import asyncio

import orjson
import pytest

import wshub
from wshub.exceptions import AuthError, ConnectionClosedError, ConnectionClosedOK, HubError
from wshub.hub.client import ClientState, HubClient
from wshub.hub.client.requests import OnLost, Outcome, Requests

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


# --- the table of waiting requests, without a connection ----------------------------------


async def test_replies_are_matched_by_request_id() -> None:
    """Each reply settles the request with its id, whatever the order; others are ignored."""
    requests = Requests()
    first = requests.add(lambda id: f"first {id}", OnLost.RETRY)
    second = requests.add(lambda id: f"second {id}", OnLost.RETRY)
    assert (first.text, second.text, len(requests)) == ("first 1", "second 2", 2)
    assert requests.reply({"id": 2, "result": {"offset": 7}})
    assert requests.reply({"id": 1, "error": {"code": 104, "message": "permission denied"}})
    assert not requests.reply({"id": 1, "result": {}})  # answered already
    assert not requests.reply({"id": "1", "result": {}})  # not a request id
    assert await second.future == {"offset": 7}
    with pytest.raises(AuthError) as info:
        await first.future
    assert info.value.code == 104 and len(requests) == 0


async def test_a_handler_runs_before_the_caller_hears_of_the_reply() -> None:
    """A request's handler sees the outcome; its caller then gets an empty result."""
    requests = Requests()
    seen: list[Outcome] = []
    req = requests.add(lambda id: "subscribe", OnLost.RESOLVE, seen.append)
    assert requests.reply({"id": req.id, "error": {"code": 109, "message": "already"}})
    assert isinstance(seen[0], HubError) and seen[0].code == 109
    assert await req.future == {}


async def test_a_lost_connection_retries_resolves_or_fails_each_request() -> None:
    """RETRY waits to be sent again, RESOLVE is done, FAIL raises; unsent ones stay."""
    requests = Requests()
    retry = requests.add(lambda id: "publish", OnLost.RETRY)
    resolve = requests.add(lambda id: "unsubscribe", OnLost.RESOLVE)
    fail = requests.add(lambda id: "connect", OnLost.FAIL)
    unsent = requests.add(lambda id: "history", OnLost.FAIL)
    for req in (retry, resolve, fail):
        req.sent = True
    requests.connection_lost(ConnectionClosedError(1006, ""))
    assert list(requests.unsent()) == [retry, unsent]
    assert await resolve.future == {}
    with pytest.raises(ConnectionClosedError):
        await fail.future
    requests.fail_all(ConnectionClosedOK(1000, "client closed"))
    assert len(requests) == 0
    for req in (retry, unsent):
        with pytest.raises(ConnectionClosedOK):
            await req.future
