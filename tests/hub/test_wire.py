"""Tests for wshub.hub.wire: the wshub.v1 JSON format (docs/protocol.md)."""

from __future__ import annotations

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
    Connect,
    DisconnectAdvice,
    DisconnectCode,
    ErrorCode,
    History,
    Ping,
    Position,
    Presence,
    Publication,
    Publish,
    Refresh,
    Subscribe,
    Unsubscribe,
    WireError,
    disconnect_advice,
    ephemeral_push,
    error_reply,
    event_push,
    parse_command,
    pub_push,
    publication_json,
    reply,
    unsubscribe_push,
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
        4000: "bad commands",
        4001: "unauthorized",
        4002: "connect timeout",
        4003: "token expired",
        4004: "slow consumer",
        4005: "rate limited",
        4006: "too many connections",
        4007: "unsupported subprotocol",
    }


def test_parse_connect() -> None:
    """connect carries an optional token and meta."""
    assert parse({"id": 1, "cmd": "connect"}) == Connect(1)
    assert parse({"id": 1, "cmd": "connect", "token": "t", "meta": {"n": 1}}) == Connect(
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
    assert command == Subscribe(2, "chat:a", Position(4, "e"), 5)


def test_parse_publish_keeps_data_as_json_bytes() -> None:
    """publish data is re-encoded once into compact JSON bytes, null included."""
    command = parse({"id": 3, "cmd": "publish", "channel": "chat:a", "data": {"x": [1, 2]}})
    assert command == Publish(3, "chat:a", b'{"x":[1,2]}')
    null = parse({"id": 3, "cmd": "publish", "channel": "chat:a", "data": None})
    assert isinstance(null, Publish) and null.data == b"null"


def test_parse_other_commands() -> None:
    """unsubscribe, presence, history, ping and refresh parse into their dataclasses."""
    assert parse({"id": 1, "cmd": "unsubscribe", "channel": "c:d"}) == Unsubscribe(1, "c:d")
    assert parse({"id": 1, "cmd": "presence", "channel": "c:d"}) == Presence(1, "c:d")
    assert parse({"id": 1, "cmd": "history", "channel": "c:d", "limit": 5000}) == History(
        1, "c:d", 1000
    )
    assert parse({"id": 1, "cmd": "ping"}) == Ping(1)
    assert parse({"id": 1, "cmd": "refresh", "token": "x"}) == Refresh(1, "x")


def test_unknown_fields_are_ignored() -> None:
    """Forward compatibility: fields a command does not know are ignored."""
    assert parse({"id": 1, "cmd": "ping", "future": True}) == Ping(1)


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
    assert isinstance(ok, Publish)
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
    st.builds(Connect, _ids, st.none() | st.text(min_size=1, max_size=50), _json),
    st.builds(Subscribe, _ids, _channels, st.none() | _positions, st.integers(0, 1000)),
    st.builds(Unsubscribe, _ids, _channels),
    st.builds(
        Publish,
        _ids,
        _channels,
        _json.map(orjson.dumps),
        st.none() | st.text(min_size=1, max_size=64),
        st.booleans(),
    ),
    st.builds(Presence, _ids, _channels),
    st.builds(History, _ids, _channels, st.none() | st.integers(1, 1000), st.none() | _positions),
    st.builds(Ping, _ids),
    st.builds(Refresh, _ids, st.text(min_size=1, max_size=50)),
)


@given(_commands)
def test_serialize_then_parse_round_trips(command: Command) -> None:
    """Every command a client can build is read back identically by the hub."""
    assert parse_command(command.serialize()) == command


def test_replies() -> None:
    """Replies echo the id; errors carry code and message; an unreadable id is null."""
    assert orjson.loads(reply(3, {"a": 1})) == {"id": 3, "result": {"a": 1}}
    assert orjson.loads(reply(3)) == {"id": 3, "result": {}}
    assert orjson.loads(error_reply(None, ErrorCode.BAD_REQUEST)) == {
        "id": None,
        "error": {"code": 101, "message": "bad request"},
    }


def test_pushes_embed_raw_data() -> None:
    """Pushes embed the stored JSON bytes as they are."""
    info = ClientInfo("c1", "alice", {"nick": "A"})
    pub = Publication(7, 1.5, b'{"t":"hi"}', info.encode())
    assert orjson.loads(pub_push("chat:a", "ep", pub)) == {
        "push": "pub",
        "channel": "chat:a",
        "epoch": "ep",
        "offset": 7,
        "time": 1500,
        "data": {"t": "hi"},
        "info": {"client": "c1", "user": "alice", "meta": {"nick": "A"}},
    }
    assert "info" not in publication_json(Publication(1, 0.0, b"1"))
    assert orjson.loads(ephemeral_push("chat:a", b"true", None)) == {
        "push": "ephemeral",
        "channel": "chat:a",
        "data": True,
    }
    assert orjson.loads(event_push("join", "chat:a", ClientInfo("c", ""))) == {
        "push": "join",
        "channel": "chat:a",
        "info": {"client": "c", "user": ""},
    }
    assert orjson.loads(unsubscribe_push("chat:a", ErrorCode.PERMISSION_DENIED)) == {
        "push": "unsubscribe",
        "channel": "chat:a",
        "code": 104,
        "message": "permission denied",
    }


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
