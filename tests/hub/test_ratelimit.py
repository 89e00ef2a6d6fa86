"""Tests for wshub.hub.ratelimit: the token bucket."""

from __future__ import annotations

import pytest

from wshub.hub.ratelimit import TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refill() -> None:
    """A full bucket allows a burst, then refills at the rate."""
    clock = Clock()
    bucket = TokenBucket(2.0, 3, clock=clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    clock.now += 0.5  # one token
    assert bucket.take() is True
    assert bucket.take() is False
    clock.now += 100  # refills to the burst only
    assert sum(bucket.take() for _ in range(10)) == 3


def test_no_rate_means_no_limit() -> None:
    """rate=None lets everything through."""
    bucket = TokenBucket(None, 1, clock=Clock())
    assert all(bucket.take() for _ in range(1000))


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (1.0, 0)])
def test_invalid_parameters(rate: float, burst: int) -> None:
    """Zero or negative rates and empty buckets are refused."""
    with pytest.raises(ValueError):
        TokenBucket(rate, burst)
