"""CPU time per message of a server process, for profiling work on a busy machine.

Throughput numbers on a shared 2-core VM move with whatever else runs; the CPU time the
server process spends per message moves much less. This starts a server (pinned to one
core), drives it with the shared harness's ``wsload`` for a few seconds, and
reports the server's user+system CPU microseconds per message (from /proc/PID/stat).

Usage::

    python benchmarks/cpu_cost.py --wsload /tmp/bench-out/wsload --servers wshub,picows+uvloop \
        --scenario pp100_32 --seconds 3
    # connect storm: server CPU per handshake, handshakes/s, RSS growth per held connection
    python benchmarks/cpu_cost.py --wsload /tmp/bench-out/wsload --scenario storm10k --reps 3
    # RSS per idle connection that negotiated permessage-deflate (wsload never offers it)
    python benchmarks/cpu_cost.py --servers wshub-deflate --idle-memory 2000
    # ... after one message each (the compressor exists), then after 3.5 s of answering
    # 1 s keepalive pings (the compressor is given back; glibc keeps the freed memory for
    # reuse, so RSS shows it only when new connections grow less)
    python benchmarks/cpu_cost.py --servers wshub-deflate --idle-memory 2000 --messages 1
    python benchmarks/cpu_cost.py --servers wshub-deflate-ping1 --idle-memory 2000 \
        --messages 1 --quiet 3.5
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SHARED", ROOT.parent / "shared"))
WORK = os.environ.get("BENCH_WORK", "/tmp/bench-work")
SRV = SHARED / "bench" / "servers"
SERVERS = {
    "wshub": f"{sys.executable} {ROOT}/benchmarks/server.py --port $PORT --app $APP",
    "wshub-pure": f"env WSHUB_NO_EXTENSIONS=1 {sys.executable} {ROOT}/benchmarks/server.py "
    "--port $PORT --app $APP",
    "picows+uvloop": f"{WORK}/venv-picows/bin/python {SRV}/picows_server.py "
    "--port $PORT --app $APP",
    "aiohttp": f"{WORK}/venv-aiohttp/bin/python {SRV}/aiohttp_server.py --port $PORT --app $APP",
    "websockets": f"{WORK}/venv-websockets/bin/python {SRV}/websockets_server.py "
    "--port $PORT --app $APP",
    # The echo server with permessage-deflate enabled (wsload never offers it, so this measures
    # what merely enabling compression costs a connection).
    "wshub-deflate": f"{sys.executable} {ROOT}/benchmarks/cpu_cost.py --serve $PORT "
    "--compression deflate",
    # The same with a 1 s keepalive, to see a quiet connection give back its compressor
    # within seconds (at the default 20 s it takes 20 to 40 s).
    "wshub-deflate-ping1": f"{sys.executable} {ROOT}/benchmarks/cpu_cost.py --serve $PORT "
    "--compression deflate --ping-interval 1",
}
SCENARIOS = {
    "pp1_32": "-m echo -c 1 -s 32 -w 1",
    "pp1_16k": "-m echo -c 1 -s 16384 -w 1",
    "pp100_32": "-m echo -c 100 -s 32 -w 1",
    "pp100_16k": "-m echo -c 100 -s 16384 -w 1",
    "pipe10_32": "-m echo -c 10 -s 32 -w 16",
    "bcast1000_64": "-m bcast -c 1000 -s 64 -w 2",
    # The harness's storm10k: CPU per handshake, and RSS growth per held connection.
    "storm10k": "-m storm -c 10000 -w 64 -S 1 -L 0.5",
    "storm5k": "-m storm -c 5000 -w 64 -S 0.5 -L 0.2",
}


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU of a process and its reaped children, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    user = int(fields[11]) + int(fields[13])
    system = int(fields[12]) + int(fields[14])
    return user / tick, system / tick


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def measure(name: str, scenario: str, seconds: float, wsload: str) -> dict[str, float]:
    """Run one scenario against one server; CPU per message (or per handshake) and rates."""
    port = free_port()
    app = "broadcast" if scenario.startswith("bcast") else "echo"
    cmd = SERVERS[name].replace("$PORT", str(port)).replace("$APP", app)
    proc = subprocess.Popen(
        ["taskset", "-c", "1", "bash", "-c", f"exec {cmd}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "BENCH_WORK": WORK},
    )
    storm = scenario.startswith("storm")
    try:
        wait_listening(port)
        before = cpu_split(proc.pid)
        t0 = time.monotonic()
        argv = ["taskset", "-c", "0", wsload, "-p", str(port), *shlex.split(SCENARIOS[scenario])]
        argv += ["-P", str(proc.pid), "-T", "60"] if storm else ["-d", str(seconds), "-W", "0"]
        out = subprocess.run([*argv, "-q"], capture_output=True, text=True, check=False).stdout
        elapsed = time.monotonic() - t0
        after = cpu_split(proc.pid)
        user = after[0] - before[0]
        system = after[1] - before[1]
        result = json.loads(out)
        if storm:
            count = result.get("opened") or 1
            if count != result.get("conns"):
                print(f"  {name}: storm opened {count}: {out[:300]}", file=sys.stderr)
            return {
                "cpu_us": (user + system) / count * 1e6,
                "user_us": user / count * 1e6,
                "rate": result["conn_per_s"],
                "rss_kib": result["rss_per_conn_kb"],
                "p50_us": result["hs_lat_us"]["p50"],
            }
        count = result.get("msgs") or result.get("deliveries") or 1
        if not result.get("ok", False):
            print(f"  {name}: wsload reported a problem: {out[:300]}", file=sys.stderr)
        return {
            "cpu_us": (user + system) / count * 1e6,
            "user_us": user / count * 1e6,
            "rate": count / elapsed,
        }
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def rss_kib(pid: int) -> int:
    """VmRSS of a process in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


_OFFER = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
)


def answer_pings(socks: list[socket.socket], seconds: float) -> None:
    """Play a quiet client for ``seconds``: answer every ping with a pong, send nothing else."""
    buffers = {s: b"" for s in socks}
    with selectors.DefaultSelector() as selector:
        for s in socks:
            s.setblocking(False)
            selector.register(s, selectors.EVENT_READ)
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            for key, _ in selector.select(left):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                data = buffers[sock] + sock.recv(65536)
                # Server frames are unmasked; a ping's payload is at most 125 bytes.
                while len(data) >= 2 and len(data) >= 2 + (data[1] & 0x7F):
                    size = data[1] & 0x7F
                    if data[0] & 0x0F == 0x9:
                        pong = bytes([0x8A, 0x80 | size]) + b"\0\0\0\0" + data[2 : 2 + size]
                        sock.sendall(pong)
                    data = data[2 + size :]
                buffers[sock] = data
        for s in socks:
            s.setblocking(True)


def idle_memory(name: str, conns: int, messages: int, quiet: float = 0.0) -> dict[str, float]:
    """RSS growth per idle connection that negotiated permessage-deflate (wsload never offers it).

    Opens ``conns`` connections with blocking sockets, optionally sends each ``messages``
    small compressed-able messages (so that zlib streams exist when context takeover keeps
    them), optionally stays ``quiet`` seconds answering the server's keepalive pings, waits
    a moment and reads the server's VmRSS.
    """
    port = free_port()
    cmd = SERVERS[name].replace("$PORT", str(port)).replace("$APP", "echo")
    proc = subprocess.Popen(["bash", "-c", f"exec {cmd}"], env={**os.environ, "BENCH_WORK": WORK})
    socks: list[socket.socket] = []
    try:
        wait_listening(port)
        time.sleep(0.3)
        before = rss_kib(proc.pid)
        negotiated = 0
        for _ in range(conns):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(_OFFER)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = s.recv(4096)
                if not chunk:
                    raise RuntimeError("server closed during the handshake")
                head += chunk
            negotiated += b"permessage-deflate" in head.lower()
            for _ in range(messages):
                # an uncompressed masked binary frame of 32 bytes, all-zero mask
                s.sendall(b"\x82\xa0\x00\x00\x00\x00" + b"x" * 32)
                s.recv(4096)
            socks.append(s)
        if quiet:
            answer_pings(socks, quiet)
        time.sleep(1.0)
        after = rss_kib(proc.pid)
        return {"rss_kib": (after - before) / conns, "negotiated": negotiated}
    finally:
        for s in socks:
            s.close()
        proc.terminate()
        proc.wait(timeout=10)


def serve(port: int, compression: str | None, ping_interval: float) -> None:
    """The echo app of benchmarks/server.py, with a choice of compression and keepalive."""
    import wshub

    async def main() -> None:
        async with wshub.serve(
            None,
            "127.0.0.1",
            port,
            on_message=lambda ws, m: ws.send_nowait(m),
            compression=compression,
            ping_interval=ping_interval,
        ) as server:
            await server.serve_forever()

    wshub.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wsload")
    parser.add_argument("--servers", default="wshub,picows+uvloop,aiohttp")
    parser.add_argument("--scenario", default="pp100_32", choices=sorted(SCENARIOS))
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--reps", type=int, default=1, help="interleaved runs of every server")
    parser.add_argument(
        "--idle-memory",
        type=int,
        metavar="CONNS",
        help="measure RSS per idle connection offering permessage-deflate",
    )
    parser.add_argument(
        "--messages",
        type=int,
        default=0,
        help="with --idle-memory: messages echoed on each connection first",
    )
    parser.add_argument(
        "--quiet",
        type=float,
        default=0.0,
        help="with --idle-memory: seconds to stay quiet (answering pings) before measuring",
    )
    parser.add_argument(
        "--json", help="with --idle-memory: write the median KiB per connection as JSON"
    )
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--compression", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--ping-interval", type=float, default=20.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.compression, args.ping_interval)
        return
    idle: dict[str, list[float]] = {}
    for _ in range(args.reps):
        for name in args.servers.split(","):
            if args.idle_memory:
                r = idle_memory(name, args.idle_memory, args.messages, args.quiet)
                idle.setdefault(name, []).append(r["rss_kib"])
                print(
                    f"idle {args.idle_memory:6} {name:15} {r['rss_kib']:6.1f} KiB/conn "
                    f"(deflate negotiated on {r['negotiated']:.0f})",
                    flush=True,
                )
                continue
            if not args.wsload:
                parser.error("--wsload is required")
            r = measure(name, args.scenario, args.seconds, args.wsload)
            if args.scenario.startswith("storm"):
                print(
                    f"{args.scenario:13} {name:15} {r['cpu_us']:7.1f} µs CPU/handshake "
                    f"(user {r['user_us']:5.1f}) "
                    f"{r['rate']:8,.0f} conn/s  p50 {r['p50_us']:7,.0f} µs  "
                    f"{r['rss_kib']:5.1f} KiB/conn",
                    flush=True,
                )
            else:
                print(
                    f"{args.scenario:13} {name:15} {r['cpu_us']:7.2f} µs CPU/msg "
                    f"(user {r['user_us']:5.2f}) "
                    f"{r['rate']:10,.0f} msg/s",
                    flush=True,
                )
    if args.json and idle:
        suffix = "-quiet" if args.quiet else "-active" if args.messages else ""
        out = {
            name + suffix: {"rss_kib": sorted(v)[len(v) // 2], "conns": args.idle_memory}
            for name, v in idle.items()
        }
        path = Path(args.json)
        if path.exists():  # one file for the idle and the active measurement
            out = {**json.loads(path.read_text()), **out}
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
