"""The PresenceStore contract (wshub.hub.backends.base), run against every presence store.

MemoryPresence (the reference) and RedisPresence answer every test alike; crashes, outages and
several nodes are tested in redis/test_presence.py. Add an implementation by adding a
parameter to the ``store`` fixture.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from wshub.hub.backends import MemoryPresence, PresenceStore
from wshub.hub.wire import ClientInfo

A, B = ClientInfo("a", "alice"), ClientInfo("b", "bob", {"nick": "B"})


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[PresenceStore]:
    presence: PresenceStore
    if request.param == "redis":
        from wshub.hub.backends.redis import RedisPresence

        presence = RedisPresence(request.getfixturevalue("redis").url, prefix=prefix)
    else:
        presence = MemoryPresence()
    yield presence
    await presence.close()


async def test_add_get_remove(store: PresenceStore) -> None:
    """Entries are per channel, keyed by client, in arrival order."""
    await store.add("chat:x", A)
    await store.add("chat:x", B)
    await store.add("chat:y", A)
    assert await store.get("chat:x") == [A, B]
    assert await store.remove("chat:x", "a") is True
    assert await store.remove("chat:x", "a") is False
    assert await store.get("chat:x") == [B]
    assert await store.get("chat:y") == [A]
    assert await store.get("chat:none") == []


async def test_add_replaces_same_client_in_place(store: PresenceStore) -> None:
    """Adding a client again replaces its entry, keeping its place in the order."""
    await store.add("c:x", ClientInfo("a", "u", 1))
    await store.add("c:x", B)
    await store.add("c:x", ClientInfo("a", "u", 2))
    assert await store.get("c:x") == [ClientInfo("a", "u", 2), B]
