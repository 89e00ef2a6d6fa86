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

import wshub


def echo(ws: wshub.ServerConnection, message: str | bytes) -> None:
    """Send the message back on the connection it came from."""
    ws.send_nowait(message)


def broadcast(ws: wshub.ServerConnection, message: str | bytes) -> None:
    """Send the message to every open connection of the server, the sender included."""
    wshub.broadcast(ws.server.connections, message)


async def serve(port: int, app: str) -> None:
    """Serve the app until the process is stopped."""
    on_message = echo if app == "echo" else broadcast
    async with wshub.serve(
        None, "127.0.0.1", port, on_message=on_message, compression=None
    ) as server:
        print(f"wshub {wshub.__version__} {app} server on ws://127.0.0.1:{port}", flush=True)
        await server.serve_forever()


def main() -> None:
    """Parse the command line and run the server on uvloop (``wshub.run``'s default)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--app", choices=("echo", "broadcast"), required=True)
    args = parser.parse_args()
    try:
        wshub.run(serve(args.port, args.app))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
