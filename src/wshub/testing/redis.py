"""Real ``redis-server`` and ``redis-sentinel`` processes on free loopback ports, for tests.

* :func:`redis_server`: one server, for the Redis broker's contract tests;
* :func:`sentinel_group`: a master, its replicas and three sentinels watching them, with
  fast failover settings, for the failover tests (and the chaos suite);
  :class:`SentinelGroup` forces a failover, kills the master, waits for a new one.

Each server runs in its own temporary directory with persistence off, so a test run
leaves nothing behind and never touches a Redis the machine may already run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

__all__ = [
    "RedisServer",
    "SentinelGroup",
    "redis_available",
    "redis_server",
    "sentinel_available",
    "sentinel_group",
]


@dataclass(frozen=True, slots=True)
class RedisServer:
    """A running ``redis-server``.

    Attributes:
        host: the address it listens on.
        port: its port.
        directory: its working directory (log file included).
    """

    host: str
    port: int
    directory: str

    @property
    def url(self) -> str:
        """A ``redis://`` URL for clients such as ``redis.asyncio.from_url``."""
        return f"redis://{self.host}:{self.port}/0"

    def log(self) -> str:
        """What the server logged so far (for a failing test's message)."""
        try:
            with open(os.path.join(self.directory, "redis.log"), encoding="utf-8") as f:
                return f.read()
        except OSError:
            return ""


def redis_available(executable: str = "redis-server") -> bool:
    """Whether ``redis-server`` is on the ``PATH`` (for ``pytest.mark.skipif``)."""
    return shutil.which(executable) is not None


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _answers_ping(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _spawn(
    command: Callable[[int], list[str]],
    directory: str,
    *,
    host: str,
    startup_timeout: float,
    attempts: int,
    port: int | None = None,
) -> tuple[RedisServer, subprocess.Popen[bytes]]:
    """Start ``command(port)`` in ``directory`` and wait for its first ``PONG``.

    The port is picked by binding port 0 and releasing it, so another process could take
    it in between: if the process fails to start, another port is tried (``attempts``),
    unless ``port`` is given (a restart on the same port).
    """
    for _ in range(attempts if port is None else 1):
        chosen = _free_port(host) if port is None else port
        server = RedisServer(host, chosen, directory)
        process = subprocess.Popen(
            command(chosen),
            cwd=directory,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + startup_timeout
        while process.poll() is None and time.monotonic() < deadline:
            if _answers_ping(host, chosen):
                return server, process
            time.sleep(0.02)
        _stop(process)  # exited (port taken?) or too slow: try another port
    raise RuntimeError(f"{command(0)[0]} did not start:\n{server.log()}")


def _server_command(
    executable: str, host: str, directory: str, extra: Sequence[str] = ()
) -> Callable[[int], list[str]]:
    def command(port: int) -> list[str]:
        return [
            executable,
            "--bind", host,
            "--port", str(port),
            "--dir", directory,
            "--logfile", "redis.log",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--protected-mode", "yes",
            *extra,
        ]  # fmt: skip

    return command


@contextlib.contextmanager
def redis_server(
    *,
    executable: str = "redis-server",
    host: str = "127.0.0.1",
    startup_timeout: float = 10.0,
    attempts: int = 3,
    options: Sequence[str] = (),
) -> Iterator[RedisServer]:
    """Start ``redis-server`` on a free port, wait until it answers, stop it on exit.

    The port is picked by binding port 0 and releasing it, so another process could take
    it in between: if the server fails to start, another port is tried (``attempts``).

    Args:
        executable: the ``redis-server`` binary.
        host: the loopback address to bind.
        startup_timeout: seconds to wait for the first ``PONG`` of each attempt.
        attempts: ports to try before giving up.
        options: more ``redis-server`` options (``["--cluster-enabled", "yes"]``).

    Raises:
        FileNotFoundError: ``executable`` is not installed.
        RuntimeError: the server did not start.

    Example (a session-wide pytest fixture)::

        @pytest.fixture(scope="session")
        def redis_url():
            with redis_server() as server:
                yield server.url
    """
    if shutil.which(executable) is None:
        raise FileNotFoundError(f"{executable} is not installed")
    directory = tempfile.mkdtemp(prefix="wshub-redis-")
    try:
        command = _server_command(executable, host, directory, options)
        server, process = _spawn(
            command, directory, host=host, startup_timeout=startup_timeout, attempts=attempts
        )
        try:
            yield server
        finally:
            _stop(process)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# --- Sentinel ---------------------------------------------------------------------------------


def sentinel_available(executable: str = "redis-sentinel") -> bool:
    """Whether ``redis-server`` and ``redis-sentinel`` are on the ``PATH`` (Debian package
    ``redis-sentinel``), for ``pytest.mark.skipif``."""
    return redis_available() and shutil.which(executable) is not None


def _command(server: RedisServer, *args: str, timeout: float = 5.0) -> Any:
    """One command to ``server``, its reply decoded (``redis`` is imported here: only the
    Sentinel helpers need it)."""
    import redis

    client = redis.Redis(
        host=server.host,
        port=server.port,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=True,
    )
    try:
        return cast(Any, client).execute_command(*args)  # untyped in redis-py
    finally:
        client.close()


def _role(server: RedisServer) -> str | None:
    """``master``, ``slave`` or ``None`` when ``server`` does not answer."""
    import redis

    try:
        return str(_command(server, "ROLE", timeout=1.0)[0])
    except (redis.RedisError, OSError):
        return None


def _fields(reply: Any) -> dict[str, Any]:
    """A sentinel's description of an instance as a dict (redis-py parses some replies)."""
    if isinstance(reply, dict):
        return reply
    return dict(zip(reply[::2], reply[1::2], strict=True))


class SentinelGroup:
    """Redis servers (one master, its replicas) and three sentinels watching them.

    Made by :func:`sentinel_group`, which stops every process on exit. The sentinels
    monitor the master as :attr:`service` with quorum 2, consider an instance down after
    ``down_after`` seconds of silence and retry a failover after ``failover_timeout``.

    Attributes:
        service: the name the sentinels monitor the master under.
        servers: the Redis servers; ``servers[0]`` started as the master. After a
            failover another one is: ask :meth:`master`.
        sentinels: the sentinels.
    """

    def __init__(
        self,
        service: str,
        servers: Sequence[RedisServer],
        sentinels: Sequence[RedisServer],
        processes: dict[int, tuple[Callable[[int], list[str]], subprocess.Popen[bytes]]],
        startup_timeout: float,
    ) -> None:
        self.service = service
        self.servers = tuple(servers)
        self.sentinels = tuple(sentinels)
        # By port: how to start the process, and the process.
        self._processes = processes
        self._startup_timeout = startup_timeout

    def url(self, *, db: int = 0, password: str | None = None) -> str:
        """The ``redis+sentinel://`` URL of the group for the hub (``password``: the
        master's, if it needs one)."""
        hosts = ",".join(f"{s.host}:{s.port}" for s in self.sentinels)
        credentials = "" if password is None else f":{password}@"
        return f"redis+sentinel://{credentials}{hosts}/{self.service}/{db}"

    def master(self) -> RedisServer:
        """The server the sentinels name as master now (the first sentinel that answers).

        Raises:
            RuntimeError: no sentinel answers.
        """
        for sentinel in self.sentinels:
            named = self._named_by(sentinel)
            if named is not None:
                return named
        raise RuntimeError(f"no sentinel names a master for {self.service!r}")

    def replicas(self) -> tuple[RedisServer, ...]:
        """The servers that are not the master now (running or not)."""
        master = self.master()
        return tuple(server for server in self.servers if server != master)

    def failover(self, *, timeout: float = 30.0) -> RedisServer:
        """Ask a sentinel for a failover (``SENTINEL FAILOVER``) and wait for its end.

        Returns:
            the new master, once it answers as one and the sentinels name it.

        Raises:
            TimeoutError: no new master within ``timeout`` seconds.
        """
        old = self.master()
        deadline = time.monotonic() + timeout
        while True:
            try:
                _command(self.sentinels[0], "SENTINEL", "FAILOVER", self.service)
                break
            except Exception as exc:  # NOGOODSLAVE while a replica is still syncing
                if time.monotonic() > deadline:
                    raise TimeoutError(f"SENTINEL FAILOVER refused: {exc}") from exc
                time.sleep(0.2)
        return self.wait_for_new_master(old, timeout=max(deadline - time.monotonic(), 1.0))

    def kill_master(self) -> RedisServer:
        """``kill -9`` the current master; returns it (:meth:`restart` starts it again)."""
        master = self.master()
        self.kill(master)
        return master

    def kill(self, server: RedisServer) -> None:
        """``kill -9`` ``server`` (a Redis server or a sentinel) and reap it."""
        _, process = self._processes[server.port]
        if process.poll() is None:
            process.kill()
        process.wait()

    def restart(self, server: RedisServer) -> None:
        """Start a killed ``server`` again, on its port, with its first configuration.

        A server that was the master comes back as one, with what it had in memory lost
        (persistence is off); the sentinels then turn it into a replica of the new master.

        Raises:
            RuntimeError: it did not start (another process took its port meanwhile).
        """
        self.kill(server)
        command, _ = self._processes[server.port]
        _, process = _spawn(
            command,
            server.directory,
            host=server.host,
            startup_timeout=self._startup_timeout,
            attempts=1,
            port=server.port,
        )
        self._processes[server.port] = (command, process)

    def wait_for_new_master(self, old: RedisServer, *, timeout: float = 30.0) -> RedisServer:
        """Wait until every sentinel names a master other than ``old`` and it answers
        as a master.

        Raises:
            TimeoutError: not within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            named = {self._named_by(sentinel) for sentinel in self.sentinels}
            if len(named) == 1:
                (new,) = named
                if new is not None and new != old and _role(new) == "master":
                    return new
            time.sleep(0.1)
        raise TimeoutError(f"no new master for {self.service!r} after {timeout} s:\n{self.log()}")

    def wait_until_ready(self, *, timeout: float = 30.0) -> None:
        """Wait until every sentinel knows the master, the other two sentinels and every
        running replica in sync (a failover can then be asked for).

        Raises:
            TimeoutError: not within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self._sentinel_ready(sentinel) for sentinel in self.sentinels):
                return
            time.sleep(0.1)
        raise TimeoutError(f"the sentinels are not ready after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        """What every process logged so far (for a failing test's message)."""
        parts = []
        for server in (*self.servers, *self.sentinels):
            parts.append(f"--- {server.host}:{server.port}\n{server.log()}")
        return "\n".join(parts)

    def _server(self, port: int) -> RedisServer:
        for server in self.servers:
            if server.port == port:
                return server
        raise RuntimeError(f"the sentinels name an unknown master on port {port}")

    def _named_by(self, sentinel: RedisServer) -> RedisServer | None:
        import redis

        try:
            _, port = _command(
                sentinel, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service, timeout=1.0
            )
        except (redis.RedisError, OSError, TypeError):
            return None
        return self._server(int(port))

    def _sentinel_ready(self, sentinel: RedisServer) -> bool:
        import redis

        running = [s for s in self.servers if self._processes[s.port][1].poll() is None]
        try:
            state = _command(sentinel, "SENTINEL", "MASTER", self.service, timeout=1.0)
            replicas = _command(sentinel, "SENTINEL", "REPLICAS", self.service, timeout=1.0)
        except (redis.RedisError, OSError):
            return False
        master = _fields(state)
        synced = {
            int(info["port"])
            for info in map(_fields, replicas)
            if info.get("flags") == "slave" and info.get("master-link-status") == "ok"
        }
        return (
            master.get("flags") == "master"
            and int(master.get("num-other-sentinels", 0)) == len(self.sentinels) - 1
            and synced >= {s.port for s in running if s.port != int(master["port"])}
        )


@contextlib.contextmanager
def sentinel_group(
    *,
    replicas: int = 1,
    service: str = "wshub",
    down_after: float = 1.0,
    failover_timeout: float = 3.0,
    host: str = "127.0.0.1",
    startup_timeout: float = 10.0,
    ready_timeout: float = 30.0,
    server_options: Sequence[str] = (),
    sentinel_executable: str = "redis-sentinel",
    server_executable: str = "redis-server",
) -> Iterator[SentinelGroup]:
    """Start a master, ``replicas`` replicas (``--replicaof``) and three sentinels on free
    loopback ports, wait until the sentinels see everything, stop it all on exit.

    Args:
        replicas: replicas of the master, >= 1 for a failover to have a candidate.
        service: the name the sentinels monitor the master under.
        down_after: seconds without an answer before a sentinel deems an instance down
            (``down-after-milliseconds``).
        failover_timeout: seconds before a stuck failover is tried again
            (``failover-timeout``).
        host: the loopback address to bind.
        startup_timeout: seconds to wait for each process's first ``PONG``.
        ready_timeout: seconds to wait for the sentinels to know every instance.
        server_options: more ``redis-server`` options for every server
            (``["--min-replicas-to-write", "1"]``).
        sentinel_executable: the ``redis-sentinel`` binary (Debian package
            ``redis-sentinel``; ``redis-server --sentinel`` is the same program).
        server_executable: the ``redis-server`` binary.

    Raises:
        FileNotFoundError: a binary is not installed.
        RuntimeError: a process did not start.
        TimeoutError: the sentinels did not see every instance within ``ready_timeout``.

    Example (the chaos suite)::

        with sentinel_group() as group:
            hub_url = group.url()          # redis+sentinel://.../wshub/0
            ...
            old = group.kill_master()      # or group.failover()
            new = group.wait_for_new_master(old)
    """
    for executable in (server_executable, sentinel_executable):
        if shutil.which(executable) is None:
            raise FileNotFoundError(f"{executable} is not installed")
    root = tempfile.mkdtemp(prefix="wshub-sentinel-")
    processes: dict[int, tuple[Callable[[int], list[str]], subprocess.Popen[bytes]]] = {}

    def start(name: str, command: Callable[[str], Callable[[int], list[str]]]) -> RedisServer:
        directory = os.path.join(root, name)
        os.mkdir(directory)
        made = command(directory)
        server, process = _spawn(
            made, directory, host=host, startup_timeout=startup_timeout, attempts=3
        )
        processes[server.port] = (made, process)
        return server

    try:
        master = start(
            "server0", lambda d: _server_command(server_executable, host, d, server_options)
        )
        extra = [*server_options, "--replicaof", host, str(master.port)]
        servers = [master]
        for index in range(replicas):
            servers.append(
                start(
                    f"server{index + 1}",
                    lambda d: _server_command(server_executable, host, d, extra),
                )
            )
        sentinels = [
            start(
                f"sentinel{index}",
                lambda d: _sentinel_command(
                    sentinel_executable, host, d, service, master, down_after, failover_timeout
                ),
            )
            for index in range(3)
        ]
        group = SentinelGroup(service, servers, sentinels, processes, startup_timeout)
        group.wait_until_ready(timeout=ready_timeout)
        yield group
    finally:
        for _, process in processes.values():
            _stop(process)
        shutil.rmtree(root, ignore_errors=True)


def _sentinel_command(
    executable: str,
    host: str,
    directory: str,
    service: str,
    master: RedisServer,
    down_after: float,
    failover_timeout: float,
) -> Callable[[int], list[str]]:
    """A sentinel's command line; it writes its configuration file (a sentinel rewrites
    it as it learns about the other instances)."""

    def command(port: int) -> list[str]:
        path = os.path.join(directory, "sentinel.conf")
        with open(path, "w", encoding="utf-8") as conf:
            conf.write(
                f"bind {host}\nport {port}\ndir {directory}\nlogfile redis.log\n"
                "daemonize no\nprotected-mode yes\n"
                f"sentinel monitor {service} {master.host} {master.port} 2\n"
                f"sentinel down-after-milliseconds {service} {int(down_after * 1000)}\n"
                f"sentinel failover-timeout {service} {int(failover_timeout * 1000)}\n"
                f"sentinel parallel-syncs {service} 1\n"
            )
        return [executable, path]

    return command
