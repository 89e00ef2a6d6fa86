"""Shared fixtures: the event loops the asyncio tests run on, and real servers to test against.

Every ``async def`` test runs twice, on asyncio's own event loop and on uvloop's (when
installed): the two differ in how transports buffer, pause and report errors, and users
run on both. A test that needs only one says so with
``@pytest.mark.asyncio(loop_factories=["asyncio"])``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator, Mapping

import pytest

from wshub import Server
from wshub.testing import (
    RedisServer,
    TLSCertificate,
    echo,
    loopback_server,
    redis_available,
    redis_server,
    self_signed_certificate,
)

# pytest-asyncio settings, until pyproject.toml's [tool.pytest.ini_options] carries them:
# auto mode (every ``async def`` test and fixture runs on a loop), and function-scoped loops
# for fixtures (without it the plugin warns at start-up, and warnings are errors here).
_ASYNCIO_INI = {"asyncio_mode": "auto", "asyncio_default_fixture_loop_scope": "function"}


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Supply the pytest-asyncio settings that the configuration file does not set."""
    for name, value in _ASYNCIO_INI.items():
        try:
            set_in_file = name in config._inicfg
        except AttributeError:  # pragma: no cover - another pytest version
            set_in_file = True
        if not set_in_file:
            config._inicache[name] = value


def _loop_factories() -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "asyncio": asyncio.new_event_loop
    }
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
        return factories
    factories["uvloop"] = uvloop.new_event_loop
    return factories


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Run each asyncio test on asyncio's loop and on uvloop's."""
    return _loop_factories()


@pytest.fixture
async def echo_server() -> AsyncIterator[Server]:
    """A wshub echo server on a free loopback port, with a short close timeout."""
    async with loopback_server(echo, close_timeout=2.0) as server:
        yield server


@pytest.fixture(scope="session")
def tls_certificate() -> TLSCertificate:
    """A self-signed certificate for ``localhost`` and ``127.0.0.1``, made once per run."""
    return self_signed_certificate()


@pytest.fixture(scope="session")
def redis() -> Iterator[RedisServer]:
    """A throwaway ``redis-server`` on a free loopback port, for the whole run."""
    if not redis_available():
        pytest.skip("redis-server is not installed")
    with redis_server() as server:
        yield server
