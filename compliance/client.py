"""Client that Autobahn|Testsuite's fuzzingserver tests (``make compliance``).

It follows the fuzzingserver protocol: read the number of cases from ``/getCaseCount``, run
each case on ``/runCase?case=N&agent=NAME`` by echoing every message back with the same type
until the server closes, then ask ``/updateReports`` to write the reports. Echoing happens in a
plain ``on_message`` callback with ``send_nowait`` (the cheapest receive path), with
permessage-deflate offered so that groups 12.* and 13.* test our compression.

Usage: ``python compliance/client.py --url ws://127.0.0.1:PORT --agent NAME``.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse

import wshub
from wshub.exceptions import WSHubError

# The largest message the suite sends: 16 MiB, in cases 9.1.6 and 9.2.6 (max_size counts the
# payload, not the frame headers around it, so this is that whole message and nothing more).
# Not more: a limit is part of a server's security, and this script is the one people copy; a
# 64 MiB limit would let every peer make us buffer 64 MiB (docs/deployment.md, "Sizes").
MAX_SIZE = 16 * 2**20
# Writing the reports of 517 cases takes the fuzzingserver a while before it closes.
REPORT_TIMEOUT = 300.0


def echo(ws: wshub.ClientConnection, message: str | bytes) -> None:
    """Send the message straight back: text as text, binary as binary."""
    ws.send_nowait(message)


async def get_case_count(url: str) -> int:
    """Ask the fuzzingserver how many cases it will run."""
    async with wshub.connect(f"{url}/getCaseCount") as ws:
        count = json.loads(await ws.recv())
    if not isinstance(count, int):
        raise SystemExit(f"getCaseCount answered {count!r}, not a number")
    return count


async def run_case(url: str, case: int, agent: str) -> None:
    """Echo everything the fuzzingserver sends in one case, until it closes the connection.

    Errors are expected here (the suite sends invalid frames on purpose and judges how we
    close), so they are reported and the next case runs.
    """
    query = urllib.parse.urlencode({"case": case, "agent": agent})
    try:
        async with wshub.connect(
            f"{url}/runCase?{query}",
            on_message=echo,
            compression="deflate",
            max_size=MAX_SIZE,
            ping_interval=None,
        ) as ws:
            await ws.wait_closed()
    except (WSHubError, OSError) as exc:
        print(f"case {case}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)


async def update_reports(url: str, agent: str) -> None:
    """Make the fuzzingserver write its reports (it closes the connection when done)."""
    query = urllib.parse.urlencode({"agent": agent})
    async with wshub.connect(
        f"{url}/updateReports?{query}",
        open_timeout=REPORT_TIMEOUT,
        close_timeout=REPORT_TIMEOUT,
    ) as ws:
        await ws.wait_closed()


async def drive(url: str, agent: str) -> None:
    """Run every case, then ask for the reports."""
    count = await get_case_count(url)
    print(f"{count} cases", flush=True)
    for case in range(1, count + 1):
        await run_case(url, case, agent)
    await update_reports(url, agent)
    print("reports updated", flush=True)


def main() -> None:
    """Parse the command line and drive the fuzzingserver."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="ws://127.0.0.1:PORT of the fuzzingserver")
    parser.add_argument("--agent", required=True, help="name of the reports (agent)")
    args = parser.parse_args()
    wshub.run(drive(args.url.rstrip("/"), args.agent))


if __name__ == "__main__":
    main()
