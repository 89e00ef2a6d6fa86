"""Tests for wshub.protocol.events: the frozen values a connection reports without handlers."""

from __future__ import annotations

import dataclasses

import pytest

from wshub.protocol.events import CloseReceived, Event, Message, Ping, Pong


@pytest.mark.parametrize(
    ("event", "field", "value"),
    [
        (Message("hello"), "data", "bye"),
        (Message(b"\x00"), "data", b"\x01"),
        (Ping(b"p"), "data", b"q"),
        (Pong(b"p"), "data", b"q"),
        (CloseReceived(1000, "done"), "code", 1001),
    ],
)
def test_events_are_frozen(event: Event, field: str, value: object) -> None:
    """An event cannot be changed after it was reported, nor grow new attributes."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(event, field, value)
    with pytest.raises((AttributeError, TypeError)):
        event.extra = 1  # type: ignore[union-attr]


def test_events_compare_by_value() -> None:
    """Equal contents make equal events; the kind of event matters too."""
    assert Message("a") == Message("a")
    assert Message("a") != Message(b"a")
    assert Ping(b"x") == Ping(b"x")
    assert Ping(b"x") != Pong(b"x")
    assert CloseReceived(1005, "") == CloseReceived(1005, "")
    assert CloseReceived(1000, "") != CloseReceived(1001, "")
    assert hash(Ping(b"x")) == hash(Ping(b"x"))


def test_event_union_lists_every_event() -> None:
    """The Event alias covers exactly the four kinds a connection reports."""
    assert set(Event.__args__) == {Message, Ping, Pong, CloseReceived}  # type: ignore[attr-defined]
