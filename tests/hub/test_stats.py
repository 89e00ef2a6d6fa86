"""Tests for wshub.hub.stats."""

from __future__ import annotations

from wshub.hub.stats import HubStats


def test_snapshot_has_every_counter() -> None:
    """snapshot() returns all counters by name, starting at zero."""
    stats = HubStats()
    stats.drops += 2
    snap = stats.snapshot()
    assert snap["drops"] == 2
    assert set(snap) >= {
        "connections",
        "subscriptions",
        "publications",
        "drops",
        "slow_consumer_disconnects",
    }
    assert sum(snap.values()) == 2
