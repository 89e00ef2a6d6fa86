"""The hub as an ASGI application, to mount in Starlette, FastAPI or any ASGI framework.

The same :class:`~wshub.hub.Hub` and :class:`~wshub.hub.Session` code as ``wshub serve``,
reached through an ASGI server (uvicorn, hypercorn, ...) instead of wshub's own transport::

    hub = Hub(registry=ChannelRegistry({"chat": NamespaceOptions(history_size=100)}),
              auth=Authenticator(secret=SECRET))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        async with hub:  # starts the hub; at shutdown closes its sessions (1001)
            yield

    app = Starlette(routes=[Mount("/hub", app=HubASGIApp(hub, api_key=KEY))],
                    lifespan=lifespan)

Below its mount point the application serves what the standalone server serves on its
port: the WebSocket endpoint at ``path`` (subprotocol ``wshub.v1``, same commands, recovery,
auth and close codes), ``/healthz`` and the HTTP API under ``/api/`` (the same
:class:`~wshub.hub.HttpApi`), and ``/metrics``. Anything else is 404.

Frameworks do not pass lifespan events to mounted applications, so the hub is started and
closed by the enclosing application, as above. Served directly (``uvicorn module:app``),
the application answers the lifespan protocol itself: it starts the hub at startup and
closes it at shutdown.

Backpressure works as in the standalone server: the session writes through
:class:`ASGIPeer`, whose buffer has a high-water mark (``write_limit``); above it the
session stops writing and queues in its bounded per-subscription queues, where the
namespace's slow-consumer policy applies (4004 for a client that does not keep up). The
ASGI server's own ``send`` waits while its transport is above its own high-water mark, so
nothing is buffered without bound.

The standalone server stays the fast path: here every frame in and out is an ASGI message
dict and an ``await`` (see docs/deployment.md for the measured cost).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from wshub.exceptions import ConnectionClosedError, ConnectionClosedOK, InvalidState
from wshub.hub.httpapi import HttpApi, error_response
from wshub.hub.hub import Hub
from wshub.hub.js import client_script
from wshub.hub.metrics import MetricsAccess, MetricsEndpoint
from wshub.hub.wire import SUBPROTOCOL, DisconnectCode, ErrorCode
from wshub.protocol import PreparedMessage
from wshub.protocol.http11 import Request, Response

__all__ = ["ASGIPeer", "HubASGIApp"]

logger = logging.getLogger("wshub.hub")

#: The shapes of the ASGI specification (the same aliases Starlette uses).
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# What an ASGI server raises from ``send`` once the connection is gone: uvicorn raises
# ClientDisconnected (an OSError) for a lost client and RuntimeError for a message after
# ``websocket.close``; Starlette's test client and others raise one of the two as well.
_SEND_FAILED = (OSError, RuntimeError)


class ASGIPeer:
    """The :class:`~wshub.hub.session.Peer` of a session on an ASGI websocket.

    ASGI's ``send`` is a coroutine, while a session writes without waiting
    (``send_nowait``): messages go into a buffer that one task per connection, the pump,
    hands to ``send`` in order. The buffer is bounded the way a transport's is: above
    ``write_limit`` the peer is not ``writable`` and the session stops writing until
    :meth:`drain` returns, which is when the buffer is below a quarter of it.

    Args:
        send: the ASGI ``send`` callable of an accepted websocket.
        write_limit: high-water mark of the buffer, in characters of text (bytes for
            binary messages), counting the message being sent.
        close_timeout: seconds :meth:`close` waits for what is buffered and the close frame
            to be handed to the ASGI server; then it gives up on them (the connection is
            the server's to drop). ``None`` waits forever.
    """

    def __init__(
        self, send: Send, *, write_limit: int = 2**16, close_timeout: float | None = 10.0
    ) -> None:
        if write_limit < 0:
            raise ValueError("write_limit must not be negative")
        self._send = send
        self._high = write_limit
        self._low = write_limit // 4
        self.close_timeout = close_timeout
        self._buffer: deque[str | bytes] = deque()
        self._size = 0
        self._paused = False
        self._close_frame: tuple[int, str] | None = None
        self._lost = False
        self._wakeup: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._pump: asyncio.Task[None] | None = None

    @property
    def writable(self) -> bool:
        """Whether the buffer is below its high-water mark."""
        return not self._paused

    @property
    def buffered(self) -> int:
        """What waits to be handed to the ASGI server (see ``write_limit`` for the unit)."""
        return self._size

    def start(self) -> None:
        """Start the pump (call once, after ``websocket.accept`` was sent)."""
        if self._pump is None:
            self._pump = asyncio.get_running_loop().create_task(self._run())

    def cork(self) -> None:
        """Nothing to hold: ASGI has no way to write several messages at once."""

    def send_prepared_nowait(self, prepared: PreparedMessage) -> None:
        """Buffer ``prepared.message``: the ASGI server frames (and compresses) each
        message itself, so there is no frame to share."""
        self.send_nowait(prepared.message)

    def send_nowait(self, message: str | bytes) -> None:
        """Buffer ``message`` for the pump.

        Raises:
            ConnectionClosed: the connection is closing or gone.
        """
        if self._close_frame is not None or self._lost:
            raise self._closed_exc()
        self._buffer.append(message)
        self._size += len(message)
        if self._size > self._high:
            self._paused = True
        self._wake()

    async def drain(self) -> None:
        """Wait until the buffer is below its low-water mark.

        Raises:
            ConnectionClosed: the connection is gone.
        """
        while self._paused and not self._lost:
            if self._drained is None:
                self._drained = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._drained)
        if self._lost:
            raise self._closed_exc()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Send what is buffered, then ``websocket.close`` with ``code`` and ``reason``.

        Returns once the close is handed to the ASGI server, the connection is gone, or
        ``close_timeout`` has passed (then the pump is stopped and the rest discarded).
        """
        if self._close_frame is None and not self._lost:
            self._close_frame = (code, reason)
            self._wake()
        pump = self._pump
        if pump is None or pump.done():
            self._lost = True
            return
        try:
            await asyncio.wait_for(asyncio.shield(pump), self.close_timeout)
        except TimeoutError:
            logger.debug("ASGI websocket: close timed out; dropping %d buffered", self._size)
            pump.cancel()
            self._drop()

    def connection_lost(self) -> None:
        """The ASGI server reported ``websocket.disconnect``: stop sending."""
        self._lost = True
        self._wake()
        self._release_drain()

    # -- the pump -------------------------------------------------------------------------

    def _closed_exc(self) -> ConnectionClosedOK | ConnectionClosedError:
        if self._close_frame is not None:
            return ConnectionClosedOK(*self._close_frame)
        return ConnectionClosedError(1006, "")

    def _wake(self) -> None:
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    def _release_drain(self) -> None:
        self._paused = False
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    async def _run(self) -> None:
        send = self._send
        buffer = self._buffer
        try:
            while not self._lost:
                if buffer:
                    message = buffer.popleft()
                    if isinstance(message, str):
                        await send({"type": "websocket.send", "text": message})
                    else:
                        await send({"type": "websocket.send", "bytes": message})
                    self._size -= len(message)
                    if self._paused and self._size <= self._low:
                        self._release_drain()
                elif self._close_frame is not None:
                    code, reason = self._close_frame
                    await send({"type": "websocket.close", "code": code, "reason": reason})
                    return
                else:
                    self._wakeup = asyncio.get_running_loop().create_future()
                    await self._wakeup
                    self._wakeup = None
        except _SEND_FAILED as exc:
            logger.debug("ASGI websocket: send failed: %r", exc)
        finally:
            self._drop()

    def _drop(self) -> None:
        """The connection is done for: forget what is buffered, wake whoever waits."""
        self._lost = True
        self._buffer.clear()
        self._size = 0
        self._release_drain()


class _Client:
    """What :class:`MetricsEndpoint` reads of a connection: who is at the other end."""

    __slots__ = ("remote_address",)

    def __init__(self, scope: Scope) -> None:
        client = scope.get("client")
        self.remote_address = None if client is None else tuple(client)


def route_path(scope: Scope) -> str:
    """The path below the mount point (``scope["path"]`` less ``scope["root_path"]``).

    Starlette's ``Mount`` keeps the full path in ``path`` and moves the mount point into
    ``root_path``; servers given a root path do the same.
    """
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :] or "/"
    return path


def _raw_target(scope: Scope, route: str) -> str:
    """The request-target below the mount point, as sent (percent-encoded), with its query."""
    raw = scope.get("raw_path")
    root: str = scope.get("root_path", "")
    target = route
    if raw:
        decoded = raw.decode("latin-1")
        if decoded.startswith(root):
            target = decoded[len(root) :] or "/"
    query: bytes = scope.get("query_string", b"")
    return f"{target}?{query.decode('latin-1')}" if query else target


async def _send_response(send: Send, kind: str, response: Response) -> None:
    """Send ``response`` as ASGI ``{kind}.response.start`` and ``{kind}.response.body``."""
    headers = [
        (name.encode("latin-1"), value.encode("latin-1")) for name, value in response.headers
    ]
    await send({"type": f"{kind}.response.start", "status": response.status, "headers": headers})
    await send({"type": f"{kind}.response.body", "body": response.body})


class HubASGIApp:
    """The hub's WebSocket endpoint, HTTP API and metrics as one ASGI application.

    Args:
        hub: the hub; start it (``async with hub``) in the enclosing application's
            lifespan, unless this application is served directly.
        path: the WebSocket path, below the mount point.
        api_key: the HTTP API key; ``None`` disables the API (every call gets 401).
        metrics: who may read ``GET /metrics``: ``"local"``, ``"key"``, ``"open"`` or
            ``"off"`` (see :mod:`wshub.hub.metrics`). Only the hub's own numbers: the
            transport is the ASGI server's.
        write_limit: high-water mark of each connection's outbound buffer (see
            :class:`ASGIPeer`); a connection above it gets no more writes and its
            subscriptions queue under their slow-consumer policy.
        max_size: largest incoming WebSocket message, in bytes (characters for text);
            bigger ones close with 1009. ``None`` means no limit of ours (the ASGI
            server's, e.g. uvicorn's ``ws_max_size``, still applies).
        max_request_size: largest HTTP request body, in bytes; bigger ones get 413.
            ``None`` means no limit.
        close_timeout: seconds a closing connection may take to hand over what is buffered
            (see :meth:`ASGIPeer.close`); ``None`` waits forever.

    Raises:
        ValueError: a limit is out of range, or ``metrics`` is not one of the four.
    """

    def __init__(
        self,
        hub: Hub,
        *,
        path: str = "/ws",
        api_key: str | None = None,
        metrics: MetricsAccess = "local",
        write_limit: int = 2**16,
        max_size: int | None = 2**20,
        max_request_size: int | None = 2**20,
        close_timeout: float | None = 10.0,
    ) -> None:
        if write_limit < 0:
            raise ValueError("write_limit must not be negative")
        for name, value in (("max_size", max_size), ("max_request_size", max_request_size)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 or None")
        self.hub = hub
        self.path = path
        self.api = HttpApi(hub, api_key=api_key)
        self.metrics = MetricsEndpoint(
            hub, lambda: None, access=metrics, authorized=self.api.authorized
        )
        self.write_limit = write_limit
        self.max_size = max_size
        self.max_request_size = max_request_size
        self.close_timeout = close_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    # -- lifespan (only when served directly: frameworks do not forward it) ---------------

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.hub.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.hub.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- HTTP: the API and /metrics --------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _send_response(send, "http", await self._respond(scope, receive))

    async def _respond(self, scope: Scope, receive: Receive) -> Response:
        headers = [
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]
        ]
        declared = next((v for n, v in headers if n.lower() == "content-length"), "")
        limit = self.max_request_size
        too_large = error_response(413, ErrorCode.TOO_LARGE, "Content Too Large")
        # Refused before reading when the length is announced, else as soon as it is passed.
        if limit is not None and declared.isdigit() and int(declared) > limit:
            return too_large
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # http.disconnect
                return Response.text(400, "Bad Request\n")
            body += message.get("body", b"")
            if limit is not None and len(body) > limit:
                return too_large
            more = message.get("more_body", False)
        try:
            request = Request(
                scope["method"], _raw_target(scope, route_path(scope)), headers, bytes(body)
            )
        except ValueError:
            return Response.text(400, "Bad Request\n")
        response = self.metrics(_Client(scope), request)
        if response is None:
            response = await self.api.handle(request)
        if response is None:
            response = client_script(request)
        return response if response is not None else Response.text(404, "Not Found\n")

    # -- WebSocket: one hub session per connection ------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return  # the client left before the handshake went anywhere
        if route_path(scope) != self.path:
            await self._refuse(scope, send, Response.text(404, "Not Found\n"))
            return
        subprotocol = SUBPROTOCOL if SUBPROTOCOL in scope.get("subprotocols", ()) else None
        await send({"type": "websocket.accept", "subprotocol": subprotocol})
        if subprotocol is None:
            code = DisconnectCode.UNSUPPORTED_SUBPROTOCOL
            await send({"type": "websocket.close", "code": int(code), "reason": code.reason})
            return
        peer = ASGIPeer(send, write_limit=self.write_limit, close_timeout=self.close_timeout)
        try:
            session = self.hub.session(peer)
        except InvalidState:  # the hub is closing: as the standalone server at shutdown
            code = DisconnectCode.GOING_AWAY
            await send({"type": "websocket.close", "code": int(code), "reason": code.reason})
            return
        peer.start()
        max_size = self.max_size
        try:
            while True:
                message = await receive()
                if message["type"] != "websocket.receive":
                    break  # websocket.disconnect
                data = message.get("text")
                if data is None:
                    data = message.get("bytes") or b""
                if max_size is not None and len(data) > max_size:
                    # RFC 6455 §7.4.1: 1009, a message too big to process (the ASGI server
                    # has read it already: set its own limit too, e.g. uvicorn's ws_max_size).
                    await peer.close(1009, "message too big")
                    break
                await session.handle(data)
        finally:
            peer.connection_lost()
            await session.connection_lost()

    async def _refuse(self, scope: Scope, send: Send, response: Response) -> None:
        """Answer an upgrade with an HTTP response where the server can, else a 403."""
        if "websocket.http.response" not in scope.get("extensions", {}):
            await send({"type": "websocket.close", "code": 1000, "reason": ""})
            return
        await _send_response(send, "websocket.http", response)
