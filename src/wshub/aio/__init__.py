"""asyncio transport: the WebSocket server and client on top of ``wshub.protocol``."""

from __future__ import annotations

from .client import ClientConnection, Connect, connect
from .connection import WebSocketConnection
from .options import TransportOptions
from .runner import run
from .server import Server, ServerConnection, broadcast, send_prepared_many, serve

__all__ = [
    "ClientConnection",
    "Connect",
    "Server",
    "ServerConnection",
    "TransportOptions",
    "WebSocketConnection",
    "broadcast",
    "connect",
    "run",
    "send_prepared_many",
    "serve",
]
