"""Client side by side: wshub's client against picows' client, both driving one C echo server.

The server is the harness's calibration server (``shared/bench/servers/c_echo.c``, built
here with ``gcc -O2``), pinned to CPU 1, so that it is never the bottleneck and costs the
same for every client. Each client runs in its own process pinned to CPU 0 and plays
echo ping-pong on 127.0.0.1: one message in flight per connection, the next one sent
when its echo comes back. Every echo is checked for length.

Rows:

* ``wshub``: ``wshub.connect(..., on_message=..., compression=None)`` with a plain
  callback that calls ``send_nowait`` (the frame-level path: no Task, no Queue);
* ``wshub async for``: ``async for message in ws: await ws.send(...)``, one Task per
  connection (the friendly API);
* ``picows``: picows' ``ws_connect`` with a ``WSListener`` whose ``on_ws_frame`` sends
  the next frame (its fastest, frame-level path), from the harness's picows venv.

All run on uvloop. Reported: messages per second (round trips completed) and client
CPU microseconds per message (user + system of the client process, over the measured
window). Reps are interleaved (rep 1 of every client, then rep 2, ...) and each cell is
the median, so that drifts of a shared machine hit every client alike.

Usage::

    python benchmarks/client_bench.py --seconds 3 --reps 3 [--out table.md]
    python benchmarks/client_bench.py --clients wshub,picows --scenarios 1c_32
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cpu_cost import free_port, wait_listening  # beside this file

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SHARED", ROOT.parent / "shared"))
WORK = Path(os.environ.get("BENCH_WORK", "/tmp/bench-work"))
PICOWS_PYTHON = WORK / "venv-picows" / "bin" / "python"

#: scenario id -> (connections, message size in bytes)
SCENARIOS = {
    "1c_32": (1, 32),
    "1c_16k": (1, 16384),
    "100c_32": (100, 32),
    "100c_16k": (100, 16384),
}
LABELS = {
    "1c_32": "ping-pong 1c 32B",
    "1c_16k": "ping-pong 1c 16KiB",
    "100c_32": "ping-pong 100c 32B",
    "100c_16k": "ping-pong 100c 16KiB",
}
CLIENTS = {
    "wshub": "wshub (on_message + send_nowait)",
    "wshub-async-for": "wshub (async for + await send)",
    "picows": "picows (WSListener.on_ws_frame)",
}


# -- the workers: one client in its own process ------------------------------------------------


class _Meter:
    """Counts echoes and takes the measured window: ``warmup`` s, then ``seconds`` s."""

    def __init__(self, size: int, warmup: float, seconds: float) -> None:
        self.size = size
        self.count = 0
        self.errors = 0
        self.warmup = warmup
        self.seconds = seconds
        self.start: tuple[int, float, float] | None = None
        self.end: tuple[int, float, float] | None = None

    def snapshot(self) -> tuple[int, float, float]:
        return self.count, time.monotonic(), time.process_time()

    async def run(self) -> dict[str, Any]:
        await asyncio.sleep(self.warmup)
        self.start = self.snapshot()
        await asyncio.sleep(self.seconds)
        self.end = self.snapshot()
        count = self.end[0] - self.start[0]
        wall = self.end[1] - self.start[1]
        cpu = self.end[2] - self.start[2]
        return {
            "msgs": count,
            "msgs_per_s": count / wall,
            "cpu_us_per_msg": cpu / max(count, 1) * 1e6,
            "cpu_pct": cpu / wall * 100,
            "errors": self.errors,
        }


async def _wshub_callback(url: str, conns: int, meter: _Meter) -> dict[str, Any]:
    import wshub

    payload = b"x" * meter.size
    size = meter.size

    def on_message(ws: wshub.ClientConnection, message: str | bytes) -> None:
        if len(message) != size:
            meter.errors += 1
        meter.count += 1
        ws.send_nowait(payload)

    clients = [
        await wshub.connect(url, on_message=on_message, compression=None, ping_interval=None)
        for _ in range(conns)
    ]
    for ws in clients:
        ws.send_nowait(payload)
    result = await meter.run()
    for ws in clients:
        ws.transport.abort()  # type: ignore[union-attr]
    return result


async def _wshub_async_for(url: str, conns: int, meter: _Meter) -> dict[str, Any]:
    import wshub

    payload = b"x" * meter.size
    size = meter.size

    async def play(ws: wshub.ClientConnection) -> None:
        await ws.send(payload)
        async for message in ws:
            if len(message) != size:
                meter.errors += 1
            meter.count += 1
            await ws.send(payload)

    clients = [await wshub.connect(url, compression=None, ping_interval=None) for _ in range(conns)]
    tasks = [asyncio.ensure_future(play(ws)) for ws in clients]
    result = await meter.run()
    for task in tasks:
        task.cancel()
    for ws in clients:
        ws.transport.abort()  # type: ignore[union-attr]
    return result


async def _picows(url: str, conns: int, meter: _Meter) -> dict[str, Any]:
    from picows import (  # type: ignore[import-not-found]  # in the harness's picows venv
        WSFrame,
        WSListener,
        WSMsgType,
        WSTransport,
        ws_connect,
    )

    payload = b"x" * meter.size
    size = meter.size

    class Player(WSListener):  # type: ignore[misc]
        def on_ws_connected(self, transport: WSTransport) -> None:
            transport.send(WSMsgType.BINARY, payload)

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type != WSMsgType.BINARY:
                return
            if len(frame.get_payload_as_memoryview()) != size:
                meter.errors += 1
            meter.count += 1
            transport.send(WSMsgType.BINARY, payload)

    transports = [(await ws_connect(Player, url))[0] for _ in range(conns)]
    result = await meter.run()
    for transport in transports:
        transport.disconnect(graceful=False)
    return result


WORKERS: dict[str, Callable[[str, int, _Meter], Any]] = {
    "wshub": _wshub_callback,
    "wshub-async-for": _wshub_async_for,
    "picows": _picows,
}


def worker(client: str, port: int, conns: int, size: int, warmup: float, seconds: float) -> None:
    """Run one client for one scenario and print its result as one JSON line."""
    import uvloop

    meter = _Meter(size, warmup, seconds)
    url = f"ws://127.0.0.1:{port}/"
    result = uvloop.run(WORKERS[client](url, conns, meter))
    print(json.dumps(result), flush=True)


# -- the driver ----------------------------------------------------------------------------------


def build_c_echo(given: str | None) -> str:
    """The C echo server: ``given``, or built from the harness's source into a temp folder."""
    if given:
        return given
    source = SHARED / "bench" / "servers" / "c_echo.c"
    binary = Path(tempfile.mkdtemp(prefix="wshub-client-bench-")) / "c_echo"
    subprocess.run(["gcc", "-O2", "-o", str(binary), str(source)], check=True)
    return str(binary)


def python_for(client: str) -> str:
    return str(PICOWS_PYTHON) if client == "picows" else sys.executable


def run_one(client: str, port: int, scenario: str, warmup: float, seconds: float) -> dict[str, Any]:
    conns, size = SCENARIOS[scenario]
    argv = [
        "taskset", "-c", "0", python_for(client), __file__, "--worker", client,
        "--port", str(port), "--conns", str(conns), "--size", str(size),
        "--warmup", str(warmup), "--seconds", str(seconds),
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=warmup + seconds + 60)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"error": done.stderr.strip()[-400:] or f"exit status {done.returncode}"}
    result: dict[str, Any] = json.loads(lines[-1])
    if result["errors"] or not result["msgs"]:
        result["error"] = f"{result['errors']} wrong echoes, {result['msgs']} echoes"
    return result


def median(runs: list[dict[str, Any]], key: str) -> float | None:
    """The median of ``key`` over the runs that did not fail."""
    values = [r[key] for r in runs if "error" not in r]
    return statistics.median(values) if values else None


def medians(
    results: dict[str, dict[str, list[dict[str, Any]]]],
) -> dict[str, dict[str, dict[str, float | None]]]:
    """client -> scenario -> median msg/s and CPU µs/msg (``None`` where every run failed)."""
    return {
        client: {
            scenario: {
                "msgs_per_s": median(runs, "msgs_per_s"),
                "cpu_us_per_msg": median(runs, "cpu_us_per_msg"),
            }
            for scenario, runs in cells.items()
        }
        for client, cells in results.items()
    }


def table(results: dict[str, dict[str, list[dict[str, Any]]]], scenarios: list[str]) -> str:
    """The markdown table: msg/s, client CPU µs/msg and the ratio to picows, per cell."""
    header = ["client", *[f"{LABELS[s]}: msg/s, CPU µs/msg" for s in scenarios]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for client, cells in results.items():
        row = [CLIENTS[client]]
        for scenario in scenarios:
            runs = cells.get(scenario, [])
            rate = median(runs, "msgs_per_s")
            cost = median(runs, "cpu_us_per_msg")
            if rate is None or cost is None:
                row.append("failed")
                continue
            cell = f"{rate:,.0f}, {cost:.1f} µs"
            base = median(results.get("picows", {}).get(scenario, []), "msgs_per_s")
            if base and client != "picows":
                cell += f" ({rate / base:.2f}x)"
            row.append(cell)
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default=",".join(CLIENTS))
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--c-echo", help="a built c_echo (default: build it with gcc -O2)")
    parser.add_argument("--out", help="also write the markdown table to this file")
    parser.add_argument("--json", help="also write the medians as JSON (for report.py)")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--conns", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.port, args.conns, args.size, args.warmup, args.seconds)
        return

    clients = args.clients.split(",")
    scenarios = args.scenarios.split(",")
    if "picows" in clients and not PICOWS_PYTHON.exists():
        print(f"client_bench: no picows venv at {PICOWS_PYTHON}; run shared/bench/setup.sh")
        clients.remove("picows")
    c_echo = build_c_echo(args.c_echo)
    port = free_port()
    server = subprocess.Popen(
        ["taskset", "-c", "1", c_echo, str(port), "echo"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    results: dict[str, dict[str, list[dict[str, Any]]]] = {c: {} for c in clients}
    try:
        wait_listening(port)
        for rep in range(args.reps):
            for scenario in scenarios:
                for client in clients:
                    r = run_one(client, port, scenario, args.warmup, args.seconds)
                    results[client].setdefault(scenario, []).append(r)
                    shown = r.get("error") or (
                        f"{r['msgs_per_s']:10,.0f} msg/s {r['cpu_us_per_msg']:6.1f} µs CPU/msg "
                        f"(client CPU {r['cpu_pct']:.0f}%)"
                    )
                    print(f"rep {rep + 1} {scenario:9} {client:16} {shown}", file=sys.stderr)
    finally:
        server.terminate()
        server.wait(timeout=10)
        if not args.c_echo:
            shutil.rmtree(Path(c_echo).parent, ignore_errors=True)
    text = (
        "### Clients: echo ping-pong against the C echo server\n\n"
        f"Median of {args.reps} interleaved runs of {args.seconds:g} s after {args.warmup:g} s "
        "warm-up; client pinned to CPU 0, c_echo to CPU 1, uvloop for every client; "
        "(x) = messages/s relative to picows' client.\n\n" + table(results, scenarios) + "\n"
    )
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps(medians(results), indent=1) + "\n")


if __name__ == "__main__":
    main()
