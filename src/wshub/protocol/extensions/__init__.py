"""WebSocket extensions (RFC 6455 §9): the interfaces and permessage-deflate (RFC 7692)."""

from __future__ import annotations

from wshub.protocol.extensions.base import (
    ClientExtensionFactory,
    Extension,
    ServerExtensionFactory,
)
from wshub.protocol.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
    SharedDeflate,
    client_deflate,
    server_deflate,
)

__all__ = [
    "ClientExtensionFactory",
    "ClientPerMessageDeflateFactory",
    "Extension",
    "PerMessageDeflate",
    "ServerExtensionFactory",
    "ServerPerMessageDeflateFactory",
    "SharedDeflate",
    "client_deflate",
    "server_deflate",
]
