"""Tests for wshub.hub.channels: channel names and namespace options."""

from __future__ import annotations

import pytest

from wshub.apps.chat import demo_config
from wshub.exceptions import HubError
from wshub.hub.channels import (
    ChannelRegistry,
    NamespaceOptions,
    split_channel,
)


@pytest.mark.parametrize(
    "channel",
    ["chat:lobby", "ticker:AAPL", "a:b", "ns-1_x:with.dots=and@signs+,!~", "c:" + "x" * 200],
)
def test_valid_channel_names(channel: str) -> None:
    """namespace:name with the documented charsets is valid."""
    assert split_channel(channel) == tuple(channel.split(":", 1))


@pytest.mark.parametrize(
    "channel",
    [
        "",
        "lobby",
        ":lobby",
        "chat:",
        "Chat:lobby",
        "-chat:lobby",
        "chat:lob by",
        "chat:a:b",
        "chat:é",
        "chat:" + "x" * 201,
        "n" * 33 + ":x",
    ],
)
def test_invalid_channel_names(channel: str) -> None:
    """Names outside the grammar of docs/protocol.md §3 are refused."""
    assert split_channel(channel) is None


def test_registry_codes() -> None:
    """An invalid name is 107, an unknown namespace 108, a default namespace catches all."""
    registry = ChannelRegistry({"chat": NamespaceOptions()})
    with pytest.raises(HubError) as invalid:
        registry.options("nope")
    assert invalid.value.code == 107
    with pytest.raises(HubError) as unknown:
        registry.options("other:x")
    assert unknown.value.code == 108
    fallback = NamespaceOptions(history_size=3)
    assert ChannelRegistry({}, default=fallback).options("other:x") is fallback


@pytest.mark.parametrize(
    "kwargs",
    [
        {"history_size": -1},
        {"history_ttl": 0},
        {"publish": "everyone"},
        {"slow_consumer": "block"},
        {"queue_size": 0},
    ],
)
def test_invalid_options_are_refused(kwargs: dict[str, object]) -> None:
    """A misconfigured namespace fails at construction."""
    with pytest.raises(ValueError):
        NamespaceOptions(**kwargs)  # type: ignore[arg-type]


def test_invalid_namespace_name_is_refused() -> None:
    """Namespace names follow the channel grammar."""
    with pytest.raises(ValueError):
        ChannelRegistry({"Bad": NamespaceOptions()})


def test_default_registry_demo_namespaces() -> None:
    """chat keeps 100 messages a day with presence; ticker is server-only and conflated
    (the demo's namespaces, owned by the chat app; the library declares none)."""
    registry = demo_config().registry()
    assert sorted(registry) == ["board", "chat", "ticker"]
    chat = registry["chat"]
    assert (chat.history_size, chat.history_ttl, chat.presence, chat.join_leave) == (
        100,
        86400.0,
        True,
        True,
    )
    ticker = registry["ticker"]
    assert (ticker.publish, ticker.slow_consumer, ticker.persistent) == ("none", "latest", False)
    assert registry["board"].history_size > chat.history_size
