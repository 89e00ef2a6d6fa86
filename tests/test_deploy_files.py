"""deploy/: the Dockerfile, the compose file and the systemd units say what the docs promise,
and every option they pass to `wshub` exists. Nothing here needs Docker."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from wshub.aio import TransportOptions
from wshub.cli import build_parser, serve_config
from wshub.hub.config import ListenConfig

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "docker-compose.yml"
UNITS = (DEPLOY / "wshub.service", DEPLOY / "wshub@.service")

#: The longest a drain takes with the default settings: the drain itself, then the last
#: closing handshakes. Every stop grace period must be longer.
LONGEST_STOP = ListenConfig().drain_timeout + (TransportOptions().close_timeout or 0)


def serve_flags() -> set[str]:
    """The options `wshub serve --help` lists, from a real run of the command."""
    help_text = subprocess.run(
        [sys.executable, "-m", "wshub", "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(re.findall(r"(--[a-z][a-z-]*)", help_text))


def check_serve_arguments(argv: list[str], flags: set[str]) -> None:
    """``argv`` (what follows ``wshub``) is a ``serve`` command whose options all exist."""
    assert "serve" in argv
    serve_args = argv[argv.index("serve") + 1 :]
    for arg in serve_args:
        if arg.startswith("--"):
            assert arg.split("=")[0] in flags, f"wshub serve has no {arg}"
    args = build_parser().parse_args(argv)  # argparse exits 2 on anything it refuses
    assert args.command == "serve"


def dockerfile_json(instruction: str) -> list[str]:
    """The exec-form (JSON) arguments of a Dockerfile instruction."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    found = re.search(rf"^{instruction} (\[.*\])$", text, re.M)
    assert found, f"no {instruction} in exec form"
    value = json.loads(found.group(1))
    assert isinstance(value, list)
    return [str(item) for item in value]


def test_dockerfile_is_small_non_root_healthy_and_drains() -> None:
    """Multi-stage on python:3.11-slim, builds (and checks) the C speedup, runs as a non-root
    user, checks /healthz, stops with SIGTERM; it copies only files that exist."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", text, re.M)
    stages = re.findall(r"^FROM (\S+)", text, re.M)
    assert stages == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"]
    assert "import wshub.protocol._speedups" in text
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^STOPSIGNAL SIGTERM$", text, re.M)
    assert re.search(r"^HEALTHCHECK .*", text, re.M)
    assert "HEALTHCHECK_URL=http://127.0.0.1:8765/healthz" in text
    for copied in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for name in copied.split():
            assert (ROOT / name).exists(), f"COPY {name}: not in the repository"
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8")
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE", "src/"):
        assert f"!{name}\n" in ignore


def test_dockerfile_command_uses_existing_options() -> None:
    """ENTRYPOINT + CMD is a `wshub serve` command line that the CLI accepts."""
    entrypoint, command = dockerfile_json("ENTRYPOINT"), dockerfile_json("CMD")
    assert entrypoint[0] == "wshub"
    argv = entrypoint[1:] + command
    check_serve_arguments(argv, serve_flags())
    assert serve_config(build_parser().parse_args(argv)).hub.listen.port == 8765


def compose_commands() -> dict[str, list[str]]:
    """The ``command: [...]`` of each service of the compose file, by service name."""
    commands: dict[str, list[str]] = {}
    service = ""
    for line in COMPOSE.read_text(encoding="utf-8").splitlines():
        header = re.match(r"^  ([a-z0-9]+):$", line)
        if header:
            service = header.group(1)
        inline = re.match(r"^    command: \[(.*)\]$", line)
        if inline:
            commands[service] = [item.strip().strip('"') for item in inline.group(1).split(",")]
    return commands


def test_compose_runs_redis_with_aof_three_nodes_and_haproxy() -> None:
    """Redis with AOF, three nodes on the ports deploy/haproxy.cfg balances over, each
    draining within its grace period, and haproxy reading deploy/haproxy.cfg."""
    text = COMPOSE.read_text(encoding="utf-8")
    services = re.findall(r"^  ([a-z0-9]+):$", text.split("\nservices:\n")[1], re.M)
    assert services == ["redis", "node1", "node2", "node3", "haproxy"]
    assert re.search(r"- --appendonly\n\s+- \"yes\"", text)
    assert "./haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in text
    assert "dockerfile: deploy/Dockerfile" in text
    assert "stop_signal: SIGTERM" in text
    (grace,) = re.findall(r"stop_grace_period: (\d+)s", text)
    assert int(grace) > LONGEST_STOP
    flags = serve_flags()
    commands = compose_commands()
    ports = []
    for name in ("node1", "node2", "node3"):
        argv = commands[name]
        check_serve_arguments(argv, flags)
        listen = serve_config(build_parser().parse_args(argv)).hub.listen
        ports.append(listen.port)
        assert listen.drain_timeout + (TransportOptions().close_timeout or 0) < int(grace)
        if name != "node1":  # the Dockerfile's health check URL names 8765
            assert f"HEALTHCHECK_URL: http://127.0.0.1:{listen.port}/healthz" in text
    assert ports == [8765, 8766, 8767]


def test_haproxy_config_matches_the_compose_nodes() -> None:
    """deploy/haproxy.cfg (the chaos suite's) checks /healthz and balances over the nodes."""
    haproxy = DEPLOY / "haproxy.cfg"
    if not haproxy.exists():
        pytest.skip("deploy/haproxy.cfg comes with the chaos suite")
    text = haproxy.read_text(encoding="utf-8")
    assert re.search(r"^\s+option httpchk GET /healthz", text, re.M)
    servers = re.findall(r"^\s+server \S+ 127\.0\.0\.1:(\d+)", text, re.M)
    assert servers == ["8765", "8766", "8767"]


@pytest.mark.parametrize("unit", UNITS, ids=lambda path: path.name)
def test_systemd_unit_drains_within_its_stop_timeout(unit: Path) -> None:
    """SIGTERM, a stop timeout longer than a drain, restart on failure, hardening; its
    ExecStart is a `wshub serve` the CLI accepts."""
    text = unit.read_text(encoding="utf-8")
    settings = dict(re.findall(r"^(\w+)=(.*)$", text, re.M))
    assert settings["KillSignal"] == "SIGTERM"
    assert int(settings["TimeoutStopSec"]) > LONGEST_STOP
    assert settings["Restart"] == "on-failure"
    assert settings["Type"] in ("exec", "notify")
    assert settings["DynamicUser"] == "yes" and settings["ProtectSystem"] == "strict"
    argv = shlex.split(settings["ExecStart"].replace("%i", "8766"))
    assert argv[0] == "/opt/wshub/bin/wshub"
    check_serve_arguments(argv[1:], serve_flags())


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
@pytest.mark.parametrize("unit", UNITS, ids=lambda path: path.name)
def test_systemd_accepts_the_unit(unit: Path, tmp_path: Path) -> None:
    """`systemd-analyze verify` finds no unknown key or bad value (wshub from this venv)."""
    wshub = Path(sys.executable).with_name("wshub")
    name = unit.name.replace("@.", "@8766.")
    copy = tmp_path / name
    copy.write_text(unit.read_text(encoding="utf-8").replace("/opt/wshub/bin/wshub", str(wshub)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, check=False
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
