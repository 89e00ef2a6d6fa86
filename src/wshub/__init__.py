"""wshub: a fast WebSocket toolkit and real-time messaging hub.

The WebSocket layer (RFC 6455, RFC 7692 permessage-deflate) is a sans-I/O core,
``wshub.protocol``, driven by an asyncio server and client, ``wshub.aio``. The names
below are the supported public API; everything else may change.
"""

from __future__ import annotations

from .aio import (
    ClientConnection,
    Connect,
    Server,
    ServerConnection,
    broadcast,
    connect,
    run,
    serve,
)
from .exceptions import (
    AuthError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    HubError,
    InvalidHandshake,
    InvalidRequest,
    InvalidResponse,
    InvalidState,
    InvalidURI,
    NegotiationError,
    PayloadTooBig,
    ProtocolError,
    WSHubError,
)
from .hub.client import HubClient, Subscription
from .protocol import CloseCode, Headers, Request, Response

__version__ = "0.1.0"

__all__ = [
    "AuthError",
    "ClientConnection",
    "CloseCode",
    "Connect",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "Headers",
    "HubClient",
    "HubError",
    "InvalidHandshake",
    "InvalidRequest",
    "InvalidResponse",
    "InvalidState",
    "InvalidURI",
    "NegotiationError",
    "PayloadTooBig",
    "ProtocolError",
    "Request",
    "Response",
    "Server",
    "ServerConnection",
    "Subscription",
    "WSHubError",
    "__version__",
    "broadcast",
    "connect",
    "run",
    "serve",
]
