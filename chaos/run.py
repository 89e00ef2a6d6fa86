"""The scenarios, their checks and verdicts, and chaos/RESULTS.md.

``python -m chaos`` runs every scenario at full size and writes chaos/RESULTS.md;
``--short`` runs each one with fewer clients and publications (what CI runs) and writes
chaos/out/RESULTS-short.md. Exit status 1 if any verdict is FAIL.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from chaos.checks import Delivery, check_subscription, compare_histories, missing_from_history
from chaos.cluster import Cluster, Node, environment, redis_command, sigterm
from chaos.workload import Workload, WorkloadSize

__all__ = ["SCENARIOS", "Mode", "Outcome", "main"]

HERE = Path(__file__).resolve().parent
CONFIGS = {"haproxy": "haproxy.cfg", "nginx": "nginx.conf"}
#: Presence entries of a node that died disappear within this (docs/hub.md: each node
#: rewrites its own every 10 s, they expire after 30 s), plus a margin for the check.
PRESENCE_EXPIRY = 30.0
PRESENCE_MARGIN = 15.0
#: After the publishers stop: how long the subscribers get to catch up.
CATCH_UP = 30.0


@dataclass(frozen=True, slots=True)
class Mode:
    """The size of a run: ``full`` (make chaos) or ``short`` (make chaos-short, CI)."""

    name: str
    size: WorkloadSize
    warmup: float  # seconds of traffic before the first fault
    settle: float  # seconds of traffic after the cluster is whole again
    outage: float  # seconds a killed component stays down
    repeat: int  # faults per scenario (each on another node where it applies)


FULL = Mode("full", WorkloadSize(4, 20, 2, 6, 5.0), warmup=5.0, settle=10.0, outage=4.0, repeat=2)
SHORT = Mode("short", WorkloadSize(2, 4, 2, 2, 4.0), warmup=2.0, settle=4.0, outage=2.0, repeat=1)


class Skipped(Exception):
    """The scenario cannot run with what this checkout has (said why)."""


@dataclass
class Outcome:
    """One row of the results table, and why it failed."""

    key: str
    title: str
    verdict: str = "FAIL"
    publications: int = 0
    deliveries: int = 0
    reconnects: int = 0
    gaps: int = 0
    lost: int = 0
    duplicated: int = 0
    duration: float = 0.0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# -- the faults ------------------------------------------------------------------------------


async def _restart_node(cluster: Cluster, node: Node) -> None:
    node.start()
    await node.wait_healthy()
    await cluster.balancer.wait_up({node.name})


async def kill_node(cluster: Cluster, mode: Mode, outcome: Outcome) -> None:
    """(a) ``kill -9`` of a node; restarted after ``outage`` seconds."""
    for i in range(mode.repeat):
        node = cluster.nodes[i % len(cluster.nodes)]
        node.kill9()
        outcome.notes.append(f"kill -9 {node.name}")
        await asyncio.sleep(mode.outage)
        await _restart_node(cluster, node)
        await asyncio.sleep(mode.warmup)


async def rolling_restart(cluster: Cluster, mode: Mode, outcome: Outcome) -> None:
    """(b) SIGTERM each node in turn, wait for its exit, restart it, wait until healthy."""
    for node in cluster.nodes:
        start = time.monotonic()
        sigterm(node)
        status = await node.wait_exit(60.0)
        if status != 0:
            outcome.problems.append(f"{node.name} exited with {status} on SIGTERM")
            node.kill9()
        outcome.notes.append(f"{node.name} stopped in {time.monotonic() - start:.1f} s")
        await _restart_node(cluster, node)
        await asyncio.sleep(mode.warmup)


async def kill_redis(cluster: Cluster, mode: Mode, outcome: Outcome) -> None:
    """(c) ``kill -9`` of redis-server, restarted on its AOF after ``outage`` seconds."""
    for _ in range(mode.repeat):
        cluster.redis.kill9()
        outcome.notes.append("kill -9 redis-server")
        await asyncio.sleep(mode.outage)
        cluster.redis.start()
        await cluster.redis.wait_ready()
        await asyncio.sleep(mode.warmup)


async def sentinel_failover(cluster: Cluster, mode: Mode, outcome: Outcome) -> None:
    """(d) ``SENTINEL FAILOVER``: the replica becomes the primary while clients publish."""
    sentinels, replica = cluster.sentinels, cluster.replica
    assert sentinels is not None and replica is not None
    # A sentinel learns of the replica from the primary's INFO (every 10 s): until then it
    # answers -NOGOODSLAVE.
    deadline = time.monotonic() + 30.0
    while not redis_command(
        sentinels.ports[0], "SENTINEL", "FAILOVER", sentinels.SERVICE
    ).startswith(b"+OK"):
        if time.monotonic() > deadline:
            outcome.problems.append("the sentinels refused SENTINEL FAILOVER for 30 s")
            return
        await asyncio.sleep(0.5)
    deadline = time.monotonic() + 30.0
    while sentinels.primary_port() != replica.port:
        if time.monotonic() > deadline:
            outcome.problems.append("the sentinels did not promote the replica within 30 s")
            return
        await asyncio.sleep(0.2)
    outcome.notes.append(f"failover: primary now on port {replica.port}")
    await asyncio.sleep(mode.warmup)


async def cut_clients_while_redis_down(cluster: Cluster, mode: Mode, outcome: Outcome) -> None:
    """(e) Redis down; the balancer cuts every client's connection; Redis back after a while."""
    for _ in range(mode.repeat):
        cluster.redis.kill9()
        await asyncio.sleep(0.5)
        how = cluster.balancer.cut_all(cluster.nodes)
        outcome.notes.append(f"kill -9 redis-server, then {how}")
        await asyncio.sleep(mode.outage + 3.0)
        cluster.redis.start()
        await cluster.redis.wait_ready()
        await asyncio.sleep(mode.warmup)


@dataclass(frozen=True, slots=True)
class Scenario:
    key: str
    title: str
    fault: Callable[[Cluster, Mode, Outcome], Awaitable[None]]
    sentinel: bool = False


SCENARIOS = [
    Scenario("a", "kill -9 of a node, restart", kill_node),
    Scenario("b", "rolling restart (SIGTERM) of every node", rolling_restart),
    Scenario("c", "kill -9 of Redis, restart on AOF", kill_redis),
    Scenario("d", "Sentinel failover", sentinel_failover, sentinel=True),
    Scenario("e", "clients cut while Redis is down", cut_clients_while_redis_down),
]


# -- one scenario ----------------------------------------------------------------------------


async def run_scenario(
    scenario: Scenario, mode: Mode, workdir: Path, balancer: str = "haproxy"
) -> Outcome:
    outcome = Outcome(scenario.key, scenario.title)
    start = time.monotonic()
    cluster = Cluster.create(workdir / scenario.key, sentinel=scenario.sentinel, balancer=balancer)
    workload: Workload | None = None
    try:
        try:
            await cluster.start()
        except RuntimeError:
            if scenario.sentinel and not any(node.running for node in cluster.nodes):
                raise Skipped(
                    "needs Sentinel support (redis+sentinel:// URLs): the nodes refused "
                    f"{cluster.nodes[0].redis_url}"
                ) from None
            raise
        workload = Workload(cluster.balancer.ws_url, scenario.key, mode.size)
        await workload.start()
        await asyncio.sleep(mode.warmup)
        await scenario.fault(cluster, mode, outcome)
        await asyncio.sleep(mode.settle)
        await workload.stop_publishing()
        await _wait_for(workload.delivered_all, CATCH_UP)
        await check(cluster, workload, outcome)
    except Skipped as exc:
        outcome.verdict = "SKIPPED"
        outcome.notes.append(str(exc))
    except Exception as exc:  # the scenario could not run: a FAIL with the reason and logs
        outcome.problems.append(f"the scenario broke: {exc!r}")
        print(cluster.logs(), file=sys.stderr)
    finally:
        if workload is not None:
            await workload.close()
        cluster.stop()
        outcome.duration = time.monotonic() - start
    if outcome.verdict != "SKIPPED":
        outcome.verdict = "FAIL" if outcome.problems else "PASS"
    return outcome


async def _wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


async def check(cluster: Cluster, workload: Workload, outcome: Outcome) -> None:
    """Every invariant of the scenario; each failure is one line of ``outcome.problems``."""
    outcome.publications = workload.publications
    outcome.reconnects = workload.reconnects
    if workload.unacknowledged:
        outcome.problems.append(
            f"{len(workload.unacknowledged)} publishes never acknowledged: "
            + "; ".join(workload.publish_errors[:3])
        )
    # per subscription: lost, duplicated, order, offsets, explicit gaps
    gapped_by: dict[str, list[set[str]]] = {channel: [] for channel in workload.channels}
    delivered_by: dict[str, list[dict[str, str]]] = {channel: [] for channel in workload.channels}
    for name, channel, events, subscription in workload.subscriptions():
        report = check_subscription(events, workload.acks[channel])
        outcome.deliveries += report.deliveries
        outcome.gaps += len(report.gapped)
        outcome.lost += len(report.lost)
        outcome.duplicated += len(report.duplicated)
        outcome.problems += [f"{name} {channel}: {line}" for line in report.problems()]
        gapped_by[channel].append(set(report.gapped))
        delivered_by[channel].append(
            {e.message_id: e.epoch for e in events if isinstance(e, Delivery)}
        )
        if subscription.ended:
            outcome.problems.append(f"{name} {channel}: the subscription ended")
    for subscriber in workload.subscribers:
        outcome.problems += [f"subscription error: {error}" for error in subscriber.errors[:3]]
    # history identical on every node, and holding every acknowledged publication but those
    # every subscriber of the channel was told it missed (a stream Redis lost)
    for channel in workload.channels:
        read = {node.name: await _history(node, channel) for node in cluster.nodes}
        histories = {name: entries for name, (_, entries) in read.items()}
        outcome.problems += [f"history of {channel}: {p}" for p in compare_histories(histories)]
        epoch, entries = next(iter(read.values()))
        missing = missing_from_history(
            workload.acks[channel],
            entries,
            gapped_by[channel],
            superseded=delivered_by[channel],
            epoch=epoch,
        )
        if missing:
            outcome.problems.append(
                f"history of {channel}: {len(missing)} acknowledged publications missing"
                f" or at another offset, not reported as gaps, e.g. {missing[:3]}"
            )
    # presence: exactly the live subscribers, dead connections expired
    waited = time.monotonic()
    presence_problems = await _wait_presence(cluster, workload)
    outcome.problems += presence_problems
    if not presence_problems:
        outcome.notes.append(
            f"presence exact on every node after {time.monotonic() - waited:.0f} s"
        )
    # every node healthy
    for node in cluster.nodes:
        if not await node.healthy():
            outcome.problems.append(f"{node.name}: /healthz is not 200")


async def _history(node: Node, channel: str) -> tuple[str | None, list[tuple[int, str]]]:
    """The epoch and the whole history of ``channel`` read through ``node``'s HTTP API."""
    entries: list[tuple[int, str]] = []
    query = "limit=1000"
    while True:
        status, body = await asyncio.to_thread(node.get, f"/api/history/{channel}?{query}")
        if status != 200 or not isinstance(body, dict):
            return None, [(-1, f"HTTP {status}")]
        pubs = body.get("publications", [])
        entries += [(int(p["offset"]), str(p["data"].get("mid"))) for p in pubs]
        if len(pubs) < 1000:
            return str(body.get("epoch")), entries
        query = f"limit=1000&since_offset={pubs[-1]['offset']}&since_epoch={body['epoch']}"


async def _wait_presence(cluster: Cluster, workload: Workload) -> list[str]:
    """Wait (at most the documented expiry plus a margin) until every node reports exactly
    the live subscribers as present on every channel; the differences left otherwise."""
    deadline = time.monotonic() + PRESENCE_EXPIRY + PRESENCE_MARGIN
    while True:
        problems = []
        expected = workload.presence_expected()
        for node in cluster.nodes:
            for channel in workload.channels:
                status, body = await asyncio.to_thread(node.get, f"/api/presence/{channel}")
                if status != 200 or not isinstance(body, dict):
                    problems.append(f"presence of {channel} on {node.name}: HTTP {status}")
                    continue
                present = {c["client"] for c in body["clients"]}
                stale, absent = present - expected[channel], expected[channel] - present
                if stale or absent:
                    problems.append(
                        f"presence of {channel} on {node.name}: {len(stale)} stale,"
                        f" {len(absent)} missing"
                    )
        if not problems or time.monotonic() > deadline:
            return problems
        await asyncio.sleep(1.0)


# -- the report ------------------------------------------------------------------------------

COLUMNS = (
    "scenario", "publications", "deliveries", "reconnects", "explicit gaps",
    "lost", "duplicated", "verdict", "duration",
)  # fmt: skip


def table(outcomes: list[Outcome]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for o in outcomes:
        cells = [
            f"({o.key}) {o.title}", o.publications, o.deliveries, o.reconnects, o.gaps,
            o.lost, o.duplicated, f"**{o.verdict}**", f"{o.duration:.0f} s",
        ]  # fmt: skip
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def report(
    outcomes: list[Outcome], mode: Mode, env: dict[str, str], total: float, balancer: str
) -> str:
    size = mode.size
    out = [
        f"# Chaos suite results ({mode.name} run)",
        "",
        f"Written by `python -m chaos{' --short' if mode.name == 'short' else ''}`"
        f" (`make chaos{'-short' if mode.name == 'short' else ''}`) on"
        f" {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. What each scenario does and"
        ' checks: docs/deployment.md, "The chaos suite".',
        "",
        table(outcomes),
        "",
        f"Each scenario: a fresh redis-server (AOF, `appendfsync always`), 3 `wshub serve`"
        f" nodes on it, {balancer} in front (deploy/{CONFIGS[balancer]});"
        f" {size.subscribers} subscribers"
        f" on {size.channels_per_subscriber} of {size.channels} channels each, {size.publishers}"
        f" publishers at {size.rate:g} publications/s each, all `HubClient` through {balancer}."
        " *publications*: acknowledged publishes; *deliveries*: publications received, all"
        " subscriptions together; *explicit gaps*: acknowledged publications a subscriber"
        " was told it missed (error 116); *lost*: missing without that.",
        "",
        "## Environment",
        "",
        *(f"- {k}: {v}" for k, v in env.items()),
        f"- platform: {platform.platform()}",
        f"- total time: {total:.0f} s",
        "",
        "## Details",
        "",
    ]
    for o in outcomes:
        out.append(f"### ({o.key}) {o.title}: {o.verdict}")
        out.append("")
        out += [f"- {note}" for note in o.notes]
        out += [f"- **problem**: {p}" for p in o.problems[:20]]
        if len(o.problems) > 20:
            out.append(f"- ... and {len(o.problems) - 20} more problems")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--short", action="store_true", help="the short run (CI)")
    parser.add_argument(
        "--only", default="", help="comma-separated scenario keys, e.g. a,c (default: all)"
    )
    parser.add_argument("--results", type=Path, help="where to write the results (Markdown)")
    parser.add_argument(
        "--balancer",
        choices=sorted(CONFIGS),
        default="haproxy",
        help="the load balancer in front of the nodes (default: haproxy)",
    )
    args = parser.parse_args(argv)
    mode = SHORT if args.short else FULL
    keys = {k.strip() for k in args.only.split(",") if k.strip()}
    unknown = keys - {s.key for s in SCENARIOS}
    if unknown:
        parser.error(f"unknown scenario {', '.join(sorted(unknown))}")
    if shutil.which(args.balancer) is None and not os.path.exists(f"/usr/sbin/{args.balancer}"):
        parser.error(f"{args.balancer} is not installed (apt-get install {args.balancer})")
    if args.results is not None:
        results = args.results
    elif args.short:
        results = HERE / "out" / "RESULTS-short.md"
    elif args.balancer != "haproxy" or keys:
        results = HERE / "out" / f"RESULTS-{args.balancer}.md"  # not the published run
    else:
        results = HERE / "RESULTS.md"
    logging.basicConfig(level=logging.ERROR, format="%(name)s: %(message)s")
    return asyncio.run(_main(mode, keys, results, args.balancer))


async def _main(mode: Mode, keys: set[str], results: Path, balancer: str) -> int:
    env = environment()
    start = time.monotonic()
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="wshub-chaos-") as workdir:
        for scenario in SCENARIOS:
            if keys and scenario.key not in keys:
                continue
            print(f"== ({scenario.key}) {scenario.title} ...", flush=True)
            outcome = await run_scenario(scenario, mode, Path(workdir), balancer)
            print(f"   {outcome.verdict} in {outcome.duration:.0f} s", flush=True)
            for line in outcome.notes + outcome.problems[:10]:
                print(f"   {line}", flush=True)
            outcomes.append(outcome)
    text = report(outcomes, mode, env, time.monotonic() - start, balancer)
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(text)
    print()
    print(table(outcomes))
    print(f"\nwritten to {results}")
    return 1 if any(o.verdict == "FAIL" for o in outcomes) else 0
