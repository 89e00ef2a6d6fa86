"""Dataclasses to and from TOML tables: the generic part of reading a config file.

A table becomes a dataclass by its fields' type hints: each value is checked against its
hint (bool, int, float, str, tuples of strings, ``Literal``, ``Enum``, ``X | None`` where the
string ``"none"`` means ``None``) and every mismatch becomes one line naming the field, so
that a file with five mistakes gets five lines. :mod:`wshub.hub.config` says which tables
exist; this module knows nothing of them.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from enum import Enum
from typing import Any, Literal, TypeVar, get_args, get_origin

from wshub.exceptions import ConfigError

__all__ = [
    "NONE",
    "REDACTED",
    "build",
    "parse_table",
    "parse_value",
    "serialize_table",
    "union_members",
]

_T = TypeVar("_T")

#: What a redacted secret is shown as.
REDACTED = "<redacted>"


def build(cls: type[_T], kwargs: Mapping[str, Any], path: str) -> _T:
    """``cls(**kwargs)``, its errors prefixed with ``path``."""
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise exc.within(path) if path else exc from None


def parse_table(cls: type[_T], data: Any, path: str, errors: list[str]) -> _T | None:
    """One dataclass from one TOML table; its problems go to ``errors``."""
    if not isinstance(data, Mapping):
        errors.append(f"{path}: must be a table")
        return None
    hints = typing.get_type_hints(cls)
    names = {item.name for item in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    found = len(errors)
    for key, value in data.items():
        where = f"{path}.{key}"
        if key not in names:
            errors.append(f"{where}: unknown field")
        else:
            kwargs[key] = parse_value(hints[key], value, where, errors)
    if len(errors) > found:
        return None
    try:
        return build(cls, kwargs, path)
    except ConfigError as exc:
        errors.extend(exc.errors)
        return None


#: How a file says ``None`` (a limit switched off).
NONE = "none"


def parse_value(hint: Any, value: Any, where: str, errors: list[str]) -> Any:
    """``value`` as the type ``hint`` names; a mismatch becomes one line in ``errors``."""
    problem = _type_problem(hint, value)
    if problem is not None:
        errors.append(f"{where}: {problem}, got {value!r}")
        return None
    return _convert(hint, value)


def _type_problem(hint: Any, value: Any) -> str | None:
    options = union_members(hint)
    if type(None) in options and value == NONE:
        return None
    problems = [_simple_problem(member, value) for member in options if member is not type(None)]
    if None in problems:
        return None
    last = str(problems[-1])
    return last + " or 'none'" if type(None) in options and str not in options else last


def union_members(hint: Any) -> tuple[Any, ...]:
    if isinstance(hint, types.UnionType) or get_origin(hint) is typing.Union:
        return get_args(hint)
    return (hint,)


def _simple_problem(hint: Any, value: Any) -> str | None:
    if hint is bool:
        return None if isinstance(value, bool) else "must be true or false"
    if hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else "must be an integer"
    if hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else "must be a number"
    if hint is str:
        return None if isinstance(value, str) else "must be a string"
    if get_origin(hint) is tuple:
        ok = isinstance(value, list) and all(isinstance(item, str) for item in value)
        return None if ok else "must be a list of strings"
    if get_origin(hint) is Literal:
        return None if value in get_args(hint) else _one_of(get_args(hint))
    if isinstance(hint, type) and issubclass(hint, Enum):
        values = [member.value for member in hint]
        return None if value in values else _one_of(values)
    raise TypeError(f"no file form for {hint!r}")  # pragma: no cover - a new field's type


def _one_of(choices: Any) -> str:
    return "must be one of " + ", ".join(str(choice) for choice in choices)


def _convert(hint: Any, value: Any) -> Any:
    options = union_members(hint)
    if type(None) in options and value == NONE and str not in options:
        return None
    if float in options and not isinstance(value, bool) and isinstance(value, int):
        return float(value)
    if isinstance(value, list):
        return tuple(value)
    for member in options:
        if isinstance(member, type) and issubclass(member, Enum):
            return member(value)
    return value


def serialize_table(value: Any, redact: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in dataclasses.fields(value):
        current = getattr(value, item.name)
        if item.metadata.get("secret") and current is not None and redact:
            out[item.name] = REDACTED
        elif current is None:
            if str not in union_members(typing.get_type_hints(type(value))[item.name]):
                out[item.name] = NONE  # a limit switched off; an unset string is left out
        elif isinstance(current, Enum):
            out[item.name] = current.value
        elif isinstance(current, tuple):
            out[item.name] = list(current)
        else:
            out[item.name] = current
    return out
