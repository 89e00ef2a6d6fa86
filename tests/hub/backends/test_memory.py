"""Tests for wshub.hub.backends.memory: what only the in-process stores do.

The in-memory broker, history and presence run the contract tests of their interface
(test_*_contract.py) like every backend; this module holds what is particular to them.
"""

from __future__ import annotations

from wshub.hub.backends import MemoryPresence
from wshub.hub.wire import ClientInfo


async def test_add_replaces_same_client_and_close_forgets_everything() -> None:
    """Adding a client again replaces its entry; closing the store forgets every entry."""
    store = MemoryPresence()
    await store.add("c:x", ClientInfo("a", "u", 1))
    await store.add("c:x", ClientInfo("a", "u", 2))
    assert await store.get("c:x") == [ClientInfo("a", "u", 2)]
    await store.close()
    assert await store.get("c:x") == []
