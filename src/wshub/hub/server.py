"""A hub listening on a port: the WebSocket endpoint, the HTTP API and extra HTTP handlers.

This is what ``wshub serve`` and the demo apps start::

    async with await start_hub("127.0.0.1", 8765, ephemeral=True, allow_anonymous=True,
                               http_handlers=[ChatApp(ws_path="/ws")]) as server:
        await server.serve_forever()

One port serves, in this order: ``/metrics`` (:mod:`wshub.hub.metrics`), the HTTP API
(``/healthz``, ``/api/...``), the extra ``http_handlers`` (a chat page, static files), then
the WebSocket upgrade at ``path`` (subprotocol ``wshub.v1``). Any other path gets 404; a
plain request (no upgrade) at ``path`` gets 426.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from wshub.aio import Server, ServerConnection, serve
from wshub.exceptions import ConnectionClosed
from wshub.hub.auth import DEFAULT_ANONYMOUS_PERMISSIONS, Authenticator
from wshub.hub.backends import HistoryStore, open_stores
from wshub.hub.backends.base import DEFAULT_PREFIX
from wshub.hub.channels import ChannelRegistry
from wshub.hub.httpapi import HttpApi
from wshub.hub.hub import Hub, HubLimits
from wshub.hub.metrics import MetricsAccess, MetricsEndpoint
from wshub.hub.wire import SUBPROTOCOL, DisconnectCode
from wshub.protocol.http11 import Request, Response

__all__ = ["HttpHandler", "HubServer", "run_hub", "start_hub"]

logger = logging.getLogger("wshub.hub")

#: ``handler(connection, request)`` returning a response, ``None`` to pass, or an awaitable
#: of either (the ``process_request`` shape of :func:`wshub.serve`).
HttpHandler = Callable[[Any, Request], Response | Awaitable[Response | None] | None]

#: The SQLite file inside ``data_dir``.
HISTORY_FILE = "history.db"


class _Resource(Protocol):
    """Something the server closes after the hub (a store, the stores of a backend)."""

    async def close(self) -> None: ...


class HubServer:
    """A running hub server. Build it with :func:`start_hub`.

    Attributes:
        hub: the :class:`Hub` (publish to it directly from the same process).
        server: the underlying :class:`wshub.Server`.
        path: the WebSocket path.
        metrics: the ``GET /metrics`` endpoint.
    """

    def __init__(
        self,
        hub: Hub,
        *,
        api_key: str | None = None,
        path: str = "/ws",
        http_handlers: Iterable[HttpHandler] = (),
        owned_history: HistoryStore | None = None,
        metrics: MetricsAccess = "local",
        owned: Iterable[_Resource] = (),
    ) -> None:
        self.hub = hub
        self.path = path
        self.api = HttpApi(hub, api_key=api_key)
        self.metrics = MetricsEndpoint(
            hub, lambda: self.server, access=metrics, authorized=self.api.authorized
        )
        self._handlers = list(http_handlers)
        self._owned: list[_Resource] = [] if owned_history is None else [owned_history]
        self._owned.extend(owned)
        self.server: Server | None = None

    @property
    def port(self) -> int:
        """The TCP port listened on (useful with ``port=0``)."""
        assert self.server is not None
        return self.server.port

    def url(self, host: str = "127.0.0.1") -> str:
        """The WebSocket URL of the hub on ``host``."""
        return f"ws://{host}:{self.port}{self.path}"

    async def process_request(self, connection: Any, request: Request) -> Response | None:
        """The ``process_request`` hook: metrics, HTTP API, extra handlers, then the upgrade."""
        response = self.metrics(connection, request)
        if response is not None:
            return response
        response = await self.api.handle(request)
        if response is not None:
            return response
        for handler in self._handlers:
            result = handler(connection, request)
            if inspect.isawaitable(result):
                result = await result
            if result is not None:
                return result
        # Only the WebSocket path is left to the transport, which upgrades it or, for a
        # plain request, answers 426; any other path (an upgrade, /favicon.ico, a typo) is
        # simply not here.
        if urlsplit(request.path).path != self.path:
            return Response.text(404, "Not Found\n")
        return None

    async def handle(self, ws: ServerConnection) -> None:
        """The WebSocket handler: one hub session per connection."""
        if ws.subprotocol != SUBPROTOCOL:
            code = DisconnectCode.UNSUPPORTED_SUBPROTOCOL
            await ws.close(int(code), code.reason)
            return
        session = self.hub.session(ws)
        try:
            async for message in ws:
                await session.handle(message)
        except ConnectionClosed:
            pass
        finally:
            await session.connection_lost()

    async def serve_forever(self) -> None:
        """Serve until cancelled."""
        assert self.server is not None
        await self.server.serve_forever()

    async def close(self) -> None:
        """Stop listening, close every session (1001), then the hub and its stores.

        The listener goes first, so that no upgrade is accepted by a hub that is closing.
        """
        if self.server is not None:
            self.server.close()
        await self.hub.close()
        if self.server is not None:
            await self.server.wait_closed()
        for resource in self._owned:
            await resource.close()

    async def __aenter__(self) -> HubServer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def start_hub(
    host: str | None = "127.0.0.1",
    port: int = 8765,
    *,
    data_dir: str | Path | None = None,
    ephemeral: bool = False,
    allow_anonymous: bool = False,
    anonymous_permissions: Sequence[str] = DEFAULT_ANONYMOUS_PERMISSIONS,
    secret: str | None = None,
    public_key: str | bytes | None = None,
    api_key: str | None = None,
    path: str = "/ws",
    http_handlers: Iterable[HttpHandler] = (),
    registry: ChannelRegistry | None = None,
    limits: HubLimits | None = None,
    hub: Hub | None = None,
    metrics: MetricsAccess = "local",
    redis_url: str | None = None,
    redis_prefix: str = DEFAULT_PREFIX,
    dedupe_window: float = 120.0,
    token_audience: str | None = None,
    token_issuer: str | None = None,
    token_leeway: float = 0.0,
    clock: Callable[[], float] = time.time,
    **serve_options: Any,
) -> HubServer:
    """Start a hub server and return it, listening.

    Args:
        host: the interface to listen on (``None``: all).
        port: the TCP port (0 picks a free one; see :attr:`HubServer.port`).
        data_dir: where the SQLite history lives (``history.db``, created if needed);
            required unless ``ephemeral`` or ``redis_url``.
        ephemeral: keep history in memory only (lost on restart).
        allow_anonymous: accept connections without a token.
        anonymous_permissions: what anonymous connections may do.
        secret: HS256 secret for connection tokens (at least 32 bytes).
        public_key: PEM public key for RS256/ES256 tokens.
        api_key: the HTTP API key; ``None`` disables the API (every call gets 401).
        path: the WebSocket path.
        http_handlers: extra ``process_request``-style handlers (e.g. the chat page).
        registry: the namespaces (default: the demo namespaces).
        limits: per-connection limits.
        hub: a hub built by the caller (then ``data_dir``, ``ephemeral``, ``redis_url``,
            the auth options (``token_*`` included), ``registry``, ``limits``,
            ``dedupe_window`` and ``clock`` are ignored: they configure the hub this
            function builds, and a caller's hub was configured when it was built. Closing
            the server closes the hub but not its stores).
        metrics: who may read ``GET /metrics``: ``"local"`` (loopback clients and API key
            holders), ``"key"``, ``"open"`` or ``"off"`` (see :mod:`wshub.hub.metrics`).
            Unless ``"off"``, the transport also counts messages and bytes
            (``count_traffic``).
        redis_url: share history, presence and fan-out with the other nodes of the hub
            through this Redis (``redis://host:6379/0``; needs ``wshub[redis]``), instead
            of ``data_dir`` or ``ephemeral``; see docs/hub.md, "Scaling out with Redis".
        redis_prefix: the first part of every Redis key and Pub/Sub channel; the nodes
            of one hub use the same, other hubs on the same Redis another one.
        dedupe_window: seconds a publish's ``message_id`` is remembered, so that a retry
            within it is answered as a duplicate instead of published twice. It reaches
            every store built here: the in-memory store of non-persistent namespaces, and
            the persistent history (in memory with ``ephemeral``, SQLite under
            ``data_dir``, or Redis with ``redis_url``, where the key expires after it).
            Longer windows catch later retries at the cost of one remembered id per
            publication for that long.
        token_audience: when set, tokens must carry this ``aud`` claim (tokens minted for
            another service are refused).
        token_issuer: when set, tokens must carry this ``iss`` claim.
        token_leeway: seconds of clock skew tolerated on a token's ``exp`` and ``nbf``,
            for token issuers whose clock is not quite the hub's.
        clock: wall-clock time in seconds since the Unix epoch, for token expiry, history
            TTLs and the dedupe window of everything built here (tests pass a fake one to
            move time without sleeping).
        **serve_options: passed to :func:`wshub.serve` (``origins``, ``max_size``,
            ``ssl``, ``ping_interval``, ...); ``max_request_size`` defaults to 1 MiB here so
            that HTTP API publications up to the hub's own limit get through.

    Raises:
        ValueError: none or several of ``data_dir``, ``ephemeral`` and ``redis_url``; an
            invalid auth configuration or Redis URL; ``redis_url`` without the ``redis``
            package; ``dedupe_window`` not positive or ``token_leeway`` negative.
        ConnectionError: Redis does not answer.
    """
    owned: list[_Resource] = []
    if hub is None:
        if not dedupe_window > 0:  # before the disk is touched (open_stores checks it too)
            raise ValueError("dedupe_window must be > 0")
        if not token_leeway >= 0:
            raise ValueError("token_leeway must be >= 0")
        auth = Authenticator(
            secret=secret,
            public_key=public_key,
            allow_anonymous=allow_anonymous,
            anonymous_permissions=anonymous_permissions,
            audience=token_audience,
            issuer=token_issuer,
            leeway=token_leeway,
            clock=clock,
        )
        sqlite_path: Path | None = None
        if redis_url is not None:
            if ephemeral or data_dir is not None:
                raise ValueError("redis_url replaces data_dir and ephemeral: give only one")
        elif not ephemeral:
            if data_dir is None:
                raise ValueError("data_dir is required unless ephemeral=True or redis_url")
            sqlite_path = Path(data_dir) / HISTORY_FILE
            sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        stores = await open_stores(
            sqlite_path=sqlite_path,
            redis_url=redis_url,
            redis_prefix=redis_prefix,
            clock=clock,
            dedupe_window=dedupe_window,
        )
        owned.append(stores)
        hub = Hub(
            registry=registry,
            history=stores.history,
            volatile_history=stores.volatile_history,
            broker=stores.broker,
            presence=stores.presence,
            auth=auth,
            limits=limits,
            dedupe_window=dedupe_window,
            clock=clock,
        )
    hub_server = HubServer(
        hub,
        api_key=api_key,
        path=path,
        http_handlers=http_handlers,
        metrics=metrics,
        owned=owned,
    )
    serve_options.setdefault("count_traffic", hub_server.metrics.enabled)
    # The API's requests carry publications of up to max_publication_size (64 KiB) plus JSON
    # framing: the transport's default request bound would refuse them before the hub could.
    serve_options.setdefault("max_request_size", 2**20)
    try:
        await hub.start()
        hub_server.server = await serve(
            hub_server.handle,
            host,
            port,
            subprotocols=[SUBPROTOCOL],
            process_request=hub_server.process_request,
            **serve_options,
        )
    except BaseException:
        if owned:  # the hub is ours (the port was taken, ...): release its stores and Redis
            await hub_server.close()
        raise
    logger.info("hub listening on %s:%d%s", host or "*", hub_server.port, path)
    return hub_server


async def run_hub(host: str | None = "127.0.0.1", port: int = 8765, **options: Any) -> None:
    """Start a hub server (same arguments as :func:`start_hub`) and serve until cancelled."""
    async with await start_hub(host, port, **options) as server:
        await server.serve_forever()
