"""Raw TCP peers that write arbitrary bytes and read frames: faults at the transport edge.

A test that checks how wshub reacts to a broken or hostile peer needs a peer that does
*not* go through wshub: one that sends an unmasked frame, a reserved opcode, a half
request, or that never reads and never answers a ping. :class:`RawClient` is that peer
for the server; :func:`raw_server` hands out :class:`RawServerConnection` peers for the
client. Both read what wshub sends as :class:`~wshub.protocol.frames.Frame` values and
HTTP messages, with the same parsers the library uses, so the assertions compare values,
not bytes.

Nothing here answers pings or close frames by itself: a test that wants a polite peer
says so with :meth:`RawConnection.send_frame`.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import ssl as ssl_module
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar

from ..aio.client import ClientConnection, connect
from ..exceptions import InvalidResponse
from ..protocol.frames import Frame, Opcode, parse_close
from ..protocol.http11 import Request, RequestParser, Response, ResponseParser
from ..protocol.server import accept_key

__all__ = [
    "RawClient",
    "RawConnection",
    "RawServer",
    "RawServerConnection",
    "raw_peer_pair",
    "raw_server",
]

_READ_SIZE = 65536
_M = TypeVar("_M", Request, Response)
_M_co = TypeVar("_M_co", Request, Response, covariant=True)


class _Parser(Protocol[_M_co]):
    """What :class:`RequestParser` and :class:`ResponseParser` have in common."""

    @property
    def leftover(self) -> bytes: ...

    def feed(self, data: bytes) -> _M_co | None: ...


class RawConnection:
    """One TCP connection read and written byte by byte.

    Args:
        reader: the stream to read from.
        writer: the stream to write to.
        client: whether this end is a WebSocket client; clients mask the frames they
            send by default (RFC 6455 §5.1), servers do not.
    """

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, client: bool
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.client = client
        self._buf = bytearray()

    # -- writing ------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Write ``data`` as is."""
        self.writer.write(data)

    async def drain(self) -> None:
        """Wait until the write buffer is flushed to the kernel (or the peer is gone)."""
        await self.writer.drain()

    def send_frame(
        self,
        opcode: int,
        payload: bytes = b"",
        *,
        fin: bool = True,
        rsv1: bool = False,
        rsv2: bool = False,
        rsv3: bool = False,
        mask: bool | bytes | None = None,
    ) -> None:
        """Write one frame, well-formed or not.

        Args:
            opcode: any 4-bit value, reserved ones included.
            payload: the payload, of any length (control frames included).
            fin, rsv1, rsv2, rsv3: the header bits.
            mask: ``True`` for a random masking key, a 4-byte key, ``False`` for an
                unmasked frame; ``None`` masks when this end is a client.
        """
        if mask is None:
            mask = self.client
        key = os.urandom(4) if mask is True else (mask or None)
        frame = Frame(opcode, payload, fin=fin, rsv1=rsv1, rsv2=rsv2, rsv3=rsv3)
        self.write(frame.serialize(key))

    def send_header(self, opcode: int, length: int, *, fin: bool = True) -> None:
        """Write only a frame header announcing ``length`` payload bytes (and a mask key).

        The payload never follows unless the test writes it: this is how a test checks
        that a limit is enforced on the header alone.
        """
        b0 = opcode | (0x80 if fin else 0)
        m = 0x80 if self.client else 0
        if length < 126:
            head = bytes((b0, m | length))
        elif length < 65536:
            head = bytes((b0, m | 126)) + length.to_bytes(2, "big")
        else:
            head = bytes((b0, m | 127)) + length.to_bytes(8, "big")
        self.write(head + (os.urandom(4) if self.client else b""))

    def send_text(self, text: str) -> None:
        """Write one text frame."""
        self.send_frame(Opcode.TEXT, text.encode())

    def send_binary(self, data: bytes) -> None:
        """Write one binary frame."""
        self.send_frame(Opcode.BINARY, data)

    def send_close(self, code: int | None = 1000, reason: str = "") -> None:
        """Write a close frame; ``code=None`` sends one with an empty payload."""
        payload = b"" if code is None else code.to_bytes(2, "big") + reason.encode()
        self.send_frame(Opcode.CLOSE, payload)

    # -- reading ------------------------------------------------------------------------------

    async def _fill(self) -> None:
        try:
            data = await self.reader.read(_READ_SIZE)
        except ConnectionResetError:
            data = b""
        if not data:
            raise EOFError("the peer closed the connection")
        self._buf += data

    async def read_exactly(self, n: int) -> bytes:
        """Read ``n`` bytes.

        Raises:
            EOFError: the connection ended first.
        """
        while len(self._buf) < n:
            await self._fill()
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    async def recv_frame(self) -> Frame:
        """Read one frame, unmasking it if it is masked.

        Raises:
            EOFError: the connection ended before a whole frame arrived.
        """
        head = await self.read_exactly(2)
        length = head[1] & 0x7F
        extended = 2 if length == 126 else 8 if length == 127 else 0
        head += await self.read_exactly(extended)
        if extended:
            length = int.from_bytes(head[2:], "big")
        mask = 4 if head[1] & 0x80 else 0
        frame, _ = Frame.parse(head + await self.read_exactly(mask + length))
        return frame

    async def recv_close(
        self, *, skip: Iterable[int] = (Opcode.PING, Opcode.PONG)
    ) -> tuple[int, str]:
        """Read frames until a close frame and return its ``(code, reason)``.

        Args:
            skip: opcodes that may come first and are passed over; any other frame
                before the close fails the call with ``AssertionError``.

        Raises:
            EOFError: the connection ended without a close frame.
        """
        skipped = set(skip)
        while True:
            frame = await self.recv_frame()
            if frame.opcode == Opcode.CLOSE:
                return parse_close(frame.payload)
            if frame.opcode not in skipped:
                raise AssertionError(f"expected a close frame, got {frame!r}")

    async def _read_message(self, parser: _Parser[_M]) -> _M:
        """Feed ``parser`` until it returns a message; keep the bytes after it."""
        while True:
            data = bytes(self._buf)
            self._buf.clear()
            message = parser.feed(data) if data else None
            if message is not None:
                self._buf += parser.leftover
                return message
            await self._fill()

    async def read_until_eof(self) -> bytes:
        """Read everything until the peer closes (or resets) the connection."""
        data = bytes(self._buf)
        self._buf.clear()
        while True:
            try:
                chunk = await self.reader.read(_READ_SIZE)
            except ConnectionResetError:
                return data
            if not chunk:
                return data
            data += chunk

    def pause_reading(self) -> None:
        """Stop reading from the socket: the kernel buffers fill and the peer's writes stall."""
        self.writer.transport.pause_reading()  # type: ignore[attr-defined]

    def resume_reading(self) -> None:
        """Read from the socket again."""
        self.writer.transport.resume_reading()  # type: ignore[attr-defined]

    # -- closing ------------------------------------------------------------------------------

    def abort(self) -> None:
        """Drop the connection at once (a TCP reset when data is pending)."""
        self.writer.transport.abort()

    async def close(self) -> None:
        """Close the connection and wait until it is closed; never raises on a broken one."""
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, ssl_module.SSLError):
            pass

    async def __aenter__(self) -> RawConnection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class RawClient(RawConnection):
    """A client connection for byte-level tests of a server.

    Example::

        async with await RawClient.connect("127.0.0.1", server.port) as raw:
            response = await raw.handshake()
            raw.send_frame(Opcode.TEXT, b"hi", mask=False)   # unmasked: must fail
            assert await raw.recv_close() == (1002, ...)
    """

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        *,
        rcvbuf: int | None = None,
        limit: int = _READ_SIZE,
        ssl: ssl_module.SSLContext | None = None,
    ) -> RawClient:
        """Open a TCP connection.

        Args:
            host: the server's address.
            port: the server's port.
            rcvbuf: ``SO_RCVBUF`` in bytes, set before connecting so that a client
                that stops reading fills up quickly; ``None`` keeps the default.
            limit: bytes the stream buffers before it stops reading from the socket.
            ssl: a context to speak TLS.
        """
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if rcvbuf is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setblocking(False)
            await loop.sock_connect(sock, (host, port))
            reader, writer = await asyncio.open_connection(
                sock=sock,
                limit=limit,
                ssl=ssl,
                server_hostname=host if ssl is not None else None,
            )
        except BaseException:
            sock.close()
            raise
        return cls(reader, writer, client=True)

    async def __aenter__(self) -> RawClient:
        return self

    def send_request(
        self,
        path: str = "/",
        headers: Iterable[tuple[str, str]] = (),
        *,
        method: str = "GET",
        body: bytes = b"",
    ) -> None:
        """Write an HTTP request with exactly ``headers`` (nothing is added but a length)."""
        self.write(Request(method, path, list(headers), body).serialize())

    async def read_response(self) -> Response:
        """Read one HTTP response; bytes after it stay buffered for :meth:`recv_frame`.

        Raises:
            EOFError: the connection ended before a whole response arrived.
        """
        return await self._read_message(ResponseParser(max_response_size=None))

    async def handshake(
        self,
        path: str = "/",
        headers: Iterable[tuple[str, str]] = (),
        *,
        host: str = "127.0.0.1",
        key: str | None = None,
    ) -> Response:
        """Send a valid upgrade request (plus ``headers``) and read the response.

        No extension or subprotocol is offered unless ``headers`` does it, so by
        default the server sends plain, uncompressed frames.

        Raises:
            InvalidResponse: the answer is not a 101 with the right accept key; its
                ``status`` is the status received.
        """
        key = key or base64.b64encode(os.urandom(16)).decode()
        request = [
            ("Host", host),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", key),
            ("Sec-WebSocket-Version", "13"),
            *headers,
        ]
        self.send_request(path, request)
        response = await self.read_response()
        if response.status != 101:
            raise InvalidResponse(f"server answered {response.status}", response.status)
        if response.headers.get("Sec-WebSocket-Accept") != accept_key(key):
            raise InvalidResponse("invalid Sec-WebSocket-Accept", response.status)
        return response


class RawServerConnection(RawConnection):
    """A connection accepted by a :class:`RawServer`, for byte-level tests of a client."""

    async def read_request(self) -> Request:
        """Read one HTTP request (the client's upgrade request).

        Raises:
            EOFError: the connection ended before a whole request arrived.
        """
        return await self._read_message(RequestParser(max_request_size=None))

    def respond(self, response: Response) -> None:
        """Write an HTTP response as is."""
        self.write(response.serialize())

    async def accept(self, headers: Iterable[tuple[str, str]] = ()) -> Request:
        """Read the upgrade request and answer it with a 101 (plus ``headers``).

        Nothing is negotiated unless ``headers`` says so, so the client sends plain,
        uncompressed frames.
        """
        request = await self.read_request()
        key = request.headers["Sec-WebSocket-Key"]
        self.respond(
            Response(
                101,
                "",
                [
                    ("Upgrade", "websocket"),
                    ("Connection", "Upgrade"),
                    ("Sec-WebSocket-Accept", accept_key(key)),
                    *headers,
                ],
            )
        )
        return request


class RawServer:
    """A listening socket whose connections are :class:`RawServerConnection` peers."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._accepted: asyncio.Queue[RawServerConnection] = asyncio.Queue()
        self._peers: list[RawServerConnection] = []

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = RawServerConnection(reader, writer, client=False)
        self._peers.append(peer)
        await self._accepted.put(peer)

    async def start(self, host: str, port: int, ssl: ssl_module.SSLContext | None) -> None:
        """Start listening."""
        self._server = await asyncio.start_server(self._on_connect, host, port, ssl=ssl)

    @property
    def port(self) -> int:
        """The listening port."""
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def url(self, path: str = "/") -> str:
        """A ``ws://`` URL for this server."""
        return f"ws://127.0.0.1:{self.port}{path}"

    async def accept(self) -> RawServerConnection:
        """Wait for the next connection."""
        return await self._accepted.get()

    async def close(self) -> None:
        """Stop listening and close every accepted connection."""
        if self._server is not None:
            self._server.close()
        for peer in self._peers:
            await peer.close()
        if self._server is not None:
            await self._server.wait_closed()


@asynccontextmanager
async def raw_server(
    host: str = "127.0.0.1", port: int = 0, *, ssl: ssl_module.SSLContext | None = None
) -> AsyncIterator[RawServer]:
    """Listen on a free loopback port and hand out raw peers until the block ends.

    Example::

        async with raw_server() as server:
            opening = asyncio.ensure_future(wshub.connect(server.url()))
            peer = await server.accept()
            await peer.accept()
            ws = await opening
    """
    server = RawServer()
    await server.start(host, port, ssl)
    try:
        yield server
    finally:
        await server.close()


@asynccontextmanager
async def raw_peer_pair(
    path: str = "/", *, headers: Iterable[tuple[str, str]] = (), **connect_options: Any
) -> AsyncIterator[tuple[ClientConnection, RawServerConnection]]:
    """Connect a wshub client to a raw server peer that accepts the upgrade, then obeys the test.

    The peer answers the upgrade with a 101 (plus ``headers``), and after that sends
    and answers nothing by itself: a test checks how the client treats a server that
    never pongs, never closes, or breaks the protocol. On exit the peer hangs up and the
    client's connection is awaited until it is gone.

    Args:
        path: the request path.
        headers: extra headers for the 101 response.
        connect_options: keyword arguments for :func:`wshub.connect`.

    Yields:
        The client connection and the raw peer.
    """
    async with raw_server() as listener:
        opening = asyncio.ensure_future(connect(listener.url(path), **connect_options))
        try:
            peer = await listener.accept()
            await peer.accept(headers)
            ws = await opening
        finally:
            if not opening.done():
                opening.cancel()
        try:
            yield ws, peer
        finally:
            await peer.close()
            await ws.wait_closed()
