"""Tests for wshub.aio.options: one TransportOptions for serve() and connect()."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

import wshub
from wshub import ConfigError, TransportOptions


async def echo(ws: wshub.ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def test_serve_takes_its_limits_as_one_value() -> None:
    """serve(options=...) applies max_size: a message over it is refused with 1009."""
    limits = TransportOptions(max_size=16)
    async with (
        wshub.serve(echo, "127.0.0.1", 0, options=limits) as server,
        wshub.connect(f"ws://127.0.0.1:{server.port}/") as ws,
    ):
        await ws.send("x" * 16)
        assert await ws.recv() == "x" * 16
        await ws.send("x" * 17)
        await ws.wait_closed()
        assert ws.close_code == 1009


async def test_connect_takes_its_limits_as_one_value() -> None:
    """connect(options=...) applies compression=None: no permessage-deflate is offered."""
    async with wshub.serve(echo, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.port}/"
        async with wshub.connect(url, options=TransportOptions(compression=None)) as plain:
            header = plain.response.headers.get("Sec-WebSocket-Extensions")
            assert header is None
        async with wshub.connect(url, options=TransportOptions()) as deflated:
            header = deflated.response.headers.get("Sec-WebSocket-Extensions")
            assert header is not None and "permessage-deflate" in header


def test_a_limit_given_both_ways_is_refused() -> None:
    """options= and a keyword for the same limit: an error naming it, not a silent choice."""
    with pytest.raises(ConfigError) as info:
        wshub.connect("ws://127.0.0.1:1/", options=TransportOptions(), max_size=10)
    assert info.value.errors == ("max_size: given both in options= and as a keyword",)
    with pytest.raises(ConfigError):
        wshub.serve(echo, "127.0.0.1", 0, options=TransportOptions(), ping_interval=None)


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        (
            {"compression": "gzip"},
            "compression: must be 'deflate', 'deflate-shared' or none, got 'gzip'",
        ),
        ({"max_size": 0}, "max_size: must be >= 1 or none, got 0"),
        ({"max_queue": -1}, "max_queue: must be >= 1 or none, got -1"),
        ({"write_limit": -1}, "write_limit: must be >= 0, got -1"),
        ({"ping_timeout": 0.0}, "ping_timeout: must be > 0 seconds or none, got 0.0"),
        ({"open_timeout": float("nan")}, "open_timeout: must be > 0 seconds or none, got nan"),
    ],
)
def test_invalid_options_name_the_field(changes: dict[str, object], error: str) -> None:
    """Each invalid limit is refused with a line that starts with its name."""
    with pytest.raises(ConfigError) as info:
        TransportOptions(**changes)  # type: ignore[arg-type]
    assert info.value.errors == (error,)
    assert isinstance(info.value, ValueError)


def test_the_defaults_are_those_of_serve_and_connect() -> None:
    """One default per limit: the dataclass's equals serve()'s and connect()'s keyword."""
    for function in (wshub.serve, wshub.connect):
        parameters = inspect.signature(function).parameters
        for field in dataclasses.fields(TransportOptions):
            assert parameters[field.name].default == field.default, (function, field.name)
