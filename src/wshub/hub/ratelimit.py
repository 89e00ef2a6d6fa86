"""Token buckets for per-connection rate limits.

A bucket holds up to ``burst`` tokens and refills at ``rate`` tokens per second; each command
takes one. Time comes from an injected clock so that tests can step it instead of sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["TokenBucket"]


class TokenBucket:
    """A token bucket.

    Args:
        rate: tokens added per second; ``None`` means no limit (every :meth:`take` succeeds).
        burst: the bucket's capacity, i.e. how many commands may arrive at once.
        clock: a monotonic clock in seconds.
    """

    __slots__ = ("_burst", "_clock", "_last", "_rate", "_tokens")

    def __init__(
        self, rate: float | None, burst: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate is not None and rate <= 0:
            raise ValueError("rate must be > 0 or None")
        if burst < 1:
            raise ValueError("burst must be >= 1")
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def take(self, tokens: float = 1.0) -> bool:
        """Take ``tokens`` if available; returns whether the command may proceed."""
        if self._rate is None:
            return True
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < tokens:
            return False
        self._tokens -= tokens
        return True

    @property
    def tokens(self) -> float:
        """Tokens left at the last :meth:`take` (for tests and statistics)."""
        return self._tokens
