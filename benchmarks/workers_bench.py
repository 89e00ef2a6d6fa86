"""Fan-out throughput of ``wshub serve --workers N``: deliveries per second, 1 vs 2 workers.

Three servers, each a real ``wshub serve`` process tree on a fresh port:

* ``memory-1``: one process, in-memory history and broker (``--ephemeral``): the reference;
* ``redis-1``: one process on Redis (``--redis``), so that the next line compares fairly;
* ``redis-2``: ``--workers 2 --redis``: a supervisor and two workers sharing the port.

Against each, this process opens ``--subscribers`` raw WebSocket connections (the kernel
spreads them over the workers), subscribes them all to one channel, and one publisher
connection (``--publishers``) publishes small messages as fast as the hub acknowledges
them, with up to ``--window`` publishes in flight. What is measured is the deliveries per
second (``pub`` pushes received by the subscribers) over ``--seconds`` after a one-second
warm-up, and the CPU the server processes and redis-server used meanwhile (percent of one
core; and the servers' CPU microseconds per delivery, which moves less than the rates when
other work shares the machine).

The subscribers count the pushes in the byte stream without parsing frames, so that this
process (which shares the machine's cores with the servers) costs as little as possible.
Nothing is pinned: two workers need both cores. The servers are interleaved in each
repetition; the median of ``--reps`` is reported.

Usage::

    python benchmarks/workers_bench.py --subscribers 200 --seconds 5 --reps 3
    python benchmarks/workers_bench.py --publishers 4
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from wshub.testing import RawClient
from wshub.testing.redis import redis_server

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
PUSH = b'{"push":"pub"'
REPLY = b'{"id":'
SERVERS = {
    "memory-1": ["--ephemeral"],
    "redis-1": ["--redis", "{redis}"],
    "redis-2": ["--workers", "2", "--redis", "{redis}"],
}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_SECOND


def tree(pid: int) -> list[int]:
    """``pid`` and its children (a supervisor's workers)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *(int(child) for child in children)]


def find_redis(port: int) -> int:
    """The pid of the redis-server listening on ``port``."""
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit():
                line = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
                if b"redis-server" in line and f":{port}".encode() in line:
                    return int(entry.name)
    raise RuntimeError(f"no redis-server on port {port}")


class Count:
    """Counts occurrences of a marker in a byte stream read in pieces."""

    def __init__(self, marker: bytes) -> None:
        self.marker = marker
        self.total = 0
        self._tail = b""

    def feed(self, data: bytes) -> None:
        joined = self._tail + data
        self.total += joined.count(self.marker)
        # What could be the start of a marker cut by the read (too short to hold a whole one).
        self._tail = joined[-(len(self.marker) - 1) :]


async def hub_client(port: int, channel: str) -> RawClient:
    """A raw connection, connected and subscribed to ``channel``."""
    raw = await RawClient.connect("127.0.0.1", port)
    await raw.handshake("/ws", [("Sec-WebSocket-Protocol", "wshub.v1")])
    raw.send_text('{"id":1,"cmd":"connect"}')
    await raw.recv_frame()
    raw.send_text(f'{{"id":2,"cmd":"subscribe","channel":"{channel}"}}')
    await raw.recv_frame()
    return raw


async def count(raw: RawClient, counter: Count) -> None:
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
        while data := await raw.reader.read(65536):
            counter.feed(data)


async def publish(raw: RawClient, channel: str, window: int) -> None:
    """Publish as fast as acknowledged, ``window`` publishes in flight."""
    replies = Count(REPLY)
    sent = 0
    message = '{"id":%d,"cmd":"publish","channel":"' + channel + '","data":{"n":%d,"t":"%s"}}'
    with contextlib.suppress(ConnectionError):
        while True:
            while sent - replies.total < window:
                sent += 1
                raw.send_text(message % (sent + 2, sent, "x" * 64))
            await raw.drain()
            data = await raw.reader.read(65536)
            if not data:
                return
            replies.feed(data)


async def drive(port: int, pids: list[int], args: argparse.Namespace) -> dict[str, float]:
    """Connect everyone, then measure one window."""
    channel = f"chat:bench{time.monotonic_ns()}"
    counters = [Count(PUSH) for _ in range(args.subscribers)]
    subscribers = [await hub_client(port, channel) for _ in counters]
    readers = [
        asyncio.create_task(count(raw, counter))
        for raw, counter in zip(subscribers, counters, strict=True)
    ]
    publishers = [await hub_client(port, channel) for _ in range(args.publishers)]
    publishing = [asyncio.create_task(publish(raw, channel, args.window)) for raw in publishers]
    await asyncio.sleep(1.0)  # warm-up
    cpu0 = [cpu_seconds(pid) for pid in pids]
    got0, t0 = sum(c.total for c in counters), time.monotonic()
    await asyncio.sleep(args.seconds)
    cpu1 = [cpu_seconds(pid) for pid in pids]
    got1, t1 = sum(c.total for c in counters), time.monotonic()
    for task in [*publishing, *readers]:
        task.cancel()
    for raw in [*subscribers, *publishers]:
        raw.writer.close()
    elapsed = t1 - t0
    return {
        "deliveries_per_s": (got1 - got0) / elapsed,
        "server_cpu_pct": 100
        * sum(b - a for a, b in zip(cpu0[:-1], cpu1[:-1], strict=True))
        / elapsed,
        "redis_cpu_pct": 100 * (cpu1[-1] - cpu0[-1]) / elapsed,
        "cpu_us_per_delivery": 1e6
        * sum(b - a for a, b in zip(cpu0[:-1], cpu1[:-1], strict=True))
        / max(got1 - got0, 1),
    }


def run_once(
    name: str, redis_url: str, redis_pid: int, args: argparse.Namespace
) -> dict[str, float]:
    """Start one server, measure it, stop it."""
    import wshub

    options = [option.format(redis=redis_url) for option in SERVERS[name]]
    command = [sys.executable, "-m", "wshub", "--log-level", "warning", "serve", "--port", "0"]
    command += ["--no-ticker", "--no-board", "--no-console", *options]
    command += ["--publish-rate", "none", "--command-rate", "none"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        for line in server.stdout:
            if line.startswith("wshub: hub on "):
                port = int(line.rsplit(":", 1)[1].split("/")[0])
                break
        else:
            raise RuntimeError(f"{name}: the server did not start")
        pids = [*tree(server.pid), redis_pid]
        return wshub.run(drive(port, pids, args))
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--publishers", type=int, default=1)
    parser.add_argument("--window", type=int, default=64, help="publishes in flight each")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--servers", default=",".join(SERVERS))
    args = parser.parse_args()
    names = args.servers.split(",")
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    with redis_server() as redis:
        redis_pid = find_redis(redis.port)
        for rep in range(args.reps):
            for name in names:
                result = run_once(name, redis.url, redis_pid, args)
                runs[name].append(result)
                print(
                    f"rep {rep + 1} {name:9}: {result['deliveries_per_s']:9,.0f} deliveries/s, "
                    f"server CPU {result['server_cpu_pct']:4.0f}%, "
                    f"redis CPU {result['redis_cpu_pct']:4.0f}%, "
                    f"{result['cpu_us_per_delivery']:.2f} µs of server CPU per delivery",
                    flush=True,
                )
    load = os.getloadavg()[0]
    who = f"{args.subscribers} subscribers, {args.publishers} publisher(s)"
    print(f"\nmedian of {args.reps} (min-max), {who}, load average {load:.1f}")
    for name, results in runs.items():
        rates = [r["deliveries_per_s"] for r in results]
        cpu = statistics.median(r["server_cpu_pct"] for r in results)
        redis_cpu = statistics.median(r["redis_cpu_pct"] for r in results)
        cost = statistics.median(r["cpu_us_per_delivery"] for r in results)
        spread = f"{min(rates):,.0f}-{max(rates):,.0f}"
        print(
            f"{name:9}: {statistics.median(rates):9,.0f} deliveries/s ({spread}), "
            f"server CPU {cpu:.0f}%, redis CPU {redis_cpu:.0f}%, {cost:.2f} µs/delivery"
        )


if __name__ == "__main__":
    main()
