"""When and how soon a :class:`~wshub.hub.client.HubClient` reconnects.

Two decisions, each made in one place:

* **Whether** to reconnect: :func:`close_advice` reads the hub's close code (one table,
  docs/protocol.md §7) and :func:`give_up` combines it with how the last attempt failed.
* **How soon**: :class:`Backoff`, exponential with a cap and full jitter. The n-th delay in
  a row (n from 0) is ``uniform(0, min(max_delay, initial * factor**n))``; full jitter
  spreads clients that lost the hub at the same moment over the whole interval, so that
  they do not come back in step, and the cap bounds how long a client stays away after
  the hub is back. The count starts again after a connection that got as far as
  ``CONNECTED``.
"""

from __future__ import annotations

import random
from collections import deque

from wshub.exceptions import (
    AuthError,
    ConnectionClosed,
    ConnectionClosedError,
    HubError,
    InvalidHandshake,
    InvalidResponse,
)
from wshub.hub.wire import DisconnectAdvice, DisconnectCode, ErrorCode, disconnect_advice

__all__ = ["Backoff", "close_advice", "give_up", "retryable", "why_lost"]


def close_advice(code: int | None) -> DisconnectAdvice:
    """The advice of the hub's close ``code``: the one table of
    :class:`~wshub.hub.wire.DisconnectCode` (which wshub.js follows too); ``None`` (no close
    frame) means a lost link, worth a retry like codes the hub does not define."""
    return DisconnectAdvice(reconnect=True) if code is None else disconnect_advice(code)


def retryable(exc: BaseException) -> bool:
    """Network errors, timeouts and 5xx/429 answers are worth retrying; other refusals not."""
    if isinstance(exc, InvalidResponse):
        return exc.status == 0 or exc.status >= 500 or exc.status == 429
    return not isinstance(exc, InvalidHandshake)


def give_up(
    failure: BaseException | None,
    close_code: int | None,
    *,
    connected_once: bool,
    renewable: bool,
) -> BaseException | None:
    """The error that ends the client, or ``None`` when reconnecting may help.

    Args:
        failure: why the ``connect`` handshake failed (the hub's refusal, a timeout), or
            ``None`` when the connection was lost after it.
        close_code: the close code of the connection, ``None`` without a close frame.
        connected_once: whether a connection ever got as far as ``CONNECTED``; the first
            one is not retried, so that a wrong URL or token fails fast.
        renewable: whether the token comes from a callable that can fetch a new one.
    """
    if isinstance(failure, HubError):
        if not connected_once or not renewable:
            return failure
        if failure.code not in (ErrorCode.UNAUTHORIZED, ErrorCode.TOKEN_EXPIRED):
            return failure
        return None
    if not connected_once:
        return failure or ConnectionClosedError(close_code or 1006, "closed while connecting")
    advice = close_advice(close_code)
    if not advice.reconnect:
        assert close_code is not None
        return ConnectionClosedError(close_code, DisconnectCode(close_code).reason)
    if advice.new_token and not renewable:
        return AuthError(ErrorCode.TOKEN_EXPIRED, ErrorCode.TOKEN_EXPIRED.message)
    return None


def why_lost(
    failure: BaseException | None,
    close_code: int | None,
    close_reason: str | None,
    open_timeout: float | None,
) -> str:
    """Why a connection ended, for the log line that announces the reconnection."""
    if isinstance(failure, HubError):
        return f"connect refused ({failure})"
    if isinstance(failure, TimeoutError):
        return f"no reply to connect within {open_timeout} s"
    if failure is not None and not isinstance(failure, ConnectionClosed):
        return f"connecting failed ({type(failure).__name__}: {failure})"
    reason = f" {close_reason}" if close_reason else ""
    return f"connection lost (close code {close_code}{reason})"


class Backoff:
    """Reconnect delays: exponential, capped at ``max_delay``, with full jitter.

    Args:
        initial: seconds, the bound of the first delay.
        max_delay: seconds, the largest delay; also the wait after close code 4005 (rate
            limited), which is between half of it and all of it.
        factor: growth of the bound per failed attempt (at least 1).
        rng: the random source of the jitter (a seeded :class:`random.Random` makes the
            delays reproducible); the :mod:`random` module's by default.
        keep: how many of the latest delays :attr:`delays` remembers.

    Raises:
        ValueError: unless ``0 <= initial <= max_delay`` and ``factor >= 1``.
    """

    def __init__(
        self,
        *,
        initial: float = 0.5,
        max_delay: float = 5.0,
        factor: float = 2.0,
        rng: random.Random | None = None,
        keep: int = 32,
    ) -> None:
        if not 0 <= initial <= max_delay or factor < 1:
            raise ValueError("need 0 <= backoff_initial <= max_delay and backoff_factor >= 1")
        self.initial = initial
        self.max_delay = max_delay
        self.factor = factor
        self._uniform = rng.uniform if rng is not None else random.uniform
        self._attempt = 0
        self._delays: deque[float] = deque(maxlen=keep)

    @property
    def attempt(self) -> int:
        """Failed attempts in a row since the last successful connection."""
        return self._attempt

    @property
    def delays(self) -> tuple[float, ...]:
        """The latest delays handed out, oldest first (for logs, metrics and tests)."""
        return tuple(self._delays)

    def bound(self, attempt: int) -> float:
        """The largest delay after ``attempt`` failures in a row."""
        try:
            bound = self.initial * self.factor**attempt
        except OverflowError:  # a client that kept failing for days
            return self.max_delay
        return min(bound, self.max_delay)

    def next_delay(self, *, slow_down: bool = False) -> float:
        """The delay before the next attempt; counts one more failed attempt.

        Args:
            slow_down: the hub asked to wait long (close code 4005).
        """
        if slow_down:
            delay = self._uniform(self.max_delay / 2, self.max_delay)
        else:
            delay = self._uniform(0, self.bound(self._attempt))
        self._attempt += 1
        self._delays.append(delay)
        return delay

    def reset(self) -> None:
        """A connection succeeded: the next delay is short again."""
        self._attempt = 0
