"""wshub's entry in the shared benchmark harness (``make bench``).

Apps, as the harness defines them (``shared/bench/README.md``):

* ``echo``: every message goes back on the same connection with the same opcode;
* ``broadcast``: every message from any client goes to every connected client, sender included,
  framed once by ``wshub.broadcast``.

Both use wshub's fastest path: a plain ``on_message`` callback (no Task, no Queue per message)
and ``send_nowait``, on uvloop, with permessage-deflate off (the load generator never offers it).

Usage: ``python benchmarks/server.py --port PORT --app echo|broadcast`` (127.0.0.1 only).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable

import uvloop

import wshub

OnMessage = Callable[[wshub.ServerConnection, str | bytes], None]


def echo(ws: wshub.ServerConnection, message: str | bytes) -> None:
    """Send the message back on the connection it came from."""
    ws.send_nowait(message)


def make_broadcast(servers: list[wshub.Server]) -> OnMessage:
    """Callback sending every message to every connection of the (only) server."""

    def broadcast(ws: wshub.ServerConnection, message: str | bytes) -> None:
        wshub.broadcast(servers[0].connections, message)

    return broadcast


async def serve(port: int, app: str) -> None:
    """Serve the app until the process is stopped."""
    # The broadcast callback needs the server it belongs to, which exists only once serve()
    # returns; no message can arrive before then, as the harness connects after it listens.
    servers: list[wshub.Server] = []
    on_message = echo if app == "echo" else make_broadcast(servers)
    async with wshub.serve(
        None, "127.0.0.1", port, on_message=on_message, compression=None
    ) as server:
        servers.append(server)
        print(f"wshub {wshub.__version__} {app} server on ws://127.0.0.1:{port}", flush=True)
        await server.serve_forever()


def main() -> None:
    """Parse the command line and run the server on uvloop."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--app", choices=("echo", "broadcast"), required=True)
    args = parser.parse_args()
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve(args.port, args.app))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
