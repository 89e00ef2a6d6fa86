"""Helpers for the command tests: ``python -m wshub COMMAND`` as a real subprocess."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

#: Ceiling for a command to finish or print a line (reconnect backoff included); never a
#: measure of speed.
WAIT = 30.0


def environment() -> dict[str, str]:
    """This process's environment without the WSHUB_ settings of whoever runs the tests."""
    return {k: v for k, v in os.environ.items() if not k.startswith("WSHUB_")}


@dataclass
class Result:
    status: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()


async def wshub(*args: str, stdin: bytes | None = None) -> Result:
    """Run ``python -m wshub ARGS`` with ``stdin`` piped in; wait for it to exit."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wshub",
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environment(),
    )
    out, err = await asyncio.wait_for(process.communicate(stdin), WAIT)
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), err.decode())


def assert_one_line_error(result: Result, status: int, *words: str) -> None:
    """Exit ``status`` with exactly one line on standard error, which names ``words``."""
    assert result.status == status, result
    assert len(result.err_lines) == 1, result.err
    line = result.err_lines[0]
    assert ": error: " in line and "Traceback" not in result.err
    for word in words:
        assert word in line, line


class Running:
    """A command left running: read its output line by line, then stop it."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def send_line(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text.encode() + b"\n")
        await self.process.stdin.drain()

    async def line(self) -> str:
        assert self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), WAIT)
        assert raw, "the command ended its output"
        return raw.decode()

    async def wait(self) -> Result:
        assert self.process.stdout is not None and self.process.stderr is not None
        status = await asyncio.wait_for(self.process.wait(), WAIT)
        out = await self.process.stdout.read()
        err = await self.process.stderr.read()
        return Result(status, out.decode(), err.decode())


@asynccontextmanager
async def running(*args: str, stdin: bool = False) -> AsyncIterator[Running]:
    """Start ``python -m wshub ARGS`` (with a pipe as ``stdin`` if asked); kill it on exit
    if the test did not end it."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wshub",
        *args,
        stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environment(),
    )
    try:
        yield Running(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
