"""Fuzz target: the hub's wire command parser (``wshub.hub.wire.parse_command``).

Invariants, for any text or bytes:

* it never raises: a client's garbage becomes a :class:`WireError`, never an exception;
* a :class:`WireError` has a documented code (bad request, unknown command), a short
  message safe to send back, and an id that is ``None`` or a valid command id;
* a parsed command serializes to text that parses back to the same command.
"""

from __future__ import annotations

from _harness import instrumented, run

with instrumented(__name__):
    from wshub.hub.wire import MAX_ID, ErrorCode, WireError, parse_command

CODES = frozenset({ErrorCode.BAD_REQUEST, ErrorCode.UNKNOWN_COMMAND})


def test_one_input(data: bytes) -> None:
    if data[:1] == b"\x00":
        result = parse_command(data[1:])  # a binary message
    else:
        result = parse_command(data.decode("utf-8", "replace"))
    if isinstance(result, WireError):
        assert result.code in CODES, result
        assert result.id is None or 1 <= result.id <= MAX_ID, result
        assert 0 < len(result.message) <= 200, result
        return
    again = parse_command(result.serialize())
    assert again == result, (again, result)


if __name__ == "__main__":
    run(test_one_input)
