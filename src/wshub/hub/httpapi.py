"""The server HTTP API (docs/http-api.md): backends publish and inspect over plain HTTP.

:class:`HttpApi` answers ``/healthz`` and the ``/api/...`` routes on the hub's own port and
returns ``None`` for every other request, so that the transport can go on with the WebSocket
upgrade or another handler. Everything under ``/api/`` requires the API key, given as
``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; without a configured key the API
refuses every call.

Errors are JSON, ``{"error": {"code": <hub error code>, "message": "..."}}``, with the HTTP
status that fits: 400 for bad input, 401 without a valid key, 404 for an unknown route or a
feature the namespace does not have, 405 for a wrong method, 410 for a history position that
is gone, 413 for a publication that is too large, 503 with ``Retry-After`` and
``"temporary": true`` when the broker (Redis) is unavailable for now: the same call may
succeed later (a publish with the same ``message_id`` is not made twice).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson

from wshub.exceptions import HubError, InvalidRequest
from wshub.hub.hub import Hub
from wshub.hub.nodes import NodeDirectory
from wshub.hub.wire import ErrorCode, Position, publication_json
from wshub.protocol.http11 import Request, Response

__all__ = ["HttpApi", "error_response", "refuse_request"]

logger = logging.getLogger("wshub.hub")

#: Largest number of channels one broadcast may name.
MAX_BROADCAST_CHANNELS = 1000
#: Seconds a caller refused for now (503) is told to wait before trying again.
RETRY_AFTER = 1

_STATUS = {
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.INVALID_CHANNEL: 400,
    ErrorCode.UNKNOWN_NAMESPACE: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.NOT_AVAILABLE: 404,
    ErrorCode.UNRECOVERABLE: 410,
}


class _Refused(Exception):
    """An API error: becomes a JSON error response."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        headers: tuple[tuple[str, str], ...] = (),
        *,
        temporary: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
        self.temporary = temporary


def _json(status: int, obj: Any, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return Response.bytes(
        status, orjson.dumps(obj), "application/json", [("Cache-Control", "no-store"), *headers]
    )


def error_response(
    status: int,
    code: int,
    message: str,
    headers: tuple[tuple[str, str], ...] = (),
    *,
    temporary: bool = False,
) -> Response:
    """An error in the API's JSON shape: ``{"error": {"code": ..., "message": ...}}``, with
    ``"temporary": true`` added for a refusal that may pass (docs/protocol.md §6)."""
    error: dict[str, Any] = {"code": int(code), "message": message}
    if temporary:
        error["temporary"] = True
    return _json(status, {"error": error}, headers)


def refuse_request(error: InvalidRequest) -> Response:
    """The hub's answer to a request its transport could not read, in the API's JSON shape.

    A body over ``max_request_size`` (413) or a head too large (431) is error 114 (too
    large); anything else the transport refuses (400, ...) is error 101 (bad request).
    ``Connection: close`` says that the transport closes after it.
    """
    code = ErrorCode.TOO_LARGE if error.status in (413, 431) else ErrorCode.BAD_REQUEST
    headers = (*error.headers, ("Connection", "close"))
    return error_response(error.status, code, error.reason, headers)


def _bad(message: str) -> _Refused:
    return _Refused(400, ErrorCode.BAD_REQUEST, f"bad request: {message}")


def _body(request: Request) -> dict[str, Any]:
    try:
        body = orjson.loads(request.body)
    except orjson.JSONDecodeError:
        raise _bad("body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _bad("body must be a JSON object")
    return body


def _channel(value: Any, field: str = "channel") -> str:
    if not isinstance(value, str) or not value:
        raise _bad(f"{field} must be a non-empty string")
    return value


def _query_int(query: dict[str, list[str]], name: str, default: int | None) -> int | None:
    values = query.get(name)
    if not values:
        return default
    try:
        value = int(values[-1])
    except ValueError:
        raise _bad(f"{name} must be an integer") from None
    if value < 0:
        raise _bad(f"{name} must be >= 0")
    return value


class HttpApi:
    """The hub's HTTP API.

    Args:
        hub: the hub to publish to and read from.
        api_key: the key clients must present; ``None`` refuses every ``/api/`` call (401).
        nodes: the node directory that answers ``/api/nodes`` and adds the other nodes'
            subscribers to ``/api/channels`` (default: one that knows only this node).
    """

    def __init__(
        self, hub: Hub, *, api_key: str | None, nodes: NodeDirectory | None = None
    ) -> None:
        self.hub = hub
        self.nodes = nodes if nodes is not None else NodeDirectory(hub)
        self._key = None if api_key is None else api_key.encode()
        Route = Callable[[Request, str], Awaitable[Response]]
        self._routes: dict[str, tuple[str, Route]] = {
            "publish": ("POST", self._publish),
            "broadcast": ("POST", self._broadcast),
            "presence": ("GET", self._presence),
            "history": ("GET", self._history),
            "channels": ("GET", self._channels),
            "stats": ("GET", self._stats),
            "nodes": ("GET", self._nodes),
            "disconnect": ("POST", self._disconnect),
        }

    @staticmethod
    def owns(path: str) -> bool:
        """Whether :meth:`handle` answers a request for ``path`` (it returns ``None`` for
        every other): ``/healthz``, ``/api`` and what is under it."""
        return path in ("/healthz", "/api") or path.startswith("/api/")

    async def handle(self, request: Request) -> Response | None:
        """Answer ``request`` if it is for the API, else return ``None``. Never raises."""
        path = urlsplit(request.path).path
        if not self.owns(path):
            return None
        if path == "/healthz":
            if request.method not in ("GET", "HEAD"):
                return self._error(
                    _Refused(
                        405, ErrorCode.BAD_REQUEST, "method not allowed", (("Allow", "GET, HEAD"),)
                    )
                )
            # Draining (SIGTERM): 503, so that balancers stop sending this node clients.
            status, state = (503, "draining") if self.hub.draining else (200, "ok")
            health = _json(status, {"status": state, "connections": self.hub.stats.connections})
            if request.method == "HEAD":
                # Load balancers probe with HEAD: same status and headers, no body.
                return Response(health.status, headers=health.headers)
            return health
        try:
            return await self._dispatch(request, path)
        except _Refused as exc:
            return self._error(exc)
        except HubError as exc:
            code = ErrorCode(exc.code)
            if exc.temporary:  # the broker is down for now: not the hub's failure
                retry = (("Retry-After", str(RETRY_AFTER)),)
                return self._error(_Refused(503, code, exc.message, retry, temporary=True))
            return self._error(_Refused(_STATUS.get(code, 500), code, exc.message))
        except Exception:
            logger.exception("HTTP API %s %s failed", request.method, path)
            return self._error(_Refused(500, ErrorCode.INTERNAL, ErrorCode.INTERNAL.message))

    def _error(self, exc: _Refused) -> Response:
        return error_response(
            exc.status, exc.code, exc.message, exc.headers, temporary=exc.temporary
        )

    def authorized(self, request: Request) -> bool:
        """Whether ``request`` carries the API key (``/metrics`` accepts it too)."""
        if self._key is None:
            return False
        given = request.headers.get("X-API-Key")
        if given is None:
            scheme, _, credentials = (request.headers.get("Authorization") or "").partition(" ")
            if scheme.lower() != "bearer":
                return False
            given = credentials.strip()
        return hmac.compare_digest(given.encode(), self._key)

    async def _dispatch(self, request: Request, path: str) -> Response:
        if not self.authorized(request):
            raise _Refused(
                401,
                ErrorCode.UNAUTHORIZED,
                ErrorCode.UNAUTHORIZED.message,
                (("WWW-Authenticate", "Bearer"),),
            )
        name, _, rest = path[len("/api/") :].partition("/")
        route = self._routes.get(name)
        # Only presence and history take a channel in the path.
        if route is None or (bool(rest) != (name in ("presence", "history"))):
            raise _Refused(404, ErrorCode.BAD_REQUEST, "not found")
        method, handler = route
        if request.method != method:
            raise _Refused(405, ErrorCode.BAD_REQUEST, "method not allowed", (("Allow", method),))
        return await handler(request, unquote(rest))

    async def _publish(self, request: Request, _: str) -> Response:
        body = _body(request)
        channel = _channel(body.get("channel"))
        if "data" not in body:
            raise _bad("data is required")
        message_id = body.get("message_id")
        if message_id is not None and (
            not isinstance(message_id, str) or not 0 < len(message_id) <= 64
        ):
            raise _bad("message_id must be a string of 1 to 64 characters")
        if body.get("ephemeral", False) is True:
            await self.hub.publish_ephemeral(channel, body["data"], info=body.get("info"))
            return _json(200, {"channel": channel})
        result = await self.hub.publish(
            channel, body["data"], info=body.get("info"), message_id=message_id
        )
        obj: dict[str, Any] = {"channel": channel, **result.position.to_json()}
        if result.duplicate:
            obj["duplicate"] = True
        return _json(200, obj)

    async def _broadcast(self, request: Request, _: str) -> Response:
        body = _body(request)
        channels = body.get("channels")
        if not isinstance(channels, list) or not 0 < len(channels) <= MAX_BROADCAST_CHANNELS:
            raise _bad(f"channels must be a list of 1 to {MAX_BROADCAST_CHANNELS} channels")
        names = [_channel(c, "channels[]") for c in channels]
        if "data" not in body:
            raise _bad("data is required")
        results = await self.hub.broadcast(names, body["data"])
        return _json(
            200,
            {
                "results": [
                    {"channel": c, **r.position.to_json()}
                    for c, r in zip(names, results, strict=True)
                ]
            },
        )

    async def _presence(self, request: Request, channel: str) -> Response:
        clients = await self.hub.presence(channel)
        return _json(200, {"channel": channel, "clients": [c.to_json() for c in clients]})

    async def _history(self, request: Request, channel: str) -> Response:
        query = parse_qs(urlsplit(request.path).query)
        limit = _query_int(query, "limit", 100) or 1
        offset = _query_int(query, "since_offset", None)
        epoch = query.get("since_epoch", [None])[-1]
        if (offset is None) != (epoch is None):
            raise _bad("since_offset and since_epoch go together")
        since = None if offset is None or epoch is None else Position(offset, epoch)
        pubs, position = await self.hub.history(channel, limit=limit, since=since)
        return _json(
            200,
            {
                "channel": channel,
                **position.to_json(),
                "publications": [publication_json(p) for p in pubs],
            },
        )

    async def _channels(self, request: Request, _: str) -> Response:
        subscribers = self.nodes.subscribers()
        channels = await self.hub.channels(also=subscribers)
        for entry in channels:
            entry["subscribers"] = subscribers[entry["channel"]]
        return _json(200, {"channels": channels})

    async def _nodes(self, request: Request, _: str) -> Response:
        nodes = [report.to_json() for report in self.nodes.nodes()]
        return _json(200, {"node": self.nodes.node, "nodes": nodes})

    async def _disconnect(self, request: Request, _: str) -> Response:
        body = _body(request)
        user, client = body.get("user"), body.get("client")
        if (user is None) == (client is None):
            raise _bad("give one of user and client")
        if user is not None:
            user = _channel(user, "user")
        if client is not None:
            client = _channel(client, "client")
        closed = await self.nodes.disconnect(user=user, client=client)
        return _json(200, {"disconnected": closed})

    async def _stats(self, request: Request, _: str) -> Response:
        return _json(200, self.hub.stats.snapshot())
