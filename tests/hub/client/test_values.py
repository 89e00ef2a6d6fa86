"""Tests for wshub.hub.client.values: the client's values, made from the wire's typed ones."""

from __future__ import annotations

import dataclasses

import pytest

from wshub.exceptions import (
    AuthError,
    HubError,
)
from wshub.hub.client import (
    ChannelEvent,
    HistoryPage,
    Position,
    Publication,
    hub_error,
)
from wshub.hub.wire import (
    ClientInfo,
    EphemeralPush,
    ErrorCode,
    ErrorReply,
    HistoryResult,
    PublicationPush,
    StoredPublication,
    UnsubscribePush,
    parse_message,
)


def test_publication_from_a_pub_push() -> None:
    """A pub push becomes a Publication with seconds, decoded data and ClientInfo."""
    info = ClientInfo("c1", "bob", {"nick": "B"})
    stored = StoredPublication(7, 1718000000.123, b'{"text":"hi"}', info.encode())
    push = parse_message(PublicationPush("chat:x", "ep", stored).serialize())
    assert isinstance(push, PublicationPush)
    pub = Publication.from_wire(push.channel, push.epoch, push.publication)
    assert (pub.channel, pub.offset, pub.epoch, pub.data) == ("chat:x", 7, "ep", {"text": "hi"})
    assert pub.info == info
    assert pub.time == pytest.approx(1718000000.123)
    assert pub.position == Position(7, "ep")
    assert Publication.from_wire("chat:x", "ep", StoredPublication(1, 0.0, b"1")).info is None
    with pytest.raises(ValueError, match=r"not a wshub\.v1 message"):
        parse_message('{"push": "pub", "channel": "chat:x", "epoch": "ep", "offset": "1"}')


def test_an_info_that_is_not_a_client_is_a_value_error() -> None:
    """A publication's raw info is checked when the client decodes it."""
    for raw in (b"[1]", b'{"client": "c1"}', b"not json"):
        with pytest.raises(ValueError, match=r"not a wshub\.v1 message: info"):
            Publication.from_wire("chat:x", "ep", StoredPublication(1, 0.0, b"1", raw))


def test_publication_keeps_the_dataclass_constructor() -> None:
    """The written-out __init__ sets every field, with the same defaults and keywords."""
    pub = Publication("chat:x", 3, "ep", [1], time=2.5)
    assert [f.name for f in dataclasses.fields(pub)] == [
        "channel",
        "offset",
        "epoch",
        "data",
        "info",
        "time",
    ]
    assert dataclasses.astuple(pub) == ("chat:x", 3, "ep", [1], None, 2.5)
    assert pub == Publication(channel="chat:x", offset=3, epoch="ep", data=[1], time=2.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        pub.offset = 4  # type: ignore[misc]


def test_events_and_history_pages_from_the_wire() -> None:
    """Ephemeral pushes decode their data; a history page's publications get its epoch."""
    info = ClientInfo("c1", "bob")
    event = ChannelEvent.from_wire(EphemeralPush("chat:x", b'{"typing":true}', info.encode()))
    assert event == ChannelEvent("ephemeral", "chat:x", info, {"typing": True})
    result = HistoryResult("chat:x", Position(9, "ep"), (StoredPublication(9, 1.5, b'"a"'),))
    assert HistoryPage.from_wire(result) == HistoryPage(
        "chat:x", Position(9, "ep"), [Publication("chat:x", 9, "ep", "a", None, 1.5)]
    )


@pytest.mark.parametrize(
    ("code", "cls"),
    [(103, AuthError), (104, AuthError), (113, AuthError), (107, HubError), (116, HubError)],
)
def test_error_codes_map_to_exceptions(code: int, cls: type[HubError]) -> None:
    """Token and permission codes become AuthError, the others HubError, with code and text."""
    exc = hub_error(ErrorReply(1, ErrorCode(code), "why"), "chat:x")
    assert type(exc) is cls
    assert (exc.code, exc.message, exc.channel) == (code, "why", "chat:x")


def test_an_unsubscribe_push_says_the_code_s_message() -> None:
    """The push carries a code only: the exception gets its fixed message."""
    exc = hub_error(UnsubscribePush("chat:x", ErrorCode.PERMISSION_DENIED), "chat:x")
    assert type(exc) is AuthError
    assert (exc.code, exc.message, exc.channel) == (104, "permission denied", "chat:x")
    assert hub_error(ErrorReply(2, ErrorCode.RATE_LIMITED)).message == "rate limited"
