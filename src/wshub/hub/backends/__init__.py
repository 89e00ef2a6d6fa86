"""Where a hub node keeps history and presence and how it reaches the other nodes.

The interfaces and their contracts are in :mod:`.base`; one module per backend implements
them: :mod:`.memory` (the reference, one process), :mod:`.sqlite` (durable history, one
node), :mod:`.redis` (all three, shared by every node; needs the ``redis`` extra).
:func:`open_stores` builds the stores of a node from the chosen backend.
"""

from __future__ import annotations

from wshub.hub.backends.base import (
    AppendResult,
    Broker,
    BrokerCallback,
    HistoryStore,
    PresenceStore,
    Recovery,
)
from wshub.hub.backends.memory import MemoryBroker, MemoryHistory, MemoryPresence
from wshub.hub.backends.sqlite import SQLiteHistory
from wshub.hub.backends.stores import Stores, open_stores

__all__ = [
    "AppendResult",
    "Broker",
    "BrokerCallback",
    "HistoryStore",
    "MemoryBroker",
    "MemoryHistory",
    "MemoryPresence",
    "PresenceStore",
    "Recovery",
    "SQLiteHistory",
    "Stores",
    "open_stores",
]
