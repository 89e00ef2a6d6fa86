"""A real ``redis-server`` on a free loopback port, for the Redis broker's contract tests.

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
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["RedisServer", "redis_available", "redis_server"]


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


@contextlib.contextmanager
def redis_server(
    *,
    executable: str = "redis-server",
    host: str = "127.0.0.1",
    startup_timeout: float = 10.0,
    attempts: int = 3,
) -> Iterator[RedisServer]:
    """Start ``redis-server`` on a free port, wait until it answers, stop it on exit.

    The port is picked by binding port 0 and releasing it, so another process could take
    it in between: if the server fails to start, another port is tried (``attempts``).

    Args:
        executable: the ``redis-server`` binary.
        host: the loopback address to bind.
        startup_timeout: seconds to wait for the first ``PONG`` of each attempt.
        attempts: ports to try before giving up.

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
        for _ in range(attempts):
            port = _free_port(host)
            server = RedisServer(host, port, directory)
            command = [
                executable,
                "--bind", host,
                "--port", str(port),
                "--dir", directory,
                "--logfile", "redis.log",
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
                "--protected-mode", "yes",
            ]  # fmt: skip
            process = subprocess.Popen(
                command,
                cwd=directory,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                deadline = time.monotonic() + startup_timeout
                while process.poll() is None and time.monotonic() < deadline:
                    if _answers_ping(host, port):
                        break
                    time.sleep(0.02)
                else:
                    continue  # exited (port taken?) or too slow: try another port
                yield server
                return
            finally:
                _stop(process)
        raise RuntimeError(f"redis-server did not start:\n{server.log()}")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
