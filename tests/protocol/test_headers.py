"""Tests for wshub.protocol.headers: the header multimap and the RFC 6455 §9.1 grammar."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wshub.protocol.headers import (
    Headers,
    is_token,
    parse_extensions,
    parse_tokens,
    serialize_extension,
)

TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
tokens = st.text(alphabet=TCHARS, min_size=1, max_size=12)


def test_lookup_ignores_case_and_keeps_spelling() -> None:
    """Names match case-insensitively; iteration keeps order and original spelling."""
    headers = Headers([("Host", "a"), ("X-Thing", "1"), ("x-thing", "2")])
    assert headers["HOST"] == "a"
    assert headers.get("x-THING") == "1"
    assert headers.get_all("X-THING") == ["1", "2"]
    assert list(headers) == [("Host", "a"), ("X-Thing", "1"), ("x-thing", "2")]
    assert headers.items() == list(headers)
    assert len(headers) == 3


def test_missing_names() -> None:
    """Absent names give the default, an empty list, or KeyError."""
    headers = Headers()
    assert headers.get("Host") is None
    assert headers.get("Host", "x") == "x"
    assert headers.get_all("Host") == []
    assert "Host" not in headers
    assert 42 not in headers
    with pytest.raises(KeyError):
        headers["Host"]


def test_mapping_and_headers_are_accepted() -> None:
    """A mapping or another Headers instance can seed a Headers."""
    headers = Headers({"A": "1", "B": "2"})
    assert list(headers) == [("A", "1"), ("B", "2")]
    assert Headers(headers) == headers


def test_equality_ignores_name_case_but_not_order() -> None:
    """Equality compares fields in order, names case-insensitively."""
    assert Headers([("A", "1"), ("B", "2")]) == Headers([("a", "1"), ("b", "2")])
    assert Headers([("A", "1"), ("B", "2")]) != Headers([("B", "2"), ("A", "1")])
    assert Headers([("A", "1")]) != Headers([("A", "2")])
    assert Headers() != [("A", "1")]
    with pytest.raises(TypeError):
        hash(Headers())


def test_copy_is_independent() -> None:
    """Adding to a copy leaves the original alone."""
    headers = Headers([("A", "1")])
    clone = headers.copy()
    clone.add("B", "2")
    assert "B" not in headers
    assert clone.get_all("b") == ["2"]
    assert clone != headers


def test_repr_shows_fields() -> None:
    """The repr lists the fields."""
    assert repr(Headers([("A", "1")])) == "Headers([('A', '1')])"


@pytest.mark.parametrize("name", ["", "Bad Name", "Host:", "Na\u00efve", "a\r\nb"])
def test_invalid_names_are_refused(name: str) -> None:
    """Names must be tokens."""
    with pytest.raises(ValueError):
        Headers().add(name, "x")


@pytest.mark.parametrize("value", ["a\r\nInjected: yes", "a\nb", "nul\x00", "\u20ac"])
def test_invalid_values_are_refused(value: str) -> None:
    """Values cannot carry line breaks, controls or characters beyond latin-1."""
    with pytest.raises(ValueError):
        Headers().add("X", value)


def test_values_may_hold_tabs_and_obs_text() -> None:
    """HTAB and obs-text are valid value characters (RFC 9110 §5.5)."""
    headers = Headers([("X", "a\tb caf\u00e9")])
    assert headers["x"] == "a\tb caf\u00e9"


def test_is_token() -> None:
    """Tokens are non-empty runs of tchar."""
    assert is_token("permessage-deflate")
    assert not is_token("")
    assert not is_token("a b")


def test_parse_tokens_strips_and_drops_empties() -> None:
    """Comma lists are split, trimmed of OWS and freed of empty elements."""
    assert parse_tokens(["keep-alive, Upgrade", " ,\tfoo ,, "]) == ["keep-alive", "Upgrade", "foo"]
    assert parse_tokens([]) == []
    assert parse_tokens(["HTTP/2.0, websocket"]) == ["HTTP/2.0", "websocket"]


def test_parse_extensions_examples() -> None:
    """The examples of RFC 7692 §5 and §7.1 parse to names and parameters."""
    assert parse_extensions(["permessage-deflate; client_max_window_bits"]) == [
        ("permessage-deflate", [("client_max_window_bits", None)])
    ]
    assert parse_extensions(
        [
            "permessage-deflate; client_max_window_bits=10 ;server_no_context_takeover,"
            " permessage-deflate",
            "x-webkit-deflate-frame",
        ]
    ) == [
        (
            "permessage-deflate",
            [("client_max_window_bits", "10"), ("server_no_context_takeover", None)],
        ),
        ("permessage-deflate", []),
        ("x-webkit-deflate-frame", []),
    ]


def test_parse_extensions_unquotes_values() -> None:
    """A quoted value is unescaped (RFC 6455 §9.1)."""
    assert parse_extensions(['foo; a="10"; b = "x\\y" ; c=d']) == [
        ("foo", [("a", "10"), ("b", "xy"), ("c", "d")])
    ]


def test_parse_extensions_tolerates_empty_elements() -> None:
    """Empty list elements are skipped (RFC 9110 §5.6.1)."""
    assert parse_extensions([", foo ,, bar,", "", "  "]) == [("foo", []), ("bar", [])]


@pytest.mark.parametrize(
    "header",
    [
        "foo;",
        "foo; ",
        "foo bar",
        ";foo",
        "foo; a=",
        "foo; a=b c",
        'foo; a="unterminated',
        'foo; a="not a token"',
        'foo; a=""',
        "foo; =1",
        "fo\u00e9",
        "foo; a=b=c",
    ],
)
def test_parse_extensions_rejects_bad_syntax(header: str) -> None:
    """Anything off the grammar raises ValueError."""
    with pytest.raises(ValueError):
        parse_extensions([header])


def test_serialize_extension() -> None:
    """Parameters are joined with '; ' and valueless ones have no '='."""
    assert (
        serialize_extension("permessage-deflate", [("a", None), ("b", "10")])
        == "permessage-deflate; a; b=10"
    )
    assert serialize_extension("x", []) == "x"


@pytest.mark.parametrize(
    ("name", "params"),
    [("bad name", []), ("x", [("bad param", None)]), ("x", [("p", "not token")])],
)
def test_serialize_extension_refuses_non_tokens(
    name: str, params: list[tuple[str, str | None]]
) -> None:
    """Names, parameters and values must be tokens."""
    with pytest.raises(ValueError):
        serialize_extension(name, params)


extension_lists = st.lists(
    st.tuples(tokens, st.lists(st.tuples(tokens, st.none() | tokens), max_size=4)),
    min_size=1,
    max_size=4,
)


@given(extension_lists)
def test_extension_header_round_trip(
    extensions: list[tuple[str, list[tuple[str, str | None]]]],
) -> None:
    """Serializing then parsing gives back the same extensions."""
    header = ", ".join(serialize_extension(name, params) for name, params in extensions)
    assert parse_extensions([header]) == extensions


@given(
    st.lists(
        st.tuples(
            tokens,
            st.text(
                alphabet=st.characters(
                    min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"
                )
            ),
        )
    )
)
def test_headers_keep_every_pair(pairs: list[tuple[str, str]]) -> None:
    """Every added pair comes back in order, and get_all agrees with the pairs."""
    headers = Headers(pairs)
    assert list(headers) == pairs
    for name, _ in pairs:
        assert headers.get_all(name) == [v for n, v in pairs if n.lower() == name.lower()]
    adopted = Headers._adopt(list(pairs))
    assert adopted.items() == headers.items()
    for name, _ in pairs:
        assert adopted.get_all(name.upper()) == headers.get_all(name)


def test_copy_of_a_repeated_name_is_independent() -> None:
    """Adding a second value to a copy does not show in the original's values of that name."""
    headers = Headers([("A", "1")])
    clone = headers.copy()
    clone.add("a", "2")
    assert headers.get_all("A") == ["1"]
    assert clone.get_all("A") == ["1", "2"]


@given(st.text(alphabet=st.sampled_from(list('ab=;, \t"\\x\u00e9')), max_size=30))
def test_parse_extensions_only_raises_value_error(header: str) -> None:
    """Any input either parses into tokens or raises ValueError."""
    try:
        parsed = parse_extensions([header])
    except ValueError:
        return
    for name, params in parsed:
        assert is_token(name)
        assert all(is_token(p) and (v is None or is_token(v)) for p, v in params)
