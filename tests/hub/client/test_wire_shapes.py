"""Tests that HubClient and the hub share the shapes of wshub.v1, kind by kind.

A scripted hub on loopback answers each command with what the hub's own wire values
serialize to (``Reply(id, SubscribeResult(...)).serialize()``, ``PublicationPush(...)
.serialize()``, ...), and each row checks the public value the client hands out for it. A
field renamed, retyped or moved on one side only fails its row. The table covers every
result, reply and push type of :mod:`wshub.hub.wire` (checked by the last test).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, is_dataclass
from typing import Any, get_args, get_type_hints

import pytest

import wshub
from wshub.exceptions import AuthError, HubError
from wshub.hub.client import ChannelEvent, HistoryPage, HubClient, Publication
from wshub.hub.wire import (
    ClientInfo,
    Command,
    ConnectCommand,
    ConnectResult,
    EphemeralPush,
    ErrorCode,
    ErrorReply,
    EventPush,
    HistoryCommand,
    HistoryResult,
    PingCommand,
    Position,
    PresenceCommand,
    PresenceDiffPush,
    PresenceResult,
    PublicationPush,
    PublishCommand,
    PublishResult,
    Push,
    RefreshCommand,
    RefreshResult,
    Reply,
    StoredPublication,
    SubscribeCommand,
    SubscribeResult,
    UnsubscribeCommand,
    UnsubscribePush,
    WireError,
    parse_command,
)

BOB = ClientInfo("c-bob", "bob", {"nick": "Bob"})
ALICE = ClientInfo("c-alice", "alice")
CAROL = ClientInfo("c-carol", "")
# Times a float holds exactly, so that seconds -> milliseconds -> seconds is the identity.
STORED = StoredPublication(8, 1718000000.5, b'{"text":"hi"}', BOB.encode())
SERVER_MADE = StoredPublication(9, 1718000001.25, b"null")
PUB = Publication("chat:a", 8, "ep", {"text": "hi"}, BOB, 1718000000.5)

#: What the scripted hub sends for one command: messages built from the hub's values.
Answer = Callable[[Any], list[str | bytes]]
#: What a row does with a connected client; returns the public value to compare.
Action = Callable[[HubClient], Awaitable[object]]


def subscribed(*pushes: bytes | str, result: SubscribeResult | None = None) -> Answer:
    """Answer subscribe with ``result`` (a fresh subscription by default), then ``pushes``."""

    def answer(cmd: SubscribeCommand) -> list[str | bytes]:
        reply = result or SubscribeResult(cmd.channel, Position(7, "ep"), True)
        return [Reply(cmd.id, reply).serialize(), *pushes]

    return answer


def reply(result: Any = None) -> Answer:
    return lambda cmd: [Reply(cmd.id, result).serialize()]


def error(code: ErrorCode, message: str = "") -> Answer:
    return lambda cmd: [ErrorReply(cmd.id, code, message).serialize()]


DEFAULTS: dict[type, Answer] = {
    ConnectCommand: reply(ConnectResult("c-alice", "alice")),
    SubscribeCommand: subscribed(),
}


@dataclass(frozen=True)
class Row:
    """One kind of message: the hub's answers, what the client does, what it must get."""

    kind: type
    answers: dict[type, Answer]
    action: Action
    expected: object
    id: str = field(default="")


async def first_event(client: HubClient) -> ChannelEvent:
    events: asyncio.Queue[ChannelEvent] = asyncio.Queue()
    await client.subscribe("chat:a", on_event=events.put_nowait)
    return await events.get()


async def diff_events(client: HubClient) -> list[ChannelEvent]:
    events: asyncio.Queue[ChannelEvent] = asyncio.Queue()
    await client.subscribe("chat:a", on_event=events.put_nowait)
    return [await events.get() for _ in range(3)]


async def raised(call: Awaitable[object]) -> tuple[type, int, str, str | None]:
    with pytest.raises(HubError) as info:
        await call
    exc = info.value
    return type(exc), exc.code, exc.message, exc.channel


async def connect_fields(client: HubClient) -> object:
    return client.client_id, client.user, client.expires


async def recovered(client: HubClient) -> object:
    sub = await client.subscribe("chat:a", since=Position(7, "ep"))
    return sub.recoverable, sub.recovered, await sub.get(), sub.position


async def unsubscribed(client: HubClient) -> object:
    sub = await client.subscribe("chat:a")
    await client.unsubscribe("chat:a")
    return sub.ended, "chat:a" in client.subscriptions


async def first_publication(client: HubClient) -> object:
    sub = await client.subscribe("chat:a")
    return await sub.get()


async def ended_by_the_hub(client: HubClient) -> object:
    sub = await client.subscribe("chat:a")
    return await raised(sub.get())


ROWS = [
    # -- replies -------------------------------------------------------------------------
    Row(
        ConnectResult,
        {ConnectCommand: reply(ConnectResult("c-alice", "alice", 1718003600, {"nick": "A"}))},
        connect_fields,
        ("c-alice", "alice", 1718003600.0),
        "connect",
    ),
    Row(
        SubscribeResult,
        {
            SubscribeCommand: subscribed(
                result=SubscribeResult("chat:a", Position(8, "ep"), True, (STORED,), True)
            )
        },
        recovered,
        (True, True, PUB, Position(8, "ep")),
        "subscribe-recovered",
    ),
    Row(
        PublishResult,
        {PublishCommand: reply(PublishResult(Position(9, "ep")))},
        lambda c: c.publish("chat:a", {"text": "hi"}),
        9,
        "publish",
    ),
    Row(
        PublishResult,
        {PublishCommand: reply(PublishResult(Position(9, "ep"), duplicate=True))},
        lambda c: c.publish("chat:a", 1, message_id="m-1"),
        9,
        "publish-duplicate",
    ),
    Row(
        Reply,
        {PublishCommand: reply(PublishResult())},
        lambda c: c.publish_ephemeral("chat:a", {"typing": True}),
        None,
        "publish-ephemeral",
    ),
    Row(
        PresenceResult,
        {PresenceCommand: reply(PresenceResult("chat:a", (BOB, ALICE)))},
        lambda c: c.presence("chat:a"),
        [BOB, ALICE],
        "presence",
    ),
    Row(
        HistoryResult,
        {HistoryCommand: reply(HistoryResult("chat:a", Position(9, "ep"), (STORED, SERVER_MADE)))},
        lambda c: c.history("chat:a", limit=2),
        HistoryPage(
            "chat:a",
            Position(9, "ep"),
            [PUB, Publication("chat:a", 9, "ep", None, None, 1718000001.25)],
        ),
        "history",
    ),
    Row(
        RefreshResult,
        {RefreshCommand: reply(RefreshResult(1718007200))},
        lambda c: c.refresh("new-token"),
        1718007200.0,
        "refresh",
    ),
    Row(
        RefreshResult,
        {RefreshCommand: reply(RefreshResult(None))},
        lambda c: c.refresh("new-token"),
        None,
        "refresh-no-expiry",
    ),
    Row(Reply, {PingCommand: reply()}, lambda c: c.ping(), float, "ping"),
    Row(Reply, {UnsubscribeCommand: reply()}, unsubscribed, (True, False), "unsubscribe"),
    Row(
        ErrorReply,
        {PublishCommand: error(ErrorCode.PERMISSION_DENIED, "permission denied")},
        lambda c: raised(c.publish("chat:a", 1)),
        (AuthError, 104, "permission denied", None),
        "error-auth",
    ),
    Row(
        ErrorReply,
        {PresenceCommand: error(ErrorCode.NOT_AVAILABLE)},
        lambda c: raised(c.presence("chat:a")),
        (HubError, 115, "not available", None),
        "error-default-message",
    ),
    Row(
        ErrorReply,
        {SubscribeCommand: error(ErrorCode.UNKNOWN_NAMESPACE, "unknown namespace")},
        lambda c: raised(c.subscribe("nowhere:a")),
        (HubError, 108, "unknown namespace", None),
        "error-subscribe",
    ),
    # -- pushes --------------------------------------------------------------------------
    Row(
        PublicationPush,
        {SubscribeCommand: subscribed(PublicationPush("chat:a", "ep", STORED).serialize())},
        first_publication,
        PUB,
        "pub",
    ),
    Row(
        EphemeralPush,
        {SubscribeCommand: subscribed(EphemeralPush("chat:a", b"[1,2]", BOB.encode()).serialize())},
        first_event,
        ChannelEvent("ephemeral", "chat:a", BOB, [1, 2]),
        "ephemeral",
    ),
    Row(
        EventPush,
        {SubscribeCommand: subscribed(EventPush("join", "chat:a", BOB).serialize())},
        first_event,
        ChannelEvent("join", "chat:a", BOB),
        "join",
    ),
    Row(
        EventPush,
        {SubscribeCommand: subscribed(EventPush("leave", "chat:a", ALICE).serialize())},
        first_event,
        ChannelEvent("leave", "chat:a", ALICE),
        "leave",
    ),
    Row(
        PresenceDiffPush,
        {
            SubscribeCommand: subscribed(
                PresenceDiffPush("chat:a", (BOB, CAROL), (ALICE,)).serialize()
            )
        },
        diff_events,
        [
            ChannelEvent("leave", "chat:a", ALICE),
            ChannelEvent("join", "chat:a", BOB),
            ChannelEvent("join", "chat:a", CAROL),
        ],
        "presence_diff",
    ),
    Row(
        UnsubscribePush,
        {
            SubscribeCommand: subscribed(
                UnsubscribePush("chat:a", ErrorCode.PERMISSION_DENIED).serialize()
            )
        },
        ended_by_the_hub,
        (AuthError, 104, "permission denied", "chat:a"),
        "unsubscribe-push",
    ),
]


def scripted_hub(
    answers: dict[type, Answer],
) -> Callable[[wshub.ServerConnection], Awaitable[None]]:
    """A hub that answers each command with the messages its row gives for its type."""

    async def hub(ws: wshub.ServerConnection) -> None:
        async for message in ws:
            command: Command | WireError = parse_command(message)
            assert not isinstance(command, WireError), command
            answer = answers.get(type(command)) or DEFAULTS.get(type(command)) or reply()
            for out in answer(command):
                # Text frames, as the hub sends them; bytes are its pre-encoded pushes.
                await ws.send(out.decode() if isinstance(out, bytes) else out)

    return hub


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.id)
async def test_the_hub_s_values_reach_the_client_as_its_public_values(row: Row) -> None:
    """What the hub serializes for this kind is what the client's API returns for it."""
    hub = scripted_hub(row.answers)
    async with (
        wshub.serve(hub, "127.0.0.1", 0, subprotocols=["wshub.v1"]) as ws_server,
        HubClient(f"ws://127.0.0.1:{ws_server.port}/ws", compression=None) as client,
    ):
        value = await row.action(client)
    if isinstance(row.expected, type):
        assert type(value) is row.expected
    else:
        assert value == row.expected


def test_the_table_covers_every_reply_and_push_type() -> None:
    """A result, reply or push type added to the wire needs its row here."""
    results = {t for t in get_args(get_type_hints(Reply)["result"]) if is_dataclass(t)}
    assert len(results) == 6
    assert {row.kind for row in ROWS} == results | {Reply, ErrorReply} | set(get_args(Push))
