"""RSS growth of a wshub server under hostile peers: what one peer can make it hold.

Each scenario starts a fresh server process, connects one peer that misbehaves, and
reports how much the server's resident memory grew (peak ``VmHWM`` during the attack minus
``VmRSS`` once the peer has connected, from /proc) and how many bytes the peer got through
(a peer that the server stops reading from blocks on its TCP window; that is the point).

Scenarios:

* ``flood-callback``: an echo with a plain ``on_message`` that answers with
  ``send_nowait``; the peer sends 100 MiB of 64 KiB binary messages and never reads.
* ``flood-coroutine``: an ``async def on_message`` that takes a loop iteration per
  message; the peer sends 100 MiB of 1 KiB messages without pause.
* ``deflate-bomb``: an echo with permessage-deflate and ``max_size`` 16 MiB; the peer
  sends one compressed message that inflates to 200 MiB (refused with 1009).

Usage::

    python benchmarks/memory_peers.py                     # every scenario, this tree
    python benchmarks/memory_peers.py --src /tmp/old/src  # the same against another tree
    python benchmarks/memory_peers.py --scenarios flood-callback --json out.json

``--src`` puts another source tree first on the server's ``PYTHONPATH`` (a ``git archive``
of an older commit, with the compiled speedup copied in), to measure "before".
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import select
import socket
import subprocess
import sys
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from wshub.protocol import Frame, Opcode

MiB = 2**20
SCENARIOS = ("flood-callback", "flood-coroutine", "deflate-bomb")
#: A peer whose socket stays unwritable this long is taken to be blocked for good.
STALL = 2.0


# -- the server (a child process) ---------------------------------------------------------------


def serve(scenario: str) -> None:
    """Run the scenario's server on a free port; print the port, then serve until killed."""
    import wshub

    async def main() -> None:
        options: dict[str, Any] = {"ping_interval": None, "compression": None}
        if scenario == "flood-coroutine":

            async def on_message(ws: wshub.ServerConnection, message: str | bytes) -> None:
                await asyncio.sleep(0)

            options["on_message"] = on_message
        else:

            def echo(ws: wshub.ServerConnection, message: str | bytes) -> None:
                ws.send_nowait(message)

            options["on_message"] = echo
        if scenario == "deflate-bomb":
            options.update(compression="deflate", max_size=16 * MiB)
        server = await wshub.serve(None, "127.0.0.1", 0, **options)
        print(server.port, wshub.__file__, flush=True)
        await asyncio.Future()

    wshub.run(main())


# -- the peer (this process) --------------------------------------------------------------------


def handshake(port: int, extensions: str | None = None) -> tuple[socket.socket, str]:
    """Open a WebSocket connection by hand; return the socket and the response head."""
    sock = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    head = (
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    )
    if extensions:
        head += f"Sec-WebSocket-Extensions: {extensions}\r\n"
    sock.sendall((head + "\r\n").encode())
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError("the server closed the connection during the handshake")
        response += chunk
    status = response.split(b"\r\n", 1)[0]
    if b" 101 " not in status + b" ":
        raise RuntimeError(f"handshake refused: {status!r}")
    return sock, response.decode("latin-1")


def flood(sock: socket.socket, frame: bytes, total: int) -> int:
    """Send ``frame`` over and over, ``total`` bytes at most, never reading; stop when the
    socket has stayed unwritable for ``STALL`` seconds. Returns the bytes sent."""
    chunk = frame * max(1, MiB // len(frame))
    sock.setblocking(False)
    sent = 0
    view = memoryview(chunk)
    offset = 0
    while sent < total:
        _, writable, _ = select.select([], [sock], [], STALL)
        if not writable:
            break
        try:
            n = sock.send(view[offset : offset + total - sent])
        except BlockingIOError:
            continue
        sent += n
        offset = (offset + n) % len(chunk)
    return sent


def bomb(sock: socket.socket, inflated: int) -> tuple[int, int | None]:
    """Send one permessage-deflate message that inflates to ``inflated`` zero bytes.

    Returns the compressed size and the close code the server answered with (``None``
    if the connection ended without a close frame).
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    parts = [compressor.compress(bytes(MiB)) for _ in range(inflated // MiB)]
    parts.append(compressor.flush(zlib.Z_SYNC_FLUSH))
    payload = b"".join(parts)
    assert payload.endswith(b"\x00\x00\xff\xff")
    payload = payload[:-4]  # RFC 7692 §7.2.1
    sock.sendall(Frame(Opcode.BINARY, payload, rsv1=True).serialize(os.urandom(4)))
    sock.settimeout(30)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            # An unmasked close frame from the server: 0x88, length, code.
            at = data.find(b"\x88")
            if at >= 0 and len(data) >= at + 4:
                return len(payload), int.from_bytes(data[at + 2 : at + 4], "big")
    except (TimeoutError, ConnectionResetError):
        pass
    return len(payload), None


def memory(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` (peak RSS) of a process, in bytes."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) * 1024
    return fields


@dataclass(frozen=True)
class Result:
    """One scenario's outcome."""

    scenario: str
    offered: int  # bytes the peer tried to send (inflated size for the bomb)
    sent: int  # bytes the peer got through
    rss_growth: int  # peak RSS during the attack minus RSS after the handshake
    rss_end: int  # RSS growth still held when the peer stopped
    close_code: int | None
    seconds: float
    wshub: str


def run(scenario: str, src: str | None) -> Result:
    """Start a server, attack it as ``scenario`` says, measure, stop it."""
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", scenario],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port_text, where = proc.stdout.readline().split(maxsplit=1)
        port = int(port_text)
        extensions = "permessage-deflate" if scenario == "deflate-bomb" else None
        sock, response = handshake(port, extensions)
        time.sleep(0.2)
        before = memory(proc.pid)["VmRSS"]
        start = time.perf_counter()
        code: int | None = None
        if scenario == "flood-callback":
            offered = 100 * MiB
            sent = flood(sock, Frame(Opcode.BINARY, bytes(64 * 1024)).serialize(b"mask"), offered)
        elif scenario == "flood-coroutine":
            offered = 100 * MiB
            sent = flood(sock, Frame(Opcode.BINARY, bytes(1024)).serialize(b"mask"), offered)
        else:
            assert "permessage-deflate" in response, "the server did not negotiate deflate"
            offered = 200 * MiB
            sent, code = bomb(sock, offered)
        seconds = time.perf_counter() - start
        time.sleep(0.5)  # let the server finish what it read
        after = memory(proc.pid)
        sock.close()
        return Result(
            scenario=scenario,
            offered=offered,
            sent=sent,
            rss_growth=after["VmHWM"] - before,
            rss_end=after["VmRSS"] - before,
            close_code=code,
            seconds=round(seconds, 2),
            wshub=where.strip(),
        )
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", choices=SCENARIOS, help=argparse.SUPPRESS)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--src", help="a source tree to run the server from (PYTHONPATH)")
    parser.add_argument("--reps", type=int, default=1, help="runs per scenario (median kept)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    results: list[Result] = []
    print("| scenario | offered | peer got through | RSS growth (peak) | RSS held at end | close |")
    print("|---|---|---|---|---|---|")
    for scenario in args.scenarios.split(","):
        runs = sorted(
            (run(scenario, args.src) for _ in range(args.reps)), key=lambda r: r.rss_growth
        )
        result = runs[len(runs) // 2]
        results.append(result)
        print(
            f"| {scenario} | {result.offered / MiB:.0f} MiB | {result.sent / MiB:.1f} MiB "
            f"| {result.rss_growth / MiB:.1f} MiB | {result.rss_end / MiB:.1f} MiB "
            f"| {result.close_code or '-'} |",
            flush=True,
        )
    print(f"server: {results[0].wshub}" if results else "", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")


if __name__ == "__main__":
    main()
