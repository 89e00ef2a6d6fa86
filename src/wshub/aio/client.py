"""The asyncio WebSocket client: ``connect()`` and ``ClientConnection``.

``connect(url)`` returns a :class:`Connect` that can be used three ways::

    ws = await connect(url)                 # one connection
    async with connect(url) as ws: ...      # closed on exit
    async for ws in connect(url): ...       # a new connection each time, with backoff

With callbacks and ``reconnect=True``, ``await connect(...)`` returns the first
connection and a supervisor reconnects after every abnormal closure until
:meth:`Connect.close` is called.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import ssl as ssl_module
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Mapping, Sequence
from typing import Any

from ..exceptions import InvalidHandshake, InvalidResponse, InvalidURI
from ..protocol.client import ClientHandshake, frame_message_masked
from ..protocol.connection import Connection as Core
from ..protocol.connection import Side
from ..protocol.extensions.base import ClientExtensionFactory
from ..protocol.extensions.permessage_deflate import client_deflate
from ..protocol.http11 import ResponseParser
from ..protocol.uri import parse_uri
from .connection import Callbacks, ConnectionOptions, WebSocketConnection
from .options import TransportOptions

__all__ = ["ClientConnection", "Connect", "connect"]

logger = logging.getLogger("wshub.client")

#: Seconds after which a connection counts as stable: its end resets the reconnect delay.
STABLE_CONNECTION = 60.0


class ClientConnection(WebSocketConnection):
    """A connection opened by :func:`connect`."""

    __slots__ = ("_answered", "_handshake", "_opened", "_parser")

    def __init__(self, options: ConnectionOptions, handshake: ClientHandshake) -> None:
        super().__init__(options)
        self._handshake = handshake
        self._parser: ResponseParser | None = ResponseParser()
        self._opened: asyncio.Future[None] = self.loop.create_future()
        self._answered = False  # whether any byte of the response came

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        self.request = self._handshake.request
        self.transport.write(self._handshake.request_bytes())

    def _handshake_data(self, data: bytes) -> None:
        parser = self._parser
        if parser is None:
            return
        try:
            if not self._answered:
                self._answered = True
                if _looks_like_tls(data):
                    raise InvalidHandshake(
                        "the server answered with TLS: use a wss:// URL for this port"
                    )
            response = parser.feed(data)
            if response is None:
                return
            self.response = response
            accepted = self._handshake.validate(response)
        except InvalidHandshake as exc:
            self._parser = None
            if not self._opened.done():
                self._opened.set_exception(exc)
            assert self.transport is not None
            self.transport.abort()
            return
        leftover = parser.leftover
        self._parser = None
        self.subprotocol = accepted.subprotocol
        if not accepted.extensions:
            self._frame = frame_message_masked
        self._start(Core(Side.CLIENT, extensions=accepted.extensions, max_size=self._opts.max_size))
        if not self._opened.done():
            self._opened.set_result(None)
        if leftover:
            self.data_received(leftover)

    def _connection_gone(self) -> None:
        if not self._opened.done():
            reason = "connection closed during the opening handshake"
            if not self._answered and not self._handshake.uri.secure:
                # What a TLS server does with a plain HTTP request.
                reason += ", before any answer (if this port speaks TLS, use a wss:// URL)"
            self._opened.set_exception(InvalidResponse(reason))


def _looks_like_tls(data: bytes) -> bool:
    """Whether ``data`` starts with a TLS record header: a handshake (0x16) or an alert
    (0x15), protocol version 3.x (RFC 8446 §5.1). No HTTP response starts that way."""
    return len(data) >= 2 and data[0] in (0x15, 0x16) and data[1] == 0x03


class Connect:
    """What :func:`connect` returns: awaitable, an async context manager, an async iterator."""

    def __init__(
        self,
        url: str,
        *,
        callbacks: Callbacks,
        options: ConnectionOptions,
        subprotocols: Sequence[str] | None,
        extensions: Sequence[ClientExtensionFactory],
        additional_headers: Iterable[tuple[str, str]] | Mapping[str, str] | None,
        origin: str | None,
        user_agent: str | None,
        ssl: ssl_module.SSLContext | None,
        reconnect: bool,
        backoff_initial: float,
        backoff_max: float,
        backoff_factor: float,
    ) -> None:
        self.url = url
        self.uri = parse_uri(url)
        if ssl is not None and not self.uri.secure:
            raise InvalidURI("ssl= given for a ws:// URL; use wss://")
        self._callbacks = callbacks
        self._options = options
        self._subprotocols = subprotocols
        self._extensions = extensions
        self._additional_headers = additional_headers
        self._origin = origin
        self._user_agent = user_agent
        self._ssl = ssl
        self._reconnect = reconnect
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._backoff_factor = backoff_factor
        self.connection: ClientConnection | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopped = False

    async def _open(self) -> ClientConnection:
        """Open one connection, within ``open_timeout``."""
        uri = self.uri
        ssl_context: ssl_module.SSLContext | None = None
        if uri.secure:
            # Certificate verification stays on unless the caller passes a context without it.
            ssl_context = self._ssl or ssl_module.create_default_context()
        handshake = ClientHandshake(
            uri,
            subprotocols=self._subprotocols,
            extensions=self._extensions,
            origin=self._origin,
            additional_headers=self._additional_headers,
            user_agent=self._user_agent,
        )
        loop = asyncio.get_running_loop()
        # How far the opening got, to say what timed out: "tcp", "tls", then "http".
        stage = "tcp"

        def make_connection() -> ClientConnection:
            return ClientConnection(self._options, handshake)

        async def open_connection() -> ClientConnection:
            nonlocal stage
            if ssl_context is None:
                _, conn = await loop.create_connection(make_connection, uri.host, uri.port)
            else:
                # TCP first, then TLS on that socket, so that a server that does not speak
                # TLS can be told from a network that does not answer.
                sock = await _connect_tcp(loop, uri.host, uri.port)
                stage = "tls"
                try:
                    _, conn = await loop.create_connection(
                        make_connection, sock=sock, ssl=ssl_context, server_hostname=uri.host
                    )
                except ssl_module.SSLError as exc:
                    sock.close()
                    if exc.reason in _NOT_TLS:
                        raise InvalidHandshake(
                            f"TLS handshake failed: the server did not answer TLS ({exc.reason});"
                            f" is {self.url} a plain ws:// port?"
                        ) from exc
                    raise
                except BaseException:
                    sock.close()
                    raise
            stage = "http"
            try:
                await conn._opened
            except BaseException:
                if conn.transport is not None:
                    conn.transport.abort()
                raise
            return conn

        timeout = self._options.open_timeout
        try:
            conn = await asyncio.wait_for(open_connection(), timeout)
        except TimeoutError as exc:
            raise TimeoutError(_TIMEOUTS[stage].format(url=self.url, timeout=timeout)) from exc
        self.connection = conn
        return conn

    def __await__(self) -> Generator[Any, None, ClientConnection]:
        return self._first().__await__()

    async def _first(self) -> ClientConnection:
        conn = await self._open()
        if self._reconnect and self._supervisor is None:
            self._supervisor = asyncio.get_running_loop().create_task(self._supervise(conn))
        return conn

    async def __aenter__(self) -> ClientConnection:
        return await self._first()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the current connection and stop reconnecting."""
        self._stopped = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            self._supervisor = None
        if self.connection is not None:
            await self.connection.close(code, reason)

    def _delays(self) -> Generator[float, None, None]:
        """Exponential backoff with full jitter: spreads reconnects after an outage."""
        delay = self._backoff_initial
        while True:
            yield random.uniform(0, delay)
            delay = min(delay * self._backoff_factor, self._backoff_max)

    async def _retry_open(self) -> ClientConnection:
        delays = self._delays()
        while True:
            try:
                return await self._open()
            except (TimeoutError, OSError, InvalidHandshake) as exc:
                if not _retryable(exc):
                    raise
                delay = next(delays)
                logger.warning(
                    "connecting to %s failed (%s); retrying in %.2f s",
                    self.url,
                    _describe(exc),
                    delay,
                )
                await asyncio.sleep(delay)

    async def _supervise(self, conn: ClientConnection) -> None:
        """Reconnect after abnormal closures (callback style with ``reconnect=True``)."""
        while not self._stopped:
            await conn.wait_closed()
            if self._stopped:
                return
            code = conn.close_code
            if code in (1000, 1001):
                logger.info(
                    "connection to %s closed normally (%s); not reconnecting", self.url, code
                )
                return
            logger.warning("connection to %s lost (close code %s); reconnecting", self.url, code)
            await asyncio.sleep(random.uniform(0, self._backoff_initial))
            try:
                conn = await self._retry_open()
            except InvalidHandshake as exc:
                # A refusal that retrying cannot fix (e.g. 401, 403): nobody awaits this
                # task, so say it here instead of leaving an unretrieved exception.
                logger.error("reconnecting to %s refused (%s); giving up", self.url, _describe(exc))
                return

    def __aiter__(self) -> AsyncIterator[ClientConnection]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[ClientConnection]:
        previous: ClientConnection | None = None
        opened_at = 0.0
        delay = self._backoff_initial
        while not self._stopped:
            if previous is not None:
                if previous.open:
                    await previous.close()
                # Back off even after a normal close: a server that accepts and closes at
                # once must not get a tight reconnect loop. A connection that lived for a
                # while resets the delay.
                if time.monotonic() - opened_at > STABLE_CONNECTION:
                    delay = self._backoff_initial
                else:
                    delay = min(delay * self._backoff_factor, self._backoff_max)
                log = logger.info if previous.close_code in (1000, 1001) else logger.warning
                log(
                    "connection to %s closed (close code %s); reconnecting",
                    self.url,
                    previous.close_code,
                )
                await asyncio.sleep(random.uniform(0, delay))
            previous = await self._retry_open()
            opened_at = time.monotonic()
            yield previous


#: ``ssl.SSLError.reason`` values that mean the answer was not TLS at all (plain HTTP, say).
_NOT_TLS = frozenset(
    {"WRONG_VERSION_NUMBER", "PACKET_LENGTH_TOO_LONG", "RECORD_LAYER_FAILURE", "UNKNOWN_PROTOCOL"}
)

#: What a ``TimeoutError`` of ``open_timeout`` says, by how far the opening got.
_TIMEOUTS = {
    "tcp": "connecting to {url} timed out after open_timeout ({timeout} s)",
    "tls": (
        "TLS handshake failed: the server did not answer TLS within open_timeout"
        " ({timeout} s); is {url} a plain ws:// port?"
    ),
    "http": "the server did not answer the WebSocket upgrade within open_timeout ({timeout} s)",
}


async def _connect_tcp(loop: asyncio.AbstractEventLoop, host: str, port: int) -> socket.socket:
    """A connected non-blocking socket: each address of ``host`` in turn, like
    ``create_connection`` does without happy eyeballs.

    Raises:
        OSError: no address answered: the first address's error.
    """
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    errors: list[OSError] = []
    for family, type_, proto, _, address in infos:
        sock = socket.socket(family, type_, proto)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            errors.append(exc)
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    if errors:
        raise errors[0]
    raise OSError(f"{host} has no address to connect to")


def _retryable(exc: BaseException) -> bool:
    """Network errors, timeouts and 5xx answers are worth retrying; 4xx are not."""
    if isinstance(exc, InvalidResponse):
        return exc.status == 0 or exc.status >= 500 or exc.status == 429
    return not isinstance(exc, InvalidHandshake)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def connect(
    url: str,
    *,
    on_open: Callable[..., Any] | None = None,
    on_message: Callable[..., Any] | None = None,
    on_close: Callable[..., Any] | None = None,
    on_error: Callable[..., Any] | None = None,
    reconnect: bool = False,
    subprotocols: Sequence[str] | None = None,
    additional_headers: Iterable[tuple[str, str]] | Mapping[str, str] | None = None,
    origin: str | None = None,
    user_agent: str | None = "wshub/0.1",
    compression: str | None = "deflate",
    ssl: ssl_module.SSLContext | None = None,
    max_size: int | None = 2**20,
    max_queue: int | None = 16,
    write_limit: int = 2**16,
    ping_interval: float | None = 20.0,
    ping_timeout: float | None = 20.0,
    open_timeout: float | None = 10.0,
    close_timeout: float | None = 10.0,
    backoff_initial: float = 1.0,
    backoff_max: float = 30.0,
    backoff_factor: float = 1.6,
    options: TransportOptions | None = None,
) -> Connect:
    """Connect to a WebSocket server.

    Args:
        url: a ``ws://`` or ``wss://`` URL.
        on_open, on_message, on_close, on_error: event-style callbacks (plain or
            async). With ``on_message`` given, ``recv()`` is not available.
        reconnect: with callbacks, reconnect after abnormal closures.
        subprotocols: subprotocols to offer, in preference order.
        additional_headers: extra request headers, e.g. ``Authorization``.
        origin: value of the ``Origin`` header.
        compression: ``"deflate"`` to offer permessage-deflate, ``"deflate-shared"`` to
            offer it with ``server_no_context_takeover``, or ``None``.
        ssl: an ``ssl.SSLContext`` for ``wss://``; by default a context that
            verifies certificates.
        max_size, max_queue, write_limit, ping_interval, ping_timeout,
            open_timeout, close_timeout: as for :func:`wshub.serve`.
        backoff_initial, backoff_max, backoff_factor: reconnect delays in
            seconds (full jitter between 0 and the current delay).
        options: all the limits above as one :class:`TransportOptions` (then none of
            them may also be given as a keyword).
    """
    transport = TransportOptions.merge(
        options,
        compression=compression,
        max_size=max_size,
        max_queue=max_queue,
        write_limit=write_limit,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        open_timeout=open_timeout,
        close_timeout=close_timeout,
    )
    callbacks = Callbacks(on_open, on_message, on_close, on_error)
    extensions: Sequence[ClientExtensionFactory] = (
        [client_deflate(shared=transport.compression == "deflate-shared")]
        if transport.compression is not None
        else []
    )
    connection_options = transport.connection_options(
        callbacks, modern=on_message is None, logger=logger
    )
    return Connect(
        url,
        callbacks=callbacks,
        options=connection_options,
        subprotocols=subprotocols,
        extensions=extensions,
        additional_headers=additional_headers,
        origin=origin,
        user_agent=user_agent,
        ssl=ssl,
        reconnect=reconnect,
        backoff_initial=backoff_initial,
        backoff_max=backoff_max,
        backoff_factor=backoff_factor,
    )
