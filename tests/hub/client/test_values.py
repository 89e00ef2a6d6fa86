"""Tests for wshub.hub.client.values: the values parsed from the hub's JSON."""

from __future__ import annotations

import pytest

from wshub.exceptions import (
    AuthError,
    HubError,
)
from wshub.hub.client import (
    Position,
    Publication,
    hub_error,
)
from wshub.hub.wire import ClientInfo


def test_publication_parse_reads_push_fields() -> None:
    """A pub push becomes a Publication with seconds, decoded data and ClientInfo."""
    obj = {
        "offset": 7,
        "time": 1718000000123,
        "data": {"text": "hi"},
        "info": {"client": "c1", "user": "bob", "meta": {"nick": "B"}},
    }
    pub = Publication.parse(obj, "chat:x", "ep")
    assert (pub.channel, pub.offset, pub.epoch, pub.data) == ("chat:x", 7, "ep", {"text": "hi"})
    assert pub.info == ClientInfo("c1", "bob", {"nick": "B"})
    assert pub.time == pytest.approx(1718000000.123)
    assert pub.position == Position(7, "ep")
    assert Publication.parse({"offset": 1}, "chat:x", "ep").info is None
    with pytest.raises(TypeError):
        Publication.parse({"offset": "1"}, "chat:x", "ep")


@pytest.mark.parametrize(
    ("code", "cls"),
    [(103, AuthError), (104, AuthError), (113, AuthError), (107, HubError), (116, HubError)],
)
def test_error_codes_map_to_exceptions(code: int, cls: type[HubError]) -> None:
    """Token and permission codes become AuthError, the others HubError, with code and text."""
    exc = hub_error({"code": code, "message": "why"}, "chat:x")
    assert type(exc) is cls
    assert (exc.code, exc.message, exc.channel) == (code, "why", "chat:x")
