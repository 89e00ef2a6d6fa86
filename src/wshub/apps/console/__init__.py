"""The operator console: a page served by the hub that shows and acts through the HTTP API."""

from __future__ import annotations

from .app import ConsoleApp, console_routes

__all__ = ["ConsoleApp", "console_routes"]
