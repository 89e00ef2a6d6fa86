"""The real-time hub: channels, presence, history with gap-free recovery, auth.

The wire protocol is specified in docs/protocol.md, configuration in docs/hub.md and the
server HTTP API in docs/http-api.md.
"""

from __future__ import annotations

from wshub.hub.auth import Authenticator, Identity, Permissions, make_token
from wshub.hub.backends import (
    AppendResult,
    Broker,
    HistoryStore,
    MemoryBroker,
    MemoryHistory,
    MemoryPresence,
    PresenceStore,
    SQLiteHistory,
)
from wshub.hub.channels import ChannelRegistry, NamespaceOptions
from wshub.hub.host import SessionHost
from wshub.hub.httpapi import HttpApi
from wshub.hub.hub import Hub, HubLimits
from wshub.hub.server import HubServer, run_hub, start_hub
from wshub.hub.session import Peer, Session
from wshub.hub.stats import HubStats
from wshub.hub.wire import SUBPROTOCOL, ClientInfo, DisconnectCode, ErrorCode, Position

__all__ = [
    "SUBPROTOCOL",
    "AppendResult",
    "Authenticator",
    "Broker",
    "ChannelRegistry",
    "ClientInfo",
    "DisconnectCode",
    "ErrorCode",
    "HistoryStore",
    "HttpApi",
    "Hub",
    "HubLimits",
    "HubServer",
    "HubStats",
    "Identity",
    "MemoryBroker",
    "MemoryHistory",
    "MemoryPresence",
    "NamespaceOptions",
    "Peer",
    "Permissions",
    "Position",
    "PresenceStore",
    "SQLiteHistory",
    "Session",
    "SessionHost",
    "make_token",
    "run_hub",
    "start_hub",
]
