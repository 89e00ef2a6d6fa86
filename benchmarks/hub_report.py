"""Turn the hub harness's ``results.json`` into ``benchmarks/HUB_RESULTS.md``.

The hub harness (``shared/hubbench/run.py``, run by ``make hubbench``) writes its own full
``results.md``; this page is the committed view centred on wshub's hub: one table of scenario
by hub in the shape of the hub performance issue, wshub's ratio to Centrifuge for each of that
issue's targets (met or not in this run), the environment and commit, and what each hub does
and does not do in the run, so that nobody compares unlike work without knowing it.

Usage: ``python benchmarks/hub_report.py RESULTS_JSON [--out benchmarks/HUB_RESULTS.md]``
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUBJECT = "wshub"
REFERENCE = "centrifuge"
#: column order; hubs found in results.json but not listed here come after, in file order
ORDER = ("wshub", "centrifuge", "node-socketio", "websockets", "python-socketio")
DASH = "\N{EN DASH}"
# the ratio sign (written as an escape: ruff flags the literal as ambiguous)
TIMES = "\N{MULTIPLICATION SIGN}"

#: what each hub does in the run and what it leaves out (our summary of the harness's setup)
PEERS = {
    "wshub": "`wshub serve` with the demo's `chat` namespace, publish and command rate limits "
    "lifted. Does more than the others: every publication goes to the channel history and gets "
    "an offset, each publish gets a reply, presence is kept, and joins and leaves reach the "
    "room's members as one `presence_diff` push per member every 0.5 s (`join_leave_interval`). "
    "The publisher must be a subscriber, so it receives its own copies too (not counted).",
    "centrifuge": "A Go server on the Centrifuge library (Debian's 2021 sources, protocol v1 "
    "JSON, not the current release): anonymous connect, any channel, in-memory broker. No "
    "history, no presence, no join/leave; publishes are acknowledged with an empty result.",
    "node-socketio": "socket.io 4 on Node with the `ws` engine and bufferutil, WebSocket "
    "transport only, compression off. A join is acked; no history, presence or publish reply.",
    "websockets": "The baseline: the websockets library with one Python set of connections "
    "per room and `broadcast()`, a minimal JSON protocol. No acks beyond the join, no history, "
    "no presence.",
    "python-socketio": "python-socketio's AsyncServer on aiohttp and uvloop, WebSocket only, "
    "one task per received event (its default). Join acked; nothing else kept.",
}

#: how one row of the main table renders a hub's summary of a scenario
Cell = Callable[[dict[str, Any]], str]


def fmt(value: float | None, digits: int = 1) -> str:
    """Large numbers with thousands separators, small ones with ``digits`` decimals."""
    if value is None:
        return DASH
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def ms(us: float | None) -> str:
    """Microseconds as milliseconds: 2 significant-ish digits."""
    if us is None:
        return DASH
    value = us / 1000
    return f"{value:.2f}" if value < 1 else f"{value:.1f}" if value < 10 else f"{value:,.0f}"


def failed(s: dict[str, Any]) -> bool:
    """A cell that was run but has no valid result."""
    return bool(s) and s.get("value") is None


def number(key: str) -> Cell:
    """A cell showing the summary's ``key``: a rate, RSS KiB per connection, etc."""

    def cell(s: dict[str, Any]) -> str:
        return "FAIL" if failed(s) else fmt(s.get(key))

    return cell


def latency_cell(s: dict[str, Any]) -> str:
    """p50 / p99 ms with the server's CPU, or *behind* when the hub could not keep up."""
    if failed(s):
        return "FAIL"
    if not s:
        return DASH
    if s.get("kept_up") is False:
        return f"behind ({fmt(s.get('overall_per_s'))}/s)"
    return f"{ms(s.get('p50_us'))} / {ms(s.get('p99_us'))} ({fmt(s.get('srv_cpu_pct'), 0)} %)"


@dataclass(frozen=True)
class Row:
    """One row of the main table."""

    label: str
    scenario: str
    cell: Cell


ROWS = (
    Row("`room1000_sat`: deliveries/s", "room1000_sat", number("value")),
    Row("`room1000_fixed`: p50 / p99 ms (server CPU)", "room1000_fixed", latency_cell),
    Row("`rooms_many`: p50 / p99 ms (server CPU)", "rooms_many", latency_cell),
    Row("`idle10k`: connect+subscribe/s", "idle10k", number("value")),
    Row("`idle10k`: RSS KiB per subscribed connection", "idle10k", number("rss_per_conn_kb")),
    Row("set-up of the `room1000_sat` room (conn/s)", "room1000_sat", number("setup_conn_per_s")),
)


@dataclass(frozen=True)
class Target:
    """One target of the hub performance issue, evaluated on this run."""

    label: str
    required: str
    got: str
    met: bool | None  # None: no result to judge


def _num(s: dict[str, Any], key: str) -> float | None:
    value = s.get(key)
    return float(value) if isinstance(value, int | float) and not failed(s) else None


def targets(summary: dict[str, dict[str, Any]]) -> list[Target]:
    """Each target of the issue, with wshub's value, its ratio to Centrifuge and the verdict."""
    mine = summary.get(SUBJECT, {})
    ref = summary.get(REFERENCE, {})
    out: list[Target] = []

    def ratio_target(label: str, sid: str, key: str, factor: float, higher: bool) -> None:
        a, b = _num(mine.get(sid, {}), key), _num(ref.get(sid, {}), key)
        sign = "≥" if higher else "≤"
        required = f"{sign} {factor:g} {TIMES} {REFERENCE}"
        if a is None or b is None or b == 0:
            out.append(Target(label, required, "no result", None))
            return
        r = a / b
        show = ms if key.endswith("_us") else fmt
        got = f"{show(a)} vs {show(b)}{' ms' if key.endswith('_us') else ''}: {r:.2f}{TIMES}"
        if mine.get(sid, {}).get("kept_up") is False:
            # a hub that fell behind has queueing latency: no latency or CPU target is met
            out.append(Target(label, required, got + " (wshub behind)", False))
            return
        out.append(Target(label, required, got, r >= factor if higher else r <= factor))

    ratio_target("`room1000_sat` deliveries/s", "room1000_sat", "value", 1.5, True)
    ratio_target("`room1000_fixed` p99 latency", "room1000_fixed", "p99_us", 1.0, False)
    ratio_target("`room1000_fixed` server CPU", "room1000_fixed", "srv_cpu_pct", 0.8, False)
    ratio_target("`rooms_many` p99 latency", "rooms_many", "p99_us", 0.5, False)
    ratio_target("`idle10k` connect+subscribe/s", "idle10k", "value", 1.2, True)
    rss = _num(mine.get("idle10k", {}), "rss_per_conn_kb")
    out.append(
        Target(
            "`idle10k` RSS per subscribed connection",
            "≤ 8 KiB",
            "no result" if rss is None else f"{rss:.1f} KiB",
            None if rss is None else rss <= 8.0,
        )
    )
    ratio_target(
        "set-up of the `room1000_sat` room, join/leave on (conn/s)",
        "room1000_sat",
        "setup_conn_per_s",
        0.5,
        True,
    )
    out.append(
        Target(
            "fan-out with permessage-deflate: deliveries/s vs uncompressed",
            f"≥ 0.8 {TIMES}",
            "not measured here (the harness never negotiates compression)",
            None,
        )
    )
    return out


def hubs(summary: dict[str, dict[str, Any]]) -> list[str]:
    """The hubs with results, in the table's order."""
    present = [name for name in summary if summary[name]]
    return [n for n in ORDER if n in present] + [n for n in present if n not in ORDER]


def measured_commit(meta: dict[str, Any]) -> str:
    """The wshub commit the run measured, as setup.sh recorded it (``?`` if unknown)."""
    found = re.search(
        r"at commit (\S+)( \+ uncommitted changes)?", meta.get("versions", {}).get(SUBJECT, "")
    )
    return "?" if found is None else found.group(1) + (found.group(2) or "")


def render(results: dict[str, Any], source: str, note: str | None = None) -> str:
    """The markdown page for one results.json."""
    meta: dict[str, Any] = results["meta"]
    summary: dict[str, dict[str, Any]] = results["summary"]
    names = hubs(summary)
    labels = {sc["id"]: sc.get("label", sc["id"]) for sc in meta.get("scenarios", [])}
    mode = (
        "quick mode (smaller sizes, 1 rep: a smoke test, not a result)"
        if meta.get("quick")
        else "full mode"
    )
    lines = [
        "# Hub benchmark results",
        "",
        "wshub's hub (`wshub serve`) side by side with other real-time hubs in the shared hub "
        "harness (`shared/hubbench`): one C load generator for all, server pinned to CPU 1, "
        "loopback only, no compression, 100-byte payloads. Reproduce with `make hubbench` "
        "(`make hubbench-quick` for a smoke test); the harness's full tables are in "
        f"`{source}`.",
        "",
        *([note, ""] if note else []),
        f"- run: {meta.get('date', '?')}, {mode}; each cell the median of {meta.get('reps', '?')} "
        f"run(s) of {meta.get('duration_s', '?')} s after {meta.get('warmup_s', '?')} s warm-up",
        f"- machine: {meta.get('machine', '?')}; {meta.get('pinning', '?')}; load average "
        f"{meta.get('loadavg_start', '?')} at the start, {meta.get('loadavg_end', '?')} at the end",
        f"- wshub commit measured: {measured_commit(meta)}; Python {meta.get('python', '?')}",
        "- versions:",
    ]
    versions: dict[str, str] = meta.get("versions", {})
    lines += [f"  - {name}: {versions.get(name, '?')}" for name in names]
    busy = {
        n: max((s.get("foreign_cpu_pct") or 0.0 for s in summary[n].values()), default=0.0)
        for n in names
    }
    lines.append(
        "- CPU used by other processes during the runs (the most in any scenario; more than a "
        "few % makes a cell untrustworthy): " + ", ".join(f"{n} {busy[n]:.0f} %" for n in names)
    )
    lines += ["", "Scenarios as run:", ""]
    lines += [f"- `{sid}`: {label}" for sid, label in labels.items()]

    result = targets(summary)
    met = sum(1 for t in result if t.met)
    lines += [
        "",
        "## The targets of the hub performance issue",
        "",
        f"{met} of {len(result)} met in this run (no result: not run, failed, or not measured "
        "by this harness).",
        "",
        "| target | required | wshub vs centrifuge | |",
        "|---|---|---|---|",
    ]
    for t in result:
        status = "met" if t.met else "**not met**" if t.met is False else "no result"
        lines.append(f"| {t.label} | {t.required} | {t.got} | {status} |")

    lines += [
        "",
        "## All hubs",
        "",
        "| scenario | " + " | ".join(f"**{n}**" if n == SUBJECT else n for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for row in ROWS:
        cells = [row.cell(summary[n].get(row.scenario, {})) for n in names]
        lines.append(f"| {row.label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "*behind*: the hub could not sustain the offered rate; its latency is then queueing "
        "delay and only what it sustained is shown. Cells move by ±20 % and more between runs "
        "on this VM; compare server CPU only between hubs that kept up.",
        "",
        "## What each hub does in this run",
        "",
    ]
    lines += [
        f"- **{n}**: {PEERS.get(n, 'an extra hub given on the command line.')}" for n in names
    ]

    failures = [
        (n, sid, summary[n][sid].get("errors"))
        for n in names
        for sid in labels
        if summary[n].get(sid, {}).get("errors")
    ]
    if failures:
        lines += ["", "## Failed or invalid runs", ""]
        lines += [f"- {n} / `{sid}`: {str(errors)[:300]}" for n, sid, errors in failures]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    """Read results.json and write the markdown page."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("results", type=Path, help="results.json written by shared/hubbench/run.py")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("HUB_RESULTS.md"))
    parser.add_argument("--note", help="a paragraph shown under the title (e.g. which run this is)")
    args = parser.parse_args(argv)
    try:
        results = json.loads(args.results.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"hub_report: cannot read {args.results}: {exc}", file=sys.stderr)
        return 2
    page = render(results, str(args.results.with_suffix(".md")), args.note)
    args.out.write_text(page, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
