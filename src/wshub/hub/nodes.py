"""What every node of a hub is doing: one report per node, shared through the broker.

Each node makes a :class:`NodeReport` (its id, name, version, start time, counters and the
channels it has subscribers of) every ``report_interval`` seconds and publishes it on the
broker channel :data:`NODES_CHANNEL`, a name no hub channel can have (hub channels contain a
``:``). Every node keeps the last report it heard from each other node, and forgets a node
it has not heard from for three ``report_interval`` (stopped, crashed, or cut from Redis).
With the in-memory broker a directory knows only its own node; with Redis, every node of
the hub, so that ``GET /api/nodes`` and the operator console show all of them whichever
node answers.

The same channel carries the operator's requests that concern every node: ``disconnect``
closes a user's (or a client's) connections on the node that got the API call at once,
and on the others when the request reaches them.

Nothing here is on the message path: a report reads the plain counters once a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any

import orjson

from wshub.exceptions import InvalidState

if TYPE_CHECKING:
    from wshub.hub.hub import Hub

__all__ = ["NODES_CHANNEL", "NodeDirectory", "NodeReport", "wshub_version"]

logger = logging.getLogger("wshub.hub")

#: The broker channel of node reports and cluster-wide requests (never a hub channel).
NODES_CHANNEL = "$nodes"

#: Reports missed before a node counts as gone.
_MISSED_REPORTS = 3


def wshub_version() -> str:
    """The installed wshub version (``"unknown"`` when running from a bare source tree)."""
    try:
        return metadata.version("wshub")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


@dataclass(frozen=True, slots=True)
class NodeReport:
    """One node's figures at one moment.

    Attributes:
        node: the node's id, random per start.
        name: a readable name (``host:port`` by default).
        version: the wshub version it runs.
        started: when it started (seconds since the Unix epoch).
        time: when the report was made (same clock).
        counters: :class:`~wshub.hub.stats.HubStats` by name, plus the transport's traffic
            counters (``bytes_received``, ``bytes_sent``, ``messages_received``,
            ``messages_sent``) when it counts them.
        channels: subscribers on this node, by channel (at most ``max_report_channels``).
    """

    node: str
    name: str
    version: str
    started: float
    time: float
    counters: Mapping[str, int] = field(default_factory=dict)
    channels: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.node or not all(isinstance(v, int) for v in self.counters.values()):
            raise ValueError("a node report needs a node id and integer counters")

    @property
    def uptime(self) -> float:
        """Seconds the node had been running when it made the report."""
        return max(0.0, self.time - self.started)

    def to_json(self) -> dict[str, Any]:
        """The report as ``GET /api/nodes`` serves it (without the channel map)."""
        return {
            "node": self.node,
            "name": self.name,
            "version": self.version,
            "started": self.started,
            "uptime": round(self.uptime, 3),
            "time": self.time,
            "counters": dict(self.counters),
        }

    def serialize(self) -> bytes:
        """The report as published on :data:`NODES_CHANNEL`."""
        return orjson.dumps({"type": "report", **self.to_json(), "channels": self.channels})

    @classmethod
    def parse(cls, obj: Mapping[str, Any]) -> NodeReport:
        """Build a report from a decoded ``report`` message.

        Raises:
            ValueError: a field is missing or has the wrong type.
        """
        try:
            return cls(
                node=str(obj["node"]),
                name=str(obj["name"]),
                version=str(obj["version"]),
                started=float(obj["started"]),
                time=float(obj["time"]),
                counters=dict(obj["counters"]),
                channels={str(k): int(v) for k, v in dict(obj["channels"]).items()},
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"invalid node report: {exc}") from None


#: Returns the transport's counters to add to a report (``{}`` when none are kept).
TrafficCounters = Callable[[], Mapping[str, int]]


class NodeDirectory:
    """This node's report and the last ones of the other nodes of the hub.

    Args:
        hub: the node's hub (its counters, broker, clock and sessions).
        name: the node's readable name (default: the host name; the server adds its port).
        traffic: returns the transport's traffic counters for the report.
        report_interval: seconds between two reports; a node not heard from for three of
            them is gone.
        max_report_channels: the most channels (those with the most subscribers) a report
            lists, so that a report stays small on a node with many channels.

    Raises:
        ValueError: ``report_interval`` is not positive or ``max_report_channels`` negative.
    """

    def __init__(
        self,
        hub: Hub,
        *,
        name: str | None = None,
        traffic: TrafficCounters | None = None,
        report_interval: float = 1.0,
        max_report_channels: int = 1000,
    ) -> None:
        if not report_interval > 0:
            raise ValueError("report_interval must be > 0")
        if max_report_channels < 0:
            raise ValueError("max_report_channels must be >= 0")
        self.hub = hub
        self.node = uuid.uuid4().hex[:12]
        self.name = name if name is not None else socket.gethostname()
        self.started = hub.clock()
        self.report_interval = report_interval
        self.max_report_channels = max_report_channels
        self._traffic = traffic
        self._version = wshub_version()
        self._peers: dict[str, tuple[NodeReport, float]] = {}
        self._task: asyncio.Task[None] | None = None
        self._receive_cb = self._receive

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Listen to the other nodes and start reporting. Idempotent."""
        if self._task is not None:
            return
        await self.hub.broker.subscribe(NODES_CHANNEL, self._receive_cb)
        self._task = asyncio.get_running_loop().create_task(self._report_loop())

    async def close(self) -> None:
        """Stop reporting and listening (before the broker closes)."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(InvalidState):
            await self.hub.broker.unsubscribe(NODES_CHANNEL, self._receive_cb)

    async def _report_loop(self) -> None:
        # close() clears ``_task`` before cancelling: checked after each report, it ends the
        # loop even when the cancellation is lost inside the broker (redis-py on Python 3.11
        # can swallow one that lands as a command is sent), which would hang close().
        while self._task is asyncio.current_task():
            try:
                await self.hub.broker.publish(NODES_CHANNEL, self.report().serialize())
            except Exception as exc:  # Redis down: the next report will tell
                logger.debug("node report not published: %s", exc)
            if self._task is not asyncio.current_task():
                return
            await asyncio.sleep(self.report_interval)

    # --- reading -------------------------------------------------------------------------

    def report(self) -> NodeReport:
        """This node's report, made now."""
        counters: dict[str, int] = dict(self.hub.stats.snapshot())
        if self._traffic is not None:
            counters.update(self._traffic())
        hub = self.hub
        subscribed = Counter(
            {name: len(list(hub.subscribers(name))) for name in hub.local_channels()}
        )
        channels = dict(subscribed.most_common(self.max_report_channels))
        return NodeReport(
            self.node, self.name, self._version, self.started, self.hub.clock(), counters, channels
        )

    def nodes(self) -> list[NodeReport]:
        """This node's report (first) and the last one of every other live node, by name."""
        deadline = self.hub.monotonic() - _MISSED_REPORTS * self.report_interval
        for node, (_, heard) in list(self._peers.items()):
            if heard < deadline:
                del self._peers[node]
        peers = sorted((r for r, _ in self._peers.values()), key=lambda r: (r.name, r.node))
        return [self.report(), *peers]

    def subscribers(self) -> Counter[str]:
        """Subscribers by channel on every live node (this one included)."""
        total: Counter[str] = Counter()
        for report in self.nodes():
            total.update(report.channels)
        return total

    # --- requests ------------------------------------------------------------------------

    async def disconnect(self, *, user: str | None = None, client: str | None = None) -> int:
        """Close the connections of ``user`` or ``client`` on every node (4008).

        Returns:
            How many were closed on this node (the others close theirs when the request
            reaches them).
        """
        closed = self.hub.disconnect(user=user, client=client)
        if self._task is not None:
            request = {"type": "disconnect", "from": self.node, "user": user, "client": client}
            await self.hub.broker.publish(NODES_CHANNEL, orjson.dumps(request))
        return closed

    def _receive(self, channel: str, payload: bytes) -> None:
        try:
            message = orjson.loads(payload)
            kind = message["type"]
            if kind == "report":
                report = NodeReport.parse(message)
                if report.node != self.node:
                    self._peers[report.node] = (report, self.hub.monotonic())
            elif kind == "disconnect" and message["from"] != self.node:
                user, client = message.get("user"), message.get("client")
                self.hub.disconnect(
                    user=user if isinstance(user, str) and user else None,
                    client=client if isinstance(client, str) and client else None,
                )
        except (ValueError, KeyError, TypeError) as exc:
            # Another version of wshub on the same prefix, or a bug: never break delivery.
            logger.warning("ignored a message on %s: %s", NODES_CHANNEL, exc)
