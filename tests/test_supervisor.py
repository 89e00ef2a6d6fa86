"""Tests for ``wshub serve --workers N`` (wshub.supervisor): real processes on a real port,
sharing a real redis-server; and the refusals of configurations that would split a hub."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import orjson
import pytest

from wshub.cli import build_parser, load_file, main, serve_config
from wshub.exceptions import ConfigError
from wshub.hub.client import HubClient, Subscription
from wshub.supervisor import READY_PREFIX, Supervisor, reserve_port
from wshub.testing import RedisServer

API_KEY = "workers-test-key"


class Supervised:
    """A running ``wshub serve --workers N``: its process, port and the lines it printed."""

    def __init__(self, process: asyncio.subprocess.Process, lines: list[str]) -> None:
        self.process = process
        self.lines = lines
        found = re.search(r"hub on ws://127\.0\.0\.1:(\d+)/ws", "".join(lines))
        assert found, lines
        self.port = int(found.group(1))
        self.url = f"ws://127.0.0.1:{self.port}/ws"

    def workers(self) -> set[int]:
        """The supervisor's child processes now."""
        pid = self.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return {int(child) for child in children}

    async def nodes(self, key: str = API_KEY) -> list[dict[str, object]]:
        """``GET /api/nodes``: one report per live worker (each worker is a node)."""

        def call() -> list[dict[str, object]]:
            request = urllib.request.Request(
                f"http://127.0.0.1:{self.port}/api/nodes",
                headers={"Authorization": f"Bearer {key}"},
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                nodes: list[dict[str, object]] = orjson.loads(response.read())["nodes"]
                return nodes

        return await asyncio.to_thread(call)


def environment(api_key: str | None = API_KEY) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSHUB_")}
    return env if api_key is None else {**env, "WSHUB_API_KEY": api_key}


@asynccontextmanager
async def supervised(*args: str, api_key: str | None = API_KEY) -> AsyncIterator[Supervised]:
    """``python -m wshub serve --port 0 ARGS`` until it says where the hub is."""
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "wshub", "serve", "--port", "0", "--no-ticker", *args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environment(api_key),
    )
    assert process.stdout is not None
    lines: list[str] = []
    try:
        while not lines or not lines[-1].startswith(READY_PREFIX):
            line = (await process.stdout.readline()).decode()
            assert line, f"wshub serve exited early: {lines}"
            lines.append(line)
        yield Supervised(process, lines)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def gone(pid: int) -> bool:
    """Whether process ``pid`` has exited (a zombie counts: it no longer runs)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


async def until(condition: Callable[[], bool]) -> None:
    """Wait for ``condition()`` to become true (the test's own timeout bounds the wait)."""
    while not condition():
        await asyncio.sleep(0.05)


async def spread_subscribers(
    served: Supervised, stack: AsyncExitStack, channel: str, count: int
) -> list[tuple[HubClient, Subscription]]:
    """``count`` subscribers or more, until both workers have some (the kernel chooses)."""
    clients: list[tuple[HubClient, Subscription]] = []
    while True:
        while len(clients) < count:
            client = await stack.enter_async_context(HubClient(served.url))
            clients.append((client, await client.subscribe(channel)))
        # Each worker's report counts its own connections; the other's arrives through Redis.
        while True:
            nodes = await served.nodes()
            counts = [int(n["counters"]["connections"]) for n in nodes]  # type: ignore[index]
            if len(nodes) == 2 and sum(counts) == len(clients):
                break
            await asyncio.sleep(0.1)
        if all(counts):
            return clients
        count = len(clients) + 1


@pytest.mark.redis
@pytest.mark.asyncio(loop_factories=["asyncio"])
async def test_workers_are_one_hub_that_survives_a_worker_killed(redis: RedisServer) -> None:
    """--workers 2: two processes on one port, one hub through Redis; 8 subscribers spread
    over both get a publication; a worker killed with SIGKILL is restarted and its clients
    reconnect and recover what was published meanwhile; SIGTERM stops everything with 0."""
    async with supervised("--workers", "2", "--redis", redis.url) as served:
        first = served.workers()
        assert len(first) == 2
        shown = re.match(
            r"wshub: 2 workers \(pids (\d+), (\d+)\) under a supervisor", served.lines[0]
        )
        assert shown is not None and {int(pid) for pid in shown.groups()} == first
        async with AsyncExitStack() as stack:
            clients = await spread_subscribers(served, stack, "chat:workers", 8)
            publisher = await stack.enter_async_context(HubClient(served.url))
            await publisher.subscribe("chat:workers")  # the demo's chat: members publish
            offset = await publisher.publish("chat:workers", {"n": 1})
            for _, sub in clients:
                pub = await sub.get()
                assert (pub.offset, pub.data) == (offset, {"n": 1})

            victim = min(first)
            before = {node["node"] for node in await served.nodes()}
            os.kill(victim, signal.SIGKILL)
            await until(lambda: victim not in served.workers())
            await until(lambda: len(served.workers()) == 2)
            assert len(served.workers() - first) == 1
            # The new worker serves: a node that was not there before reports through Redis.
            while not {node["node"] for node in await served.nodes()} - before:
                await asyncio.sleep(0.1)
            # Published while some clients are cut off: each gets it once, in order.
            later = [await publisher.publish("chat:workers", {"n": n}) for n in (2, 3)]
            for _, sub in clients:
                got = [await sub.get() for _ in later]
                assert [(p.offset, p.data["n"]) for p in got] == list(
                    zip(later, (2, 3), strict=True)
                )
            assert any(client.reconnects for client, _ in clients)
        workers = served.workers()
        served.process.send_signal(signal.SIGTERM)
        assert await served.process.wait() == 0
        assert all(gone(pid) for pid in workers)


@pytest.mark.redis
@pytest.mark.asyncio(loop_factories=["asyncio"])
async def test_workers_stop_when_the_supervisor_is_killed(redis: RedisServer) -> None:
    """SIGKILL of the supervisor leaves no worker behind: the kernel tells each one. (And
    the demo's made-up API key, printed once, is every worker's.)"""
    async with supervised("--workers", "2", "--redis", redis.url, api_key=None) as served:
        workers = served.workers()
        assert len(workers) == 2
        shown = re.search(
            r"^wshub: API key of the console and the HTTP API: (\S+)$", served.lines[1]
        )
        assert shown is not None
        # Both workers accept it: a node lists itself first, and the kernel gives fresh
        # connections to either worker.
        answered = set()
        for _ in range(64):
            answered.add((await served.nodes(shown.group(1)))[0]["node"])
            if len(answered) == 2:
                break
        assert len(answered) == 2
        served.process.kill()
        await served.process.wait()
        # Orphans are reparented: wait until neither runs any more.
        await until(lambda: all(gone(pid) for pid in workers))
        assert all(gone(pid) for pid in workers)


@pytest.mark.redis
@pytest.mark.asyncio(loop_factories=["asyncio"])
async def test_sighup_restarts_the_workers_one_after_the_other(redis: RedisServer) -> None:
    """SIGHUP replaces every worker, one at a time, while a client keeps its subscription."""
    async with supervised("--workers", "2", "--redis", redis.url, "--no-console") as served:
        first = served.workers()
        before = {node["node"] for node in await served.nodes()}
        async with HubClient(served.url) as client:
            sub = await client.subscribe("chat:rolling")
            served.process.send_signal(signal.SIGHUP)
            await until(lambda: not (served.workers() & first))
            await until(lambda: len(served.workers()) == 2)
            # Both new workers serve: two nodes that were not there before report.
            while len({node["node"] for node in await served.nodes()} - before) < 2:
                await asyncio.sleep(0.1)
            async with HubClient(served.url) as publisher:
                await publisher.subscribe("chat:rolling")
                offset = await publisher.publish("chat:rolling", {"after": "restart"})
            pub = await sub.get()
            assert (pub.offset, pub.data) == (offset, {"after": "restart"})
        served.process.send_signal(signal.SIGINT)
        assert await served.process.wait() == 0
        assert served.process.stderr is not None
        logs = (await served.process.stderr.read()).decode()
        assert "restarting the workers one after the other" in logs
        assert "Traceback" not in logs


@pytest.mark.redis
def test_a_worker_that_cannot_start_stops_them_all(tmp_path: Path) -> None:
    """A Redis that does not answer: the workers fail, the supervisor exits 1, no traceback."""
    result = subprocess.run(
        [
            *(sys.executable, "-m", "wshub", "serve", "--port", "0", "--workers", "2"),
            "--redis",
            "redis://127.0.0.1:1/0",
        ],
        capture_output=True,
        text=True,
        env=environment(),
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "wshub: error: cannot reach Redis" in result.stderr
    assert "Traceback" not in result.stderr
    assert "hub on" not in result.stdout


def test_the_port_is_held_for_the_workers() -> None:
    """reserve_port binds a free port with SO_REUSEPORT and accepts nothing on it."""
    with reserve_port("127.0.0.1") as held:
        port = held.getsockname()[1]
        assert port > 0
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5)
    with pytest.raises(OSError):
        reserve_port("192.0.2.1")  # TEST-NET-1: not an address of this machine


# --- a crash loop, with stand-in workers ------------------------------------------------------

# Ready at once, then exits with 3; the first one waits a little, so that the supervisor sees
# every worker ready (a worker that dies before that is a failed start, not a crash loop).
CRASHING_WORKER = f"""
import os, sys, time
print({READY_PREFIX!r} + "x", flush=True)
first = not os.path.exists(sys.argv[1])
open(sys.argv[1], "a").close()
time.sleep(2 if first else 0)
raise SystemExit(3)
"""

# Ready, then deaf to SIGTERM.
STUBBORN_WORKER = f"""
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print({READY_PREFIX!r} + "x", flush=True)
time.sleep(600)
"""

SUPERVISE = """
import logging, sys
from wshub.supervisor import Supervisor
logging.basicConfig(level=logging.INFO, format="%(message)s")
worker = [sys.executable, "-c", *sys.argv[1:]]
options = dict(restart_delay=0.05, max_restart_delay=0.2, stop_timeout=0.5)
sys.exit(Supervisor(worker, workers=1, **options).run())
"""


def test_a_crash_loop_backs_off(tmp_path: Path) -> None:
    """A worker that keeps dying is restarted after 0.05, 0.1, 0.2, 0.2 s... (logged)."""
    process = subprocess.Popen(
        [sys.executable, "-c", SUPERVISE, CRASHING_WORKER, str(tmp_path / "started")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    delays: list[str] = []
    while len(delays) < 5:
        line = process.stderr.readline()
        assert line, "the supervisor stopped"
        found = re.search(r"exited with status 3 after .* restarting it in ([\d.]+) s", line)
        if found:
            delays.append(found.group(1))
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert delays == ["0.05", "0.10", "0.20", "0.20", "0.20"]
    assert process.returncode == 1  # its last worker had exited with 3
    assert out.startswith("wshub: 1 workers") and out.endswith(f"{READY_PREFIX}x\n")
    assert "Traceback" not in err


def test_a_worker_that_ignores_sigterm_is_killed() -> None:
    """A worker still running stop_timeout after SIGTERM is killed; the exit status says so."""
    process = subprocess.Popen(
        [sys.executable, "-c", SUPERVISE, STUBBORN_WORKER],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().startswith("wshub: 1 workers (pids ")
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert re.search(r"worker 0 \(pid \d+\) did not stop: killed", err)


def test_a_worker_whose_supervisor_is_gone_does_not_serve() -> None:
    """--worker-of a process that is not its parent: the worker exits at once, with 0."""
    result = subprocess.run(
        [sys.executable, "-m", "wshub", "serve", "--port", "0", "--ephemeral", "--worker-of", "1"],
        capture_output=True,
        text=True,
        env=environment(),
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_the_supervisor_needs_a_worker() -> None:
    """Supervisor(workers=0) is a programming error, refused at once."""
    with pytest.raises(ValueError, match="workers must be >= 1"):
        Supervisor(["true"], workers=0)


# --- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--workers", "2"], "wshub: error: workers: 2 workers need a shared broker"),
        (["--workers", "3", "--ephemeral"], "wshub: error: workers: 3 workers need a shared"),
        (["--reuse-port"], "wshub: error: listen.reuse_port: sharing the port needs a shared"),
        (["--workers", "0"], "argument --workers: must be an integer >= 1, got '0'"),
        (["--workers", "-1"], "argument --workers: must be an integer >= 1, got '-1'"),
        (
            ["--workers", "2", "--redis", "redis://127.0.0.1:1/0", "--host", "192.0.2.1"],
            "wshub: error: cannot listen on 192.0.2.1:0: the address is not one of this machine's",
        ),
        (["--workers", "two"], "argument --workers: must be an integer >= 1, got 'two'"),
    ],
)
def test_serve_refuses_processes_that_would_split(
    args: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Several workers or --reuse-port without Redis, a bad count, or an address the
    supervisor cannot hold a port on: one line, exit 2."""
    with pytest.raises(SystemExit) as info:
        main(["serve", "--port", "0", *args])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert expected in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("workers = 2\n", "workers: 2 workers need a shared broker"),
        ("workers = 0\n", "workers: must be an integer >= 1, got 0"),
        ('workers = "2"\n', "workers: must be an integer >= 1, got '2'"),
        ("workers = true\n", "workers: must be an integer >= 1, got True"),
        ("[listen]\nreuse_port = true\n", "listen.reuse_port: sharing the port needs"),
    ],
)
def test_the_config_file_refuses_them_too(
    tmp_path: Path, text: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same checks on a file: config check and serve name the field, exit 2."""
    path = tmp_path / "wshub.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(expected)):
        load_file(path)
    assert main(["config", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"wshub: error: {expected}") and err.count("\n") == 1
    with pytest.raises(SystemExit) as info:
        main(["serve", "--config", str(path), "--port", "0"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"wshub: error: {expected}") and err.count("\n") == 1


def test_redis_on_the_command_line_lets_a_file_have_workers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file with workers = 2 runs with --redis: the check is made on the final settings;
    --workers wins over the file, and config show prints the field."""
    path = tmp_path / "wshub.toml"
    path.write_text('workers = 2\n[storage]\nkind = "redis"\nurl = "redis://h:1/0"\n')
    assert load_file(path).workers == 2
    path.write_text("workers = 2\n")
    parse = build_parser().parse_args
    settings = serve_config(parse(["serve", "--config", str(path), "--redis", "redis://h:1/0"]))
    assert settings.workers == 2
    one = parse(["serve", "--config", str(path), "--redis", "redis://h:1/0", "--workers", "1"])
    assert serve_config(one).workers == 1
    assert serve_config(parse(["serve"])).workers == 1
    capsys.readouterr()
    assert main(["config", "show", "--redis", "redis://h:1/0", "--workers", "3"]) == 0
    assert "\nworkers = 3\n" in capsys.readouterr().out
    assert main(["config", "init", str(tmp_path / "new.toml")]) == 0
    assert "\nworkers = 1\n" in (tmp_path / "new.toml").read_text()
    assert load_file(tmp_path / "new.toml").workers == 1
