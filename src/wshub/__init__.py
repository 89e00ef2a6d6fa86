"""wshub: a WebSocket toolkit and real-time messaging hub."""

from __future__ import annotations

__version__ = "0.1.0"
