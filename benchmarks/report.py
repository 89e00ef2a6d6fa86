"""Turn the shared benchmark harness's ``results.json`` into ``benchmarks/RESULTS.md``.

The harness (``shared/bench/run.py``) already writes a full ``results.md``; this page is the
short, committed view centred on wshub: the machine and versions, the median of every cell,
and wshub's ratio to the references we measure ourselves against — ``websockets`` (the Python
library people use), ``picows+uvloop`` (the fastest Python peer) and ``c-echo`` (the ceiling of
the harness on this machine, not a peer).

Usage: ``python benchmarks/report.py RESULTS_JSON [--out benchmarks/RESULTS.md]``
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

SUBJECT = "wshub"
REFERENCES = ("websockets", "picows+uvloop", "c-echo")
CALIBRATION = "c-echo"
# shown for a missing value (written as an escape: ruff flags the literal as ambiguous)
DASH = "\N{EN DASH}"


def fmt(value: float | None) -> str:
    """Large numbers with thousands separators, small ones with one decimal."""
    if value is None:
        return DASH
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}"


def cell(summary: dict[str, Any]) -> str:
    """Median of one cell with its spread, or FAIL when no run was valid."""
    value = summary.get("value")
    if value is None:
        return "FAIL" if summary else DASH
    spread = summary.get("spread_pct")
    if spread is not None and summary.get("valid", 0) > 1:
        return f"{fmt(value)} (±{spread:.0f}%)"
    return fmt(value)


def ratio(value: float | None, reference: float | None) -> str:
    """``value / reference`` as ``1.23x``, or a dash when either is missing."""
    if not value or not reference:
        return DASH
    return f"{value / reference:.2f}x"


def subject_version() -> str:
    """wshub's version and commit, and the versions of what its server runs on."""
    parts = []
    for dist in ("wshub", "uvloop"):
        try:
            parts.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{dist} ?")
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        parts.append(f"commit {commit}")
    except (OSError, subprocess.CalledProcessError):
        pass
    return ", ".join(parts) + f", Python {sys.version.split()[0]}"


#: the performance targets (issue 4): the fastest Python peer, and what to beat it by
PEER = "picows+uvloop"
ECHO_TARGETS = ("pp1_32", "pp1_16k", "pp100_32", "pp100_16k")  # 1.05 x peer or 0.95 x c-echo
PEER_FACTORS = {"pp1_32": 1.05, "pp1_16k": 1.05, "pp100_32": 1.05, "pp100_16k": 1.05,
                "pipe10_32": 1.2, "bcast1000_64": 1.5, "storm10k": 1.2}  # fmt: skip
RSS_OFF_MAX_KIB = 4.0
RSS_ON_MAX_KIB = 16.0
CLIENT_FACTOR = 1.05
CLIENT_LABELS = {
    "1c_32": "client: ping-pong 1c 32B",
    "1c_16k": "client: ping-pong 1c 16KiB",
    "100c_32": "client: ping-pong 100c 32B",
    "100c_16k": "client: ping-pong 100c 16KiB",
}


def targets(
    results: dict[str, Any],
    clients: dict[str, Any] | None,
    deflate: dict[str, Any] | None,
) -> list[str]:
    """The table of the performance targets, each marked met or not met for this run."""
    summary: dict[str, dict[str, Any]] = results["summary"]
    labels = {sc["id"]: sc["label"] for sc in results["meta"]["scenarios"]}

    def value(server: str, scenario: str) -> float | None:
        v = summary.get(server, {}).get(scenario, {}).get("value")
        return float(v) if v else None

    rows: list[tuple[str, str, str, bool | None]] = []
    for sid, factor in PEER_FACTORS.items():
        if sid not in labels:
            continue
        mine, peer = value(SUBJECT, sid), value(PEER, sid)
        if mine is None or peer is None:
            rows.append((labels[sid], f"{factor:g} x {PEER}", "no result", None))
            continue
        need, why = factor * peer, f"{factor:g} x {PEER}"
        ceiling = value(CALIBRATION, sid)
        if sid in ECHO_TARGETS and ceiling is not None and 0.95 * ceiling < need:
            need, why = 0.95 * ceiling, f"0.95 x {CALIBRATION}, lower than {why}"
        got = f"{mine:,.0f} ({mine / peer:.2f}x {PEER}"
        got += f", {mine / ceiling:.2f}x {CALIBRATION})" if ceiling else ")"
        rows.append((labels[sid], f"≥ {need:,.0f} ({why})", got, mine >= need))
    storm = summary.get(SUBJECT, {}).get("storm10k", {}).get("rss_per_conn_kb")
    if storm is not None:
        rows.append(
            (
                "RSS per idle connection, compression off",
                f"≤ {RSS_OFF_MAX_KIB:g} KiB",
                f"{storm:.1f} KiB (storm10k)",
                storm <= RSS_OFF_MAX_KIB,
            )
        )
    on = (deflate or {}).get("wshub-deflate")
    if on is not None:
        rows.append(
            (
                "RSS per idle connection, compression on",
                f"≤ {RSS_ON_MAX_KIB:g} KiB",
                f"{on['rss_kib']:.1f} KiB ({on['conns']:,} connections, deflate negotiated)",
                on["rss_kib"] <= RSS_ON_MAX_KIB,
            )
        )
    for sid, label in CLIENT_LABELS.items():
        mine = (clients or {}).get(SUBJECT, {}).get(sid, {}).get("msgs_per_s")
        peer = (clients or {}).get("picows", {}).get(sid, {}).get("msgs_per_s")
        if mine is None or peer is None:
            continue
        need = CLIENT_FACTOR * peer
        rows.append(
            (
                label,
                f"≥ {need:,.0f} ({CLIENT_FACTOR:g} x picows' client)",
                f"{mine:,.0f} ({mine / peer:.2f}x)",
                mine >= need,
            )
        )
    active = (deflate or {}).get("wshub-deflate-active")
    met = sum(1 for *_, ok in rows if ok)
    lines = [
        "## The performance targets in this run",
        "",
        f"{met} of {len(rows)} met. Targets and thresholds as in the performance issue; "
        "each is computed from this run's medians (no result: the cell failed or was not run).",
        "",
        "| target | required | wshub | |",
        "|---|---|---|---|",
    ]
    for label, need_text, got, ok in rows:
        status = "met" if ok else "**not met**" if ok is False else "no result"
        lines.append(f"| {label} | {need_text} | {got} | {status} |")
    if active is not None:
        lines += [
            "",
            "Not a target, for context: once the server has sent one compressed message on a "
            "connection, the connection keeps its compressor (context takeover): "
            f"{active['rss_kib']:.1f} KiB per connection ({active['conns']:,} connections, the "
            "server's default 12-bit window and memLevel 5).",
        ]
    return lines


def render(
    results: dict[str, Any],
    source: str,
    clients: dict[str, Any] | None = None,
    deflate: dict[str, Any] | None = None,
) -> str:
    """The markdown page for one results.json (and the client and memory extras)."""
    meta = results["meta"]
    summary: dict[str, dict[str, Any]] = results["summary"]
    scenarios: list[dict[str, Any]] = meta["scenarios"]
    runs: dict[str, dict[str, Any]] = results.get("runs", {})
    warm_rss = False
    servers = [name for name in summary if summary[name]]
    versions = dict(meta.get("versions", {}))
    if SUBJECT in versions:
        versions[SUBJECT] = subject_version()

    def value(server: str, scenario: str) -> float | None:
        v = summary.get(server, {}).get(scenario, {}).get("value")
        return float(v) if v is not None else None

    lines = [
        "# Benchmark results",
        "",
        "wshub side by side with its peers in the shared harness (`shared/bench`): same load "
        "generator (wsload, C), server pinned to CPU 1 and wsload to CPU 0, loopback only, "
        "permessage-deflate off, binary frames. Reproduce with `make bench` (≈30 min; "
        "`make bench-quick` for a 1-run smoke test). The harness's full tables are in "
        f"`{source}`.",
        "",
        f"- date: {meta.get('date')}",
        f"- machine: {meta.get('machine')}",
        f"- pinning: {meta.get('pinning')}",
        f"- each cell: median of {meta.get('reps')} runs of {meta.get('duration_s')} s after "
        f"{meta.get('warmup_s')} s warm-up, (±x%) = (max-min)/median; wall time "
        f"{meta.get('elapsed_s', 0) / 60:.1f} min",
        "- versions:",
    ]
    lines += [f"  - {name}: {versions.get(name, '?')}" for name in servers]
    lines += [
        "",
        "Differences under ~20% are within this VM's run-to-run noise; `c-echo` is a minimal C "
        "server that shows what the load generator can drive here (not a peer, 1 run).",
        "",
    ]
    if SUBJECT in servers:
        lines += [*targets(results, clients, deflate), ""]
    lines += [
        "## Throughput (higher is better)",
        "",
        "| server | " + " | ".join(f"{sc['label']} ({sc_unit(sc)})" for sc in scenarios) + " |",
        "|---|" + "---|" * len(scenarios),
    ]
    for name in servers:
        row = [f"**{name}**" if name == SUBJECT else name]
        row += [cell(summary[name].get(sc["id"], {})) for sc in scenarios]
        lines.append("| " + " | ".join(row) + " |")

    if SUBJECT in servers:
        refs = [r for r in REFERENCES if r in servers]
        lines += [
            "",
            f"## {SUBJECT} relative to the references (>1: {SUBJECT} is faster)",
            "",
            "| scenario | " + " | ".join(f"{SUBJECT} / {r}" for r in refs) + " |",
            "|---|" + "---|" * len(refs),
        ]
        for sc in scenarios:
            mine = value(SUBJECT, sc["id"])
            row = [sc["label"]] + [ratio(mine, value(r, sc["id"])) for r in refs]
            lines.append("| " + " | ".join(row) + " |")
        storm = [sc for sc in scenarios if sc["mode"] == "storm"]
        if storm:
            sid = storm[0]["id"]
            rss = {n: summary.get(n, {}).get(sid, {}).get("rss_per_conn_kb") for n in servers}
            lines.append(
                "| RSS per connection (lower is leaner) | "
                + " | ".join(ratio(rss[SUBJECT], rss[r]) for r in refs)
                + " |"
            )

    flow = [sc for sc in scenarios if sc["mode"] != "storm"]
    storm = [sc for sc in scenarios if sc["mode"] == "storm"]
    lines += [
        "",
        "## Latency p50 / p99 in µs (lower is better)",
        "",
        "| server | "
        + " | ".join([sc["label"] for sc in flow] + [f"{sc['label']}: handshake" for sc in storm])
        + (" | RSS/conn (KiB) |" if storm else " |"),
        "|---|" + "---|" * (len(flow) + len(storm) + (1 if storm else 0)),
    ]
    for name in servers:
        row = [name]
        for sc in flow:
            s = summary[name].get(sc["id"], {})
            row.append(
                f"{fmt(s.get('p50_us'))} / {fmt(s.get('p99_us'))}" if s.get("value") else DASH
            )
        for sc in storm:
            s = summary[name].get(sc["id"], {})
            row.append(
                f"{fmt(s.get('hs_p50_us'))} / {fmt(s.get('hs_p99_us'))}" if s.get("value") else DASH
            )
        if storm:
            sid = storm[0]["id"]
            rss_cell = fmt(summary[name].get(sid, {}).get("rss_per_conn_kb"))
            if runs.get(name, {}).get(f"{sid}:discarded"):
                rss_cell += " *"
                warm_rss = True
            row.append(rss_cell)
        lines.append("| " + " | ".join(row) + " |")
    if warm_rss:
        lines += [
            "",
            "\\* a storm run was discarded for foreign CPU load and rerun on the same server "
            "process, whose memory was already grown by the discarded run: this RSS per "
            "connection reads low. Rerun on an idle machine to compare memory.",
        ]

    if SUBJECT in servers:
        lines += [
            "",
            f"## Who was busy in {SUBJECT}'s runs",
            "",
            "srv = server CPU, core1 = the server's core (incl. softirq), gen-idle = time the load "
            "generator waited, fgn = other processes (%, medians). srv ≈ 100 means the server "
            "was the bottleneck; gen-idle near 0 means the load generator was.",
            "",
            "| scenario | srv | core1 | gen-idle | fgn |",
            "|---|---|---|---|---|",
        ]
        for sc in flow:
            s = summary[SUBJECT].get(sc["id"], {})
            lines.append(
                f"| {sc['label']} | {fmt(s.get('srv_cpu_pct'))} | {fmt(s.get('cpu1_busy_pct'))} "
                f"| {fmt(s.get('gen_idle_pct'))} | {fmt(s.get('foreign_cpu_pct'))} |"
            )

    failures = [
        (name, sc["label"], summary[name].get(sc["id"], {}).get("errors"))
        for name in servers
        for sc in scenarios
        if summary[name].get(sc["id"], {}).get("errors")
    ]
    if failures:
        lines += ["", "## Failed or invalid runs", ""]
        lines += [f"- {name} / {label}: {str(errors)[:300]}" for name, label, errors in failures]
    return "\n".join(lines) + "\n"


def sc_unit(scenario: dict[str, Any]) -> str:
    """Unit of a scenario's headline number."""
    return {"storm": "conn/s", "bcast": "deliv/s"}.get(scenario["mode"], "msg/s")


#: Sections after this line in RESULTS.md were measured by other scripts (asgi_bench.py):
#: a new report keeps them.
KEPT_MARKER = "<!-- measured by other scripts; report.py keeps what follows -->"


def kept_sections(path: Path) -> str:
    """The marker and what follows it in the page about to be replaced ("" if none)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    index = text.find(KEPT_MARKER)
    return "" if index < 0 else text[index:]


def main(argv: list[str]) -> int:
    """Read results.json and write the markdown page."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="results.json written by shared/bench/run.py")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    parser.add_argument("--clients", type=Path, help="medians from client_bench.py --json")
    parser.add_argument("--deflate-memory", type=Path, help="cpu_cost.py --idle-memory --json")
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text(encoding="utf-8"))
    clients = json.loads(args.clients.read_text()) if args.clients else None
    deflate = json.loads(args.deflate_memory.read_text()) if args.deflate_memory else None
    try:
        source = args.results.with_name("results.md").resolve().relative_to(Path.cwd())
    except ValueError:
        source = args.results.with_name("results.md")
    page = render(results, str(source), clients, deflate)
    kept = kept_sections(args.out)
    if kept:
        page = page.rstrip("\n") + "\n\n" + kept
    args.out.write_text(page, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
