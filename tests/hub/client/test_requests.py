"""Tests for wshub.hub.client.requests: replies matched to commands across lost connections."""

from __future__ import annotations

import asyncio

import orjson
import pytest

import wshub
from wshub.exceptions import (
    AuthError,
    ConnectionClosedError,
    ConnectionClosedOK,
    HubError,
    ProtocolError,
)
from wshub.hub.client import ClientState, HubClient
from wshub.hub.client.requests import OnLost, Outcome, Requests, no_result
from wshub.hub.wire import (
    ClientInfo,
    ErrorCode,
    ErrorReply,
    EventPush,
    Position,
    PresenceResult,
    PublishResult,
    Reply,
    SubscribeResult,
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
            await ws.send('{"push": "pub", "channel": "chat:x", "epoch": "e", "offset": "1"}')
            result = {"client": "c", "user": ""}  # what connect needs; ping ignores it
            await ws.send(orjson.dumps({"id": command["id"], "result": result}).decode())

    async with (
        wshub.serve(odd_hub, "127.0.0.1", 0, subprotocols=["wshub.v1"]) as ws_server,
        HubClient(f"ws://127.0.0.1:{ws_server.port}/ws") as client,
    ):
        assert await client.ping() >= 0
        assert client.state is ClientState.CONNECTED
    assert sum("not wshub.v1" in r.message for r in caplog.records) >= 3


async def test_a_reply_that_is_not_wshub_v1_fails_its_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A result with a mistyped field: that call raises ProtocolError, the client goes on;
    a push of an unknown kind, or of a channel the client is not subscribed to, is ignored
    without an error (§1); an error reply to no command is logged."""

    async def odd_hub(ws: wshub.ServerConnection) -> None:
        async for message in ws:
            command = orjson.loads(message)
            await ws.send('{"push": "later", "channel": "chat:x"}')
            await ws.send(EventPush("join", "chat:other", ClientInfo("c2", "")).serialize())
            if command["cmd"] == "connect":
                result: dict[str, object] = {"client": "c", "user": ""}
            elif command["cmd"] == "publish" and command["data"] == 1:
                result = {"offset": "nine", "epoch": "e"}
            elif command["cmd"] == "publish":
                result = {}  # no offset: what an ephemeral publish gets
            elif command["cmd"] == "ping":
                await ws.send(ErrorReply(None, ErrorCode.BAD_REQUEST).serialize())
                result = {}
            elif command["cmd"] == "subscribe":
                result = {"channel": "chat:x", "offset": 0, "epoch": "e", "recoverable": "yes"}
            else:
                result = {}
            await ws.send(orjson.dumps({"id": command["id"], "result": result}).decode())

    async with (
        wshub.serve(odd_hub, "127.0.0.1", 0, subprotocols=["wshub.v1"]) as ws_server,
        HubClient(f"ws://127.0.0.1:{ws_server.port}/ws") as client,
    ):
        with pytest.raises(ProtocolError, match="offset"):
            await client.publish("chat:x", 1)
        with pytest.raises(ProtocolError, match="no offset"):
            await client.publish("chat:x", 2)
        with pytest.raises(ProtocolError, match="recoverable"):
            await client.subscribe("chat:x")
        assert "chat:x" not in client.subscriptions
        assert await client.ping() >= 0
        assert client.state is ClientState.CONNECTED
    errors = [r.message for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 3
    assert all("not a wshub.v1 message" in e for e in errors[:2])
    assert "the hub refused a command: 101: bad request" in errors[2]


# --- the table of waiting requests, without a connection ----------------------------------


async def test_replies_are_matched_by_request_id() -> None:
    """Each reply settles the request with its id, whatever the order; others are ignored."""
    requests = Requests()
    first = requests.add(lambda id: f"first {id}", PublishResult.parse, OnLost.RETRY)
    second = requests.add(lambda id: f"second {id}", PublishResult.parse, OnLost.RETRY)
    assert (first.text, second.text, len(requests)) == ("first 1", "second 2", 2)
    assert requests.reply(Reply(2, {"offset": 7, "epoch": "e"}))
    assert requests.reply(ErrorReply(1, ErrorCode.PERMISSION_DENIED, "permission denied"))
    assert not requests.reply(Reply(1, {}))  # answered already
    assert not requests.reply(ErrorReply(None, ErrorCode.BAD_REQUEST))  # no request id
    assert await second.future == PublishResult(Position(7, "e"))
    with pytest.raises(AuthError) as info:
        await first.future
    assert info.value.code == 104 and len(requests) == 0


async def test_a_result_is_read_with_the_command_s_result_type() -> None:
    """A result that its type cannot read fails the request with ProtocolError; an empty
    one (``Reply(id)``) reads as ``{}``."""
    requests = Requests()
    presence = requests.add(lambda id: "presence", PresenceResult.parse, OnLost.RETRY)
    ping = requests.add(lambda id: "ping", no_result, OnLost.RETRY)
    assert requests.reply(Reply(presence.id, {"channel": "chat:a", "clients": "all"}))
    assert requests.reply(Reply(ping.id))
    with pytest.raises(ProtocolError, match=r"reply to command 1: not a wshub\.v1 message"):
        await presence.future
    assert await ping.future is None


async def test_a_handler_runs_before_the_caller_hears_of_the_reply() -> None:
    """A request's handler sees the outcome; its caller then gets an empty result."""
    requests = Requests()
    seen: list[Outcome[SubscribeResult]] = []
    req = requests.add(lambda id: "subscribe", SubscribeResult.parse, OnLost.RESOLVE, seen.append)
    assert requests.reply(ErrorReply(req.id, ErrorCode.ALREADY_SUBSCRIBED, "already"))
    assert isinstance(seen[0], HubError) and seen[0].code == 109
    assert await req.future is None


async def test_a_lost_connection_retries_resolves_or_fails_each_request() -> None:
    """RETRY waits to be sent again, RESOLVE is done, FAIL raises; unsent ones stay."""
    requests = Requests()
    retry = requests.add(lambda id: "publish", no_result, OnLost.RETRY)
    resolve = requests.add(lambda id: "unsubscribe", no_result, OnLost.RESOLVE)
    fail = requests.add(lambda id: "connect", no_result, OnLost.FAIL)
    unsent = requests.add(lambda id: "history", no_result, OnLost.FAIL)
    for req in (retry, resolve, fail):
        req.sent = True
    requests.connection_lost(ConnectionClosedError(1006, ""))
    assert list(requests.unsent()) == [retry, unsent]
    assert await resolve.future is None
    with pytest.raises(ConnectionClosedError):
        await fail.future
    requests.fail_all(ConnectionClosedOK(1000, "client closed"))
    assert len(requests) == 0
    for req in (retry, unsent):
        with pytest.raises(ConnectionClosedOK):
            await req.future
