"""Echo server that Autobahn|Testsuite's fuzzingclient tests (``make compliance``).

It echoes every message back with the same type, through the cheapest receive path wshub has:
a plain ``on_message`` callback that frames the reply with ``send_nowait`` (no Task, no Queue
per message), so the suite exercises the code that fast servers use.

Usage: ``python compliance/server.py --port PORT [--no-compression]`` (127.0.0.1 only).
"""

from __future__ import annotations

import argparse

import wshub

# The largest message the suite sends: 16 MiB, in cases 9.1.6 and 9.2.6 (max_size counts the
# payload, not the frame headers around it, so this is that whole message and nothing more).
# Not more: a limit is part of a server's security, and this script is the one people copy; a
# 64 MiB limit would let every peer make us buffer 64 MiB (docs/deployment.md, "Sizes").
MAX_SIZE = 16 * 2**20


def echo(ws: wshub.ServerConnection, message: str | bytes) -> None:
    """Send the message straight back: text as text, binary as binary."""
    ws.send_nowait(message)


async def serve(port: int, *, compression: bool) -> None:
    """Serve until the process is stopped."""
    async with wshub.serve(
        None,
        "127.0.0.1",
        port,
        on_message=echo,
        compression="deflate" if compression else None,
        max_size=MAX_SIZE,
        # A keepalive ping in the middle of a case would be an unexpected frame for the fuzzer.
        ping_interval=None,
    ) as server:
        print(f"wshub {wshub.__version__} echo server on ws://127.0.0.1:{port}", flush=True)
        await server.serve_forever()


def main() -> None:
    """Parse the command line and run the server."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--no-compression", action="store_true", help="do not offer permessage-deflate"
    )
    args = parser.parse_args()
    try:
        wshub.run(serve(args.port, compression=not args.no_compression))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
