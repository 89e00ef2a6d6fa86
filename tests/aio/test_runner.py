"""Tests for wshub.aio.runner: ``wshub.run`` picks uvloop unless told otherwise.

These tests are synchronous: ``run`` makes and closes its own event loop.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

import wshub
from wshub import ServerConnection, connect, serve
from wshub.aio.runner import new_event_loop, uvloop_available

uvloop = pytest.importorskip("uvloop")


async def loop_type_name() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def test_run_uses_uvloop_by_default() -> None:
    """``wshub.run`` runs the coroutine on uvloop and returns its result."""
    assert uvloop_available()
    assert wshub.run(loop_type_name()) == "uvloop"


def test_run_can_keep_asyncio_loop() -> None:
    """``use_uvloop=False`` runs on asyncio's own loop."""
    assert wshub.run(loop_type_name(), use_uvloop=False) == "asyncio"


def test_run_debug_mode() -> None:
    """``debug=True`` turns on the event loop's debug mode."""

    async def debug_flag() -> bool:
        return asyncio.get_running_loop().get_debug()

    assert wshub.run(debug_flag(), debug=True) is True
    assert wshub.run(debug_flag()) is False


def test_run_propagates_exceptions() -> None:
    """An exception from the coroutine comes out of ``run``."""

    async def fail() -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError):
        wshub.run(fail())


@pytest.mark.parametrize("use_uvloop", [True, False])
def test_new_event_loop(use_uvloop: bool) -> None:
    """``new_event_loop`` makes a fresh loop of the requested kind."""
    loop = new_event_loop(use_uvloop=use_uvloop)
    try:
        assert isinstance(loop, uvloop.Loop) is use_uvloop
        assert not loop.is_closed()
    finally:
        loop.close()


@pytest.mark.parametrize("use_uvloop", [True, False])
def test_server_and_client_run_under_run(use_uvloop: bool) -> None:
    """A server and a client exchange messages inside ``wshub.run`` on either loop."""

    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async def main() -> list[str | bytes]:
        async with (
            serve(echo, "127.0.0.1", 0) as server,
            connect(f"ws://127.0.0.1:{server.port}/") as ws,
        ):
            await ws.send("hello")
            await ws.send(b"world")
            return [await ws.recv(), await ws.recv()]

    assert wshub.run(main(), use_uvloop=use_uvloop) == ["hello", b"world"]


def test_environment_switch_keeps_asyncio_loop() -> None:
    """``WSHUB_NO_UVLOOP=1`` makes ``run`` keep asyncio's loop (read at import)."""
    code = (
        "import asyncio, wshub\n"
        "async def main():\n"
        "    return type(asyncio.get_running_loop()).__module__\n"
        "print(wshub.run(main()))\n"
    )
    env = {**os.environ, "WSHUB_NO_UVLOOP": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip().startswith("asyncio")
