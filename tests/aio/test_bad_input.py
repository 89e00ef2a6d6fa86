"""Malformed frames from a raw socket: each gets its exact close code, and nobody else suffers.

For every case a well-behaved client is connected to the same server before the bad
input is sent, and it must keep getting echoes afterwards: one hostile peer never
disturbs the others (STYLE convention 1: bad input from the peer never raises).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable

import pytest

from wshub import ClientConnection, Server, connect
from wshub.protocol import Frame, Opcode
from wshub.testing import RawClient, echo, loopback_server, server_url

from . import wait_for

MAX_SIZE = 2**16


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    """An echo server with a 64 KiB ``max_size`` and no compression."""
    async with loopback_server(echo, max_size=MAX_SIZE, compression=None, close_timeout=1) as s:
        yield s


@pytest.fixture
async def bystander(server: Server) -> AsyncIterator[ClientConnection]:
    """A well-behaved client of the same server."""
    async with connect(server_url(server)) as ws:
        await ws.send("before")
        assert await wait_for(ws.recv()) == "before"
        yield ws


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


Send = Callable[[RawClient], None]

CASES: dict[str, tuple[Send, int]] = {
    "unmasked-client-frame": (lambda r: r.send_frame(Opcode.TEXT, b"hi", mask=False), 1002),
    "reserved-data-opcode": (lambda r: r.send_frame(0x3, b"?"), 1002),
    "reserved-control-opcode": (lambda r: r.send_frame(0xB, b"?"), 1002),
    "rsv1-without-extension": (lambda r: r.send_frame(Opcode.TEXT, b"x", rsv1=True), 1002),
    "rsv2": (lambda r: r.send_frame(Opcode.TEXT, b"x", rsv2=True), 1002),
    "rsv3": (lambda r: r.send_frame(Opcode.BINARY, b"x", rsv3=True), 1002),
    "fragmented-ping": (lambda r: r.send_frame(Opcode.PING, b"p", fin=False), 1002),
    "fragmented-close": (
        lambda r: r.send_frame(Opcode.CLOSE, close_payload(1000), fin=False),
        1002,
    ),
    "oversized-ping": (lambda r: r.send_frame(Opcode.PING, b"p" * 126), 1002),
    "oversized-pong": (lambda r: r.send_frame(Opcode.PONG, b"p" * 200), 1002),
    "continuation-without-start": (lambda r: r.send_frame(Opcode.CONT, b"x"), 1002),
    "new-message-inside-fragmented-one": (
        lambda r: (
            r.send_frame(Opcode.TEXT, b"a", fin=False),
            r.send_frame(Opcode.TEXT, b"b"),
        ),
        1002,
    ),
    "invalid-utf8": (lambda r: r.send_frame(Opcode.TEXT, b"\xff\xfe"), 1007),
    "invalid-utf8-surrogate": (lambda r: r.send_frame(Opcode.TEXT, b"\xed\xa0\x80"), 1007),
    "invalid-utf8-across-fragments": (
        lambda r: (
            r.send_frame(Opcode.TEXT, "é".encode()[:1], fin=False),
            r.send_frame(Opcode.CONT, b"A"),
        ),
        1007,
    ),
    "invalid-utf8-in-close-reason": (
        lambda r: r.send_frame(Opcode.CLOSE, close_payload(1000, b"\xff")),
        1007,
    ),
    "close-code-999": (lambda r: r.send_frame(Opcode.CLOSE, close_payload(999)), 1002),
    "close-code-1005": (lambda r: r.send_frame(Opcode.CLOSE, close_payload(1005)), 1002),
    "close-code-1006": (lambda r: r.send_frame(Opcode.CLOSE, close_payload(1006)), 1002),
    "close-code-1015": (lambda r: r.send_frame(Opcode.CLOSE, close_payload(1015)), 1002),
    "close-code-2000": (lambda r: r.send_frame(Opcode.CLOSE, close_payload(2000)), 1002),
    "close-code-5000": (lambda r: r.send_frame(Opcode.CLOSE, close_payload(5000)), 1002),
    "one-byte-close-payload": (lambda r: r.send_frame(Opcode.CLOSE, b"\x03"), 1002),
    "64-bit-length-with-msb-set": (
        lambda r: r.write(b"\x82\xff" + b"\x80" + bytes(7) + b"mask"),
        1002,
    ),
    # The limit is enforced on the header: the 1009 comes before any payload is sent.
    "message-over-max-size-header-only": (
        lambda r: r.send_header(Opcode.BINARY, MAX_SIZE + 1),
        1009,
    ),
    "huge-frame-header-only": (lambda r: r.send_header(Opcode.TEXT, 2**40), 1009),
    "fragments-over-max-size": (
        lambda r: (
            r.send_frame(Opcode.BINARY, b"a" * (MAX_SIZE // 2), fin=False),
            r.send_frame(Opcode.CONT, b"b" * (MAX_SIZE // 2), fin=False),
            r.send_header(Opcode.CONT, 1),
        ),
        1009,
    ),
}


@pytest.mark.parametrize(("send", "code"), CASES.values(), ids=CASES.keys())
async def test_malformed_input_gets_its_close_code(
    server: Server, bystander: ClientConnection, send: Send, code: int
) -> None:
    """The bad frame is answered with the close code of RFC 6455 §7.4.1; others go on."""
    async with await RawClient.connect("127.0.0.1", server.port) as raw:
        await wait_for(raw.handshake())
        send(raw)
        received_code, _ = await wait_for(raw.recv_close())
        assert received_code == code
        # Everything after the failure is ignored, and the server hangs up.
        raw.send_text("ignored")
        assert await wait_for(raw.read_until_eof()) == b""
    for message in ["after", b"\x00after"]:
        await bystander.send(message)
        assert await wait_for(bystander.recv()) == message
    assert len(server.connections) == 1


async def test_close_reason_is_not_echoed_with_details(server: Server) -> None:
    """The close frame for a protocol error carries a short fixed reason, never input."""
    async with await RawClient.connect("127.0.0.1", server.port) as raw:
        await wait_for(raw.handshake())
        raw.send_frame(Opcode.TEXT, b"\xffSECRET")
        code, reason = await wait_for(raw.recv_close())
        assert code == 1007
        assert "SECRET" not in reason
        assert len(reason.encode()) <= 123


async def test_garbage_before_the_handshake_is_refused(
    server: Server, bystander: ClientConnection
) -> None:
    """Bytes that are no HTTP at all get 400; the bystander is unaffected."""
    async with await RawClient.connect("127.0.0.1", server.port) as raw:
        raw.write(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(50) + b"\r\n\r\n")
        response = await wait_for(raw.read_response())
        assert response.status == 400
    await bystander.send("still fine")
    assert await wait_for(bystander.recv()) == "still fine"


async def test_input_split_byte_by_byte_is_parsed(server: Server) -> None:
    """A valid frame delivered one byte per segment is reassembled (no framing bugs)."""
    async with await RawClient.connect("127.0.0.1", server.port) as raw:
        await wait_for(raw.handshake())
        frame = Frame(Opcode.TEXT, "byte by byte ✓".encode()).serialize(mask=os.urandom(4))
        for byte in frame:
            raw.write(bytes([byte]))
            await raw.drain()
        echoed = await wait_for(raw.recv_frame())
        assert echoed.payload.decode() == "byte by byte ✓"
        raw.send_close(1000)
        assert await wait_for(raw.recv_close()) == (1000, "")
