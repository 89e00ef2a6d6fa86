"""The shared whiteboard: a page served by the hub, built on ``wshub.js`` and ``wshub.v1``."""

from __future__ import annotations

from .app import BoardApp, board_routes

__all__ = ["BoardApp", "board_routes"]
