"""The clients of a scenario: subscribers and publishers, all ``HubClient`` connected through
haproxy, recording what they were acknowledged and what they received."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from dataclasses import dataclass, field

from chaos.checks import Ack, Delivery, Event, Gap
from wshub.exceptions import HubError, WSHubError
from wshub.hub.client import ErrorHandler, HubClient, Publication, PublicationHandler, Subscription
from wshub.hub.wire import ErrorCode

__all__ = ["Workload", "WorkloadSize"]

logger = logging.getLogger("chaos")

#: How long a publisher retries a publish refused with a temporary error (Redis down), with
#: the same message id, before counting it as not acknowledged.
RETRY_FOR = 60.0


@dataclass(frozen=True, slots=True)
class WorkloadSize:
    """How many clients and how fast they publish."""

    channels: int = 4
    subscribers: int = 12
    channels_per_subscriber: int = 2
    publishers: int = 4
    rate: float = 5.0  # publications per second per publisher


@dataclass
class _Subscriber:
    client: HubClient
    events: dict[str, list[Event]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    subscriptions: dict[str, Subscription] = field(default_factory=dict)


class Workload:
    """Subscribers on several channels and publishers cycling over the channels, with an
    idempotency id on every publish."""

    def __init__(self, url: str, prefix: str, size: WorkloadSize) -> None:
        self.url = url
        self.size = size
        self.channels = [f"chaos:{prefix}-{i}" for i in range(size.channels)]
        self.acks: dict[str, list[Ack]] = {channel: [] for channel in self.channels}
        self.subscribers: list[_Subscriber] = []
        self.publishers: list[HubClient] = []
        self.unacknowledged: list[str] = []
        self.publish_errors: list[str] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self._ids = itertools.count()
        self._prefix = prefix

    def _client(self) -> HubClient:
        # A short max_delay: clients come back within a second of a node or Redis returning.
        return HubClient(self.url, backoff_initial=0.2, max_delay=1.0, open_timeout=5.0)

    async def start(self) -> None:
        """Connect and subscribe everyone, then start publishing."""
        n = self.size.channels
        for i in range(self.size.subscribers):
            subscriber = _Subscriber(self._client())
            await subscriber.client.connect()
            for k in range(self.size.channels_per_subscriber):
                channel = self.channels[(i + k) % n]
                events: list[Event] = []
                subscriber.events[channel] = events
                subscriber.subscriptions[channel] = await subscriber.client.subscribe(
                    channel,
                    _recorder(events),
                    on_error=_error_recorder(events, subscriber.errors),
                )
            self.subscribers.append(subscriber)
        for i in range(self.size.publishers):
            client = self._client()
            await client.connect()
            self.publishers.append(client)
            self._tasks.append(asyncio.create_task(self._publish_loop(i, client)))

    async def _publish_loop(self, index: int, client: HubClient) -> None:
        interval = 1.0 / self.size.rate
        channels = itertools.cycle(self.channels[index % len(self.channels) :] + self.channels)
        next_at = time.monotonic()
        while not self._stop.is_set():
            channel = next(channels)
            mid = f"{self._prefix}-p{index}-{next(self._ids)}"
            await self._publish(client, channel, mid)
            next_at = max(next_at + interval, time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), next_at - time.monotonic())

    async def _publish(self, client: HubClient, channel: str, mid: str) -> None:
        """Publish until acknowledged; a temporary refusal is retried with the same id."""
        deadline = time.monotonic() + RETRY_FOR
        while True:
            try:
                offset = await client.publish(channel, {"mid": mid}, message_id=mid)
            except HubError as exc:
                temporary = exc.code == ErrorCode.INTERNAL or getattr(exc, "temporary", False)
                if temporary and time.monotonic() < deadline:
                    await asyncio.sleep(0.25)
                    continue
                self.unacknowledged.append(mid)
                self.publish_errors.append(f"{mid}: {exc}")
                return
            except WSHubError as exc:
                self.unacknowledged.append(mid)
                self.publish_errors.append(f"{mid}: {exc!r}")
                return
            self.acks[channel].append(Ack(mid, offset))
            return

    async def stop_publishing(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    @property
    def publications(self) -> int:
        return sum(len(acks) for acks in self.acks.values())

    @property
    def reconnects(self) -> int:
        clients = [s.client for s in self.subscribers] + self.publishers
        return sum(client.reconnects for client in clients)

    def subscriptions(self) -> list[tuple[str, str, list[Event], Subscription]]:
        """``(name, channel, events, subscription)`` of every subscription."""
        return [
            (f"sub{i}", channel, events, subscriber.subscriptions[channel])
            for i, subscriber in enumerate(self.subscribers)
            for channel, events in subscriber.events.items()
        ]

    def delivered_all(self) -> bool:
        """Whether every subscription received every acknowledged publication by now (or
        has ended, so that waiting longer would change nothing)."""
        for _, channel, events, subscription in self.subscriptions():
            if subscription.ended:
                continue
            got = {e.message_id for e in events if isinstance(e, Delivery)}
            if any(ack.message_id not in got for ack in self.acks[channel]):
                return False
        return True

    def presence_expected(self) -> dict[str, set[str]]:
        """The client ids that should be present on each channel now."""
        expected: dict[str, set[str]] = {channel: set() for channel in self.channels}
        for subscriber in self.subscribers:
            for channel, subscription in subscriber.subscriptions.items():
                if subscriber.client.client_id and not subscription.ended:
                    expected[channel].add(subscriber.client.client_id)
        return expected

    async def close(self) -> None:
        if not self._stop.is_set():
            await self.stop_publishing()
        clients = [s.client for s in self.subscribers] + self.publishers
        await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)


def _recorder(events: list[Event]) -> PublicationHandler:
    def record(pub: Publication) -> None:
        mid = pub.data.get("mid") if isinstance(pub.data, dict) else None
        events.append(Delivery(str(mid), pub.offset, pub.epoch))

    return record


def _error_recorder(events: list[Event], errors: list[str]) -> ErrorHandler:
    def record(subscription: Subscription, exc: BaseException) -> None:
        if isinstance(exc, HubError) and exc.code == ErrorCode.UNRECOVERABLE:
            events.append(Gap())
        else:
            errors.append(f"{subscription.channel}: {exc!r}")

    return record
