"""Tests for benchmarks/hub_report.py: the hub table and the targets of the hub issue."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hub_report", BENCHMARKS / "hub_report.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("hub_report", module)
    spec.loader.exec_module(module)
    return module


hub_report = _load()


def _hub(sat: float, p99: float, cpu: float, many_p99: float, rate: float, rss: float,
         setup: float, kept_up: bool = True) -> dict[str, Any]:  # fmt: skip
    fixed = {"value": 100_000.0, "p50_us": 4000.0, "p99_us": p99, "srv_cpu_pct": cpu}
    fixed |= {"kept_up": kept_up, "overall_per_s": 60_000.0, "errors": []}
    return {
        "room1000_sat": {"value": sat, "setup_conn_per_s": setup, "errors": []},
        "room1000_fixed": fixed,
        "rooms_many": {
            "value": 50_000.0,
            "p50_us": 800.0,
            "p99_us": many_p99,
            "srv_cpu_pct": 70.0,
            "kept_up": True,
            "errors": [],
        },
        "idle10k": {"value": rate, "rss_per_conn_kb": rss, "errors": []},
    }


def _results(wshub: dict[str, Any], **others: dict[str, Any]) -> dict[str, Any]:
    scenarios = [
        {"id": sid, "label": f"{sid} label"}
        for sid in ("room1000_sat", "room1000_fixed", "rooms_many", "idle10k")
    ]
    meta = {"scenarios": scenarios, "quick": True, "date": "2026-12-06 05:00 UTC", "reps": 1}
    meta["versions"] = {"wshub": "wshub 0.1.0 at commit abc1234", "centrifuge": "centrifuge 0.15"}
    return {"meta": meta, "summary": {"wshub": wshub, **others}, "runs": {}}


CENTRIFUGE = _hub(sat=200_000, p99=10_000, cpu=90, many_p99=10_000, rate=5_000, rss=30,
                  setup=6_000)  # fmt: skip


def _status(results: dict[str, Any]) -> dict[str, bool | None]:
    return {t.label: t.met for t in hub_report.targets(results["summary"])}


def test_targets_met_when_every_ratio_is_on_the_right_side() -> None:
    """Values past each threshold (including the 8 KiB absolute one) are all marked met."""
    wshub = _hub(sat=300_001, p99=9_000, cpu=72, many_p99=5_000, rate=6_001, rss=7.9,
                 setup=3_001)  # fmt: skip
    status = _status(_results(wshub, centrifuge=CENTRIFUGE))
    measured = {label: met for label, met in status.items() if "deflate" not in label}
    assert all(met is True for met in measured.values()), status
    assert len(measured) == 7
    # the compression target is never measured by this harness: no verdict, not "met"
    assert [met for label, met in status.items() if "deflate" in label] == [None]


def test_targets_not_met_just_past_each_threshold() -> None:
    """Each ratio just on the wrong side of its threshold is not met."""
    wshub = _hub(sat=299_000, p99=10_100, cpu=73, many_p99=5_100, rate=5_990, rss=8.1,
                 setup=2_990)  # fmt: skip
    status = _status(_results(wshub, centrifuge=CENTRIFUGE))
    assert [met for label, met in status.items() if "deflate" not in label] == [False] * 7


def test_behind_is_never_met_even_with_low_latency_numbers() -> None:
    """A wshub that fell behind at the fixed rate fails the latency and CPU targets."""
    wshub = _hub(sat=300_001, p99=1_000, cpu=10, many_p99=5_000, rate=6_001, rss=7,
                 setup=3_001, kept_up=False)  # fmt: skip
    result = {
        t.label: t for t in hub_report.targets(_results(wshub, centrifuge=CENTRIFUGE)["summary"])
    }
    fixed = [t for label, t in result.items() if "room1000_fixed" in label]
    assert [t.met for t in fixed] == [False, False]
    assert all("behind" in t.got for t in fixed)


def test_no_centrifuge_gives_no_result_rather_than_a_verdict() -> None:
    """Without the reference hub the ratio targets have no verdict; the absolute one does."""
    wshub = _hub(sat=1, p99=1, cpu=1, many_p99=1, rate=1, rss=5, setup=1)
    status = _status(_results(wshub))
    assert status["`idle10k` RSS per subscribed connection"] is True
    assert sum(met is None for met in status.values()) == 7


def test_page_has_the_table_in_hub_order_and_marks_failures(tmp_path: Path) -> None:
    """The page lists hubs wshub first, shows FAIL and behind cells, errors and the commit."""
    wshub = _hub(sat=250_000, p99=9_000, cpu=72, many_p99=5_000, rate=6_500, rss=7.5,
                 setup=300)  # fmt: skip
    slow = _hub(sat=18_000, p99=1, cpu=99, many_p99=1, rate=800, rss=31, setup=900, kept_up=False)
    slow["idle10k"] = {"value": None, "errors": ["setup timeout"]}
    results = _results(wshub, **{"python-socketio": slow, "centrifuge": CENTRIFUGE})
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    out = tmp_path / "HUB.md"
    assert hub_report.main([str(path), "--out", str(out), "--note", "A note."]) == 0
    page = out.read_text()
    header = next(line for line in page.splitlines() if line.startswith("| scenario |"))
    assert header.split(" | ")[1:] == ["**wshub**", "centrifuge", "python-socketio |"]
    rows = {line.split(" | ")[0]: line for line in page.splitlines() if line.startswith("| `")}
    assert rows["| `room1000_sat`: deliveries/s"].endswith("| 250,000 | 200,000 | 18,000 |")
    assert "behind (60,000/s)" in rows["| `room1000_fixed`: p50 / p99 ms (server CPU)"]
    assert "| 4.0 / 9.0 (72 %) |" in rows["| `room1000_fixed`: p50 / p99 ms (server CPU)"]
    assert rows["| `idle10k`: connect+subscribe/s"].endswith("| 6,500 | 5,000 | FAIL |")
    assert "python-socketio / `idle10k`: ['setup timeout']" in page
    assert "\nA note.\n" in page
    assert "the most in any scenario" in page and "wshub 0 %, centrifuge 0 %" in page
    x = hub_report.TIMES
    assert (
        f"| `room1000_fixed` p99 latency | ≤ 1 {x} centrifuge | 9.0 vs 10 ms: 0.90{x} | met |"
        in page
    )
    assert "quick mode" in page and "wshub commit measured: abc1234;" in page
    assert "**centrifuge**:" in page and "no history" in page.lower()


def test_unreadable_results_is_a_one_line_error(tmp_path: Path, capsys: Any) -> None:
    """A missing or malformed results.json exits 2 with a message, no traceback."""
    bad = tmp_path / "results.json"
    bad.write_text("{not json")
    assert hub_report.main([str(bad), "--out", str(tmp_path / "x.md")]) == 2
    assert hub_report.main([str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("hub_report: cannot read") == 2
    assert not (tmp_path / "x.md").exists()
