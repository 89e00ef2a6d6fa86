"""A hub listening on a port: the WebSocket endpoint, the HTTP API and extra HTTP handlers.

This is what ``wshub serve`` and the demo apps start::

    async with await start_hub(demo_config(), http_handlers=[ChatApp(ws_path="/ws")]) as server:
        await server.serve_forever()

One port serves, in this order: ``/metrics`` (:mod:`wshub.hub.metrics`), the HTTP API
(``/healthz``, ``/api/...``), the extra ``http_handlers`` (a chat page, static files), then
the WebSocket upgrade at ``path`` (subprotocol ``wshub.v1``). Any other path gets 404; a
plain request (no upgrade) at ``path`` gets 426.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from ssl import SSLContext
from typing import Any, Protocol
from urllib.parse import urlsplit

from wshub.aio import Server, ServerConnection, serve
from wshub.aio.options import TransportOptions
from wshub.exceptions import ConfigError, ConnectionClosed
from wshub.hub.backends import HistoryStore, open_stores
from wshub.hub.backends.base import DEFAULT_PREFIX
from wshub.hub.channels import ChannelRegistry
from wshub.hub.config import (
    ApiConfig,
    AuthConfig,
    HubConfig,
    ListenConfig,
    MemoryStorage,
    MetricsConfig,
    Namespace,
    RedisStorage,
    SQLiteStorage,
    Storage,
)
from wshub.hub.httpapi import HttpApi, refuse_request
from wshub.hub.hub import Hub, HubLimits
from wshub.hub.js import client_script
from wshub.hub.metrics import MetricsAccess, MetricsEndpoint
from wshub.hub.nodes import NodeDirectory
from wshub.hub.wire import SUBPROTOCOL, DisconnectCode
from wshub.protocol.http11 import Request, Response

__all__ = ["HttpHandler", "HubServer", "hub_config", "run_hub", "start_hub"]

logger = logging.getLogger("wshub.hub")

#: ``handler(connection, request)`` returning a response, ``None`` to pass, or an awaitable
#: of either (the ``process_request`` shape of :func:`wshub.serve`).
HttpHandler = Callable[[Any, Request], Response | Awaitable[Response | None] | None]

#: The SQLite file inside ``data_dir``.
HISTORY_FILE = "history.db"

_DEFAULTS = HubConfig()


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
        nodes: this node's report and the other nodes' (``GET /api/nodes``).
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
        drain_period: float = _DEFAULTS.listen.drain_period,
        drain_timeout: float = _DEFAULTS.listen.drain_timeout,
    ) -> None:
        self.hub = hub
        self.path = path
        self.drain_period = drain_period
        self.drain_timeout = drain_timeout
        self.nodes = NodeDirectory(hub, traffic=self._traffic)
        self.api = HttpApi(hub, api_key=api_key, nodes=self.nodes)
        self.metrics = MetricsEndpoint(
            hub, lambda: self.server, access=metrics, authorized=self.api.authorized
        )
        self._handlers = list(http_handlers)
        self._owned: list[_Resource] = [] if owned_history is None else [owned_history]
        self._owned.extend(owned)
        self.server: Server | None = None

    def _traffic(self) -> dict[str, int]:
        stats = None if self.server is None else self.server.stats
        if stats is None or not stats.count_traffic:
            return {}
        names = ("bytes_received", "bytes_sent", "messages_received", "messages_sent")
        return {name: getattr(stats, name) for name in names}

    async def start_reporting(self) -> None:
        """Name this node ``host:port`` and start sharing its report with the other nodes."""
        self.nodes.name = f"{socket.gethostname()}:{self.port}"
        await self.nodes.start()

    @property
    def port(self) -> int:
        """The TCP port listened on (useful with ``port=0``)."""
        assert self.server is not None
        return self.server.port

    def url(self, host: str = "127.0.0.1") -> str:
        """The WebSocket URL of the hub on ``host``."""
        return f"ws://{host}:{self.port}{self.path}"

    async def process_request(self, connection: Any, request: Request) -> Response | None:
        """The ``process_request`` hook: metrics, HTTP API, extra handlers, then the upgrade.

        ``None``: the request is for the WebSocket path, for the transport to upgrade.
        """
        response = self.route(connection, request)
        if inspect.isawaitable(response):
            return await response
        return response

    def route(
        self, connection: Any, request: Request
    ) -> Response | Awaitable[Response | None] | None:
        """:meth:`process_request` without a coroutine when nothing has to wait.

        What the server gives the transport as its hook: a WebSocket upgrade (every
        connection) is decided here at once, so it needs no Task; the HTTP API and a
        handler that returns an awaitable make this return an awaitable instead, which the
        transport waits for in a Task.
        """
        response = self.metrics(connection, request)
        if response is not None:
            return response
        if self.api.owns(urlsplit(request.path).path):
            return self._then_handlers(connection, request, self.api.handle(request), 0)
        return self._handlers_from(connection, request, 0)

    def _handlers_from(
        self, connection: Any, request: Request, start: int
    ) -> Response | Awaitable[Response | None] | None:
        for index in range(start, len(self._handlers)):
            result = self._handlers[index](connection, request)
            if inspect.isawaitable(result):
                return self._then_handlers(connection, request, result, index + 1)
            if result is not None:
                return result
        # The browser client is the hub's, whatever apps are mounted (an app may serve
        # its own versioned copy first).
        response = client_script(request)
        if response is not None:
            return response
        # Only the WebSocket path is left to the transport, which upgrades it or, for a
        # plain request, answers 426; any other path (an upgrade, /favicon.ico, a typo) is
        # simply not here.
        if urlsplit(request.path).path != self.path:
            return Response.text(404, "Not Found\n")
        if self.hub.draining:
            # Still listening, so that /healthz can say "draining" to the balancer; an
            # upgrade that reaches us meanwhile is sent elsewhere at once.
            return Response.text(503, "draining\n")
        return None

    async def _then_handlers(
        self, connection: Any, request: Request, pending: Awaitable[Any], start: int
    ) -> Response | None:
        """Await ``pending``; when it answers nothing, go on with the handlers from ``start``."""
        result = await pending
        if result is not None:
            return result  # type: ignore[no-any-return]
        rest = self._handlers_from(connection, request, start)
        if inspect.isawaitable(rest):
            return await rest
        return rest

    async def handle(self, ws: ServerConnection) -> None:
        """The WebSocket handler: one hub session per connection."""
        if ws.subprotocol != SUBPROTOCOL:
            code = DisconnectCode.UNSUPPORTED_SUBPROTOCOL
            await ws.close(int(code), code.reason)
            return
        session = self.hub.session(ws)
        try:
            # recv() rather than ``async for``: an async generator per connection costs
            # about 700 bytes (the generator, its frame and the loop's weak reference).
            while True:
                await session.handle(await ws.recv())
        except ConnectionClosed:
            pass
        finally:
            await session.connection_lost()

    async def serve_forever(self) -> None:
        """Serve until cancelled."""
        assert self.server is not None
        await self.server.serve_forever()

    async def drain(
        self, *, drain_period: float | None = None, drain_timeout: float | None = None
    ) -> int:
        """Send every client elsewhere before a shutdown (what ``wshub serve`` does on
        SIGTERM, before :meth:`close`): :meth:`Hub.drain` with this node's settings.

        While it drains, the node keeps listening so that ``/healthz`` answers 503
        ``draining`` (balancers stop sending it clients) and WebSocket upgrades get 503;
        each session is closed with 1012, the closes spread over ``drain_period``. Cancel
        it to stop at once; then :meth:`close` closes the sessions left with 1001.

        Args:
            drain_period: seconds (default: the configuration's ``listen.drain_period``).
            drain_timeout: seconds (default: ``listen.drain_timeout``).

        Returns:
            How many connections were still open when ``drain_timeout`` ran out.
        """
        return await self.hub.drain(
            drain_period=self.drain_period if drain_period is None else drain_period,
            drain_timeout=self.drain_timeout if drain_timeout is None else drain_timeout,
        )

    async def close(self) -> None:
        """Stop listening, close every session (1001), then the hub and its stores.

        The listener goes first, so that no upgrade is accepted by a hub that is closing.
        """
        if self.server is not None:
            self.server.close()
        await self.nodes.close()
        await self.hub.close()
        if self.server is not None:
            await self.server.wait_closed()
        for resource in self._owned:
            await resource.close()

    async def __aenter__(self) -> HubServer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


#: ``start_hub()`` keywords that are fields of :class:`ListenConfig`.
_LISTEN_KEYWORDS = frozenset(
    {
        "origins",
        "backlog",
        "reuse_port",
        "max_connections",
        "max_request_size",
        "drain_period",
        "drain_timeout",
    }
)
_TRANSPORT_KEYWORDS = frozenset(field.name for field in dataclasses.fields(TransportOptions))


def hub_config(
    host: str | None = "127.0.0.1",
    port: int = 8765,
    *,
    data_dir: str | Path | None = None,
    ephemeral: bool = False,
    allow_anonymous: bool = False,
    anonymous_permissions: Sequence[str] = (),
    secret: str | None = None,
    public_key: str | bytes | None = None,
    api_key: str | None = None,
    path: str = "/ws",
    registry: ChannelRegistry | None = None,
    limits: HubLimits | None = None,
    metrics: MetricsAccess = "local",
    redis_url: str | None = None,
    redis_prefix: str = DEFAULT_PREFIX,
    dedupe_window: float = 120.0,
    token_audience: str | None = None,
    token_issuer: str | None = None,
    token_leeway: float = 0.0,
    **serve_options: Any,
) -> HubConfig:
    """The :class:`HubConfig` that the keyword form of :func:`start_hub` describes.

    Args:
        host, port: where to listen (``host=None``: every interface).
        data_dir: SQLite history in this directory (:class:`SQLiteStorage`).
        ephemeral: history in memory (:class:`MemoryStorage`).
        redis_url, redis_prefix: history, presence and fan-out in Redis
            (:class:`RedisStorage`).
        allow_anonymous, anonymous_permissions, secret, public_key, token_audience,
            token_issuer, token_leeway: :class:`AuthConfig` (``audience``, ``issuer``,
            ``leeway``).
        api_key: :class:`ApiConfig`.
        path: the WebSocket path.
        registry: the namespaces served (default: none).
        limits: :class:`HubLimits`.
        metrics: :class:`MetricsConfig` ``access``.
        dedupe_window: seconds a ``message_id`` is remembered.
        **serve_options: the fields of :class:`TransportOptions` and of
            :class:`ListenConfig` (``origins``, ``backlog``, ``reuse_port``,
            ``max_connections``, ``max_request_size``, ``drain_period``,
            ``drain_timeout``).

    Raises:
        ConfigError: none or several of ``data_dir``, ``ephemeral`` and ``redis_url``, or
            an invalid value (the message names the field).
        TypeError: an unknown keyword.
    """
    unknown = set(serve_options) - _LISTEN_KEYWORDS - _TRANSPORT_KEYWORDS
    if unknown:
        raise TypeError(f"start_hub() got unexpected keyword arguments: {sorted(unknown)}")
    chosen = [
        name
        for name, on in (
            ("data_dir", data_dir is not None),
            ("ephemeral", ephemeral),
            ("redis_url", redis_url is not None),
        )
        if on
    ]
    if len(chosen) != 1:
        raise ConfigError(
            [f"storage: give exactly one of data_dir, ephemeral and redis_url, got {chosen}"]
        )
    storage: Storage
    if redis_url is not None:
        storage = RedisStorage(url=redis_url, prefix=redis_prefix)
    elif data_dir is not None:
        storage = SQLiteStorage(data_dir=str(data_dir))
    else:
        storage = MemoryStorage()
    registry = registry if registry is not None else ChannelRegistry({})
    return HubConfig(
        listen=ListenConfig(
            host=host or "",
            port=port,
            path=path,
            **{name: serve_options[name] for name in _LISTEN_KEYWORDS & set(serve_options)},
        ),
        transport=TransportOptions(
            **{name: serve_options[name] for name in _TRANSPORT_KEYWORDS & set(serve_options)}
        ),
        limits=limits if limits is not None else HubLimits(),
        auth=AuthConfig(
            secret=secret,
            public_key=public_key.decode() if isinstance(public_key, bytes) else public_key,
            audience=token_audience,
            issuer=token_issuer,
            leeway=token_leeway,
            allow_anonymous=allow_anonymous,
            anonymous_permissions=tuple(anonymous_permissions),
        ),
        storage=storage,
        namespaces=tuple(Namespace(name=name, options=registry[name]) for name in registry),
        default_namespace=registry.default,
        api=ApiConfig(api_key=api_key),
        metrics=MetricsConfig(access=metrics),
        dedupe_window=dedupe_window,
    )


async def _open_stores(
    config: HubConfig, clock: Callable[[], float], owned: list[_Resource]
) -> dict[str, Any]:
    """The stores of ``config.storage`` as :class:`Hub` keywords; what must be closed with
    the server goes to ``owned``. The one place that maps a storage to its backends.

    Raises:
        ConfigError: Redis without the ``redis`` package, or a data directory that cannot
            be created.
        ConnectionError: Redis does not answer.
    """
    storage = config.storage
    sqlite_path: Path | None = None
    if isinstance(storage, SQLiteStorage):
        directory = Path(storage.data_dir)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                [
                    f"storage.data_dir: cannot create the data directory {str(directory)!r}: "
                    f"{exc.strerror or exc}"
                ]
            ) from exc
        sqlite_path = directory / HISTORY_FILE
    redis = storage if isinstance(storage, RedisStorage) else None
    try:
        stores = await open_stores(
            sqlite_path=sqlite_path,
            redis_url=None if redis is None else redis.url,
            redis_prefix=DEFAULT_PREFIX if redis is None else redis.prefix,
            redis_sentinel_password=None if redis is None else redis.sentinel_password,
            clock=clock,
            dedupe_window=config.dedupe_window,
        )
    except ConnectionError:
        raise
    except ValueError as exc:  # the redis package is missing
        raise ConfigError([f"storage: {exc}"]) from exc
    owned.append(stores)
    return {
        "registry": config.registry(),
        "history": stores.history,
        "volatile_history": stores.volatile_history,
        "broker": stores.broker,
        "presence": stores.presence,
    }


async def start_hub(
    host: HubConfig | str | None = "127.0.0.1",
    port: int = 8765,
    *,
    http_handlers: Iterable[HttpHandler] = (),
    hub: Hub | None = None,
    clock: Callable[[], float] = time.time,
    ssl: SSLContext | None = None,
    count_traffic: bool | None = None,
    **options: Any,
) -> HubServer:
    """Start a hub server and return it, listening.

    ``start_hub(config)`` runs the hub a :class:`HubConfig` describes; the keyword form,
    ``start_hub(host, port, ephemeral=True, ...)``, is a convenience that builds one with
    :func:`hub_config` (which documents the keywords).

    Args:
        host: a :class:`HubConfig`, or the interface to listen on (``None``: all) of the
            keyword form.
        port: the TCP port of the keyword form (0 picks a free one; see
            :attr:`HubServer.port`).
        http_handlers: extra ``process_request``-style handlers (e.g. the chat page).
        hub: a hub built by the caller, with its own stores, auth, namespaces and limits;
            then the configuration may only say how to listen (a storage, auth, namespaces
            or limits that differ from the defaults are refused rather than ignored).
            Closing the server closes the hub but not its stores.
        clock: wall-clock time in seconds since the Unix epoch, for token expiry, history
            TTLs and the dedupe window of everything built here (tests pass a fake one).
        ssl: a ready ``ssl.SSLContext`` instead of ``tls.certfile``/``tls.keyfile``.
        count_traffic: count messages and bytes (default: unless metrics are ``off``).
        **options: the keywords of :func:`hub_config` (keyword form only).

    Raises:
        ConfigError: an invalid configuration (a ``ValueError``; the message names the
            field), or a data directory that cannot be created.
        TypeError: keywords with a :class:`HubConfig`, or an unknown keyword.
        ConnectionError: Redis does not answer.
        OSError: the port cannot be listened on.
    """
    registry: ChannelRegistry | None = None
    if isinstance(host, HubConfig):
        if options or port != 8765:
            raise TypeError("start_hub(config) takes no port or configuration keywords")
        config = host
    else:
        if hub is not None and not {"data_dir", "ephemeral", "redis_url"} & set(options):
            options["ephemeral"] = True  # the default storage: a caller's hub has its own
        config = hub_config(host, port, **options)
        # The config describes the caller's registry; the hub gets that very object.
        registry = options.get("registry")
    return await _start(config, http_handlers, hub, clock, ssl, count_traffic, registry)


async def _start(
    config: HubConfig,
    http_handlers: Iterable[HttpHandler],
    hub: Hub | None,
    clock: Callable[[], float],
    ssl: SSLContext | None,
    count_traffic: bool | None,
    registry: ChannelRegistry | None = None,
) -> HubServer:
    if ssl is not None and config.tls.certfile is not None:
        raise ConfigError(["tls.certfile: give a certificate or an ssl= context, not both"])
    try:
        context = ssl if ssl is not None else config.tls.context()
    except ConfigError as exc:
        raise exc.within("tls") from exc.__cause__
    owned: list[_Resource] = []
    if hub is None:
        try:
            auth = config.auth.authenticator(clock=clock)
        except ConfigError as exc:
            raise exc.within("auth") from exc.__cause__
        stores = await _open_stores(config, clock, owned)
        if registry is not None:
            stores["registry"] = registry
        hub = Hub(
            **stores,
            auth=auth,
            limits=config.limits,
            dedupe_window=config.dedupe_window,
            clock=clock,
        )
    else:
        ignored = [
            name
            for name in (
                "storage",
                "auth",
                "namespaces",
                "default_namespace",
                "limits",
                "dedupe_window",
            )
            if getattr(config, name) != getattr(_DEFAULTS, name)
        ]
        if ignored:
            raise ConfigError(
                [f"{name}: configures the hub start_hub builds, not hub=" for name in ignored]
            )
    listen = config.listen
    hub_server = HubServer(
        hub,
        api_key=config.api.effective_key,
        path=listen.path,
        http_handlers=http_handlers,
        metrics=config.metrics.access,
        owned=owned,
        drain_period=listen.drain_period,
        drain_timeout=listen.drain_timeout,
    )
    try:
        await hub.start()
        hub_server.server = await serve(
            hub_server.handle,
            listen.host or None,
            listen.port,
            subprotocols=[SUBPROTOCOL],
            process_request=hub_server.route,
            options=config.transport,
            origins=listen.origins,
            max_connections=listen.max_connections,
            max_request_size=listen.max_request_size,
            backlog=listen.backlog,
            reuse_port=listen.reuse_port,
            ssl=context,
            count_traffic=hub_server.metrics.enabled if count_traffic is None else count_traffic,
            refuse_request=refuse_request,
        )
        await hub_server.start_reporting()
    except BaseException:
        if owned:  # the hub is ours (the port was taken, ...): release its stores and Redis
            await hub_server.close()
        raise
    logger.info("hub listening on %s:%d%s", listen.host or "*", hub_server.port, listen.path)
    return hub_server


async def run_hub(
    host: HubConfig | str | None = "127.0.0.1", port: int = 8765, **options: Any
) -> None:
    """Start a hub server (same arguments as :func:`start_hub`) and serve until cancelled."""
    async with await start_hub(host, port, **options) as server:
        await server.serve_forever()
