"""Memory and set-up CPU of subscribed hub connections: where a session's bytes go.

Starts ``wshub serve`` (the hub harness's flags: ``--ephemeral --allow-anonymous --no-chat
--command-rate none --publish-rate none``, so the demo's ``chat`` namespace) in a child
process, opens N raw TCP connections to it from this process, and on each one does the
WebSocket handshake, the ``connect`` command and a ``subscribe`` to a personal channel
``chat:u<i>``, then leaves it open. The client side is plain blocking sockets, one
connection at a time, so that it costs the server as little as possible and the numbers are
the server's.

Reported:

- RSS KiB per subscribed connection: the server's VmRSS after the last subscription minus
  before the first, divided by N (includes allocator slack, excludes kernel socket buffers);
- server CPU µs per connect+subscribe: user+sys of the server process over the set-up,
  divided by N (robust on a shared machine, unlike the wall rate, which is also shown);
- with ``--tracemalloc``: the server traces Python allocations, and the top allocation sites
  of the difference between a snapshot before and after, in bytes per connection. A
  tracemalloc run is several times slower, so its CPU and rate numbers are not comparable.

Usage: ``python benchmarks/session_memory.py [--conns 10000] [--tracemalloc] [--top 25]``
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import gc
import os
import pstats
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

SERVE_FLAGS = [
    "--host",
    "127.0.0.1",
    "--ephemeral",
    "--allow-anonymous",
    "--no-chat",
    "--command-rate",
    "none",
    "--publish-rate",
    "none",
]


def raise_nofile() -> int:
    """Raise the open-file soft limit to the hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def rss_kib(pid: int) -> int:
    """VmRSS of a process in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """user+sys CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def frame(text: str) -> bytes:
    """A masked text frame (client to server), payload under 126 bytes."""
    payload = text.encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + masked


def open_session(port: int, index: int) -> socket.socket:
    """Handshake, connect and subscribe to ``chat:u<index>``; return the open socket."""
    sock = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Protocol: wshub.v1\r\n\r\n"
        ).encode()
    )
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError(f"connection {index}: closed during the handshake")
        data += chunk
    if not data.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"connection {index}: {data.splitlines()[0]!r}")
    data = data.split(b"\r\n\r\n", 1)[1]
    sock.sendall(
        frame('{"id":1,"cmd":"connect"}')
        + frame(f'{{"id":2,"cmd":"subscribe","channel":"chat:u{index}"}}')
    )
    while b'"id":2,"result"' not in data:
        chunk = sock.recv(65536)
        if not chunk or b'"error"' in chunk:
            raise RuntimeError(f"connection {index}: {(data + chunk)[:200]!r}")
        data += chunk
    return sock


def serve(snapshot_dir: str, trace: int, profile: bool = False) -> None:
    """The child: ``wshub serve`` with a SIGUSR1 handler that dumps a tracemalloc snapshot
    (and, with ``profile``, profiles between the first and the second signal)."""
    from wshub.cli import main

    if trace:
        tracemalloc.start(trace)
    profiler = cProfile.Profile() if profile else None
    count = 0
    gc_time = [0.0, 0.0, 0.0]  # seconds in collections of each generation
    gc_start = 0.0

    def gc_timer(phase: str, info: dict[str, int]) -> None:
        nonlocal gc_start
        if phase == "start":
            gc_start = time.process_time()
        else:
            gc_time[info["generation"]] += time.process_time() - gc_start

    gc.callbacks.append(gc_timer)

    def dump(signum: int, frame: object) -> None:
        nonlocal count
        gc.collect()
        path = Path(snapshot_dir) / f"snap{count}"
        if trace:
            tracemalloc.take_snapshot().dump(str(path))
        if profiler is not None:
            if count == 0:
                profiler.enable()
            else:
                profiler.disable()
                profiler.dump_stats(str(path.with_suffix(".prof")))
        path.with_suffix(".gc").write_text(" ".join(map(str, gc_time)))
        path.with_suffix(".done").write_text(str(rss_kib(os.getpid())))
        count += 1

    signal.signal(signal.SIGUSR1, dump)
    port = os.environ["SESSION_MEMORY_PORT"]
    sys.exit(main(["serve", "--port", port, *SERVE_FLAGS]))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def snapshot(proc: subprocess.Popen[bytes], folder: Path, n: int) -> int:
    """Ask the child for snapshot ``n``; return its RSS (KiB) at that moment."""
    proc.send_signal(signal.SIGUSR1)
    done = folder / f"snap{n}.done"
    deadline = time.monotonic() + 120
    while not done.exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError("the server did not answer the snapshot signal")
        time.sleep(0.05)
    time.sleep(0.05)  # the file is written in one call; let it land
    return int(done.read_text())


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--conns", type=int, default=10_000)
    parser.add_argument(
        "--tracemalloc",
        type=int,
        nargs="?",
        const=1,
        default=0,
        metavar="FRAMES",
        help="trace the server's allocations, grouped by the innermost FRAMES frames (1)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the server during the set-up"
    )
    parser.add_argument("--top", type=int, default=25, help="allocation sites to show")
    args = parser.parse_args(argv)
    hard = raise_nofile()
    if hard < args.conns + 100:
        print(
            f"session_memory: the open-file limit {hard} is too low for {args.conns}",
            file=sys.stderr,
        )
        return 2
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        env = dict(os.environ, SESSION_MEMORY_PORT=str(port))
        code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        code += (
            f"import session_memory as m; m.serve({tmp!r}, {args.tracemalloc!r}, {args.profile!r})"
        )
        proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE)
        try:
            assert proc.stdout is not None
            while b"hub on ws" not in proc.stdout.readline():
                if proc.poll() is not None:
                    raise RuntimeError("the server did not start")
            # one connection first, so that lazily built module state is in the "before"
            warm = open_session(port, -1)
            rss0 = snapshot(proc, folder, 0)
            cpu0, t0 = cpu_seconds(proc.pid), time.perf_counter()
            socks = [open_session(port, i) for i in range(args.conns)]
            cpu1, t1 = cpu_seconds(proc.pid), time.perf_counter()
            rss1 = snapshot(proc, folder, 1)
            n = args.conns
            print(f"{n} subscribed connections (wshub serve, chat namespace, 1 channel each)")
            print(f"RSS per connection: {(rss1 - rss0) / n:.2f} KiB ({rss0} -> {rss1} KiB)")
            print(f"server CPU per connect+subscribe: {(cpu1 - cpu0) / n * 1e6:.0f} us")
            print(f"wall rate (one connection at a time): {n / (t1 - t0):,.0f} /s")
            gc0 = [float(x) for x in (folder / "snap0.gc").read_text().split()]
            gc1 = [float(x) for x in (folder / "snap1.gc").read_text().split()]
            spent = [(b - a) / n * 1e6 for a, b in zip(gc0, gc1, strict=True)]
            print(
                "of which garbage collection: "
                + ", ".join(f"gen{g} {us:.1f} us" for g, us in enumerate(spent))
            )
            if args.tracemalloc:
                before = tracemalloc.Snapshot.load(str(folder / "snap0"))
                after = tracemalloc.Snapshot.load(str(folder / "snap1"))
                group = "traceback" if args.tracemalloc > 1 else "lineno"
                stats = after.compare_to(before, group)
                total = sum(s.size_diff for s in stats)
                print(f"traced Python allocations per connection: {total / n:,.0f} B")
                for stat in stats[: args.top]:
                    where = " <- ".join(
                        f"{f.filename.split('/src/')[-1].split('/lib/')[-1]}:{f.lineno}"
                        for f in reversed(stat.traceback)
                    )
                    print(
                        f"  {stat.size_diff / n:8.1f} B  {stat.count_diff / n:6.2f} blocks  {where}"
                    )
            if args.profile:
                profile = pstats.Stats(str(folder / "snap1.prof"))
                profile.sort_stats("tottime").print_stats(args.top)
            for sock in [warm, *socks]:
                sock.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
