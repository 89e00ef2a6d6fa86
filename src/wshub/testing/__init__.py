"""Public test helpers: real peers on loopback, for wshub's tests and for yours.

Everything here runs the real thing: a wshub server on a free port, a raw TCP peer that
can break the protocol on purpose, a self-signed certificate for ``wss://``, Debian's
chromium driven by Playwright, a throwaway ``redis-server``. Nothing is mocked, so a test
that passes with these helpers has exercised the same code paths as production.

Optional dependencies (``cryptography``, ``playwright``, ``uvicorn``, the ``redis-server`` binary)
are imported or looked up only when the helper that needs them is used.
"""

from __future__ import annotations

from .asgi import UvicornServer
from .browser import CHROMIUM, CHROMIUM_FLAGS, chromium_available, launch_chromium
from .raw import (
    RawClient,
    RawConnection,
    RawServer,
    RawServerConnection,
    raw_peer_pair,
    raw_server,
)
from .redis import (
    RedisServer,
    SentinelGroup,
    redis_available,
    redis_server,
    sentinel_available,
    sentinel_group,
)
from .servers import echo, loopback_server, server_url, websocket_pair
from .tcp import segments_sent
from .tls import TLSCertificate, self_signed_certificate

__all__ = [
    "CHROMIUM",
    "CHROMIUM_FLAGS",
    "RawClient",
    "RawConnection",
    "RawServer",
    "RawServerConnection",
    "RedisServer",
    "SentinelGroup",
    "TLSCertificate",
    "UvicornServer",
    "chromium_available",
    "echo",
    "launch_chromium",
    "loopback_server",
    "raw_peer_pair",
    "raw_server",
    "redis_available",
    "redis_server",
    "segments_sent",
    "self_signed_certificate",
    "sentinel_available",
    "sentinel_group",
    "server_url",
    "websocket_pair",
]
