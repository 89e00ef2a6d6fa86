"""Fan-out with permessage-deflate negotiated: server CPU per delivery, shared vs not.

Starts ``wshub serve`` (memory history, chat namespace, rate limits off) pinned to CPU 1,
once per compression mode, and drives it from this process pinned to CPU 0: N subscribers
of one room that offer permessage-deflate as browsers do (``wshub.connect`` with
``compression="deflate"``: ``permessage-deflate; client_max_window_bits``), plus one
publisher, publishing chat-like messages at a fixed rate. Every subscriber inflates and
counts what it receives; a run is valid only if every delivery arrived.

Modes (the server's ``--compression``):

- ``none``: nothing negotiated, the frame-once fan-out writes one frame to all;
- ``deflate``: context takeover (today's default): each subscriber's connection
  compresses every publication with its own compressor, N compressions per publication;
- ``deflate-shared``: ``server_no_context_takeover`` granted unasked (RFC 7692 §7.1.1.1):
  one compression per publication, the same bytes to all.

The number to read is the server's CPU time per delivery (from /proc/PID/stat over the
measured window), which another process on the machine disturbs far less than a rate;
``capacity/s`` is its inverse, the deliveries/s one core would sustain at that cost.
Throughput is not measured at saturation: the Python subscribers, which inflate every
message, would be the limit, not the hub.

    python benchmarks/hub_compression_bench.py [--subs 200,800] [--rate 40] [--duration 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson

import wshub

TICKS = os.sysconf("SC_CLK_TCK")
MODES = ("none", "deflate", "deflate-shared")
TEXT = "the meeting moved to three so we can finish the release notes before lunch"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(mode: str, port: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "wshub", "serve", "--host", "127.0.0.1", "--port", str(port),
        "--ephemeral", "--allow-anonymous", "--no-chat", "--command-rate", "none",
        "--publish-rate", "none", "--compression", mode,
    ]  # fmt: skip
    return subprocess.Popen(
        ["taskset", "-c", "1", *command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


async def call(ws: wshub.ClientConnection, command_id: int, **command: object) -> None:
    await ws.send(orjson.dumps({"id": command_id, **command}).decode())
    while True:
        reply = orjson.loads(await ws.recv())
        if reply.get("id") == command_id:
            assert "result" in reply, reply
            return


async def subscriber(url: str, counts: list[int], index: int, ready: asyncio.Event) -> None:
    compression = None if MODE == "none" else "deflate"
    async with wshub.connect(url, subprotocols=["wshub.v1"], compression=compression) as ws:
        await call(ws, 1, cmd="connect")
        await call(ws, 2, cmd="subscribe", channel="chat:room")
        ready.set()
        async for message in ws:
            if '"push":"pub"' in message:
                counts[index] += 1


MODE = "none"


async def run(mode: str, subs: int, rate: float, duration: float) -> dict[str, float]:
    global MODE
    MODE = mode
    port = free_port()
    server = start_server(mode, port)
    url = f"ws://127.0.0.1:{port}/ws"
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                await asyncio.sleep(0.1)
        counts = [0] * subs
        tasks = []
        for index in range(subs):
            ready = asyncio.Event()
            tasks.append(asyncio.create_task(subscriber(url, counts, index, ready)))
            await ready.wait()
        async with wshub.connect(url, subprotocols=["wshub.v1"], compression=None) as pub:
            await call(pub, 1, cmd="connect")
            await call(pub, 2, cmd="subscribe", channel="chat:room")
            await asyncio.sleep(1.0)  # the join pushes of set-up are over
            start_counts, start_cpu, start = sum(counts), cpu_seconds(server.pid), time.time()
            sent = 0
            while time.time() < start + duration:
                sent += 1
                data = {"text": f"{TEXT} #{sent}", "nick": "Ada"}
                message = {"id": 10 + sent, "cmd": "publish", "channel": "chat:room", "data": data}
                await pub.send(orjson.dumps(message).decode())
                await asyncio.sleep(max(0.0, start + sent / rate - time.time()))
            expected = start_counts + sent * subs
            deadline = time.time() + 30
            while sum(counts) < expected and time.time() < deadline:
                await asyncio.sleep(0.05)
            cpu = cpu_seconds(server.pid) - start_cpu
            delivered = sum(counts) - start_counts
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        server.terminate()
        server.wait()
    return {
        "delivered": delivered,
        "expected": sent * subs,
        "us_per_delivery": cpu / delivered * 1e6 if delivered else float("nan"),
        "us_per_publication": cpu / sent * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subs", default="200,800", help="subscriber counts, comma-separated")
    parser.add_argument("--rate", type=float, default=40, help="publications per second")
    parser.add_argument("--duration", type=float, default=5, help="measured seconds")
    parser.add_argument("--modes", default=",".join(MODES))
    args = parser.parse_args()
    os.sched_setaffinity(0, {0})
    print(f"{args.rate:g} publications/s for {args.duration:g} s, 1 room; server on CPU 1\n")
    print("| subscribers | server --compression | delivered | server CPU µs/delivery "
          "| capacity/s (1 core) | µs/publication |")  # fmt: skip
    print("|---:|---|---:|---:|---:|---:|")
    for subs in (int(n) for n in args.subs.split(",")):
        for mode in args.modes.split(","):
            result = asyncio.run(run(mode, subs, args.rate, args.duration))
            ok = "" if result["delivered"] == result["expected"] else " (LOST)"
            print(
                f"| {subs} | {mode} | {result['delivered']:.0f}{ok} "
                f"| {result['us_per_delivery']:.2f} | {1e6 / result['us_per_delivery']:,.0f} "
                f"| {result['us_per_publication']:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
