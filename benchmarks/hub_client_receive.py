"""CPU time of HubClient's receive path per ``pub`` push, optionally against another tree.

Every message a hub client reads goes through ``HubClient._dispatch``: parsed once by
:func:`wshub.hub.wire.parse_message`, turned into the client's :class:`Publication`, and
passed through the subscription's in-order gate to its callback. This benchmark subscribes
a client to a scripted hub on loopback (so that the subscription is set up by the client's
own code), then feeds ``_dispatch`` the text of ``--messages`` ``pub`` pushes per
repetition, with a plain callback (no buffering) and publisher info on every push (as chat
messages have), and reports CPU microseconds per push (``time.process_time``, which moves
much less than wall time on a shared machine): the best and the median repetition.

``--baseline-src DIR`` runs the same worker against another checkout's ``src`` (e.g. one
made with ``git worktree add /tmp/before <commit>``), alternating with the current tree,
so that both see the same machine. The worker uses only what every version of the client
has (``subscribe()``, ``_dispatch()``) and a hub script written in raw JSON.

Usage::

    python benchmarks/hub_client_receive.py --messages 100000 --reps 7
    python benchmarks/hub_client_receive.py --baseline-src /tmp/before/src --rounds 3
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

SRC = Path(__file__).resolve().parent.parent / "src"


async def _hub(ws: object) -> None:
    """Answers connect and subscribe in raw ``wshub.v1`` JSON, nothing else."""
    import orjson

    async for message in ws:  # type: ignore[attr-defined]
        command = orjson.loads(message)
        result: dict[str, object] = {}
        if command["cmd"] == "connect":
            result = {"client": "bench", "user": "", "expires": None}
        elif command["cmd"] == "subscribe":
            result = {"channel": command["channel"], "offset": 0, "epoch": "ep"}
            result |= {"recoverable": True, "publications": []}
        await ws.send(orjson.dumps({"id": command["id"], "result": result}).decode())  # type: ignore[attr-defined]


async def _worker(messages: int, reps: int) -> dict[str, object]:
    import orjson

    import wshub
    from wshub.hub.client import HubClient

    received = 0

    def on_publication(pub: object) -> None:
        nonlocal received
        received += 1

    info = {"client": "6f1c2a9e0b7d4c3f8a5e2d1c0b9a8f7e", "user": "alice", "meta": {"nick": "A"}}
    texts = [
        orjson.dumps(
            {
                "push": "pub",
                "channel": "chat:bench",
                "epoch": "ep",
                "offset": n + 1,
                "time": 1718000000123 + n,
                "data": {"text": "hello world", "n": n},
                "info": info,
            }
        ).decode()
        for n in range(messages * reps)
    ]
    async with (
        wshub.serve(_hub, "127.0.0.1", 0, subprotocols=["wshub.v1"]) as server,
        HubClient(f"ws://127.0.0.1:{server.port}/ws", compression=None) as client,
    ):
        sub = await client.subscribe("chat:bench", on_publication)
        dispatch = client._dispatch
        runs = []
        for rep in range(reps):
            batch = texts[rep * messages : (rep + 1) * messages]
            start = time.process_time()
            for text in batch:
                dispatch(text)
            runs.append((time.process_time() - start) / messages * 1e6)
        assert received == messages * reps, received
        assert sub.position is not None and sub.position.offset == messages * reps
    return {"source": wshub.__file__, "best": min(runs), "median": statistics.median(runs)}


def _run(src: Path, messages: int, reps: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    argv = [sys.executable, __file__, "--worker", f"--messages={messages}", f"--reps={reps}"]
    out = subprocess.run(argv, env=env, check=True, capture_output=True, text=True).stdout
    result: dict[str, float] = json.loads(out)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000, help="pushes per repetition")
    parser.add_argument("--reps", type=int, default=7, help="repetitions per process")
    parser.add_argument("--rounds", type=int, default=1, help="processes per tree, alternated")
    parser.add_argument("--baseline-src", type=Path, help="another checkout's src directory")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(asyncio.run(_worker(args.messages, args.reps))))
        return
    trees = {"current": SRC}
    if args.baseline_src is not None:
        trees = {"baseline": args.baseline_src, **trees}
    best: dict[str, list[float]] = {name: [] for name in trees}
    for _ in range(args.rounds):
        for name, src in trees.items():
            result = _run(src, args.messages, args.reps)
            best[name].append(result["best"])
            print(f"{name:9s} {result['best']:.2f} us/push best, {result['median']:.2f} median")
    if args.baseline_src is not None:
        ratio = min(best["current"]) / min(best["baseline"])
        print(f"current / baseline (best of all rounds): {ratio:.3f}")


if __name__ == "__main__":
    main()
