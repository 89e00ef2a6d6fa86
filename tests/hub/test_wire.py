"""Tests for wshub.hub.wire: the wshub.v1 JSON format (docs/protocol.md)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wshub.hub.wire import (
    ClientInfo,
    Command,
    ConnectCommand,
    ConnectResult,
    DisconnectAdvice,
    DisconnectCode,
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
    RefreshCommand,
    RefreshResult,
    Reply,
    StoredPublication,
    SubscribeCommand,
    SubscribeResult,
    UnsubscribeCommand,
    UnsubscribePush,
    WireError,
    disconnect_advice,
    parse_command,
    parse_message,
    publication_json,
)


def parse(obj: Any) -> Command | WireError:
    return parse_command(orjson.dumps(obj).decode())


def test_error_codes_match_the_documented_table() -> None:
    """Every error code has the number and message docs/protocol.md §6 gives it."""
    documented = {
        100: "internal error",
        101: "bad request",
        102: "unknown command",
        103: "unauthorized",
        104: "permission denied",
        105: "not connected",
        106: "already connected",
        107: "invalid channel",
        108: "unknown namespace",
        109: "already subscribed",
        110: "not subscribed",
        111: "rate limited",
        112: "limit exceeded",
        113: "token expired",
        114: "publication too large",
        115: "not available",
        116: "position unrecoverable",
    }
    assert {int(code): code.message for code in ErrorCode} == documented


def test_disconnect_codes_match_the_documented_table() -> None:
    """Close codes are the ones of docs/protocol.md §7, hub codes in 4000-4999."""
    assert {int(c): c.reason for c in DisconnectCode} == {
        1001: "going away",
        1011: "internal error",
        1012: "service restart",
        4000: "bad commands",
        4001: "unauthorized",
        4002: "connect timeout",
        4003: "token expired",
        4004: "slow consumer",
        4005: "rate limited",
        4006: "too many connections",
        4007: "unsupported subprotocol",
        4008: "disconnected",
    }


def test_parse_connect() -> None:
    """connect carries an optional token and meta."""
    assert parse({"id": 1, "cmd": "connect"}) == ConnectCommand(1)
    assert parse({"id": 1, "cmd": "connect", "token": "t", "meta": {"n": 1}}) == ConnectCommand(
        1, "t", {"n": 1}
    )


def test_parse_subscribe_with_since_and_recent() -> None:
    """subscribe reads channel, since and recent."""
    command = parse(
        {
            "id": 2,
            "cmd": "subscribe",
            "channel": "chat:a",
            "since": {"offset": 4, "epoch": "e"},
            "recent": 5,
        }
    )
    assert command == SubscribeCommand(2, "chat:a", Position(4, "e"), 5)


def test_parse_publish_keeps_data_as_json_bytes() -> None:
    """publish data is re-encoded once into compact JSON bytes, null included."""
    command = parse({"id": 3, "cmd": "publish", "channel": "chat:a", "data": {"x": [1, 2]}})
    assert command == PublishCommand(3, "chat:a", b'{"x":[1,2]}')
    null = parse({"id": 3, "cmd": "publish", "channel": "chat:a", "data": None})
    assert isinstance(null, PublishCommand) and null.data == b"null"


def test_parse_other_commands() -> None:
    """unsubscribe, presence, history, ping and refresh parse into their dataclasses."""
    assert parse({"id": 1, "cmd": "unsubscribe", "channel": "c:d"}) == UnsubscribeCommand(1, "c:d")
    assert parse({"id": 1, "cmd": "presence", "channel": "c:d"}) == PresenceCommand(1, "c:d")
    assert parse({"id": 1, "cmd": "history", "channel": "c:d", "limit": 5000}) == HistoryCommand(
        1, "c:d", 1000
    )
    assert parse({"id": 1, "cmd": "ping"}) == PingCommand(1)
    assert parse({"id": 1, "cmd": "refresh", "token": "x"}) == RefreshCommand(1, "x")


def test_unknown_fields_are_ignored() -> None:
    """Forward compatibility: fields a command does not know are ignored."""
    assert parse({"id": 1, "cmd": "ping", "future": True}) == PingCommand(1)


@pytest.mark.parametrize(
    ("message", "expected_id"),
    [
        ("not json", None),
        ("[1, 2]", None),
        ('"text"', None),
        ('{"cmd": "ping"}', None),
        ('{"id": 0, "cmd": "ping"}', None),
        ('{"id": -1, "cmd": "ping"}', None),
        ('{"id": true, "cmd": "ping"}', None),
        ('{"id": 1.5, "cmd": "ping"}', None),
        ('{"id": "1", "cmd": "ping"}', None),
        ('{"id": 9007199254740992, "cmd": "ping"}', None),
        ('{"id": 4, "cmd": "subscribe"}', 4),
        ('{"id": 4, "cmd": "subscribe", "channel": ""}', 4),
        ('{"id": 4, "cmd": "subscribe", "channel": 7}', 4),
        ('{"id": 4, "cmd": "subscribe", "channel": "a:b", "since": 3}', 4),
        ('{"id": 4, "cmd": "subscribe", "channel": "a:b", "since": {"epoch": "e"}}', 4),
        ('{"id": 4, "cmd": "subscribe", "channel": "a:b", "since": {"offset": 1}}', 4),
        ('{"id": 4, "cmd": "subscribe", "channel": "a:b", "recent": -1}', 4),
        ('{"id": 4, "cmd": "publish", "channel": "a:b"}', 4),
        ('{"id": 4, "cmd": "publish", "channel": "a:b", "data": 1, "message_id": ""}', 4),
        ('{"id": 4, "cmd": "publish", "channel": "a:b", "data": 1, "message_id": 5}', 4),
        ('{"id": 4, "cmd": "publish", "channel": "a:b", "data": 1, "ephemeral": 1}', 4),
        ('{"id": 4, "cmd": "history", "channel": "a:b", "limit": 0}', 4),
        ('{"id": 4, "cmd": "refresh"}', 4),
        ('{"id": 4, "cmd": "connect", "token": 12}', 4),
    ],
)
def test_malformed_commands_are_bad_requests(message: str, expected_id: int | None) -> None:
    """Malformed messages become 101 with the id when it could be read, never an exception."""
    error = parse_command(message)
    assert isinstance(error, WireError)
    assert error.code == ErrorCode.BAD_REQUEST
    assert error.id == expected_id
    assert error.message.startswith("bad request")


def test_long_message_id_is_refused() -> None:
    """message_id is limited to 64 characters."""
    ok = parse({"id": 1, "cmd": "publish", "channel": "a:b", "data": 1, "message_id": "x" * 64})
    assert isinstance(ok, PublishCommand)
    bad = parse({"id": 1, "cmd": "publish", "channel": "a:b", "data": 1, "message_id": "x" * 65})
    assert isinstance(bad, WireError)


def test_binary_message_is_a_bad_request() -> None:
    """Binary messages are not part of wshub.v1."""
    error = parse_command(b'{"id": 1, "cmd": "ping"}')
    assert error == WireError(None, ErrorCode.BAD_REQUEST, "bad request: binary message")


@pytest.mark.parametrize("cmd", ["nope", 5, None, "PING"])
def test_unknown_command(cmd: object) -> None:
    """An unknown cmd is 102 with the command's id."""
    error = parse({"id": 9, "cmd": cmd})
    assert isinstance(error, WireError)
    assert (error.id, error.code) == (9, ErrorCode.UNKNOWN_COMMAND)


_channels = st.from_regex(r"[a-z]{1,5}:[a-z0-9]{1,8}", fullmatch=True)
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
_ids = st.integers(1, 2**53 - 1)
_positions = st.builds(Position, st.integers(0, 2**53 - 1), st.text(max_size=12))
_commands = st.one_of(
    st.builds(ConnectCommand, _ids, st.none() | st.text(min_size=1, max_size=50), _json),
    st.builds(SubscribeCommand, _ids, _channels, st.none() | _positions, st.integers(0, 1000)),
    st.builds(UnsubscribeCommand, _ids, _channels),
    st.builds(
        PublishCommand,
        _ids,
        _channels,
        _json.map(orjson.dumps),
        st.none() | st.text(min_size=1, max_size=64),
        st.booleans(),
    ),
    st.builds(PresenceCommand, _ids, _channels),
    st.builds(
        HistoryCommand, _ids, _channels, st.none() | st.integers(1, 1000), st.none() | _positions
    ),
    st.builds(PingCommand, _ids),
    st.builds(RefreshCommand, _ids, st.text(min_size=1, max_size=50)),
)


@given(_commands)
def test_serialize_then_parse_round_trips(command: Command) -> None:
    """Every command a client can build is read back identically by the hub."""
    assert parse_command(command.serialize()) == command


def test_replies() -> None:
    """Replies echo the id; errors carry code and message; an unreadable id is null."""
    assert orjson.loads(Reply(3, {"a": 1}).serialize()) == {"id": 3, "result": {"a": 1}}
    assert orjson.loads(Reply(3).serialize()) == {"id": 3, "result": {}}
    assert orjson.loads(ErrorReply(None, ErrorCode.BAD_REQUEST).serialize()) == {
        "id": None,
        "error": {"code": 101, "message": "bad request"},
    }


def test_pushes_embed_raw_data() -> None:
    """Pushes embed the stored JSON bytes as they are."""
    info = ClientInfo("c1", "alice", {"nick": "A"})
    pub = StoredPublication(7, 1.5, b'{"t":"hi"}', info.encode())
    assert orjson.loads(PublicationPush("chat:a", "ep", pub).serialize()) == {
        "push": "pub",
        "channel": "chat:a",
        "epoch": "ep",
        "offset": 7,
        "time": 1500,
        "data": {"t": "hi"},
        "info": {"client": "c1", "user": "alice", "meta": {"nick": "A"}},
    }
    assert "info" not in publication_json(StoredPublication(1, 0.0, b"1"))
    assert orjson.loads(EphemeralPush("chat:a", b"true", None).serialize()) == {
        "push": "ephemeral",
        "channel": "chat:a",
        "data": True,
    }
    assert orjson.loads(EventPush("join", "chat:a", ClientInfo("c", "")).serialize()) == {
        "push": "join",
        "channel": "chat:a",
        "info": {"client": "c", "user": ""},
    }
    diff = PresenceDiffPush("chat:a", (ClientInfo("c", "", {"n": 1}),), (ClientInfo("d", "u"),))
    assert orjson.loads(diff.serialize()) == {
        "push": "presence_diff",
        "channel": "chat:a",
        "joins": [{"client": "c", "user": "", "meta": {"n": 1}}],
        "leaves": [{"client": "d", "user": "u"}],
    }
    assert orjson.loads(UnsubscribePush("chat:a", ErrorCode.PERMISSION_DENIED).serialize()) == {
        "push": "unsubscribe",
        "channel": "chat:a",
        "code": 104,
        "message": "permission denied",
    }


# --- replies and pushes read back: what a client does with parse_message ----------------------

PUB = StoredPublication(7, 1.5, b'{"t":"hi"}', b'{"client":"c1","user":"u"}')
RESULTS = [
    ConnectResult("c1", "alice", 1_700_000_000, {"nick": "A"}),
    ConnectResult("c1", ""),
    SubscribeResult("chat:a", Position(7, "ep"), True, (PUB,), recovered=True),
    SubscribeResult("chat:a", Position(0, "ep"), False),
    PublishResult(Position(3, "ep"), duplicate=True),
    PublishResult(),
    PresenceResult("chat:a", (ClientInfo("c1", "u", {"n": 1}), ClientInfo("c2", ""))),
    HistoryResult("chat:a", Position(7, "ep"), (PUB, StoredPublication(8, 2.0, b"null"))),
    RefreshResult(None),
    RefreshResult(1_700_000_100),
]


@pytest.mark.parametrize("result", RESULTS, ids=lambda r: type(r).__name__)
def test_results_round_trip(result: Any) -> None:
    """Every typed result the hub sends is read back equal by the client side."""
    message = parse_message(Reply(5, result).serialize())
    assert isinstance(message, Reply) and message.id == 5
    assert isinstance(message.result, dict)
    assert type(result).parse(message.result) == result


@pytest.mark.parametrize(
    "push",
    [
        PublicationPush("chat:a", "ep", PUB),
        EphemeralPush("chat:a", b'{"typing":true}', b'{"client":"c1","user":""}'),
        EphemeralPush("chat:a", b"1"),
        EventPush("leave", "chat:a", ClientInfo("c1", "u")),
        PresenceDiffPush("chat:a", (ClientInfo("c1", "u"), ClientInfo("c2", "")), ()),
        PresenceDiffPush("chat:a", (), (ClientInfo("c1", "u", [1]),)),
        UnsubscribePush("chat:a", ErrorCode.PERMISSION_DENIED),
    ],
    ids=lambda p: type(p).__name__,
)
def test_pushes_round_trip(push: Any) -> None:
    """Every push is read back equal."""
    assert parse_message(push.serialize()) == push


def test_error_replies_round_trip() -> None:
    """Error replies are read back, an unknown code as 100 (a newer hub's code)."""
    error = ErrorReply(4, ErrorCode.RATE_LIMITED, "rate limited")
    assert parse_message(error.serialize()) == error
    newer = parse_message('{"id": 4, "error": {"code": 999, "message": "new"}}')
    assert newer == ErrorReply(4, ErrorCode.INTERNAL, "new")


@pytest.mark.parametrize(
    "message",
    [
        "not json",
        "[1]",
        '{"id": "x", "result": {}}',
        '{"id": 1}',
        '{"id": 1, "error": 3}',
        '{"push": "pub", "channel": "c:a", "epoch": "e", "offset": 1, "time": 0}',
        '{"push": "ephemeral", "channel": "c:a"}',
        '{"push": "join", "channel": "c:a", "info": []}',
        '{"push": "presence_diff", "channel": "c:a", "joins": [], "leaves": []}',
        '{"push": "presence_diff", "channel": "c:a", "joins": {}, "leaves": []}',
        '{"push": "presence_diff", "channel": "c:a", "joins": [{"client": "c"}], "leaves": []}',
        '{"push": "presence_diff", "channel": "c:a", "joins": [{"client": "c", "user": ""}], '
        '"leaves": [{"client": "c", "user": ""}]}',
        '{"push": "later", "channel": "c:a"}',
        '{"push": "pub", "channel": 3}',
        '{"push": "pub", "channel": "c:a", "epoch": "e", "offset": "1", "time": 0, "data": 1}',
        '{"push": ["pub"], "channel": "c:a"}',
        # orjson decodes 1024 levels but encodes 254: data is re-encoded, so refused.
        '{"push": "pub", "channel": "c:a", "epoch": "e", "offset": 1, "time": 0, "data": '
        + "[" * 300
        + "]" * 300
        + "}",
        '{"push": "ephemeral", "channel": "c:a", "data": 1, "info": ' + "[" * 300 + "]" * 300 + "}",
    ],
)
def test_parse_message_refuses_what_is_not_wshub_v1(message: str) -> None:
    """A malformed message from a hub is a ValueError naming the field, never a KeyError."""
    with pytest.raises(ValueError, match=r"not a wshub\.v1 message"):
        parse_message(message)


# Decoded by orjson (1024 levels), too deep to encode again (254).
DEEP = orjson.loads("[" * 300 + "]" * 300)


@pytest.mark.parametrize(
    ("cls", "obj"),
    [
        (ConnectResult, {"client": "c", "user": 1}),
        (ConnectResult, {"client": "c", "user": "", "expires": "soon"}),
        (SubscribeResult, {"channel": "c:a", "offset": 1, "epoch": "e", "recoverable": 1}),
        (SubscribeResult, {"channel": "c:a", "offset": True, "epoch": "e"}),
        (HistoryResult, {"channel": "c:a", "offset": 1, "epoch": "e", "publications": [3]}),
        (PresenceResult, {"channel": "c:a", "clients": "x"}),
        (RefreshResult, {"expires": "x"}),
        (
            HistoryResult,
            {
                "channel": "c:a",
                "offset": 1,
                "epoch": "e",
                "publications": [{"offset": 1, "time": 0, "data": DEEP}],
            },
        ),
        (
            SubscribeResult,
            {
                "channel": "c:a",
                "offset": 1,
                "epoch": "e",
                "recoverable": True,
                "publications": [],
                "recovered": "y",
            },
        ),
    ],
)
def test_results_refuse_mistyped_fields(cls: Any, obj: dict[str, Any]) -> None:
    """A result with a mistyped field is a ValueError."""
    with pytest.raises(ValueError, match=r"not a wshub\.v1 message"):
        cls.parse(obj)


# --- disconnect codes: one table for the hub, the docs, HubClient and wshub.js ---------------

ROOT = Path(__file__).resolve().parents[2]


def advice_table() -> dict[int, tuple[str, bool, bool, bool]]:
    return {int(c): (c.reason, c.reconnect, c.new_token, c.slow_down) for c in DisconnectCode}


def test_disconnect_advice_says_who_may_reconnect() -> None:
    """Refusals that a retry cannot fix say so; auth refusals ask for a new token."""
    no_retry = {c for c in DisconnectCode if not c.reconnect}
    assert no_retry == {
        DisconnectCode.BAD_COMMANDS,
        DisconnectCode.TOO_MANY_CONNECTIONS,
        DisconnectCode.UNSUPPORTED_SUBPROTOCOL,
        DisconnectCode.DISCONNECTED,
    }
    assert {c for c in DisconnectCode if c.new_token} == {
        DisconnectCode.UNAUTHORIZED,
        DisconnectCode.TOKEN_EXPIRED,
    }
    assert {c for c in DisconnectCode if c.slow_down} == {DisconnectCode.RATE_LIMITED}


def test_disconnect_advice_of_any_code() -> None:
    """A code that is not the hub's (1006: the network failed) means reconnect."""
    assert disconnect_advice(1006) == DisconnectAdvice(reconnect=True)
    assert disconnect_advice(4000) == DisconnectAdvice(reconnect=False)
    assert disconnect_advice(4003) == DisconnectAdvice(reconnect=True, new_token=True)


def test_wshub_js_follows_the_disconnect_table() -> None:
    """The table in wshub.js (JSON between markers) parses equal to DisconnectCode's."""
    source = (ROOT / "src/wshub/hub/js/wshub.js").read_text()
    block = source.split("// BEGIN DISCONNECT_CODES\n", 1)[1].split("// END DISCONNECT_CODES", 1)[0]
    body = block.split("Object.freeze(", 1)[1].rsplit(");", 1)[0]
    table = json.loads(body)
    assert {
        int(code): (row["reason"], row["reconnect"], row["newToken"], row["slowDown"])
        for code, row in table.items()
    } == advice_table()
    # ... and the client decides from it, not from lists of its own.
    assert "disconnectAdvice(code)" in source
    assert not re.search(r"new Set\(\[4\d\d\d", source)


def test_protocol_docs_follow_the_disconnect_table() -> None:
    """docs/protocol.md §7 has the same codes, reasons and advice."""
    text = (ROOT / "docs/protocol.md").read_text()
    section = text.split("## 7. Close codes", 1)[1].split("## 8.", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[0].isdigit() and cells[0] != "1000":
            yes = {"yes": True, "no": False}
            rows[int(cells[0])] = (cells[1], yes[cells[3]], yes[cells[4]], yes[cells[5]])
    assert rows == advice_table()


# --- values: client info read back, and the written-out constructors ------------------------


def test_client_info_decodes_what_it_encodes() -> None:
    """``decode(encode())`` is the identity; what is not an info object is a ValueError."""
    for info in (ClientInfo("c1", "u", {"nick": "N"}), ClientInfo("c2", "")):
        assert ClientInfo.decode(info.encode()) == info
        assert ClientInfo.parse(info.to_json()) == info
    for raw in (b"[]", b'{"client": "c1", "user": 3}', b'{"user": ""}', b"{"):
        with pytest.raises(ValueError, match=r"not a wshub\.v1 message: info"):
            ClientInfo.decode(raw)


@pytest.mark.parametrize(
    ("cls", "args", "kwargs"),
    [
        (StoredPublication, (3, 1.5, b"1"), {}),
        (StoredPublication, (), {"offset": 3, "time": 1.5, "data": b"1", "info": b"{}"}),
        (PublicationPush, ("chat:a", "ep"), {"publication": PUB}),
    ],
)
def test_written_out_constructors_keep_dataclass_semantics(
    cls: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """Every field set (defaults too), equal and hashable by value, still frozen."""
    value = cls(*args, **kwargs)
    fields = tuple(getattr(value, field.name) for field in dataclasses.fields(cls))
    assert fields == (*args, *kwargs.values(), *_defaults(cls, args, kwargs))
    assert value == cls(*args, **kwargs) and hash(value) == hash(cls(*args, **kwargs))
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(value, dataclasses.fields(cls)[0].name, None)


def _defaults(cls: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
    given = len(args) + len(kwargs)
    return [field.default for field in dataclasses.fields(cls)[given:]]
