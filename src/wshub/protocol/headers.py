"""HTTP header fields: a case-insensitive multimap and the WebSocket header grammars.

:class:`Headers` keeps every field in arrival order with its original spelling, because
some fields may repeat (``Sec-WebSocket-Extensions`` may be split over several lines,
RFC 6455 §9.1) and the order of repeated values carries meaning.

The helpers parse the list-valued headers of the opening handshake. They raise
:class:`ValueError` on bad syntax and leave it to the caller to turn that into the right
refusal: a 400 on the server side, :class:`~wshub.exceptions.InvalidResponse` on the
client side.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping

__all__ = [
    "ExtensionHeader",
    "ExtensionParam",
    "Headers",
    "is_token",
    "parse_extensions",
    "parse_tokens",
    "serialize_extension",
]

#: One extension parameter: its name and its value (``None`` when it has no value).
ExtensionParam = tuple[str, str | None]
#: One element of ``Sec-WebSocket-Extensions``: the extension token and its parameters.
ExtensionHeader = tuple[str, list[ExtensionParam]]

# RFC 9110 §5.6.2: token = 1*tchar.
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9110 §5.5: field-value characters are VCHAR, obs-text, SP and HTAB. CR, LF and NUL
# are excluded so that a value can never inject a header line into a serialized message.
_VALUE_RE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
_OWS_RE = re.compile(r"[ \t]*")
# RFC 9110 §5.6.4: quoted-string with quoted-pair escapes.
_QUOTED_RE = re.compile(r'"((?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*)"')
_QUOTED_PAIR_RE = re.compile(r"\\(.)")


def is_token(value: str) -> bool:
    """Tell whether ``value`` is an HTTP token (RFC 9110 §5.6.2)."""
    return _TOKEN_RE.fullmatch(value) is not None


class Headers:
    """A case-insensitive multimap of header fields that preserves order and spelling.

    Lookups ignore case; iteration yields ``(name, value)`` pairs in insertion order with
    the names spelled as they were added, so a parsed message serializes back unchanged.

    Names must be HTTP tokens and values must not contain control characters other than
    HTAB: :meth:`add` raises :class:`ValueError` otherwise, which keeps a header value
    taken from user input from splitting a response.
    """

    __slots__ = ("_index", "_items")

    def __init__(self, items: Iterable[tuple[str, str]] | Mapping[str, str] = ()) -> None:
        """Build headers from ``(name, value)`` pairs or a mapping.

        Raises:
            ValueError: a name is not a token or a value contains a forbidden character.
        """
        self._items: list[tuple[str, str]] = []
        self._index: dict[str, list[str]] = {}
        pairs = items.items() if isinstance(items, Mapping) else items
        for name, value in pairs:
            self.add(name, value)

    def add(self, name: str, value: str) -> None:
        """Append a field, keeping any earlier fields of the same name.

        Raises:
            ValueError: ``name`` is not a token or ``value`` contains a control character
                (other than HTAB) or a character above U+00FF.
        """
        if _TOKEN_RE.fullmatch(name) is None:
            raise ValueError(f"invalid header name: {name!r}")
        if _VALUE_RE.fullmatch(value) is None:
            raise ValueError(f"invalid value for header {name}")
        self._add_unchecked(name, value)

    def _add_unchecked(self, name: str, value: str) -> None:
        # For the parsers, which have already validated the bytes they decoded.
        self._items.append((name, value))
        self._index.setdefault(name.lower(), []).append(value)

    @classmethod
    def _adopt(cls, items: list[tuple[str, str]]) -> Headers:
        """Wrap already validated pairs without copying or checking them again.

        For the parsers and the handshake, which build the list themselves: the new
        object owns ``items`` from now on.
        """
        new = cls.__new__(cls)
        index: dict[str, list[str]] = {}
        for name, value in items:
            key = name.lower()
            values = index.get(key)
            if values is None:
                index[key] = [value]
            else:
                values.append(value)
        new._items = items
        new._index = index
        return new

    def get(self, name: str, default: str | None = None) -> str | None:
        """Return the first value of ``name``, or ``default`` when it is absent."""
        values = self._index.get(name.lower())
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        """Return every value of ``name`` in order (an empty list when absent)."""
        return list(self._index.get(name.lower(), ()))

    def items(self) -> list[tuple[str, str]]:
        """Return every ``(name, value)`` pair in order."""
        return list(self._items)

    def copy(self) -> Headers:
        """Return an independent copy."""
        new = Headers.__new__(Headers)
        new._items = list(self._items)
        new._index = {key: list(values) for key, values in self._index.items()}
        return new

    def __getitem__(self, name: str) -> str:
        values = self._index.get(name.lower())
        if not values:
            raise KeyError(name)
        return values[0]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        # Two header sets are equal when they hold the same fields in the same order;
        # the spelling of names does not matter, as for any lookup.
        if not isinstance(other, Headers):
            return NotImplemented
        return [(n.lower(), v) for n, v in self._items] == [(n.lower(), v) for n, v in other._items]

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


def parse_tokens(values: Iterable[str]) -> list[str]:
    """Split comma-separated list headers (``Connection``, ``Sec-WebSocket-Protocol``).

    Optional whitespace around elements is removed and empty elements are dropped, as
    RFC 9110 §5.6.1 asks of recipients. Elements are not validated: ``Upgrade`` may hold
    ``HTTP/2.0``, which is not a token, and callers only compare elements anyway.
    """
    tokens: list[str] = []
    for value in values:
        for element in value.split(","):
            element = element.strip(" \t")
            if element:
                tokens.append(element)
    return tokens


def _parse_token(header: str, pos: int) -> tuple[str, int]:
    match = _TOKEN_RE.match(header, pos)
    if match is None:
        raise ValueError(f"expected a token at position {pos}")
    return match.group(), match.end()


def _skip_ows(header: str, pos: int) -> int:
    match = _OWS_RE.match(header, pos)
    assert match is not None  # the pattern matches the empty string
    return match.end()


def _parse_param_value(header: str, pos: int) -> tuple[str, int]:
    if header.startswith('"', pos):
        match = _QUOTED_RE.match(header, pos)
        if match is None:
            raise ValueError(f"invalid quoted-string at position {pos}")
        value = _QUOTED_PAIR_RE.sub(r"\1", match.group(1))
        # RFC 6455 §9.1: an unescaped quoted value must still be a token.
        if _TOKEN_RE.fullmatch(value) is None:
            raise ValueError(f"quoted value at position {pos} is not a token")
        return value, match.end()
    return _parse_token(header, pos)


def parse_extensions(values: Iterable[str]) -> list[ExtensionHeader]:
    """Parse ``Sec-WebSocket-Extensions`` header values (RFC 6455 §9.1).

    The grammar is::

        extension-list = 1#extension
        extension      = extension-token *( ";" extension-param )
        extension-param = token [ "=" (token | quoted-string) ]

    Quoted values are unescaped; empty list elements are tolerated (RFC 9110 §5.6.1).

    Returns:
        ``(name, [(param, value or None), ...])`` for each extension, in order.

    Raises:
        ValueError: the syntax is invalid.
    """
    extensions: list[ExtensionHeader] = []
    for header in values:
        pos = 0
        end = len(header)
        while True:
            pos = _skip_ows(header, pos)
            if pos == end:
                break
            if header[pos] == ",":
                pos += 1
                continue
            name, pos = _parse_token(header, pos)
            params: list[ExtensionParam] = []
            pos = _skip_ows(header, pos)
            while pos < end and header[pos] == ";":
                pos = _skip_ows(header, pos + 1)
                param, pos = _parse_token(header, pos)
                pos = _skip_ows(header, pos)
                value: str | None = None
                if pos < end and header[pos] == "=":
                    pos = _skip_ows(header, pos + 1)
                    value, pos = _parse_param_value(header, pos)
                    pos = _skip_ows(header, pos)
                params.append((param, value))
            if pos < end and header[pos] != ",":
                raise ValueError(f"expected ',' or ';' at position {pos}")
            extensions.append((name, params))
    return extensions


def serialize_extension(name: str, params: Iterable[ExtensionParam]) -> str:
    """Serialize one extension for ``Sec-WebSocket-Extensions`` (RFC 6455 §9.1).

    Raises:
        ValueError: the name, a parameter name or a value is not a token.
    """
    if _TOKEN_RE.fullmatch(name) is None:
        raise ValueError(f"invalid extension name: {name!r}")
    parts = [name]
    for param, value in params:
        if _TOKEN_RE.fullmatch(param) is None:
            raise ValueError(f"invalid extension parameter: {param!r}")
        if value is None:
            parts.append(param)
        elif _TOKEN_RE.fullmatch(value) is None:
            raise ValueError(f"invalid value for extension parameter {param}")
        else:
            parts.append(f"{param}={value}")
    return "; ".join(parts)
