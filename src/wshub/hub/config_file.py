"""Config files: reading a TOML file into the shape :meth:`HubConfig.parse` reads, and writing
a configuration back as commented TOML (``wshub config init`` and ``show``).

The configuration itself, its parts and their validation are in :mod:`wshub.hub.config`;
this module only knows the file format (``tomllib`` to read; TOML is written by hand, since
the standard library has no writer).
"""

from __future__ import annotations

import inspect
import json
import re
import tomllib
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from wshub.exceptions import ConfigError
from wshub.hub.channels import NamespaceOptions
from wshub.hub.config import PARTS, STORAGES, HubConfig, SQLiteStorage

__all__ = ["FILE_KEYS", "SECTIONS", "dump_toml", "field_docs", "read_file"]

#: Keys whose value may instead come from a file: ``secret_file = "/run/secrets/wshub"``.
FILE_KEYS: Mapping[str, tuple[str, ...]] = types.MappingProxyType(
    {"auth": ("secret", "public_key"), "api": ("api_key",), "storage": ("sentinel_password",)}
)


def read_file(path: str | Path) -> dict[str, Any]:
    """The TOML file at ``path`` in the shape :meth:`HubConfig.parse` reads, with each
    ``<key>_file`` of :data:`FILE_KEYS` replaced by ``<key>`` and that file's content (its
    trailing newline removed). Relative paths are relative to the current directory.

    Raises:
        ConfigError: the file cannot be read or is not TOML; a ``<key>_file`` cannot be
            read, or is given together with ``<key>``.
    """
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not TOML: {exc}"]) from exc
    errors: list[str] = []
    for section, keys in FILE_KEYS.items():
        table = data.get(section)
        if not isinstance(table, dict):
            continue
        for key in keys:
            if f"{key}_file" not in table:
                continue
            where, name = f"{section}.{key}_file", table.pop(f"{key}_file")
            if key in table:
                errors.append(f"{where}: give {key} or {key}_file, not both")
            elif not isinstance(name, str):
                errors.append(f"{where}: must be a string, got {name!r}")
            else:
                try:
                    table[key] = Path(name).read_text(encoding="utf-8").rstrip("\r\n")
                except (OSError, UnicodeDecodeError) as exc:
                    errors.append(f"{where}: cannot read {name!r}: {exc}")
    ConfigError.check(errors)
    return data


def field_docs(cls: type[Any]) -> dict[str, str]:
    """The ``Attributes:`` entries of a dataclass's docstring, one line each, by field."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    _, found, section = doc.partition("Attributes:\n")
    docs: dict[str, str] = {}
    if not found:
        return docs
    name = ""
    for line in section.splitlines():
        entry = re.match(r"    (\w+): (.*)", line)
        if entry:
            name = entry.group(1)
            docs[name] = entry.group(2)
        elif line.startswith("        ") and name:
            docs[name] += " " + line.strip()
        elif line.strip():
            break
    return docs


#: The dataclass of each table of the file, for the comments of :func:`dump_toml`.
SECTIONS: Mapping[str, type[Any]] = types.MappingProxyType(
    {
        **PARTS,
        "storage": SQLiteStorage,
        "namespaces": NamespaceOptions,
        "default_namespace": NamespaceOptions,
    }
)


def dump_toml(data: Mapping[str, Any], *, comments: bool = False) -> str:
    """``data`` (the shape of :meth:`HubConfig.serialize`) as TOML text; with
    ``comments``, each field of a known table is preceded by its documentation."""
    lines: list[str] = []
    tables = {key: value for key, value in data.items() if isinstance(value, dict)}
    arrays = {key: value for key, value in data.items() if isinstance(value, list | tuple)}
    arrays = {
        key: value for key, value in arrays.items() if all(isinstance(v, dict) for v in value)
    }
    plain = {key: value for key, value in data.items() if key not in tables and key not in arrays}
    _dump_pairs(lines, plain, HubConfig if comments else None)
    for key, table in tables.items():
        lines += ["", f"[{key}]"]
        _dump_pairs(lines, table, _documented(key, table) if comments else None)
    for key, items in arrays.items():
        for item in items:
            lines += ["", f"[[{key}]]"]
            _dump_pairs(lines, item, _documented(key, item) if comments else None)
    return "\n".join(lines).lstrip("\n") + "\n"


def _documented(key: str, table: Mapping[str, Any]) -> type[Any] | None:
    if key == "storage":
        return STORAGES.get(str(table.get("kind")))
    return SECTIONS.get(key)


def _dump_pairs(lines: list[str], pairs: Mapping[str, Any], cls: type[Any] | None) -> None:
    docs = {
        name: text.replace("``None``", "none").replace("``", "`")
        for name, text in (field_docs(cls) if cls is not None else {}).items()
    }
    for key, value in pairs.items():
        if key in docs:
            lines.append(f"# {docs[key]}")
        lines.append(f"{key} = {_toml_value(value)}")
    for key, text in docs.items():  # unset (a string left out): shown, commented out
        if key not in pairs and key not in ("options", "name"):
            lines += [f"# {text}", f'# {key} = "..."']


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")  # pragma: no cover - a new field's type
