"""Tests for what the commands share: Ctrl-C while a server keeps them waiting, until_stopped."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator

import pytest

from wshub.commands.common import until_stopped

from .conftest import running


class Silent:
    """A TCP server that accepts connections and never answers: a handshake that hangs."""

    def __init__(self) -> None:
        self.accepted = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.writers.append(writer)


@pytest.fixture
async def silent() -> AsyncIterator[tuple[Silent, int]]:
    peer = Silent()
    server = await asyncio.start_server(peer.handle, "127.0.0.1", 0)
    try:
        yield peer, server.sockets[0].getsockname()[1]
    finally:
        for writer in peer.writers:
            writer.close()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("args", "status", "err"),
    [
        (
            ["client", "{url}"],
            1,
            "wshub client: error: interrupted before the connection was open\n",
        ),
        (["sub", "{url}", "chat:x"], 0, ""),
        (["pub", "{url}", "chat:x", "1"], 1, "wshub pub: error: interrupted: the publication may"),
    ],
)
async def test_ctrl_c_while_the_handshake_hangs(
    silent: tuple[Silent, int], args: list[str], status: int, err: str
) -> None:
    """SIGINT ends a command that waits for a server: sub quietly with 0, the others in a line."""
    peer, port = silent
    url = f"ws://127.0.0.1:{port}/ws"
    async with running(*(arg.format(url=url) for arg in args)) as command:
        while peer.accepted == 0:
            await asyncio.sleep(0.01)
        command.process.send_signal(signal.SIGINT)
        result = await command.wait()
    assert result.status == status
    assert result.err.startswith(err) and result.err.count("\n") == (1 if err else 0)


async def test_until_stopped() -> None:
    """The result when it comes first; None, and the work cancelled, when stopped first."""
    stop = asyncio.Event()
    assert await until_stopped(stop, asyncio.sleep(0, "done")) == "done"
    started = asyncio.Event()

    async def forever() -> str:
        started.set()
        await asyncio.Event().wait()
        return "never"

    task = asyncio.ensure_future(until_stopped(stop, forever()))
    await started.wait()
    stop.set()
    assert await task is None
    with pytest.raises(ZeroDivisionError):
        await until_stopped(asyncio.Event(), _fail())


async def _fail() -> None:
    raise ZeroDivisionError
