"""Tests for wshub.hub.presence: the in-memory presence store."""

from __future__ import annotations

from wshub.hub.presence import MemoryPresence
from wshub.hub.wire import ClientInfo


async def test_add_get_remove() -> None:
    """Entries are per channel, keyed by client, in arrival order."""
    store = MemoryPresence()
    a, b = ClientInfo("a", "alice"), ClientInfo("b", "bob", {"nick": "B"})
    await store.add("chat:x", a)
    await store.add("chat:x", b)
    await store.add("chat:y", a)
    assert await store.get("chat:x") == [a, b]
    assert await store.remove("chat:x", "a") is True
    assert await store.remove("chat:x", "a") is False
    assert await store.get("chat:x") == [b]
    assert await store.get("chat:y") == [a]
    assert await store.get("chat:none") == []


async def test_add_replaces_same_client() -> None:
    """Adding a client again replaces its entry instead of duplicating it."""
    store = MemoryPresence()
    await store.add("c:x", ClientInfo("a", "u", 1))
    await store.add("c:x", ClientInfo("a", "u", 2))
    assert await store.get("c:x") == [ClientInfo("a", "u", 2)]
    await store.close()
    assert await store.get("c:x") == []
