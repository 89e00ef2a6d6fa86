"""Tests for benchmarks/report.py: the targets table marks each target met or not met."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _load_report() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_report", BENCHMARKS / "report.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_report", module)
    spec.loader.exec_module(module)
    return module


report = _load_report()


def _results(cells: dict[str, dict[str, float]], rss: float = 2.5) -> dict[str, Any]:
    scenarios = [
        {"id": "pp1_32", "label": "ping-pong 1c 32B", "mode": "echo"},
        {"id": "pp100_32", "label": "ping-pong 100c 32B", "mode": "echo"},
        {"id": "bcast1000_64", "label": "broadcast 1000 subs 64B", "mode": "bcast"},
        {"id": "storm10k", "label": "connect storm 10k", "mode": "storm"},
    ]
    summary: dict[str, dict[str, Any]] = {}
    for server, values in cells.items():
        summary[server] = {sid: {"value": v} for sid, v in values.items()}
    summary["wshub"].setdefault("storm10k", {})["rss_per_conn_kb"] = rss
    return {"meta": {"scenarios": scenarios}, "summary": summary, "runs": {}}


def _rows(lines: list[str]) -> dict[str, str]:
    """target label -> status, from the rendered table."""
    rows = [line.strip("|").split(" | ") for line in lines if line.startswith("| ")]
    return {cols[0].strip(): cols[-1].strip() for cols in rows[1:]}


def test_targets_use_the_lower_threshold_and_mark_misses() -> None:
    results = _results(
        {
            "wshub": {"pp1_32": 9_600, "pp100_32": 100_000, "bcast1000_64": 160, "storm10k": 13},
            "picows+uvloop": {"pp1_32": 10_000, "pp100_32": 100_000, "bcast1000_64": 100},
            "c-echo": {"pp1_32": 10_000, "pp100_32": 200_000, "bcast1000_64": 500},
        }
    )
    results["summary"]["picows+uvloop"]["storm10k"] = {"value": 10}
    deflate = {
        "wshub-deflate": {"rss_kib": 20.0, "conns": 10},
        "wshub-deflate-active": {"rss_kib": 31.5, "conns": 10},
    }
    lines = report.targets(results, None, deflate)
    rows = _rows(lines)
    # 1c: 0.95 x c-echo (9,500) is lower than 1.05 x picows (10,500): 9,600 meets it.
    assert rows["ping-pong 1c 32B"] == "met"
    assert "0.95 x c-echo" in next(line for line in lines if "ping-pong 1c 32B" in line)
    # 100c: 1.05 x picows (105,000) is the lower one: 100,000 does not meet it.
    assert rows["ping-pong 100c 32B"] == "**not met**"
    assert rows["broadcast 1000 subs 64B"] == "met"  # 1.6x >= 1.5x
    assert rows["connect storm 10k"] == "met"  # 1.3x >= 1.2x
    assert rows["RSS per idle connection, compression off"] == "met"
    assert rows["RSS per idle connection, compression on"] == "**not met**"
    assert "4 of 6 met" in "\n".join(lines)
    # The memory of an active compressed connection is context, not a seventh target.
    assert any("31.5 KiB per connection" in line for line in lines if not line.startswith("|"))


def test_client_targets_compare_with_picows_client() -> None:
    results = _results({"wshub": {}, "picows+uvloop": {}})
    clients = {
        "wshub": {"1c_32": {"msgs_per_s": 10_600}, "100c_32": {"msgs_per_s": 10_400}},
        "picows": {"1c_32": {"msgs_per_s": 10_000}, "100c_32": {"msgs_per_s": 10_000}},
    }
    rows = _rows(report.targets(results, clients, None))
    assert rows["client: ping-pong 1c 32B"] == "met"
    assert rows["client: ping-pong 100c 32B"] == "**not met**"
    # A scenario without a result for wshub is reported as such, not as met.
    assert rows["ping-pong 1c 32B"] == "no result"


def test_a_new_report_keeps_the_sections_measured_by_other_scripts(tmp_path: Path) -> None:
    """What follows the marker in the old page survives; the generated part is replaced."""
    results = _results({"wshub": {"pp1_32": 100.0}, "websockets": {"pp1_32": 50.0}})
    source = tmp_path / "results.json"
    source.write_text(json.dumps(results), encoding="utf-8")
    out = tmp_path / "RESULTS.md"
    hand_run = f"{report.KEPT_MARKER}\n\n## The hub mounted in Starlette\n\n| a | b |\n"
    out.write_text("# an old generated page\n\nstale numbers\n\n" + hand_run, encoding="utf-8")
    assert report.main([str(source), "--out", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    assert "stale numbers" not in page and page.startswith("# Benchmark results")
    assert page.endswith("\n\n" + hand_run) and page.count(report.KEPT_MARKER) == 1
    out.write_text("# a page without the marker\n", encoding="utf-8")
    assert report.main([str(source), "--out", str(out)]) == 0
    assert report.KEPT_MARKER not in out.read_text(encoding="utf-8")
