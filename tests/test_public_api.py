"""Tests for the curated public API: ``wshub.__all__`` and the one exception hierarchy."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from types import ModuleType

import pytest

import wshub
import wshub.exceptions
import wshub.protocol

# Entry points that docs/api.md promises at the top level.
REQUIRED = {
    "serve",
    "connect",
    "broadcast",
    "run",
    "ConnectionClosed",
    "ConnectionClosedOK",
    "ConnectionClosedError",
    "Request",
    "Response",
    "WSHubError",
}


def exception_classes() -> list[type[BaseException]]:
    """Every exception class defined in wshub.exceptions."""
    return [
        value
        for value in vars(wshub.exceptions).values()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__ == "wshub.exceptions"
    ]


@pytest.mark.parametrize(
    "module", [wshub, wshub.exceptions, wshub.protocol], ids=lambda m: m.__name__
)
def test_all_names_exist_are_unique_and_sorted(module: ModuleType) -> None:
    """``__all__`` lists only real names, once each, in sorted order (easy to review)."""
    names = list(module.__all__)
    assert [name for name in names if not hasattr(module, name)] == []
    assert len(set(names)) == len(names)
    assert names == sorted(names)


def test_star_import_gives_exactly_all() -> None:
    """``from wshub import *`` exports ``__all__`` and nothing else."""
    namespace: dict[str, object] = {}
    exec("from wshub import *", namespace)
    namespace.pop("__builtins__")
    assert set(namespace) == set(wshub.__all__)


def test_top_level_api_has_the_documented_entry_points() -> None:
    """The server, the client, broadcast and the errors users catch are at the top level."""
    assert set(wshub.__all__) >= REQUIRED
    assert callable(wshub.serve)
    assert callable(wshub.connect)
    assert callable(wshub.broadcast)


def test_every_exception_derives_from_wshub_error() -> None:
    """``except WSHubError`` catches everything wshub raises on purpose (convention 5)."""
    classes = exception_classes()
    assert wshub.exceptions.WSHubError in classes
    assert len(classes) > 10
    assert [cls.__name__ for cls in classes if not issubclass(cls, wshub.WSHubError)] == []


def test_every_exception_is_exported() -> None:
    """Each exception class is in wshub.exceptions.__all__ and wshub.__all__, as the same object."""
    for cls in exception_classes():
        assert cls.__name__ in wshub.exceptions.__all__
        assert cls.__name__ in wshub.__all__
        assert getattr(wshub, cls.__name__) is cls


def test_exception_tree_is_drawn_in_the_docstring() -> None:
    """The tree in the exceptions docstring names every class (convention 5)."""
    doc = wshub.exceptions.__doc__ or ""
    assert [cls.__name__ for cls in exception_classes() if cls.__name__ not in doc] == []


def test_peer_errors_and_local_misuse_are_separate() -> None:
    """Peer errors ("the other side broke it") and local misuse are distinct branches."""
    assert issubclass(wshub.PayloadTooBig, wshub.ProtocolError)
    assert not issubclass(wshub.InvalidState, wshub.ProtocolError)
    assert not issubclass(wshub.ProtocolError, wshub.InvalidState)
    assert issubclass(wshub.ConnectionClosedOK, wshub.ConnectionClosed)
    assert issubclass(wshub.ConnectionClosedError, wshub.ConnectionClosed)
    assert not issubclass(wshub.ConnectionClosedOK, wshub.ConnectionClosedError)


# What the sans-I/O core must not pull in (STYLE.md, layers): an event loop, sockets, the hub
# and the hub's third-party dependencies.
NOT_IN_THE_CORE = ("asyncio", "socket", "ssl", "wshub.aio", "wshub.hub", "orjson", "jwt")


def _python(code: str) -> str:
    """Run ``code`` in a fresh interpreter and return its output.

    Without coverage's variables: under ``make coverage`` they make every child process
    start coverage, which imports modules (socket) that wshub does not.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE")}
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=env,
    )
    return result.stdout


def _modules_after(statement: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``statement``."""
    return set(_python(f"import sys\n{statement}\nprint('\\n'.join(sys.modules))").split())


@pytest.mark.parametrize(
    "statement",
    [
        "import wshub.protocol",
        "import wshub",
        "from wshub.protocol.connection import Connection",
        "from wshub import WSHubError, PayloadTooBig",
    ],
)
def test_importing_the_core_loads_no_io_and_no_hub(statement: str) -> None:
    """``import wshub.protocol`` (and ``import wshub`` itself) stays sans-I/O: the names of
    the upper layers are imported on first use (PEP 562), not by the package."""
    loaded = _modules_after(statement)
    assert "wshub" in loaded
    heavy = sorted(m for m in loaded if m.split(".")[0] in NOT_IN_THE_CORE or m in NOT_IN_THE_CORE)
    heavy += sorted(m for m in loaded if m.startswith(("wshub.aio", "wshub.hub")))
    assert heavy == []


def test_a_lazy_name_loads_its_layer_on_first_use() -> None:
    """The first access to ``wshub.serve`` imports the asyncio layer, and gives the same
    object as ``wshub.aio.serve``."""
    loaded = _modules_after("import wshub\nimport wshub.aio\nassert wshub.serve is wshub.aio.serve")
    assert "asyncio" in loaded and "wshub.aio" in loaded
    assert "wshub.hub" not in loaded


def test_dir_lists_every_public_name_before_it_is_loaded() -> None:
    """``dir(wshub)`` shows the lazy names too, so completion and help() find them."""
    assert set(wshub.__all__) <= set(_python("import wshub; print(' '.join(dir(wshub)))").split())


def test_unknown_attribute_is_an_attribute_error() -> None:
    """A name that is neither public nor lazy raises AttributeError, as for any module."""
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = wshub.no_such_name
