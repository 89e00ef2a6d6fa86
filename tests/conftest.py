"""Shared fixtures: the event loops the asyncio tests run on, and small test servers."""

from __future__ import annotations

import pytest

# pytest-asyncio settings, until pyproject.toml's [tool.pytest.ini_options] carries them:
# auto mode (every ``async def`` test and fixture runs on a loop), and function-scoped loops
# for fixtures (without it the plugin warns at start-up, and warnings are errors here).
_ASYNCIO_INI = {"asyncio_mode": "auto", "asyncio_default_fixture_loop_scope": "function"}


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Supply the pytest-asyncio settings that the configuration file does not set."""
    for name, value in _ASYNCIO_INI.items():
        try:
            set_in_file = name in config._inicfg  # type: ignore[attr-defined]
        except AttributeError:  # pragma: no cover - another pytest version
            set_in_file = True
        if not set_in_file:
            config._inicache[name] = value
