"""``wshub serve --workers N``: one supervising process and N worker processes on one port.

Each worker is a ``python -m wshub serve`` process of its own that binds the port with
``SO_REUSEPORT``, so that the kernel spreads new connections over the workers; they are one
hub because they share Redis (``wshub serve`` refuses several workers without it). The
supervisor never imports the hub: it only starts processes, watches them and relays signals.

What the supervisor does:

* **Start**: every worker at once; the command line is ready when every worker has printed
  its ``wshub: hub on`` line (:data:`READY_PREFIX`). The first worker's banner is then
  printed once, after the supervisor's own lines; other workers' output is read and dropped
  (their logs go to standard error, which they share with the supervisor). A worker that
  exits before all are ready (Redis does not answer, the port is taken) stops the others,
  and the supervisor exits with that worker's status.
* **Restart**: a worker that dies later is restarted after a delay that doubles with each
  quick death in a row (``restart_delay`` up to ``max_restart_delay``), so that a crash loop
  does not spin; a worker that ran for ``stable_time`` starts again from the first delay.
  Each death and restart is logged (logger ``wshub.server``, as the rest of ``serve``).
* **SIGTERM, SIGINT**: sent on to every worker, which drains (SIGTERM) or closes its
  connections at once (SIGINT) as a lone ``wshub serve`` does; a worker still running
  ``stop_timeout`` seconds later is killed.
  The supervisor exits with 0 when every worker exited with 0 (or, still starting, was
  ended by that signal), else 1.
* **SIGHUP**: a rolling restart. The workers get SIGTERM (a drain) one after the other,
  each once the previous one's replacement is ready, so that the port is served
  throughout; the new workers read the config file again.
* **SIGKILL of the supervisor**: each worker asked the kernel for a SIGTERM when its parent
  dies (:func:`prepare_worker`), so none is left behind.
"""

from __future__ import annotations

import ctypes
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import FrameType

__all__ = ["READY_PREFIX", "Supervisor", "prepare_worker", "reserve_port"]

logger = logging.getLogger("wshub.server")

#: The line a worker prints once it listens; the supervisor waits for it from each worker.
READY_PREFIX = "wshub: hub on "

#: ``prctl(2)`` option: the signal the kernel sends a process when its parent dies (Linux).
_PR_SET_PDEATHSIG = 1

#: How often the loop looks at its workers when nothing else wakes it (seconds).
_TICK = 0.1


def prepare_worker(pid: int) -> bool:
    """Set up this process as a worker of the supervisor ``pid``, before it starts serving.

    It gets SIGTERM when its parent dies: on Linux the kernel sends it
    (``PR_SET_PDEATHSIG``), elsewhere a thread polls the parent id once a second. And a
    SIGINT that arrives while it is still starting ends it quietly, as SIGTERM does, instead
    of with a ``KeyboardInterrupt`` traceback (serving, it handles both).

    Returns:
        False when the parent is already gone (this process should exit at once).
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    watched = False
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        watched = libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) == 0
    if not watched:  # pragma: no cover - not Linux (or prctl refused)
        threading.Thread(target=_poll_parent, args=(pid,), daemon=True).start()
    # Checked after asking: a parent that died in between is seen here.
    return os.getppid() == pid


def _poll_parent(pid: int) -> None:  # pragma: no cover - the fallback of prepare_worker
    while os.getppid() == pid:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)


def reserve_port(host: str) -> socket.socket:
    """A socket bound with ``SO_REUSEPORT`` to a free port of ``host``, not listening.

    Kept open by the supervisor, it holds the port for the workers (which bind it with
    ``SO_REUSEPORT`` too) without receiving any connection: only listening sockets do.

    Raises:
        OSError: ``host`` is not an address of this machine.
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


@dataclass(slots=True)
class _Worker:
    """One worker slot: the process serving it now and its restart bookkeeping."""

    index: int
    process: subprocess.Popen[bytes] | None = None
    generation: int = -1  # how many times the slot's process was started, minus one
    started: float = 0.0
    ready: bool = False
    quick_deaths: int = 0  # deaths in a row within stable_time of the start
    restart_at: float | None = None
    replace: bool = False  # asked to stop by a rolling restart: start again at once
    status: int | None = None  # the exit status of the last process
    pending: bytes = b""  # the start of a line not yet complete


class Supervisor:
    """Run ``workers`` copies of ``command`` and keep them running until a signal stops them.

    Args:
        command: the command line of one worker (the same for all of them).
        workers: how many worker processes, >= 1.
        env: the workers' environment (default: the supervisor's).
        announce: lines printed once every worker is ready, before the first worker's banner.
        stop_timeout: seconds the workers get to exit after SIGTERM/SIGINT before they are
            killed (``wshub serve`` gives its workers' ``drain_timeout`` plus 20 s).
        restart_delay: seconds before the first restart of a worker that died.
        max_restart_delay: the longest delay between restarts in a crash loop.
        stable_time: seconds a worker must have run for its next death to count as the
            first of a series again.
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        workers: int,
        env: Mapping[str, str] | None = None,
        announce: Sequence[str] = (),
        stop_timeout: float = 60.0,
        restart_delay: float = 0.5,
        max_restart_delay: float = 30.0,
        stable_time: float = 10.0,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers!r}")
        self.command = list(command)
        self.env = None if env is None else dict(env)
        self.announce = list(announce)
        self.stop_timeout = stop_timeout
        self.restart_delay = restart_delay
        self.max_restart_delay = max_restart_delay
        self.stable_time = stable_time
        self.workers = [_Worker(index) for index in range(workers)]
        self._selector = selectors.DefaultSelector()
        self._signals: deque[int] = deque()
        self._banner: list[str] = []
        self._announced = False
        self._stop_deadline: float | None = None
        self._stop_signal = 0
        self._rolling: deque[int] = deque()
        self._rolling_now: int | None = None

    # --- the loop ------------------------------------------------------------------------

    def run(self) -> int:
        """Supervise until the workers are stopped; returns the exit status (0, 1 or that of
        a worker that failed to start)."""
        handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        previous = {signum: signal.signal(signum, self._on_signal) for signum in handled}
        try:
            for worker in self.workers:
                self._start(worker)
            return self._loop()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._kill_all()
            self._selector.close()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals.append(signum)

    def _loop(self) -> int:
        while True:
            for key, _ in self._selector.select(_TICK):
                self._read(key.data)
            while self._signals:
                self._handle_signal(self._signals.popleft())
            now = time.monotonic()
            for worker in self.workers:
                self._reap(worker, now)
            if self._stop_deadline is not None:
                if all(worker.process is None for worker in self.workers):
                    # Ended by the signal sent to it: a worker still starting (no handler yet).
                    clean = (0, -self._stop_signal)
                    return 0 if all(w.status in clean for w in self.workers) else 1
                if now >= self._stop_deadline:
                    self._kill_all()
            elif not self._announced:
                failed = next((w for w in self.workers if w.status is not None), None)
                if failed is not None:
                    return self._abort(failed)
                if all(worker.ready for worker in self.workers):
                    self._announce()
            else:
                for worker in self.workers:
                    if worker.restart_at is not None and now >= worker.restart_at:
                        self._start(worker)
                self._roll()

    def _handle_signal(self, signum: int) -> None:
        if signum == signal.SIGHUP:
            if self._stop_deadline is None:
                logger.info("SIGHUP: restarting the workers one after the other")
                self._rolling.extend(w.index for w in self.workers if w.index not in self._rolling)
            return
        if self._stop_deadline is None:
            logger.info("%s: stopping the workers", signal.Signals(signum).name)
            self._stop_deadline = time.monotonic() + self.stop_timeout
            self._stop_signal = signum
        for worker in self.workers:
            worker.restart_at = None
            if worker.process is not None:
                worker.process.send_signal(signum)

    def _roll(self) -> None:
        """Move the rolling restart on: stop the next worker once the last one is back."""
        if self._rolling_now is not None:
            current = self.workers[self._rolling_now]
            if not (current.ready and current.process is not None and not current.replace):
                return
            self._rolling_now = None
        while self._rolling:
            worker = self.workers[self._rolling.popleft()]
            if worker.process is not None:
                worker.replace = True
                worker.process.terminate()
                self._rolling_now = worker.index
                return

    # --- processes -----------------------------------------------------------------------

    def _start(self, worker: _Worker) -> None:
        worker.restart_at = None
        worker.ready = False
        worker.replace = False
        worker.pending = b""
        worker.generation += 1
        worker.started = time.monotonic()
        # A process group of its own: a Ctrl-C in the terminal (or a signal to the
        # supervisor's group) reaches the supervisor alone, which sends it on exactly once.
        worker.process = process = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            env=self.env,
            process_group=0,
        )
        assert process.stdout is not None
        os.set_blocking(process.stdout.fileno(), False)
        self._selector.register(process.stdout, selectors.EVENT_READ, worker)
        if worker.generation:
            logger.info("worker %d restarted: pid %d", worker.index, process.pid)

    def _reap(self, worker: _Worker, now: float) -> None:
        """Notice a worker that exited; plan its restart unless the workers are stopping."""
        process = worker.process
        if process is None or process.poll() is None:
            return
        self._read(worker)  # its last lines
        self._close_output(worker)
        worker.process = None
        worker.status = status = process.returncode
        if self._stop_deadline is not None or not self._announced:
            return
        if worker.replace:
            worker.restart_at = now
            return
        lived = now - worker.started
        worker.quick_deaths = worker.quick_deaths + 1 if lived < self.stable_time else 1
        delay = min(self.max_restart_delay, self.restart_delay * 2 ** (worker.quick_deaths - 1))
        worker.restart_at = now + delay
        how = f"signal {-status}" if status < 0 else f"status {status}"
        logger.warning(
            "worker %d (pid %d) exited with %s after %.1f s; restarting it in %.2f s",
            worker.index,
            process.pid,
            how,
            lived,
            delay,
        )

    def _abort(self, failed: _Worker) -> int:
        """A worker exited before every worker was ready: stop the others, exit like it."""
        logger.error("worker %d exited with status %s while starting", failed.index, failed.status)
        self._stop_deadline = time.monotonic() + self.stop_timeout
        for worker in self.workers:
            if worker.process is not None:
                worker.process.terminate()
        while any(worker.process is not None for worker in self.workers):
            if time.monotonic() >= self._stop_deadline:
                self._kill_all()
            time.sleep(_TICK)
            for worker in self.workers:
                self._reap(worker, time.monotonic())
        status = failed.status
        return status if status is not None and status > 0 else 1

    def _kill_all(self) -> None:
        for worker in self.workers:
            process = worker.process
            if process is not None and process.poll() is None:
                logger.warning("worker %d (pid %d) did not stop: killed", worker.index, process.pid)
                process.kill()
                process.wait()

    # --- output --------------------------------------------------------------------------

    def _read(self, worker: _Worker) -> None:
        process = worker.process
        if process is None or process.stdout is None or process.stdout.closed:
            return
        while True:
            try:
                data = os.read(process.stdout.fileno(), 65536)
            except BlockingIOError:
                return
            if not data:
                self._close_output(worker)
                return
            *lines, worker.pending = (worker.pending + data).split(b"\n")
            for line in lines:
                self._line(worker, line.decode(errors="replace") + "\n")

    def _line(self, worker: _Worker, line: str) -> None:
        if line.startswith(READY_PREFIX):
            worker.ready = True
        if worker.index == 0 and worker.generation == 0:
            if self._announced:
                print(line, end="", flush=True)
            else:
                self._banner.append(line)

    def _close_output(self, worker: _Worker) -> None:
        stdout = None if worker.process is None else worker.process.stdout
        if stdout is not None and not stdout.closed:
            self._selector.unregister(stdout)
            stdout.close()

    def _announce(self) -> None:
        self._announced = True
        pids = ", ".join(str(w.process.pid) for w in self.workers if w.process is not None)
        lines = [
            f"wshub: {len(self.workers)} workers (pids {pids}) under a supervisor "
            f"(pid {os.getpid()})\n",
            *(f"{line}\n" for line in self.announce),
            *self._banner,
        ]
        print("".join(lines), end="", flush=True)
        self._banner.clear()
