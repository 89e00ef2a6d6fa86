"""wshub: a fast WebSocket toolkit and real-time messaging hub.

The WebSocket layer (RFC 6455, RFC 7692 permessage-deflate) is a sans-I/O core,
``wshub.protocol``, driven by an asyncio server and client, ``wshub.aio``. The names
below are the supported public API; everything else may change.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .exceptions import (
    AuthError,
    ConfigError,
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

if TYPE_CHECKING:
    from .aio import (
        ClientConnection,
        Connect,
        Server,
        ServerConnection,
        TransportOptions,
        broadcast,
        connect,
        run,
        serve,
    )
    from .hub.client import HubClient, Subscription
    from .protocol import CloseCode, Headers, Request, Response

# The names that live in a layer above the standard library, and their modules. They are
# imported on first use (PEP 562), so that ``import wshub.protocol`` — which runs this file
# first — loads the sans-I/O core and nothing else: not asyncio, not the hub, orjson or PyJWT.
# The exceptions above are standard library only, so they stay eager.
_LAZY: dict[str, str] = {
    "ClientConnection": ".aio",
    "Connect": ".aio",
    "Server": ".aio",
    "ServerConnection": ".aio",
    "broadcast": ".aio",
    "connect": ".aio",
    "run": ".aio",
    "serve": ".aio",
    "TransportOptions": ".aio",
    "HubClient": ".hub.client",
    "Subscription": ".hub.client",
    "CloseCode": ".protocol",
    "Headers": ".protocol",
    "Request": ".protocol",
    "Response": ".protocol",
}


def __getattr__(name: str) -> Any:
    """Import a lazy name's module on first access, then keep the value here."""
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public names, lazy ones included, and what the module already holds."""
    return sorted({*globals(), *__all__})


__version__ = "0.1.0"

__all__ = [
    "AuthError",
    "ClientConnection",
    "CloseCode",
    "ConfigError",
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
    "TransportOptions",
    "WSHubError",
    "__version__",
    "broadcast",
    "connect",
    "run",
    "serve",
]
