"""Fuzz target: the server's HTTP request parsers (``wshub.protocol.http11``).

Invariants, for any bytes:

* the careful parser (:class:`RequestParser`) only ever refuses with
  :class:`~wshub.exceptions.InvalidRequest`, with a status from the documented set;
* feeding the bytes in pieces gives exactly what feeding them at once gives;
* when the one-pass parser (``parse_request_head``) accepts, the careful parser gives the
  same request and the same leftover bytes: the fast path never accepts what the reference
  would refuse;
* a parsed request serializes to bytes that parse back to an equal request.
"""

from __future__ import annotations

from _harness import feed_pieces, instrumented, run

with instrumented(__name__):
    from wshub.exceptions import InvalidRequest
    from wshub.protocol.http11 import Request, RequestParser, parse_request_head
    from wshub.protocol.server import accept_request, is_upgrade_request, reject_response

# The statuses RequestParser and accept_request document.
STATUSES = frozenset({400, 403, 405, 413, 414, 426, 431, 501, 505})
LIMITS = {"max_line_size": 256, "max_headers": 16, "max_request_size": 1024}


def parse(pieces: list[bytes]) -> tuple[Request | None, bytes] | int:
    """The request (or ``None`` while incomplete) and leftover, or the refusal status."""
    try:
        return feed_pieces(RequestParser(**LIMITS), pieces)
    except InvalidRequest as exc:
        assert exc.status in STATUSES, exc.status
        return exc.status


def test_one_input(data: bytes) -> None:
    cut = data[0] if data else 0
    body = data[1:]
    whole = parse([body])
    pieces = parse([body[:cut], body[cut:]]) if cut < len(body) else whole
    assert pieces == whole, (pieces, whole)

    fast = parse_request_head(
        body,
        max_line_size=LIMITS["max_line_size"],
        max_headers=LIMITS["max_headers"],
        max_request_size=LIMITS["max_request_size"],
    )
    if fast is not None:
        request, end = fast
        assert whole == (request, body[end:]), (whole, fast)

    if isinstance(whole, tuple) and whole[0] is not None:
        request = whole[0]
        again = RequestParser(max_request_size=None).feed(request.serialize())
        assert again == request, (again, request)
        if is_upgrade_request(request):
            try:
                accepted = accept_request(request)
            except InvalidRequest as exc:
                assert exc.status in STATUSES, exc.status
                assert reject_response(exc).status == exc.status
            else:
                assert accepted.response.status == 101
                assert request.version == "HTTP/1.1"  # RFC 6455 §4.1


if __name__ == "__main__":
    run(test_one_input)
