"""Set-up of one big chat room with join/leave on: connections/s, server CPU, pushes sent.

N clients connect, send ``connect`` and subscribe to one room of a ``wshub serve`` hub,
through real sockets on loopback, as fast as ``hubload`` (the C load generator of
``../shared/hubbench``, ``-m idle -c N -r 1``) sets them up (64 at a time). Run once per
``join_leave_interval`` to compare per-event ``join``/``leave`` pushes (``none``) with
``presence_diff`` batching, and ``off`` (no join/leave at all, presence still kept)::

    python benchmarks/room_setup.py --subs 1000 --interval none --interval 0.5 --interval off

Reported per run: hubload's connect+subscribe rate; the hub process's CPU seconds during
set-up (utime + stime from ``/proc/<pid>/stat``) per connection, which other load on a
shared machine does not inflate the way it does wall time; and the join/leave traffic,
from the hub's own counters (``GET /api/stats``): pushes sent per event or diffs, and
``deliveries`` (pushes handed to subscribers' connections; nothing else is published, so
these are all join/leave or diff pushes). Then the room is closed by hubload (all leave)
and the counters are read again.

Needs gcc (hubload is built from ``../shared/hubbench/hubload.c`` into a temporary
directory) and Linux (``/proc``). The server is pinned to CPU 1 and hubload to CPU 0 when
``taskset`` is there.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

# ``../shared/hubbench`` next to the checkout (or next to the worktrees' folder).
_ROOT = Path(__file__).resolve().parents[1]
HUBBENCH = next(
    (
        p
        for p in (_ROOT.parent / "shared/hubbench", _ROOT.parents[1] / "shared/hubbench")
        if p.is_dir()
    ),
    _ROOT.parent / "shared/hubbench",
)
API_KEY = "room-setup-bench"
CONFIG = """\
[auth]
allow_anonymous = true
anonymous_permissions = ["chat:*:spr"]

[limits]
command_rate = "none"
publish_rate = "none"

[[namespaces]]
name = "chat"
history_size = 100
presence = true
join_leave = {join_leave}
join_leave_interval = {interval}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stats(port: int) -> dict[str, int]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/stats", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        result: dict[str, int] = json.load(response)
        return result


def pinned(cpu: int, argv: list[str]) -> list[str]:
    return ["taskset", "-c", str(cpu), *argv] if shutil.which("taskset") else argv


def run_once(hubload: Path, subs: int, interval: str, workdir: Path) -> dict[str, Any]:
    config = workdir / f"room-{interval}.toml"
    # "off": no join/leave at all (presence still kept), the cost of the rest of set-up.
    value = '"none"' if interval in ("none", "off") else interval
    join_leave = "false" if interval == "off" else "true"
    config.write_text(CONFIG.format(interval=value, join_leave=join_leave))
    port = free_port()
    wshub = Path(sys.executable).with_name("wshub")
    argv = [str(wshub), "serve", "--config", str(config), "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--ephemeral", "--no-chat", "--api-key", API_KEY]
    server = subprocess.Popen(pinned(1, argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                before = stats(port)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the hub did not start") from None
                time.sleep(0.1)
        cpu0 = cpu_seconds(server.pid)
        script = HUBBENCH / "protocols" / "wshub.txt"
        load = [str(hubload), "-p", str(port), "-f", str(script), "-m", "idle"]
        load += ["-c", str(subs), "-r", "1", "-j", "64", "-T", "90", "-S", "1", "-L", "0.5"]
        load += ["-P", str(server.pid)]
        out = subprocess.run(pinned(0, load), capture_output=True, text=True, timeout=300)
        cpu_setup = cpu_seconds(server.pid) - cpu0  # includes the settle and hold seconds
        time.sleep(2 * float(interval) if interval not in ("none", "off") else 0.5)
        after = stats(port)
    finally:
        server.terminate()
        server.wait(timeout=20)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "interval": interval,
        "subs": subs,
        "ok": report["ok"],
        "conn_per_s": report["conn_per_s"],
        "setup_lat_ms_p50_p99": [
            round(report["setup_lat_us"][key] / 1000, 1) for key in ("p50", "p99")
        ],
        "server_cpu_s": round(cpu_setup, 3),
        "server_cpu_us_per_conn": round(cpu_setup / subs * 1e6, 1),
        "join_leave_pushes": after["join_leave_pushes"] - before["join_leave_pushes"],
        "presence_diffs": after["presence_diffs"] - before["presence_diffs"],
        "deliveries": after["deliveries"] - before["deliveries"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subs", type=int, default=1000)
    parser.add_argument("--interval", action="append", help="join_leave_interval (or none)")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        hubload = workdir / "hubload"
        subprocess.run(["gcc", "-O2", "-o", str(hubload), str(HUBBENCH / "hubload.c")], check=True)
        for interval in args.interval or ["none", "0.5"]:
            for _ in range(args.reps):
                print(json.dumps(run_once(hubload, args.subs, interval, workdir)), flush=True)


if __name__ == "__main__":
    main()
