"""Tests for wshub.hub.backends.stores: which store keeps which namespace, chosen explicitly."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

import pytest

from wshub.hub import ChannelRegistry, NamespaceOptions
from wshub.hub.backends import MemoryHistory, SQLiteHistory, open_stores

from ..conftest import demo_hub
from .helpers import Clock

ROOT = Path(__file__).resolve().parents[3]

REGISTRY = ChannelRegistry(
    {
        "kept": NamespaceOptions(history_size=10),
        "tick": NamespaceOptions(history_size=10, persistent=False),
    }
)


async def test_memory_is_the_default_and_leaves_the_rest_to_the_hub() -> None:
    """No backend named: a memory history, and the hub's own volatile store, broker, presence."""
    stores = await open_stores()
    try:
        assert stores.location == "memory"
        assert isinstance(stores.history, MemoryHistory)
        assert (stores.volatile_history, stores.broker, stores.presence) == (None, None, None)
    finally:
        await stores.close()


async def test_sqlite_keeps_the_persistent_namespaces_only(tmp_path: Path) -> None:
    """With SQLite, persistent namespaces are in the file, the others in the hub's memory."""
    path = tmp_path / "history.db"
    stores = await open_stores(sqlite_path=path)
    assert isinstance(stores.history, SQLiteHistory) and stores.location == str(path)
    hub = demo_hub(
        registry=REGISTRY,
        history=stores.history,
        volatile_history=stores.volatile_history,
        expire_interval=None,
    )
    async with hub:
        await hub.publish("kept:a", 1)
        await hub.publish("tick:a", 2)
        assert await stores.history.channels() == ["kept:a"]
        assert [c["channel"] for c in await hub.channels()] == ["kept:a", "tick:a"]
    await stores.close()
    assert path.exists()


async def test_a_hub_given_one_store_for_both_uses_it_for_every_namespace() -> None:
    """volatile_history: persistent=False namespaces go there; expiry runs once per store."""
    clock = Clock()
    shared = MemoryHistory(clock=clock)
    async with demo_hub(
        registry=REGISTRY, history=shared, volatile_history=shared, clock=clock
    ) as hub:
        await hub.publish("tick:a", 1)
        await hub.publish("kept:a", 2)
        assert sorted(await shared.channels()) == ["kept:a", "tick:a"]
        assert [c["channel"] for c in await hub.channels()] == ["kept:a", "tick:a"]
    await shared.append("c:x", b"1", size=10, ttl=1.0)
    clock.now += 2
    async with demo_hub(history=shared, volatile_history=shared, clock=clock) as hub:
        assert await hub.expire() == 1


@pytest.mark.parametrize(
    "options",
    [
        {"sqlite_path": "h.db", "redis_url": "redis://127.0.0.1:1/0"},
        {"dedupe_window": 0.0},
        {"redis_url": "http://127.0.0.1:1/"},
    ],
)
async def test_bad_options_are_refused(options: dict[str, object]) -> None:
    """Two backends at once, a dedupe window of 0, a URL that is not Redis's: ValueError."""
    with pytest.raises(ValueError):
        await open_stores(**options)  # type: ignore[arg-type]


def test_every_lua_script_ships_in_the_package() -> None:
    """The Lua files are package data, so an installed wheel has them too."""
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["wshub"]
    package = ROOT / "src" / "wshub"
    scripts = sorted(package.glob("hub/backends/redis/lua/*.lua"))
    assert scripts
    for script in scripts:
        relative = script.relative_to(package).as_posix()
        assert any(fnmatch.fnmatch(relative, pattern) for pattern in package_data), relative
