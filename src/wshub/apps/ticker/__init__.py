"""The live prices demo: a page served by the hub and the simulated feed that drives it."""

from __future__ import annotations

from .app import TickerApp, run_feed, ticker_routes
from .feed import HttpPublisher, HubPublisher, Instrument, PriceFeed, Snapshot, Tick

__all__ = [
    "HttpPublisher",
    "HubPublisher",
    "Instrument",
    "PriceFeed",
    "Snapshot",
    "Tick",
    "TickerApp",
    "run_feed",
    "ticker_routes",
]
