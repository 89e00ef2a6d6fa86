"""Hub fan-out cost: server CPU per delivered publication, for a ticker-style feed.

A hub (``start_hub``, in-memory history, anonymous clients) runs in its own process pinned
to CPU 1, with a feed inside it that publishes to ``--channels`` channels of the ``ticker``
namespace ``--rate`` times a second (one publication per channel per tick, as a market feed
does). This process, pinned to CPU 0, opens ``--subscribers`` connections with wshub's
client, subscribes each to every channel, and counts the ``pub`` pushes that arrive. The
load is fixed, so what is compared is the server's CPU time (user + system, from
/proc/PID/stat) per delivered push over the measured window, and that every push arrived.

Usage::

    python benchmarks/hub_bench.py --subscribers 200 --channels 10 --rate 20 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from cpu_cost import free_port, wait_listening  # beside this file

ROOT = Path(__file__).resolve().parent.parent
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_SECOND


async def feed(hub: Any, channels: int, rate: float) -> None:
    """Publish to ``channels`` ticker channels ``rate`` times a second, until cancelled."""
    loop = asyncio.get_running_loop()
    names = [f"ticker:s{i}" for i in range(channels)]
    tick, due = 0, loop.time()
    while True:
        due += 1 / rate
        await asyncio.sleep(max(0.0, due - loop.time()))
        tick += 1
        for i, name in enumerate(names):
            await hub.publish(name, {"tick": tick, "price": 100 + i})


def serve(port: int, channels: int, rate: float) -> None:
    """The hub and its feed (the server process)."""
    import wshub
    from wshub.apps.chat import demo_config
    from wshub.hub import start_hub

    async def main() -> None:
        server = await start_hub(
            "127.0.0.1",
            port,
            ephemeral=True,
            allow_anonymous=True,
            anonymous_permissions=["ticker:*:s"],
            registry=demo_config().registry(),  # ticker: conflated, server-only
        )
        try:
            await feed(server.hub, channels, rate)
        finally:
            await server.close()

    wshub.run(main())


class Counter:
    """Counts the ``pub`` pushes and the subscribe replies of every connection."""

    def __init__(self) -> None:
        self.pubs = 0
        self.subscribed = 0

    def on_message(self, ws: Any, message: str | bytes) -> None:
        if isinstance(message, str) and message.startswith('{"push":"pub"'):
            self.pubs += 1
        elif isinstance(message, str) and '"result":{"channel"' in message:
            self.subscribed += 1


async def drive(
    port: int, pid: int, subscribers: int, channels: int, seconds: float, compression: str | None
) -> dict[str, float]:
    """Connect and subscribe everyone, then measure one window."""
    import wshub

    counter = Counter()
    url = f"ws://127.0.0.1:{port}/ws"
    conns = []
    for _ in range(subscribers):
        ws = await wshub.connect(
            url, subprotocols=["wshub.v1"], compression=compression, on_message=counter.on_message
        )
        ws.send_nowait('{"id":1,"cmd":"connect"}')
        for i in range(channels):
            ws.send_nowait(json.dumps({"id": 2 + i, "cmd": "subscribe", "channel": f"ticker:s{i}"}))
        conns.append(ws)
    while counter.subscribed < subscribers * channels:
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)  # warm-up
    cpu0, pubs0, t0 = cpu_seconds(pid), counter.pubs, time.monotonic()
    await asyncio.sleep(seconds)
    cpu1, pubs1, t1 = cpu_seconds(pid), counter.pubs, time.monotonic()
    for ws in conns:
        await ws.close()
    delivered = pubs1 - pubs0
    return {
        "deliveries_per_s": delivered / (t1 - t0),
        "server_cpu_pct": 100 * (cpu1 - cpu0) / (t1 - t0),
        "cpu_us_per_delivery": 1e6 * (cpu1 - cpu0) / max(delivered, 1),
    }


def run_once(args: argparse.Namespace, script: str = __file__) -> dict[str, float]:
    """One server process (``script --serve PORT``), one measured window."""
    import wshub

    port = free_port()
    options = ["--channels", str(args.channels), "--rate", str(args.rate)]
    server = subprocess.Popen(
        ["taskset", "-c", "1", sys.executable, script, "--serve", str(port), *options]
    )
    try:
        wait_listening(port)
        compression = None if args.compression == "none" else args.compression
        return wshub.run(
            drive(port, server.pid, args.subscribers, args.channels, args.seconds, compression)
        )
    finally:
        server.terminate()
        server.wait(timeout=10)


def arguments(doc: str) -> argparse.Namespace:
    """The load's options (shared with asgi_bench.py)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--channels", type=int, default=10)
    parser.add_argument("--rate", type=float, default=20.0, help="ticks per second")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--compression", default="none", choices=("none", "deflate"))
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = arguments(__doc__ or "")
    if args.serve:
        serve(args.serve, args.channels, args.rate)
        return
    os.sched_setaffinity(0, {0})
    offered = args.subscribers * args.channels * args.rate
    runs = []
    for rep in range(args.reps):
        r = run_once(args)
        runs.append(r)
        print(
            f"rep {rep + 1}: {r['deliveries_per_s']:9,.0f} deliveries/s (offered {offered:,.0f}), "
            f"server CPU {r['server_cpu_pct']:5.1f}%, {r['cpu_us_per_delivery']:5.2f} µs/delivery",
            flush=True,
        )
    median = statistics.median(r["cpu_us_per_delivery"] for r in runs)
    print(f"median: {median:.2f} µs of server CPU per delivery")


if __name__ == "__main__":
    main()
