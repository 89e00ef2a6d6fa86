"""Fuzz target: the client's HTTP response parser (``wshub.protocol.http11.ResponseParser``).

Invariants, for any bytes: the parser only refuses with
:class:`~wshub.exceptions.InvalidResponse`; feeding in pieces gives what feeding at once
gives; a parsed response has a status from 100 to 999 and a body no longer than the limit,
and a 101 keeps every byte after its head as leftover (they belong to the WebSocket).
"""

from __future__ import annotations

from _harness import feed_pieces, instrumented, run

with instrumented(__name__):
    from wshub.exceptions import InvalidResponse
    from wshub.protocol.http11 import Response, ResponseParser

MAX_RESPONSE_SIZE = 1024


def parse(pieces: list[bytes]) -> tuple[Response | None, bytes] | str:
    parser = ResponseParser(max_line_size=256, max_headers=16, max_response_size=MAX_RESPONSE_SIZE)
    try:
        return feed_pieces(parser, pieces)
    except InvalidResponse as exc:
        return str(exc)


def test_one_input(data: bytes) -> None:
    cut = data[0] if data else 0
    body = data[1:]
    whole = parse([body])
    if cut < len(body):
        assert parse([body[:cut], body[cut:]]) == whole
    if isinstance(whole, tuple):
        response, leftover = whole
        if response is None:
            return
        assert 100 <= response.status <= 999
        assert len(response.body) <= MAX_RESPONSE_SIZE
        if response.status == 101:
            assert response.body == b""
            assert body.endswith(leftover)


if __name__ == "__main__":
    run(test_one_input)
