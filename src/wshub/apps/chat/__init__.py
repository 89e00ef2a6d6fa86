"""The demo chat room: a page served by the hub, built on ``wshub.js`` and ``wshub.v1``."""

from __future__ import annotations

from .app import (
    DEMO_ANONYMOUS_PERMISSIONS,
    DEMO_NAMESPACES,
    ChatApp,
    StaticFile,
    chat_routes,
    demo_config,
)

__all__ = [
    "DEMO_ANONYMOUS_PERMISSIONS",
    "DEMO_NAMESPACES",
    "ChatApp",
    "StaticFile",
    "chat_routes",
    "demo_config",
]
