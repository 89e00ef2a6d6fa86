"""RSS growth of ``wshub serve`` under peers that never read (issue 8 §1, docs/hub.md).

Starts ``wshub serve --ephemeral`` in a subprocess, then, one scenario at a time on a fresh
server, runs one hostile peer (a raw socket from ``wshub.testing`` that stops reading) and
samples the server's RSS (``/proc/PID/status``) every 10 ms until the hub closes the peer:

- ``subscriber``: subscribes to ``chat:busy`` and never reads, while a well-behaved
  publisher on another connection publishes ``--count`` publications of ``--size`` bytes;
- ``flood``: sends ``ping`` commands and never reads the replies, with the default rate
  limits;
- ``flood-unlimited``: sends ``history`` commands (100 publications of 1 KiB each per
  reply) and never reads the replies, with ``--command-rate none``.

Prints one line per scenario: RSS before, peak growth, and the close code the peer got.
With too few publications the kernel's socket buffers absorb them all and the subscriber is
only closed by the keepalive (1011, after about 40 s): keep ``--count * --size`` above
~16 MB.

Usage::

    python benchmarks/hub_memory_peers.py [--count 2000] [--size 16384]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

import orjson
from cpu_cost import free_port, wait_listening  # beside this file

from wshub.hub.wire import SUBPROTOCOL
from wshub.protocol.frames import Opcode
from wshub.testing import RawClient


def rss(pid: int) -> int:
    """Resident set size of ``pid`` in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


async def hub_client(port: int) -> RawClient:
    raw = await RawClient.connect("127.0.0.1", port, rcvbuf=4096, limit=4096)
    await raw.handshake("/ws", [("Sec-WebSocket-Protocol", SUBPROTOCOL)])
    raw.send_text('{"id": 1, "cmd": "connect"}')
    await raw.recv_frame()
    return raw


async def reader(raw: RawClient) -> None:
    """Read and discard everything (a client that keeps up)."""
    with contextlib.suppress(EOFError, ConnectionError):
        while True:
            await raw.recv_frame()


async def subscriber(port: int, count: int, size: int) -> RawClient:
    peer = await hub_client(port)
    peer.send_text('{"id": 2, "cmd": "subscribe", "channel": "chat:busy"}')
    await peer.recv_frame()
    peer.pause_reading()
    publisher = await hub_client(port)
    publisher.send_text('{"id": 2, "cmd": "subscribe", "channel": "chat:busy"}')
    reading = asyncio.ensure_future(reader(publisher))
    data = orjson.dumps("p" * size).decode()
    for n in range(count):
        cmd = f'{{"id": {n + 3}, "cmd": "publish", "channel": "chat:busy", "data": {data}}}'
        publisher.send_text(cmd)
        if n % 16 == 0:
            await publisher.drain()
    await publisher.drain()
    reading.cancel()
    await publisher.close()
    return peer


async def flood(port: int, count: int, command: str) -> RawClient:
    peer = await hub_client(port)
    peer.pause_reading()
    with contextlib.suppress(ConnectionError):
        for n in range(count):
            peer.send_text(command)
            if n % 16 == 0:
                await peer.drain()
    return peer


async def fill_history(port: int) -> None:
    raw = await hub_client(port)
    raw.send_text('{"id": 2, "cmd": "subscribe", "channel": "chat:h"}')
    for n in range(100):
        data = orjson.dumps({"n": n, "text": "h" * 1000}).decode()
        raw.send_text(f'{{"id": {n + 3}, "cmd": "publish", "channel": "chat:h", "data": {data}}}')
    await raw.drain()
    await asyncio.sleep(0.5)
    await raw.close()


async def scenario(name: str, args: argparse.Namespace) -> dict[str, object]:
    port = free_port()
    flags = ["--command-rate", "none", "--publish-rate", "none"]
    if name == "flood":
        flags = ["--publish-rate", "none"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "wshub", "serve", "--ephemeral", "--port", str(port), *flags],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(port)
        if name != "subscriber":
            await fill_history(port)
        await asyncio.sleep(0.5)
        before = rss(proc.pid)
        peak = before
        stop = asyncio.Event()

        async def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, rss(proc.pid))
                await asyncio.sleep(0.01)

        sampling = asyncio.ensure_future(sample())
        start = time.monotonic()
        if name == "subscriber":
            peer = await subscriber(port, args.count, args.size)
        else:
            history = '{"id": 3, "cmd": "history", "channel": "chat:h", "limit": 100}'
            ping = '{"id": 3, "cmd": "ping"}'
            peer = await flood(port, args.count, ping if name == "flood" else history)
        peer.resume_reading()
        code, _ = await asyncio.wait_for(
            peer.recv_close(skip=(Opcode.TEXT, Opcode.PING, Opcode.PONG)), 60
        )
        stop.set()
        await sampling
        await peer.close()
        return {
            "scenario": name,
            "rss_before_mib": round(before / 2**20, 1),
            "rss_growth_mib": round((peak - before) / 2**20, 1),
            "close_code": code,
            "seconds": round(time.monotonic() - start, 2),
        }
    finally:
        proc.terminate()
        proc.wait(10)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="publications / commands sent")
    parser.add_argument("--size", type=int, default=16384, help="bytes of each publication")
    args = parser.parse_args()
    for name in ("subscriber", "flood", "flood-unlimited"):
        print(json.dumps(await scenario(name, args)), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
