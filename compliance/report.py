"""Write the Autobahn|Testsuite summary of both sides and decide pass or fail.

Called by ``scripts/compliance.sh`` after the fuzzingclient (against our server) and the
fuzzingserver (against our client) have written their reports. The per-side summary line comes
from the shared harness's ``summarize.py`` so that our numbers read exactly like every other
run of that harness; this script adds the markdown file and the verdict.

The run fails when, on either side: the harness exited non-zero, no report was written, the
number of cases is not the expected one, a case's behavior is FAILED, or a closing handshake is
FAILED or UNCLEAN (``close_failed``). NON-STRICT and INFORMATIONAL results are allowed by the
testsuite and are listed, with the testsuite's own explanation, so that they stay visible.

Usage (see ``--help``)::

    python compliance/report.py --summarizer ../shared/autobahn/summarize.py \
        --server-dir compliance/reports/server --client-dir compliance/reports/client \
        --expect-cases 517 --out compliance/SUMMARY.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

SIDES = ("server", "client")
WHAT = {
    "server": "fuzzingclient → `compliance/server.py` (wshub server, permessage-deflate on)",
    "client": "fuzzingserver ← `compliance/client.py` (wshub client, permessage-deflate on)",
}
# Rows of the "not OK" table per side: enough to see a pattern, short enough to read.
MAX_ROWS = 60


def case_key(case_id: str) -> tuple[int, ...]:
    """Sort key that puts 9.10.1 after 9.2.1."""
    return tuple(int(part) if part.isdigit() else 0 for part in case_id.split("."))


def run_summarizer(summarizer: Path, outdir: Path) -> tuple[str, dict[str, Any]]:
    """Return the harness's text line and its JSON summary of one report folder."""
    line = subprocess.run(
        [sys.executable, str(summarizer), str(outdir)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    data = subprocess.run(
        [sys.executable, str(summarizer), str(outdir), "--json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    summary: dict[str, Any] = json.loads(data)
    return line, summary


def case_details(outdir: Path, agent_cases: dict[str, Any], case_id: str) -> str:
    """The testsuite's explanation of one case, from its per-case report file."""
    entry = agent_cases[case_id]
    text = ""
    reportfile = entry.get("reportfile")
    if reportfile:
        try:
            report = json.loads((outdir / reportfile).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            report = {}
        parts = []
        if entry.get("behavior") != "OK" and report.get("result"):
            parts.append(str(report["result"]))
        if entry.get("behaviorClose") != "OK" and report.get("resultClose"):
            parts.append("close: " + str(report["resultClose"]))
        text = " / ".join(parts)
    return text.replace("|", "\\|").replace("\n", " ")[:300]


def git_commit(root: Path) -> str:
    """Short commit id of the checkout, with ``+dirty`` when src/ has local changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"
    return commit + ("+dirty" if dirty else "")


def wshub_version() -> str:
    """Version of the wshub being tested (the one this interpreter imports)."""
    try:
        import wshub
    except ImportError:
        return "?"
    return str(getattr(wshub, "__version__", "?"))


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command line of the script."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--summarizer", type=Path, required=True, help="shared summarize.py")
    parser.add_argument("--server-dir", type=Path, required=True)
    parser.add_argument("--client-dir", type=Path, required=True)
    parser.add_argument("--server-exit", type=int, default=0, help="exit status of that side")
    parser.add_argument("--client-exit", type=int, default=0, help="exit status of that side")
    parser.add_argument("--server-seconds", type=float, default=0.0, help="wall time of the side")
    parser.add_argument("--client-seconds", type=float, default=0.0, help="wall time of the side")
    parser.add_argument(
        "--expect-cases", type=int, default=517, help="cases each side must run (0: no check)"
    )
    parser.add_argument("--mode", default="full", help="label of the run (full, quick, ...)")
    parser.add_argument("--out", type=Path, required=True, help="markdown file to write")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    """Summarize both sides, write the markdown file, return the exit status."""
    args = parse_args(argv)
    dirs = {"server": args.server_dir, "client": args.client_dir}
    exits = {"server": args.server_exit, "client": args.client_exit}
    seconds = {"server": args.server_seconds, "client": args.client_seconds}
    problems: list[str] = []
    lines: dict[str, str] = {}
    summaries: dict[str, dict[str, Any]] = {}
    indexes: dict[str, dict[str, Any]] = {}

    for side in SIDES:
        if exits[side] != 0:
            problems.append(f"{side} side: the harness exited with {exits[side]}")
        index_path = dirs[side] / "index.json"
        if not index_path.is_file():
            problems.append(f"{side} side: no report ({index_path} missing)")
            continue
        line, summary = run_summarizer(args.summarizer, dirs[side])
        index = json.loads(index_path.read_text(encoding="utf-8"))
        if len(summary) != 1:
            problems.append(f"{side} side: expected one agent, found {sorted(summary)}")
        for agent, s in summary.items():
            lines[side] = line
            summaries[side] = s
            indexes[side] = index[agent]
            if args.expect_cases and s["cases"] != args.expect_cases:
                problems.append(f"{side} side: {s['cases']} cases, expected {args.expect_cases}")
            if s["failed"]:
                problems.append(f"{side} side: FAILED {','.join(s['failed'])}")
            if s["close_failed"]:
                problems.append(f"{side} side: close FAILED/UNCLEAN {','.join(s['close_failed'])}")

    verdict = "PASS" if not problems else "FAIL"
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    root = Path(__file__).resolve().parent.parent
    out = [
        "# Autobahn|Testsuite results",
        "",
        f"**{verdict}** — {args.mode} run, {now}, wshub {wshub_version()} "
        f"(commit {git_commit(root)}), Python {platform.python_version()}, "
        "autobahntestsuite 25.10.1 (ported to Python 3 by `shared/autobahn`).",
        "",
        "Reproduce with `make compliance` (all 517 cases, both sides in parallel) or "
        "`make compliance-quick` (without 9.\\*, 12.\\*, 13.\\*). The HTML reports are written "
        "to `compliance/reports/` (not committed).",
        "",
        "| side | what is tested | cases | OK | NON-STRICT | INFO | UNIMPL | FAILED "
        "| close not OK | wall time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for side in SIDES:
        s = summaries.get(side)
        if s is None:
            out.append(f"| {side} | {WHAT[side]} | no report | | | | | | | |")
            continue
        b = s["behavior"]
        close_not_ok = s["cases"] - s["behaviorClose"].get("OK", 0)
        out.append(
            f"| {side} | {WHAT[side]} | {s['cases']} | {b.get('OK', 0)} "
            f"| {b.get('NON-STRICT', 0)} | {b.get('INFORMATIONAL', 0)} "
            f"| {b.get('UNIMPLEMENTED', 0)} | {b.get('FAILED', 0)} | {close_not_ok} "
            f"| {seconds[side] / 60:.1f} min |"
        )
    out += ["", "## Summary lines (shared/autobahn/summarize.py)", "", "```"]
    out += [lines.get(side, f"{side}: no report") for side in SIDES]
    out += ["```", ""]
    if problems:
        out += ["## Why it failed", ""] + [f"- {p}" for p in problems] + [""]

    out += ["## Cases that are not OK", ""]
    any_rows = False
    for side in SIDES:
        cases = indexes.get(side)
        if not cases:
            continue
        not_ok = [
            cid
            for cid in sorted(cases, key=case_key)
            if cases[cid].get("behavior") != "OK" or cases[cid].get("behaviorClose") != "OK"
        ]
        if not not_ok:
            continue
        any_rows = True
        out += [
            f"### {side} side",
            "",
            "| case | behavior | close | remote close code | testsuite says |",
            "|---|---|---|---|---|",
        ]
        for cid in not_ok[:MAX_ROWS]:
            c = cases[cid]
            out.append(
                f"| {cid} | {c.get('behavior')} | {c.get('behaviorClose')} "
                f"| {c.get('remoteCloseCode')} | {case_details(dirs[side], cases, cid)} |"
            )
        if len(not_ok) > MAX_ROWS:
            out.append(f"| … | {len(not_ok) - MAX_ROWS} more | | | |")
        out.append("")
    if not any_rows:
        out += ["None.", ""]

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(out), encoding="utf-8")
    for side in SIDES:
        print(lines.get(side, f"{side}: no report"))
    for problem in problems:
        print(f"compliance: {problem}")
    print(f"compliance: {verdict} (summary written to {args.out})")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
