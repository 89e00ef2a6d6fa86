"""Prometheus metrics of a hub node, served at ``GET /metrics`` on the hub's own port.

Nothing here runs per message. The hub (:class:`~wshub.hub.stats.HubStats`) and the
transport (:class:`wshub.aio.server.ServerStats`) keep plain integers; a custom collector
turns them into metric families only when Prometheus scrapes. The one cost on the message
path is the transport's traffic count (``serve(count_traffic=True)``: a function call per
read, per message received and per frame sent), which :func:`~wshub.hub.server.start_hub`
turns on unless ``metrics="off"``; the hub's own work per message is far larger.

Who may read ``/metrics`` is the ``metrics`` option of :func:`~wshub.hub.server.start_hub`
(``--metrics`` on the command line), one of :data:`METRICS_ACCESS`:

* ``"local"`` (the default): clients on a loopback address, or anyone with the API key.
  A request that carries a proxy's forwarding header (``Forwarded``, ``X-Forwarded-For``,
  ``X-Real-IP``) is not local, even from 127.0.0.1: a reverse proxy on the same machine
  must not turn every visitor into a local client;
* ``"key"``: only with the API key (``Authorization: Bearer`` or ``X-API-Key``);
* ``"open"``: anyone (a private network where the scraper cannot send a key);
* ``"off"``: not served, and no traffic counting either.

The metric names and what each one means are listed in docs/deployment.md ("Metrics").
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, get_args
from urllib.parse import urlsplit

from prometheus_client import (
    CollectorRegistry,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from wshub.hub.nodes import wshub_version
from wshub.protocol.http11 import Request, Response

if TYPE_CHECKING:
    from wshub.aio import Server
    from wshub.hub.hub import Hub

__all__ = ["METRICS_ACCESS", "METRICS_PATH", "HubCollector", "MetricsAccess", "MetricsEndpoint"]

#: Where the metrics are served.
METRICS_PATH = "/metrics"

#: The classic text format, which every Prometheus version and compatible scraper reads
#: (prometheus_client's "latest" moves with its releases).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Who may read the metrics; see the module docstring.
MetricsAccess = Literal["local", "key", "open", "off"]
METRICS_ACCESS: tuple[str, ...] = get_args(MetricsAccess)

# Headers a reverse proxy adds: their presence means the TCP peer is not the client.
_FORWARDING_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")

# HubStats field -> (metric kind, metric name, help). Gauges are levels, counters only grow;
# prometheus_client appends ``_total`` to counter names.
_HUB_METRICS: Mapping[str, tuple[str, str, str]] = {
    "connections": ("gauge", "wshub_hub_sessions_open", "Hub sessions open now."),
    "connections_total": (
        "counter",
        "wshub_hub_sessions_opened",
        "Hub sessions opened since the hub started.",
    ),
    "subscriptions": ("gauge", "wshub_hub_subscriptions_active", "Subscriptions live now."),
    "publications": (
        "counter",
        "wshub_hub_publications",
        "Publications accepted (not counting duplicates and ephemeral ones).",
    ),
    "ephemeral": ("counter", "wshub_hub_ephemeral_publications", "Ephemeral publications."),
    "deliveries": (
        "counter",
        "wshub_hub_deliveries",
        "Pushes handed to subscribers' connections (one per recipient).",
    ),
    "join_leave_pushes": (
        "counter",
        "wshub_hub_join_leave_pushes",
        "join and leave pushes sent by this node (join_leave_interval none).",
    ),
    "presence_diffs": (
        "counter",
        "wshub_hub_presence_diffs",
        "presence_diff pushes sent by this node (one per channel and interval at most).",
    ),
    "duplicates": (
        "counter",
        "wshub_hub_duplicate_publishes",
        "Publishes that were no-ops thanks to their message_id.",
    ),
    "drops": (
        "counter",
        "wshub_hub_dropped_messages",
        "Messages dropped for slow subscribers (drop-oldest, latest, ephemeral).",
    ),
    "slow_consumer_disconnects": (
        "counter",
        "wshub_hub_slow_consumer_disconnects",
        "Sessions closed with 4004 because a subscriber queue overflowed.",
    ),
    "recoveries": (
        "counter",
        "wshub_hub_recoveries",
        "Subscribes with a since position that recovered every missed publication.",
    ),
    "bad_commands": ("counter", "wshub_hub_bad_commands", "Malformed or unknown commands."),
    "auth_failures": ("counter", "wshub_hub_auth_failures", "Tokens refused."),
    "rate_limited": (
        "counter",
        "wshub_hub_rate_limited_commands",
        "Commands refused by a rate limit.",
    ),
}

# ServerStats field -> (metric name, help, label) for the counters kept per status or code.
_LABELLED: Mapping[str, tuple[str, str, str]] = {
    "handshakes": (
        "wshub_handshakes",
        "Upgrade requests answered, by HTTP status (101: accepted).",
        "status",
    ),
    "http_responses": (
        "wshub_http_responses",
        "Plain HTTP requests answered (health checks, API, pages, metrics), by status.",
        "status",
    ),
    "close_codes_sent": (
        "wshub_close_codes_sent",
        "Closed connections by the close code the server sent.",
        "code",
    ),
    "close_codes_received": (
        "wshub_close_codes_received",
        "Closed connections by the close code the peer sent (1006: none, TCP lost).",
        "code",
    ),
}

# ServerStats field -> (metric name, help) for the plain counters.
_PLAIN: Mapping[str, tuple[str, str]] = {
    "handshake_timeouts": (
        "wshub_handshake_timeouts",
        "Connections dropped for not completing the upgrade within open_timeout.",
    ),
    "keepalive_timeouts": (
        "wshub_keepalive_timeouts",
        "Connections closed with 1011 because a keepalive pong did not come in ping_timeout.",
    ),
    "slow_consumer_skips": (
        "wshub_slow_consumer_skips",
        "broadcast() messages not written to a connection above its write_limit.",
    ),
    "slow_consumer_disconnects": (
        "wshub_slow_consumer_disconnects",
        "Connections closed with 1008 by broadcast(slow_consumer='close').",
    ),
}

# Counted only when the server counts traffic (serve(count_traffic=True)).
_TRAFFIC: Mapping[str, tuple[str, str]] = {
    "messages_received": ("wshub_messages_received", "WebSocket messages received."),
    "messages_sent": ("wshub_messages_sent", "WebSocket messages sent (broadcast: per recipient)."),
    "bytes_received": ("wshub_bytes_received", "Bytes read from WebSocket connections."),
    "bytes_sent": ("wshub_bytes_sent", "Bytes of WebSocket frames written."),
}


class HubCollector(Collector):
    """Reads a hub's and its transport's counters at scrape time.

    Args:
        hub: the hub whose :class:`~wshub.hub.stats.HubStats` are exported.
        server: returns the listening transport server, or ``None`` before it exists
            (then only the hub's metrics are exported).
    """

    def __init__(self, hub: Hub, server: Callable[[], Server | None]) -> None:
        self._hub = hub
        self._server = server
        self._version = wshub_version()

    def collect(self) -> Iterator[Metric]:
        """Yield one metric family per counter, read now."""
        info = InfoMetricFamily("wshub", "The wshub version serving.")
        info.add_metric([], {"version": self._version})
        yield info
        stats = self._hub.stats.snapshot()
        for field, (kind, name, text) in _HUB_METRICS.items():
            kind_of = GaugeMetricFamily if kind == "gauge" else CounterMetricFamily
            yield kind_of(name, text, value=stats[field])
        server = self._server()
        if server is None:
            return
        yield GaugeMetricFamily(
            "wshub_connections_open",
            "WebSocket connections open now.",
            value=len(server.connections),
        )
        transport = server.stats
        for field, (name, text, label) in _LABELLED.items():
            counts: dict[int, int] = getattr(transport, field)
            family = CounterMetricFamily(name, text, labels=[label])
            for key, count in sorted(counts.items()):
                family.add_metric([str(key)], count)
            yield family
        fields: Iterable[tuple[str, tuple[str, str]]] = _PLAIN.items()
        if transport.count_traffic:
            fields = [*fields, *_TRAFFIC.items()]
        for field, (name, text) in fields:
            yield CounterMetricFamily(name, text, value=getattr(transport, field))


class MetricsEndpoint:
    """The ``GET /metrics`` handler, in the ``process_request`` shape of the hub server.

    Args:
        hub: the hub to export.
        server: returns the transport server (``None`` until it listens).
        access: who may read, see :data:`METRICS_ACCESS`.
        authorized: tells whether a request carries the API key.

    Raises:
        ValueError: ``access`` is not one of :data:`METRICS_ACCESS`.
    """

    def __init__(
        self,
        hub: Hub,
        server: Callable[[], Server | None],
        *,
        access: MetricsAccess = "local",
        authorized: Callable[[Request], bool],
    ) -> None:
        if access not in METRICS_ACCESS:
            raise ValueError(f"metrics must be one of {', '.join(METRICS_ACCESS)}")
        self.access = access
        self._authorized = authorized
        # A registry per hub (not prometheus_client's global one): several hubs in one
        # process, as in tests, each export their own numbers.
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(HubCollector(hub, server))
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)

    @property
    def enabled(self) -> bool:
        """Whether ``/metrics`` is served (and the transport should count traffic)."""
        return self.access != "off"

    def render(self) -> bytes:
        """The metrics in Prometheus' text exposition format."""
        return generate_latest(self.registry)

    def __call__(self, connection: Any, request: Request) -> Response | None:
        """Answer ``/metrics``, or return ``None`` for every other request."""
        if not self.enabled or urlsplit(request.path).path != METRICS_PATH:
            return None
        if request.method != "GET":
            return Response.text(405, "Method Not Allowed\n", [("Allow", "GET")])
        if not self._allowed(connection, request):
            return Response.text(
                401, "Unauthorized: /metrics needs the API key\n", [("WWW-Authenticate", "Bearer")]
            )
        return Response.bytes(200, self.render(), CONTENT_TYPE, [("Cache-Control", "no-store")])

    def _allowed(self, connection: Any, request: Request) -> bool:
        if self.access == "open" or self._authorized(request):
            return True
        return self.access == "local" and _is_local(connection, request)


def _is_local(connection: Any, request: Request) -> bool:
    """Whether the request comes straight from this machine (loopback, not forwarded)."""
    if any(name in request.headers for name in _FORWARDING_HEADERS):
        return False
    address = getattr(connection, "remote_address", None)
    if isinstance(address, str):
        return True  # a Unix socket: only this machine can reach it
    if not isinstance(address, tuple) or not address:
        return False
    try:
        ip = ipaddress.ip_address(address[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback
