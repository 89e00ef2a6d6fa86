"""The one place where wshub reads environment variables (STYLE convention 4)."""

from __future__ import annotations

import os

__all__ = ["env_flag", "env_str", "environment"]


def env_flag(name: str, default: bool = False) -> bool:
    """Read a boolean switch such as ``WSHUB_NO_UVLOOP=1``."""
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def env_str(name: str, default: str | None = None) -> str | None:
    """Read a string setting such as ``WSHUB_SECRET``; empty counts as unset."""
    value = os.environ.get(name)
    return value if value else default


def environment(**changes: str) -> dict[str, str]:
    """This process's environment with ``changes``: the environment of a child process."""
    return {**os.environ, **changes}


#: ``WSHUB_NO_UVLOOP=1`` keeps asyncio's own event loop even when uvloop is installed.
NO_UVLOOP = env_flag("WSHUB_NO_UVLOOP")
#: ``WSHUB_NO_EXTENSIONS=1`` forces the pure-Python protocol path.
NO_EXTENSIONS = env_flag("WSHUB_NO_EXTENSIONS")
