"""The real components of a chaos scenario, each a child process on loopback: redis-server
with AOF (and, for the failover scenario, a replica and sentinels), ``wshub serve`` nodes,
and haproxy configured from ``deploy/haproxy.cfg``.

Every process runs in the scenario's own temporary directory, where it logs; the suite
prints the tail of a log when a component does not come up.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

__all__ = [
    "API_KEY",
    "BALANCERS",
    "Balancer",
    "Cluster",
    "HAProxy",
    "Nginx",
    "Node",
    "RedisProcess",
    "Sentinels",
    "free_port",
]

ROOT = Path(__file__).resolve().parent.parent
HAPROXY_TEMPLATE = ROOT / "deploy" / "haproxy.cfg"
NGINX_TEMPLATE = ROOT / "deploy" / "nginx.conf"
#: The HTTP API key of the suite's nodes (loopback only, made up for the run).
API_KEY = "chaos-suite-api-key"
#: The nodes' configuration: one namespace with history and presence, anonymous clients
#: that may subscribe and publish in it.
NODE_CONFIG = """\
[auth]
allow_anonymous = true
anonymous_permissions = ["chaos:*:spr"]

[[namespaces]]
name = "chaos"
history_size = 100000
presence = true
publish = "any"
slow_consumer = "disconnect"
queue_size = 1024
"""


def free_port() -> int:
    """A port nobody listens on now (bound to 0 and released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _get(url: str) -> tuple[int, Any]:
    """GET ``url`` with the suite's API key: status (0 if unreachable) and JSON body."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {API_KEY}"})
    try:
        with urllib.request.urlopen(request, timeout=10.0) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except (OSError, ValueError):
        return 0, None


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def redis_command(port: int, *args: str) -> bytes:
    """One command in RESP, the raw reply (for the few commands the suite sends itself)."""
    request = f"*{len(args)}\r\n".encode() + b"".join(
        f"${len(a.encode())}\r\n{a}\r\n".encode() for a in args
    )
    with socket.create_connection(("127.0.0.1", port), timeout=5.0) as sock:
        sock.sendall(request)
        return sock.recv(65536)


class _Process:
    """A child process started from a fixed command line, restartable, killable."""

    def __init__(self, name: str, directory: Path) -> None:
        self.name = name
        self.directory = directory
        self.log_path = directory / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 (closed with the process)
        try:
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        finally:
            log.close()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: int) -> None:
        if self.running:
            assert self.process is not None
            self.process.send_signal(sig)

    def kill9(self) -> None:
        """``kill -9``: no chance to clean up."""
        if self.running:
            assert self.process is not None
            self.process.kill()
            self.process.wait()

    async def wait_exit(self, timeout: float) -> int | None:
        """The exit status, or ``None`` if still running after ``timeout``."""
        deadline = time.monotonic() + timeout
        while self.running and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return None if self.process is None else self.process.poll()

    def stop(self) -> None:
        if self.running:
            assert self.process is not None
            self.process.terminate()
            try:
                self.process.wait(timeout=15.0)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self) -> str:
        return f"--- {self.log_path} ---\n{_tail(self.log_path)}"


class RedisProcess(_Process):
    """redis-server on a fixed port with AOF (``appendfsync always``): a ``kill -9`` loses
    nothing it acknowledged, and a restart on the same port and directory reloads it."""

    def __init__(
        self, name: str, directory: Path, port: int, *, replica_of: int | None = None
    ) -> None:
        super().__init__(name, directory)
        self.port = port
        self.replica_of = replica_of
        self.data = directory / f"{name}-data"
        self.data.mkdir(exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        command = [
            "redis-server",
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.data),
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--maxmemory-policy", "noeviction",
            "--protected-mode", "yes",
            "--daemonize", "no",
        ]  # fmt: skip
        if self.replica_of is not None:
            command += ["--replicaof", "127.0.0.1", str(self.replica_of)]
        return command

    async def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                break
            if await asyncio.to_thread(_redis_ping, self.port):
                return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"{self.name} did not answer PING\n{self.log_tail()}")


class Sentinels:
    """``redis-sentinel`` processes watching one primary under the name ``chaos``."""

    SERVICE = "chaos"

    def __init__(self, directory: Path, primary_port: int, count: int = 3) -> None:
        self.directory = directory
        self.ports = [free_port() for _ in range(count)]
        self.processes: list[_Sentinel] = [
            _Sentinel(f"sentinel{i + 1}", directory, port, primary_port, quorum=count // 2 + 1)
            for i, port in enumerate(self.ports)
        ]

    @property
    def url(self) -> str:
        """The ``redis+sentinel://`` URL of the documented form (branch sentinel)."""
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.ports)
        return f"redis+sentinel://{hosts}/{self.SERVICE}"

    def start(self) -> None:
        for process in self.processes:
            process.start()

    def stop(self) -> None:
        for process in self.processes:
            process.stop()

    def primary_port(self) -> int | None:
        """The primary's port as the first sentinel that answers sees it."""
        for port in self.ports:
            try:
                reply = redis_command(
                    port, "SENTINEL", "get-master-addr-by-name", self.SERVICE
                ).decode()
            except OSError:
                continue
            numbers = re.findall(r"^(\d+)\r$", reply, flags=re.M)
            if numbers:
                return int(numbers[-1])
        return None


class _Sentinel(_Process):
    def __init__(
        self, name: str, directory: Path, port: int, primary_port: int, *, quorum: int
    ) -> None:
        super().__init__(name, directory)
        self.port = port
        self.config = directory / f"{name}.conf"
        self.config.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
            f"sentinel monitor {Sentinels.SERVICE} 127.0.0.1 {primary_port} {quorum}\n"
            f"sentinel down-after-milliseconds {Sentinels.SERVICE} 1000\n"
            f"sentinel failover-timeout {Sentinels.SERVICE} 10000\n"
            f"sentinel parallel-syncs {Sentinels.SERVICE} 1\n"
        )

    def command(self) -> list[str]:
        return ["redis-sentinel", str(self.config)]


class Node(_Process):
    """A ``wshub serve`` node on its own port, sharing Redis with the others."""

    def __init__(self, name: str, directory: Path, port: int, redis_url: str) -> None:
        super().__init__(name, directory)
        self.port = port
        self.redis_url = redis_url
        self.config = directory / "node.toml"
        self.config.write_text(NODE_CONFIG)

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "wshub", "serve",
            "--config", str(self.config),
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--redis", self.redis_url,
            "--api-key", API_KEY,
            "--no-chat", "--no-ticker", "--no-board", "--no-console",
            "--close-timeout", "5",
        ]  # fmt: skip

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> tuple[int, Any]:
        """GET ``path`` on this node directly (with the API key): status and JSON body."""
        return _get(self.base + path)

    async def healthy(self) -> bool:
        status, _ = await asyncio.to_thread(self.get, "/healthz")
        return status == 200

    async def wait_healthy(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                break
            if await self.healthy():
                return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.name} is not healthy\n{self.log_tail()}")


class Balancer(_Process):
    """The load balancer in front of the nodes: where clients connect, and how the suite
    cuts every client's connection."""

    port: int

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def wait_up(self, names: set[str], timeout: float = 20.0) -> None:
        """Wait until the balancer sends connections to the nodes ``names``."""
        raise NotImplementedError

    def cut_all(self, nodes: list[Node]) -> str:
        """Cut every proxied connection (the clients see their connection drop)."""
        raise NotImplementedError


class HAProxy(Balancer):
    """haproxy in front of the nodes, its configuration made from ``deploy/haproxy.cfg``
    with the suite's ports, faster health checks, and a runtime API socket."""

    def __init__(self, directory: Path, port: int, nodes: list[Node]) -> None:
        super().__init__("haproxy", directory)
        self.port = port
        self.socket = directory / "haproxy.sock"
        self.config = directory / "haproxy.cfg"
        template = HAPROXY_TEMPLATE.read_text()
        self.config.write_text(haproxy_config(template, port, self.socket, nodes))

    def command(self) -> list[str]:
        return ["haproxy", "-db", "-f", str(self.config)]

    def runtime(self, command: str) -> str:
        """One command of the runtime API (``shutdown sessions server wshub/node1``, ...)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5.0)
            sock.connect(str(self.socket))
            sock.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def servers_up(self) -> set[str]:
        """The backend servers haproxy sees as up (operational state 2)."""
        up = set()
        for line in self.runtime("show servers state wshub").splitlines():
            fields = line.split()
            if len(fields) > 5 and fields[1] == "wshub" and fields[5] == "2":
                up.add(fields[3])
        return up

    async def wait_up(self, names: set[str], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.running and self.socket.exists():
                try:
                    if names <= await asyncio.to_thread(self.servers_up):
                        return
                except OSError:
                    pass
            await asyncio.sleep(0.1)
        raise RuntimeError(f"haproxy does not see {sorted(names)} up\n{self.log_tail()}")

    def cut_all(self, nodes: list[Node]) -> str:
        for node in nodes:
            self.runtime(f"shutdown sessions server wshub/{node.name}")
        return "every client cut at haproxy (shutdown sessions)"


class Nginx(Balancer):
    """nginx in front of the nodes, its configuration made from ``deploy/nginx.conf`` with
    the suite's ports and paths. Open-source nginx has no active health checks: a node is
    known to be down when a connection to it fails."""

    def __init__(self, directory: Path, port: int, nodes: list[Node]) -> None:
        super().__init__("nginx", directory)
        self.port = port
        self.config = directory / "nginx.conf"
        template = NGINX_TEMPLATE.read_text()
        self.config.write_text(nginx_config(template, port, directory, nodes))

    def command(self) -> list[str]:
        return ["nginx", "-c", str(self.config), "-p", str(self.directory), "-g", "daemon off;"]

    async def wait_up(self, names: set[str], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.running:
                status, _ = await asyncio.to_thread(_get, f"http://127.0.0.1:{self.port}/healthz")
                if status == 200:
                    return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"nginx does not answer /healthz\n{self.log_tail()}")

    def cut_all(self, nodes: list[Node]) -> str:
        # A reload starts new workers; the old ones close their WebSockets after
        # worker_shutdown_timeout (1 s in the suite's copy).
        self.signal(signal.SIGHUP)
        return "every client cut by an nginx reload (worker_shutdown_timeout 1s)"


def nginx_config(template: str, port: int, directory: Path, nodes: list[Node]) -> str:
    """``deploy/nginx.conf`` with the suite's port, nodes, paths in ``directory``, one worker
    and a 1 s ``worker_shutdown_timeout``."""
    temp = directory / "nginx-temp"
    temp.mkdir(exist_ok=True)
    lines = []
    if os.geteuid() == 0:
        lines.append("user root;  # the workers write in the suite's private directory")
    for line in template.splitlines():
        stripped = line.strip()
        indent = line[: len(line) - len(line.lstrip())]
        if stripped.startswith("server 127.0.0.1:"):
            continue
        if stripped.startswith("worker_processes "):
            line = "worker_processes 1;"
        elif stripped.startswith("pid "):
            line = f"pid {directory / 'nginx.pid'};"
        elif stripped.startswith("worker_shutdown_timeout "):
            line = "worker_shutdown_timeout 1s;"
        elif stripped.startswith("error_log "):
            line = f"{indent}error_log {directory / 'nginx.log'} warn;"
        elif stripped.startswith("listen "):
            line = f"{indent}listen 127.0.0.1:{port};"
        lines.append(line)
        if stripped == "http {":
            lines += [
                f"{indent}    {name}_temp_path {temp / name};"
                for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
            ]
        elif stripped == "least_conn;":
            lines += [
                f"{indent}server 127.0.0.1:{node.port} max_fails=1 fail_timeout=1s;"
                for node in nodes
            ]
    text = "\n".join(lines) + "\n"
    for needed in ("least_conn;", "proxy_set_header Upgrade", "proxy_next_upstream"):
        if needed not in text:
            raise ValueError(f"{NGINX_TEMPLATE} has no '{needed}'")
    return text


BALANCERS: dict[str, type[HAProxy] | type[Nginx]] = {"haproxy": HAProxy, "nginx": Nginx}


def haproxy_config(template: str, port: int, runtime_socket: Path, nodes: list[Node]) -> str:
    """``deploy/haproxy.cfg`` with the suite's listening port, runtime socket, nodes, health
    checks every 0.5 s (the shipped file checks every 2 s) and a smaller ``maxconn``."""
    lines = []
    for line in template.splitlines():
        stripped = line.strip()
        if stripped.startswith("server "):
            continue
        if stripped.startswith("stats socket "):
            line = f"    stats socket {runtime_socket} mode 600 level admin"
        elif stripped.startswith("bind "):
            line = f"    bind 127.0.0.1:{port}"
        elif stripped.startswith("maxconn "):
            line = "    maxconn 2000"  # the shipped value needs a higher file limit than CI has
        elif stripped.startswith("default-server "):
            line = "    default-server check inter 500ms fall 2 rise 2"
        lines.append(line)
    text = "\n".join(lines).rstrip() + "\n"
    for node in nodes:
        text += f"    server {node.name} 127.0.0.1:{node.port}\n"
    for needed in ("option httpchk", "timeout tunnel", "backend wshub"):
        if needed not in text:
            raise ValueError(f"{HAPROXY_TEMPLATE} has no '{needed}'")
    return text


@dataclass
class Cluster:
    """Redis, three nodes and a load balancer (haproxy or nginx), in one temporary directory."""

    directory: Path
    redis: RedisProcess
    nodes: list[Node]
    balancer: Balancer
    sentinels: Sentinels | None = None
    replica: RedisProcess | None = None
    extra: list[_Process] = field(default_factory=list)

    @classmethod
    def create(
        cls, directory: Path, *, nodes: int = 3, sentinel: bool = False, balancer: str = "haproxy"
    ) -> Cluster:
        directory.mkdir(parents=True, exist_ok=True)
        redis = RedisProcess("redis", directory, free_port())
        replica = sentinels = None
        redis_url = redis.url
        if sentinel:
            replica = RedisProcess("replica", directory, free_port(), replica_of=redis.port)
            sentinels = Sentinels(directory, redis.port)
            redis_url = sentinels.url
        node_list = [Node(f"node{i + 1}", directory, free_port(), redis_url) for i in range(nodes)]
        front = BALANCERS[balancer](directory, free_port(), node_list)
        return cls(directory, redis, node_list, front, sentinels, replica)

    async def start(self) -> None:
        self.redis.start()
        await self.redis.wait_ready()
        if self.replica is not None and self.sentinels is not None:
            self.replica.start()
            await self.replica.wait_ready()
            self.sentinels.start()
            await asyncio.sleep(1.0)
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            await node.wait_healthy()
        self.balancer.start()
        await self.balancer.wait_up({node.name for node in self.nodes})

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        self.balancer.stop()
        if self.sentinels is not None:
            self.sentinels.stop()
        for process in (self.replica, self.redis):
            if process is not None:
                process.stop()

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def logs(self) -> str:
        processes: list[_Process] = [self.redis, *self.nodes, self.balancer]
        return "\n".join(p.log_tail() for p in processes)


def sigterm(process: _Process) -> None:
    process.signal(signal.SIGTERM)


def environment() -> dict[str, str]:
    """Versions of what the suite ran, for RESULTS.md."""

    def version(command: list[str]) -> str:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=10)
            out = done.stdout or done.stderr  # nginx -v writes to standard error
        except OSError:
            return "?"
        return out.splitlines()[0].strip() if out else "?"

    commit = version(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {
        "commit": commit + (" (with uncommitted changes)" if dirty else ""),
        "python": sys.version.split()[0],
        "redis-server": version(["redis-server", "--version"]),
        "haproxy": version(["haproxy", "-v"]),
        "nginx": version(["nginx", "-v"]),
        "cores": str(os.cpu_count()),
    }
