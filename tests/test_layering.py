"""Tests for the package structure: layers import only downwards; the core does no I/O.

STYLE.md orders the layers ``protocol`` <- ``aio`` <- ``hub`` <- ``apps`` <- ``cli``: each
imports only layers to its left. The foundation (exceptions, typedefs, config, log) sits
under all of them. The root package ``wshub`` is the curated public API; it re-exports
``protocol`` and ``aio``, so ``hub`` and above may use it, ``protocol`` and ``aio`` may not
(that would be a cycle). ``wshub.testing`` may import anything except the CLI, and no
library layer imports it.

The checks read the source with :mod:`ast`, so they see imports inside functions and
under ``if TYPE_CHECKING:`` as well.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Rank of each layer, by module prefix: a module may import modules of equal or lower rank.
LAYERS: dict[str, int] = {
    "wshub.exceptions": 0,
    "wshub.typedefs": 0,
    "wshub.config": 0,
    "wshub.log": 0,
    "wshub.protocol": 1,
    "wshub.aio": 2,
    "wshub.hub": 3,
    "wshub": 4,  # the root package only: the curated public API, re-exported from aio and hub
    "wshub.apps": 5,
    "wshub.testing": 6,
    "wshub.cli": 7,
    "wshub.commands": 7,  # the subcommands of wshub.cli that are clients of a server
    "wshub.__main__": 7,
    "wshub.supervisor": 7,  # wshub serve --workers: starts and watches worker processes
}

# Modules that do I/O, run threads or processes, or schedule work: never in the sans-I/O core.
IO_MODULES = frozenset(
    {
        "asyncio",
        "concurrent",
        "multiprocessing",
        "select",
        "selectors",
        "signal",
        "socket",
        "socketserver",
        "ssl",
        "subprocess",
        "threading",
        "http.client",
        "http.server",
        "urllib.request",
    }
)
# Reading or changing the environment happens in wshub.config only (convention 4).
# What the core may use from os: random bytes for masking keys, and a fork hook that keeps a
# child process from reusing its parent's pooled keys (RFC 6455 §5.3).
OS_ALLOWED = frozenset({"urandom", "register_at_fork"})
ENVIRONMENT_NAMES = frozenset({"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"})
IO_BUILTINS = frozenset({"open", "input", "print", "breakpoint"})


@dataclass(frozen=True)
class Import:
    """One import statement (or ``__import__``/``import_module`` call) found in a module."""

    module: str  # the importing module
    target: str  # the absolute name of what it imports
    line: int


def module_names(root: Path) -> dict[str, Path]:
    """Map every module under ``root`` (sources and stubs of compiled modules) to its file."""
    modules: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py*")):
        if path.suffix not in (".py", ".pyi"):
            continue
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules.setdefault(".".join(parts), path)
    return modules


def imports(name: str, path: Path, known: set[str]) -> Iterator[Import]:
    """Yield what module ``name`` imports, relative imports made absolute.

    ``from package import name`` counts as importing ``package.name`` when that is a
    module, and ``package`` itself otherwise.
    """
    is_package = path.stem == "__init__"
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(name, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                drop = node.level - 1 if is_package else node.level
                base = base[: len(base) - drop] if drop else base
                prefix = ".".join(base)
                source = f"{prefix}.{node.module}" if node.module else prefix
            else:
                source = node.module or ""
            for alias in node.names:
                candidate = f"{source}.{alias.name}"
                yield Import(name, candidate if candidate in known else source, node.lineno)
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Name) and node.func.id == "__import__")
                or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
            )
        ):
            yield Import(name, node.args[0].value, node.lineno)


def layer(module: str) -> str | None:
    """The LAYERS key that owns ``module``: its longest matching prefix."""
    if module == "wshub":
        return "wshub"
    owners = [key for key in LAYERS if key != "wshub" and (module + ".").startswith(key + ".")]
    return max(owners, key=len, default=None)


def upward_imports(root: Path) -> list[str]:
    """Describe every import from a wshub module into a higher layer, or into no layer."""
    modules = module_names(root)
    problems = []
    for name, path in modules.items():
        if path.suffix == ".pyi":
            continue
        own = layer(name)
        if own is None:
            problems.append(f"{name} belongs to no layer: add it to LAYERS")
            continue
        for imp in imports(name, path, set(modules)):
            if imp.target != "wshub" and not imp.target.startswith("wshub."):
                continue
            theirs = layer(imp.target)
            if theirs is None:
                problems.append(f"{name}:{imp.line} imports {imp.target}, which has no layer")
            elif LAYERS[theirs] > LAYERS[own]:
                problems.append(f"{name}:{imp.line} imports {imp.target} ({own} -> {theirs})")
    return problems


def core_io_problems(root: Path) -> list[str]:
    """Describe every I/O import, environment access or I/O builtin under wshub.protocol."""
    modules = module_names(root)
    stdlib = sys.stdlib_module_names
    problems = []
    for name, path in modules.items():
        if layer(name) != "wshub.protocol" or path.suffix == ".pyi":
            continue
        for imp in imports(name, path, set(modules)):
            top = imp.target.split(".")[0]
            where = f"{name}:{imp.line}"
            if top == "wshub":
                continue
            if top not in stdlib:
                problems.append(f"{where} imports {imp.target}, not in the standard library")
            elif any(imp.target == io or imp.target.startswith(io + ".") for io in IO_MODULES):
                problems.append(f"{where} imports {imp.target}")
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        os_aliases = {
            alias.asname or alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
            if alias.name.split(".")[0] == "os"
        }
        for node in ast.walk(tree):
            where = f"{name}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.ImportFrom) and node.module in ("os", "posix", "nt"):
                extra = sorted(alias.name for alias in node.names if alias.name not in OS_ALLOWED)
                if extra:
                    problems.append(f"{where} imports {', '.join(extra)} from os")
            elif isinstance(node, ast.Attribute):
                if node.attr in ENVIRONMENT_NAMES:
                    problems.append(f"{where} uses .{node.attr}")
                elif (
                    isinstance(node.value, ast.Name)
                    and node.value.id in os_aliases
                    and node.attr not in OS_ALLOWED
                ):
                    problems.append(f"{where} uses os.{node.attr} (only {sorted(OS_ALLOWED)})")
            elif isinstance(node, ast.Name) and node.id in ENVIRONMENT_NAMES:
                problems.append(f"{where} uses {node.id}")
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in IO_BUILTINS
            ):
                problems.append(f"{where} calls {node.func.id}()")
    return problems


def test_every_module_belongs_to_a_layer() -> None:
    """Each wshub module has a layer, so a new top-level module is placed on purpose."""
    modules = module_names(SRC)
    assert "wshub.protocol.connection" in modules  # the walk found the sources
    assert [name for name in modules if layer(name) is None] == []


def test_no_upward_imports() -> None:
    """protocol <- aio <- hub <- apps <- cli: no module imports a layer to its right."""
    assert upward_imports(SRC) == []


def test_protocol_does_no_io() -> None:
    """The sans-I/O core imports only the standard library, no I/O, no environment."""
    assert core_io_problems(SRC) == []


# -- the checks themselves, on a small made-up package ------------------------------------


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


GOOD_TREE = {
    "wshub/__init__.py": "from .aio import serve\nfrom .exceptions import WSHubError\n",
    "wshub/exceptions.py": "",
    "wshub/config.py": "import os\nVALUE = os.environ.get('X')\n",
    "wshub/protocol/__init__.py": "",
    "wshub/protocol/frames.py": "import os\nfrom .. import exceptions\nKEY = os.urandom(4)\n",
    "wshub/aio/__init__.py": "from . import server\nfrom ..protocol import frames\n",
    "wshub/aio/server.py": "import asyncio\nfrom wshub.protocol.frames import KEY\n",
    "wshub/hub/__init__.py": "from wshub.aio import serve\n",
    "wshub/testing/__init__.py": "from ..hub import x\nfrom wshub.apps import y\n",
}


def test_checks_pass_on_a_well_layered_package(tmp_path: Path) -> None:
    """Downward imports, os.urandom in the core and os.environ in config are fine."""
    root = write(tmp_path, GOOD_TREE)
    assert upward_imports(root) == []
    assert core_io_problems(root) == []


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("wshub/protocol/bad.py", "from ..aio import server\n", "(wshub.protocol -> wshub.aio)"),
        ("wshub/protocol/bad.py", "import wshub.hub\n", "(wshub.protocol -> wshub.hub)"),
        ("wshub/protocol/bad.py", "from wshub import serve\n", "(wshub.protocol -> wshub)"),
        ("wshub/aio/bad.py", "from .. import hub\n", "(wshub.aio -> wshub.hub)"),
        ("wshub/aio/bad.py", "def f():\n    from wshub.testing import t\n", "-> wshub.testing"),
        ("wshub/hub/bad.py", "import importlib\nimportlib.import_module('wshub.cli')\n", "cli"),
        ("wshub/testing/bad.py", "from wshub.cli import main\n", "(wshub.testing -> wshub.cli)"),
        ("wshub/extra.py", "", "wshub.extra belongs to no layer"),
    ],
)
def test_upward_import_is_caught(tmp_path: Path, name: str, text: str, expected: str) -> None:
    """An import into a higher layer, even inside a function, is reported."""
    root = write(tmp_path, {**GOOD_TREE, name: text})
    problems = upward_imports(root)
    assert len(problems) == 1
    assert expected in problems[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("import asyncio\n", "imports asyncio"),
        ("import socket as s\n", "imports socket"),
        ("from ssl import SSLContext\n", "imports ssl"),
        ("import selectors\n", "imports selectors"),
        ("from concurrent.futures import Future\n", "imports concurrent.futures"),
        ("import http.client\n", "imports http.client"),
        ("import orjson\n", "not in the standard library"),
        ("import os\nX = os.environ['HOME']\n", "uses .environ"),
        ("import os\nX = os.getenv('HOME')\n", "uses .getenv"),
        ("import os as o\nX = o.getcwd()\n", "uses os.getcwd"),
        ("from os import environ\n", "imports environ from os"),
        ("__import__('socket')\n", "imports socket"),
        ("open('/etc/hosts')\n", "calls open()"),
        ("print('debug')\n", "calls print()"),
    ],
)
def test_io_in_the_core_is_caught(tmp_path: Path, text: str, expected: str) -> None:
    """I/O modules, third-party modules and environment access under protocol are reported."""
    root = write(tmp_path, {**GOOD_TREE, "wshub/protocol/bad.py": text})
    problems = core_io_problems(root)
    assert problems
    assert all(problem.startswith("wshub.protocol.bad:") for problem in problems)
    assert any(expected in problem for problem in problems)
