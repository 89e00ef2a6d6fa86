"""The asyncio WebSocket server: ``serve()``, ``Server``, ``ServerConnection``, ``broadcast()``."""

from __future__ import annotations

import asyncio
import inspect
import logging
import ssl as ssl_module
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..exceptions import ConnectionClosed, InvalidRequest
from ..protocol.connection import Connection as Core
from ..protocol.connection import PreparedMessage, Side, State, frame_message
from ..protocol.extensions.base import ServerExtensionFactory
from ..protocol.extensions.permessage_deflate import server_deflate
from ..protocol.http11 import Request, RequestParser, Response, parse_request_head
from ..protocol.server import accept_request_bytes, is_upgrade_request, reject_response
from .connection import (
    CORK_MAX_FRAMES,
    PAUSE_HANDSHAKE,
    Callbacks,
    ConnectionOptions,
    WebSocketConnection,
    corked_on,
    is_async_callable,
)
from .options import TransportOptions

__all__ = [
    "Server",
    "ServerConnection",
    "ServerStats",
    "broadcast",
    "send_prepared_many",
    "serve",
]

logger = logging.getLogger("wshub.server")

_EVENT_METHODS = ("on_open", "on_message", "on_close", "on_error")

Handler = Callable[["ServerConnection"], Awaitable[None]]
ProcessRequest = Callable[
    ["ServerConnection", Request], "Response | Awaitable[Response | None] | None"
]
#: Builds the answer to a request that could not be read (see ``serve(refuse_request=)``).
RefuseRequest = Callable[[InvalidRequest], Response]


class _ServerSettings:
    """Per-server settings that only the handshake needs."""

    __slots__ = (
        "extensions",
        "max_connections",
        "max_request_size",
        "origins",
        "process_request",
        "process_request_async",
        "refuse_request",
        "subprotocols",
    )

    def __init__(
        self,
        *,
        subprotocols: Sequence[str] | None,
        origins: Sequence[str | None] | None,
        extensions: Sequence[ServerExtensionFactory],
        max_connections: int | None,
        max_request_size: int | None,
        process_request: ProcessRequest | None,
        refuse_request: RefuseRequest | None = None,
    ) -> None:
        self.subprotocols = subprotocols
        self.origins = origins
        self.extensions = extensions
        self.max_connections = max_connections
        self.max_request_size = max_request_size
        self.process_request = process_request
        self.process_request_async = inspect.iscoroutinefunction(process_request)
        self.refuse_request = refuse_request or reject_response


@dataclass(slots=True)
class ServerStats:
    """Counters of one server (``Server.stats``), for monitoring (``wshub.hub.metrics``).

    Plain integers, bumped once per handshake, per closed connection or per slow-consumer
    event; the traffic counters are bumped per read, per message and per frame, and only
    when the server was made with ``count_traffic=True``, so that the default receive path
    carries no counting at all.

    Attributes:
        handshakes: upgrade requests answered, by HTTP status (101: accepted; 403, 426,
            503, ...: refused, including refusals by ``process_request``).
        http_responses: other requests answered with a plain HTTP response, by status
            (requests that could not be parsed count here).
        handshake_timeouts: connections dropped for not completing the upgrade in
            ``open_timeout``.
        close_codes_sent: closed WebSocket connections by the code of the close frame the
            server sent (none sent: not counted).
        close_codes_received: closed WebSocket connections by the code the peer sent (1006:
            no close frame came).
        keepalive_timeouts: connections closed with 1011 for want of a keepalive pong.
        slow_consumer_skips: messages ``broadcast()`` did not write to a connection above
            its ``write_limit``.
        slow_consumer_disconnects: connections closed with 1008 "slow consumer", by
            ``broadcast(slow_consumer="close")`` or by ``send_nowait`` beyond
            ``SLOW_CONSUMER_FACTOR`` times ``write_limit``.
        count_traffic: whether the four counters below are kept.
        messages_received: WebSocket messages received.
        messages_sent: WebSocket messages sent (``broadcast()``: one per recipient).
        bytes_received: bytes of WebSocket frames read (not the HTTP handshake).
        bytes_sent: bytes of WebSocket frames written, control frames included.
    """

    handshakes: dict[int, int] = field(default_factory=dict)
    http_responses: dict[int, int] = field(default_factory=dict)
    handshake_timeouts: int = 0
    close_codes_sent: dict[int, int] = field(default_factory=dict)
    close_codes_received: dict[int, int] = field(default_factory=dict)
    keepalive_timeouts: int = 0
    slow_consumer_skips: int = 0
    slow_consumer_disconnects: int = 0
    count_traffic: bool = False
    messages_received: int = 0
    messages_sent: int = 0
    bytes_received: int = 0
    bytes_sent: int = 0


def _bump(counts: dict[int, int], key: int) -> None:
    counts[key] = counts.get(key, 0) + 1


class ServerConnection(WebSocketConnection):
    """A connection accepted by a :class:`Server`."""

    __slots__ = ("_parser", "_server", "_task")

    # A peer that sends and never reads waits on its TCP window, whatever the handler does,
    # and one that is sent far more than it reads is closed as a slow consumer.
    _guard_writes = True

    def __init__(self, server: Server) -> None:
        super().__init__(server._options)
        self._server = server
        self._parser: RequestParser | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def server(self) -> Server:
        """The server that accepted this connection."""
        return self._server

    @property
    def _is_server(self) -> bool:
        return True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._server._pending.add(self)
        timeout = self._opts.open_timeout
        if timeout is not None:
            self._arm(timeout)

    def _deadline_passed(self) -> None:
        core = self._core
        if core is not None:
            unclosed = core.close_sent is None
            super()._deadline_passed()
            if unclosed and core.close_sent is not None:
                self._server.stats.keepalive_timeouts += 1  # the keepalive gave up on the peer
        elif self.transport is not None and not self._lost:
            logger.info("opening handshake timed out; dropping %s", self.remote_address)
            self._server.stats.handshake_timeouts += 1
            self.transport.abort()

    def _count_slow_consumer(self) -> None:
        self._server.stats.slow_consumer_disconnects += 1

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Start a task the server waits for (and cancels) when it shuts down."""
        task = self.loop.create_task(coro)
        tasks = self._server._tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return task

    def _connection_gone(self) -> None:
        server = self._server
        server._pending.discard(self)
        server.connections.discard(self)
        core = self._core
        if core is not None:
            stats = server.stats
            if core.close_sent is not None:
                _bump(stats.close_codes_sent, core.close_sent[0])
            _bump(stats.close_codes_received, core.close_code or 1006)

    # -- opening handshake (RFC 6455 §4.2) -------------------------------------------------------

    def _handshake_data(self, data: bytes) -> None:
        settings = self._server._settings
        if self._parser is None:
            if self._request is not None:
                return  # answering a plain HTTP request or processing one: ignore the rest
            if data[:1] == b"\x16" and data[1:2] == b"\x03" and self._server._ssl is None:
                # A TLS ClientHello (RFC 8446 §5.1): a wss:// client on this plain port. An
                # answer in plain HTTP makes its TLS library fail at once ("wrong version
                # number"), instead of both sides waiting for open_timeout.
                self._respond(Response.text(400, "Bad Request: this port does not speak TLS\n"))
                return
            # The usual case: the whole request in one read, parsed in one pass.
            parsed = parse_request_head(data, max_request_size=settings.max_request_size)
            if parsed is not None:
                request, end = parsed
                # Keep the head as received (``data`` itself when nothing follows it):
                # ``ws.request`` parses it again if it is ever read. The parsed headers
                # cost about 2 KiB per connection; the head, a few hundred bytes.
                head = data if end == len(data) else data[:end]
                if settings.process_request is None:
                    self._request = head
                    self._upgrade(request, data[end:])
                    return
                self._handle_request(request, data[end:], head)
                return
            self._parser = RequestParser(max_request_size=settings.max_request_size)
        try:
            message = self._parser.feed(data)
        except InvalidRequest as exc:
            self._respond(settings.refuse_request(exc))
            return
        if message is None:
            return
        leftover = self._parser.leftover
        self._parser = None
        self._handle_request(message, leftover)

    def _handle_request(self, request: Request, leftover: bytes, head: bytes | None = None) -> None:
        """Answer a complete request: through ``process_request`` if set, else upgrade it.

        ``head``: the request's bytes as received, kept instead of ``request`` when given.
        """
        settings = self._server._settings
        self._request = request if head is None else head
        if settings.process_request is not None:
            if settings.process_request_async:
                self._pause_reading(PAUSE_HANDSHAKE)
                self._task = self._spawn(self._process_async(request, leftover))
                return
            try:
                response = settings.process_request(self, request)
            except Exception:
                logger.exception("process_request failed")
                self._respond(Response.text(500, "Internal Server Error\n"))
                return
            if inspect.isawaitable(response):
                # A plain hook that has to wait for this request returns an awaitable:
                # only such requests pay for a Task (the hub's upgrades never do).
                self._pause_reading(PAUSE_HANDSHAKE)
                self._task = self._spawn(self._process_async(request, leftover, response))
                return
            if response is not None:
                self._respond(response)
                return
        self._upgrade(request, leftover)

    async def _process_async(
        self,
        request: Request,
        leftover: bytes,
        pending: Awaitable[Response | None] | None = None,
    ) -> None:
        settings = self._server._settings
        assert settings.process_request is not None and self.transport is not None
        try:
            if pending is None:
                pending = settings.process_request(self, request)  # type: ignore[assignment]
            response = await pending  # type: ignore[misc]
        except Exception:
            logger.exception("process_request failed")
            response = Response.text(500, "Internal Server Error\n")
        if self._lost:
            return
        if response is not None:
            self._respond(response)
            return
        self._resume_reading(PAUSE_HANDSHAKE)
        self._upgrade(request, leftover)

    def _respond(self, response: Response) -> None:
        """Answer with a plain HTTP response and close the connection."""
        assert self.transport is not None
        self._disarm()
        self._response = response
        request = self.request
        stats = self._server.stats
        if request is not None and is_upgrade_request(request):
            _bump(stats.handshakes, response.status)
        else:
            _bump(stats.http_responses, response.status)
        if "Connection" not in response.headers:
            response.headers.add("Connection", "close")
        self.transport.write(response.serialize())
        self.transport.close()

    def _upgrade(self, request: Request, leftover: bytes) -> None:
        server = self._server
        settings = server._settings
        if not is_upgrade_request(request):
            self._respond(
                Response.text(
                    426,
                    "Upgrade Required: this endpoint speaks WebSocket\n",
                    [("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")],
                )
            )
            return
        if (
            settings.max_connections is not None
            and len(server.connections) >= settings.max_connections
        ):
            self._respond(Response.text(503, "Service Unavailable: too many connections\n"))
            return
        try:
            response, subprotocol, extensions = accept_request_bytes(
                request,
                subprotocols=settings.subprotocols,
                origins=settings.origins,
                extensions=settings.extensions,
            )
        except InvalidRequest as exc:
            logger.info(
                "refused handshake from %s: %d %s", self.remote_address, exc.status, exc.reason
            )
            self._respond(reject_response(exc))
            return
        assert self.transport is not None
        self._disarm()
        server._pending.discard(self)
        server.connections.add(self)
        _bump(server.stats.handshakes, 101)
        # Kept as sent; ``ws.response`` parses it if it is ever read.
        self._response = response
        self.subprotocol = subprotocol
        self.transport.write(response)
        core = Core(Side.SERVER, extensions=extensions, max_size=self._opts.max_size)
        if not extensions:
            self._frame = frame_message
        self._start(core)
        handler = server._handler
        if handler is not None:
            self._task = self._spawn(self._run_handler(handler))
        if leftover:
            self.data_received(leftover)

    async def _run_handler(self, handler: Handler) -> None:
        try:
            await handler(self)
        except Exception as exc:
            if not isinstance(exc, ConnectionClosed):
                logger.error("connection handler failed", exc_info=exc)
                cb = self._opts.callbacks
                if cb.on_error is not None:
                    self._run_callback(cb.on_error, cb.on_error_async, exc)
                await self.close(1011, "")
                return
        except asyncio.CancelledError:
            if self._core is not None and self.open:
                self._close_now(1001, "")
            raise
        await self.close(1000, "")


class _CountingServerConnection(ServerConnection):
    """A server connection that counts its traffic in ``ServerStats`` (``count_traffic``).

    A subclass, chosen per server, so that servers that do not count pay nothing: each
    override costs a call per read, per message received and per frame written (the base
    methods are called through module globals: ``super()`` would cost more than the count).
    """

    __slots__ = ("_deliver", "_stats")

    def __init__(self, server: Server) -> None:
        super().__init__(server)
        self._stats = server.stats

    def data_received(self, data: bytes) -> None:
        if self._core is not None:  # frames only: bytes left over from the handshake come here
            self._stats.bytes_received += len(data)
        _data_received(self, data)

    def _start(self, core: Core) -> None:
        super()._start(core)
        self._deliver = core.on_message
        core.on_message = self._count_message

    def _count_message(self, message: str | bytes) -> None:
        self._stats.messages_received += 1
        self._deliver(message)

    def _write(self, data: bytes) -> None:
        stats = self._stats
        stats.bytes_sent += len(data)
        if 0 < data[0] & 0x0F < 3:  # a text or binary frame: one per message sent
            stats.messages_sent += 1
        _write(self, data)


_data_received = ServerConnection.data_received
_write = ServerConnection._write


class Server:
    """A listening WebSocket server; awaitable and usable as ``async with``."""

    def __init__(
        self,
        handler: Handler | object | None,
        host: str | None,
        port: int,
        *,
        callbacks: Callbacks,
        options: ConnectionOptions,
        settings: _ServerSettings,
        ssl: ssl_module.SSLContext | None,
        backlog: int,
        reuse_port: bool,
        sock: Any,
        count_traffic: bool = False,
    ) -> None:
        self._handler: Handler | None = handler if is_async_callable(handler) else None  # type: ignore[assignment]
        self.host = host
        self._port = port
        self._options = options
        self._settings = settings
        self._ssl = ssl
        self._backlog = backlog
        self._reuse_port = reuse_port
        self._sock = sock
        self._server: asyncio.AbstractServer | None = None
        self.connections: set[ServerConnection] = set()
        self._pending: set[ServerConnection] = set()
        # Handler and async process_request tasks, kept until they finish: a handler may
        # outlive its connection, and shutdown must wait for it (or cancel it) all the same.
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self.stats = ServerStats(count_traffic=count_traffic)
        self._connection_class = _CountingServerConnection if count_traffic else ServerConnection

    async def start(self) -> Server:
        """Start listening; idempotent."""
        if self._server is None:
            loop = asyncio.get_running_loop()
            if self._sock is not None:
                self._server = await loop.create_server(
                    lambda: self._connection_class(self),
                    sock=self._sock,
                    ssl=self._ssl,
                    backlog=self._backlog,
                )
            else:
                self._server = await loop.create_server(
                    lambda: self._connection_class(self),
                    self.host,
                    self._port,
                    ssl=self._ssl,
                    backlog=self._backlog,
                    reuse_port=self._reuse_port or None,
                )
            logger.info("listening on %s", ", ".join(str(s.getsockname()) for s in self.sockets))
        return self

    def __await__(self) -> Generator[Any, None, Server]:
        return self.start().__await__()

    async def __aenter__(self) -> Server:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
        await self.wait_closed()

    @property
    def sockets(self) -> tuple[Any, ...]:
        """The listening sockets."""
        return tuple(getattr(self._server, "sockets", ()) or ())

    @property
    def port(self) -> int:
        """The port of the first listening socket (useful with ``port=0``)."""
        return int(self.sockets[0].getsockname()[1])

    def broadcast(self, message: str | bytes, *, slow_consumer: str = "skip") -> int:
        """Send ``message`` to every open connection; see :func:`broadcast`."""
        return broadcast(self.connections, message, slow_consumer=slow_consumer)

    def close(self, code: int = 1001, reason: str = "") -> None:
        """Stop listening and start closing every connection with ``code`` (1001: going away)."""
        if self._closing:
            return
        self._closing = True
        if self._server is not None:
            self._server.close()
        for conn in list(self._pending):
            if conn.transport is not None:
                conn.transport.abort()
            if conn._task is not None:
                conn._task.cancel()  # its process_request: the connection is gone
        for conn in list(self.connections):
            if conn.open:
                conn._core.close(code, reason)  # type: ignore[union-attr]
                conn._core_closing()

    async def wait_closed(self) -> None:
        """Wait until the server and every connection and handler are closed.

        Connections get ``close_timeout`` for their closing handshake; handlers that
        are still running after that are cancelled.
        """
        timeout = self._options.close_timeout
        conns = list(self.connections)
        waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(c.wait_closed()) for c in conns]
        waits.extend(self._tasks)
        if waits:
            _, pending = await asyncio.wait(waits, timeout=timeout)
            for fut in pending:
                fut.cancel()
            for conn in conns:
                if not conn._lost and conn.transport is not None:
                    conn.transport.abort()
            if pending:
                # Let cancelled handlers run their cleanup; one that swallows the
                # cancellation gets another close_timeout, then is left behind.
                await asyncio.wait(pending, timeout=timeout)
        if self._server is not None:
            await self._server.wait_closed()

    async def serve_forever(self) -> None:
        """Serve until cancelled."""
        await self.start()
        assert self._server is not None
        try:
            await asyncio.Future()
        finally:
            self.close()
            await self.wait_closed()


def serve(
    handler: Handler | object | None = None,
    host: str | None = "127.0.0.1",
    port: int = 8765,
    *,
    on_open: Callable[..., Any] | None = None,
    on_message: Callable[..., Any] | None = None,
    on_close: Callable[..., Any] | None = None,
    on_error: Callable[..., Any] | None = None,
    subprotocols: Sequence[str] | None = None,
    origins: Sequence[str | None] | None = None,
    compression: str | None = "deflate",
    max_size: int | None = 2**20,
    max_queue: int | None = 16,
    write_limit: int = 2**16,
    ping_interval: float | None = 20.0,
    ping_timeout: float | None = 20.0,
    open_timeout: float | None = 10.0,
    close_timeout: float | None = 10.0,
    max_connections: int | None = None,
    max_request_size: int | None = 65536,
    process_request: ProcessRequest | None = None,
    ssl: ssl_module.SSLContext | None = None,
    backlog: int = 1024,
    reuse_port: bool = False,
    sock: Any = None,
    count_traffic: bool = False,
    options: TransportOptions | None = None,
    refuse_request: RefuseRequest | None = None,
) -> Server:
    """Create a WebSocket server; ``await`` it or use it with ``async with``.

    Args:
        handler: ``async def handler(ws)`` (modern style), or an object with
            ``on_open``/``on_message``/``on_close``/``on_error`` methods, or ``None``
            with those callbacks as keyword arguments (event style).
        host: interface to listen on; ``None`` for all.
        port: TCP port; 0 picks a free one (see ``Server.port``).
        subprotocols: supported subprotocols in preference order.
        origins: allowed ``Origin`` values; ``None`` allows any, and a ``None``
            item allows requests without an ``Origin`` header. Others get 403.
        compression: ``"deflate"`` (permessage-deflate, RFC 7692), ``"deflate-shared"``
            (the same, compressing a message sent to many connections once: see
            ``TransportOptions``) or ``None``.
        max_size: largest incoming message in bytes; bigger ones close with 1009.
            ``None`` means no limit (only for trusted peers).
        max_queue: unread messages buffered (modern style), or messages waiting for a
            coroutine ``on_message``, before reading pauses; ``None`` means no limit.
        write_limit: high-water mark of each write buffer in bytes (low water is a
            quarter); above it ``send()`` waits, ``broadcast()`` skips and the
            connection stops reading until the buffer drains; ``send_nowait`` beyond
            ``SLOW_CONSUMER_FACTOR`` (16) times it closes the connection with 1008.
        ping_interval: seconds between keepalive pings; ``None`` disables them.
        ping_timeout: seconds a pong may take before the connection is closed
            with 1011; ``None`` waits forever.
        open_timeout: seconds a client has to complete its upgrade request.
        close_timeout: seconds to wait for the closing handshake before dropping TCP.
        max_connections: open WebSocket connections above which new upgrades get 503.
        max_request_size: largest HTTP request (head and body) in bytes.
        process_request: ``fn(connection, request)`` (plain or async) returning a
            ``Response`` to answer plain HTTP instead of upgrading, or ``None``.
        ssl: an ``ssl.SSLContext`` to serve ``wss://``.
        backlog: the listen backlog (a connect storm needs a deep one).
        reuse_port: set ``SO_REUSEPORT`` so several processes can share the port.
        sock: an already bound socket to serve on, instead of host and port.
        count_traffic: count messages and bytes in ``Server.stats`` (a few function
            calls per message; handshakes, closes and slow consumers are always counted).
        options: all the limits above as one :class:`TransportOptions` (then none of
            them may also be given as a keyword).
        refuse_request: ``fn(error) -> Response`` for a request the server could not
            read (malformed: 400; head too large: 431; over ``max_request_size``: 413),
            before any ``process_request`` saw it; the default answers the status with a
            short text (the hub answers JSON). The connection is closed after it.
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
    if is_async_callable(handler):
        if on_message is not None:
            raise ValueError("give either a handler coroutine or an on_message callback")
        callbacks = Callbacks(on_open, None, on_close, on_error)
        modern = True
    else:
        if handler is not None and not any(
            callable(getattr(handler, name, None)) for name in _EVENT_METHODS
        ):
            raise TypeError(
                "handler must be a coroutine function or have on_open/on_message/on_close/"
                f"on_error methods, not {type(handler).__name__}"
            )
        callbacks = Callbacks.from_object(
            handler, on_open=on_open, on_message=on_message, on_close=on_close, on_error=on_error
        )
        modern = False
    extensions: Sequence[ServerExtensionFactory] = (
        [server_deflate(shared=transport.compression == "deflate-shared")]
        if transport.compression is not None
        else []
    )
    connection_options = transport.connection_options(callbacks, modern=modern, logger=logger)
    settings = _ServerSettings(
        subprotocols=subprotocols,
        origins=origins,
        extensions=extensions,
        max_connections=max_connections,
        max_request_size=max_request_size,
        process_request=process_request,
        refuse_request=refuse_request,
    )
    return Server(
        handler,
        host,
        port,
        callbacks=callbacks,
        options=connection_options,
        settings=settings,
        ssl=ssl,
        backlog=backlog,
        reuse_port=reuse_port,
        sock=sock,
        count_traffic=count_traffic,
    )


#: broadcast frames this large or larger are written at once instead of waiting in the cork
CORK_FRAME_MAX = 4096


def broadcast(
    connections: Iterable[WebSocketConnection],
    message: str | bytes,
    *,
    slow_consumer: str = "skip",
) -> int:
    """Send one message to many connections, framing it once and awaiting none of them.

    Connections that are not open are passed over. A connection whose write buffer is
    above its ``write_limit`` is *skipped* (``slow_consumer="skip"``, the default: the
    message is lost for that peer only) or closed with 1008 (``"close"``); nothing is
    ever buffered beyond the limit.

    Server connections share one unmasked, uncompressed frame (RFC 7692 lets any
    message go uncompressed); client connections must mask, so each gets its own frame.

    Returns:
        How many connections the message was written to.
    """
    if slow_consumer not in ("skip", "close"):
        raise ValueError("slow_consumer must be 'skip' or 'close'")
    frame = frame_message(message)
    # A large frame gains nothing from waiting; a small one waits in the cork, which is
    # never let grow past CORK_MAX_FRAMES, so that a burst of broadcasts that never yields
    # to the loop still reaches the transport, whose flow control then marks slow consumers.
    hold = len(frame) < CORK_FRAME_MAX
    sent = 0
    corked: list[WebSocketConnection] | None = None
    open_, server_side = State.OPEN, Side.SERVER  # locals: this loop runs once per subscriber
    for conn in connections:
        core = conn._core
        if core is None or core.state is not open_:
            continue
        if conn._write_paused:
            stats = conn._server.stats if isinstance(conn, ServerConnection) else None
            if slow_consumer == "close":
                conn._close_now(1008, "slow consumer")
                if stats is not None:
                    stats.slow_consumer_disconnects += 1
            elif stats is not None:
                stats.slow_consumer_skips += 1
            continue
        # conn.cork() inlined (this runs once per subscriber, and the registry list is
        # fetched once per call): fan-outs of one loop iteration share one write per
        # subscriber, written out by flush_corks.
        cork = conn._cork
        if cork is None:
            if not hold and core.side is server_side:
                conn.transport.write(frame)  # type: ignore[union-attr]
                sent += 1
                continue
            conn._cork = cork = []
            if corked is None:
                corked = corked_on(conn.loop)
            corked.append(conn)
        if core.side is server_side:
            cork.append(frame)
        else:
            core.send(message)  # masked per connection; lands in the cork via _write
        if not hold or len(cork) >= CORK_MAX_FRAMES:
            conn.transport.write(b"".join(cork))  # type: ignore[union-attr]
            cork.clear()
        sent += 1
    return sent


def send_prepared_many(
    connections: Sequence[WebSocketConnection], prepared: PreparedMessage
) -> list[int]:
    """Send one prepared message to many connections in one loop, awaiting none of them.

    The batched form of :meth:`~wshub.aio.connection.WebSocketConnection.send_prepared_nowait`
    for a fan-out: each connection gets the frame of ``prepared`` it can share (see
    :meth:`~wshub.protocol.Connection.prepared_frame`; one that cannot share frames and
    compresses ``prepared.message`` for itself), corked until the end of this loop iteration
    like :meth:`~wshub.aio.connection.WebSocketConnection.cork`, so one peer gets one
    ``write`` per iteration however many fan-outs reach it. Nothing else is done per
    connection: the server's ``messages_sent``/``bytes_sent`` (``--metrics``) are counted
    once per run of connections sharing one server, not once per connection.

    A connection that is not open, or whose write buffer is above its ``write_limit``, is
    left alone and its index returned: the caller decides whether to queue the message for
    it, skip it, or close it (``broadcast``'s ``slow_consumer`` policies are one choice).

    Returns:
        The indices in ``connections`` of those that did not take the message, ascending.
    """
    refused: list[int] = []
    corked: list[WebSocketConnection] | None = None
    stats: ServerStats | None = None
    counted = 0
    sent_bytes = 0
    open_ = State.OPEN
    counting = _CountingServerConnection
    # This loop runs once per subscriber of a publication: locals, no method call on the
    # common path but prepared_frame().
    for index, conn in enumerate(connections):
        core = conn._core
        if core is None or core.state is not open_ or conn._write_paused or conn._lost:
            refused.append(index)
            continue
        cork = conn._cork
        if cork is None:
            conn._cork = cork = []
            if corked is None:
                corked = corked_on(conn.loop)
            corked.append(conn)
        frame = core.prepared_frame(prepared)
        if frame is None:
            core.send(prepared.message)  # lands in the cork through _write
        else:
            if type(conn) is counting:
                conn_stats = conn._stats
                if conn_stats is not stats:
                    if stats is not None:
                        stats.messages_sent += counted
                        stats.bytes_sent += sent_bytes
                    stats, counted, sent_bytes = conn_stats, 0, 0
                counted += 1
                sent_bytes += len(frame)
            cork.append(frame)
        if len(cork) >= CORK_MAX_FRAMES:
            conn.transport.write(b"".join(cork))  # type: ignore[union-attr]
            cork.clear()
    if stats is not None:
        stats.messages_sent += counted
        stats.bytes_sent += sent_bytes
    return refused
