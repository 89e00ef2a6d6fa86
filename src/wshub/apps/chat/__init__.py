"""The demo chat room: a page served by the hub, built on ``wshub.js`` and ``wshub.v1``."""

from __future__ import annotations

from .app import ChatApp, StaticFile, chat_routes

__all__ = ["ChatApp", "StaticFile", "chat_routes"]
