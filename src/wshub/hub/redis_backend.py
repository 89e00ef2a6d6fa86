"""Everything a hub node shares with the other nodes through one Redis (:class:`RedisBackend`).

``start_hub(redis_url=...)`` and ``wshub serve --redis URL`` build one of these: the
history (:class:`~wshub.hub.redis_history.RedisHistory`), the presence
(:class:`~wshub.hub.redis_presence.RedisPresence`) and the broker
(:class:`~wshub.hub.brokers.redis.RedisBroker`), on one bounded connection pool.

Every namespace keeps its history in Redis, ``persistent=False`` ones included: a stream in
one node's memory would give that node's publications offsets and an epoch of their own,
which the subscribers on the other nodes would take for a restarted stream at every
publication. :meth:`RedisBackend.registry` makes that substitution.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from wshub.hub.brokers.redis import RedisBroker
from wshub.hub.channels import ChannelRegistry, NamespaceOptions, default_registry
from wshub.hub.redis_history import RedisHistory
from wshub.hub.redis_presence import RedisPresence
from wshub.hub.redis_support import DEFAULT_PREFIX, close_client, describe_url, redis_client

__all__ = ["RedisBackend", "SharedRegistry"]

logger = logging.getLogger("wshub.hub")


class SharedRegistry(ChannelRegistry):
    """A registry whose namespaces all keep their history in the shared store.

    It answers like ``inner``, except that ``persistent`` is always true.

    Args:
        inner: the registry the hub was configured with.
    """

    def __init__(self, inner: ChannelRegistry) -> None:
        super().__init__({})
        self._inner = inner
        self._shared: dict[NamespaceOptions, NamespaceOptions] = {}

    def _share(self, options: NamespaceOptions) -> NamespaceOptions:
        if options.persistent:
            return options
        shared = self._shared.get(options)
        if shared is None:
            shared = self._shared[options] = dataclasses.replace(options, persistent=True)
        return shared

    def options(self, channel: str) -> NamespaceOptions:
        return self._share(self._inner.options(channel))

    def __iter__(self) -> Iterator[str]:
        return iter(self._inner)

    def __getitem__(self, namespace: str) -> NamespaceOptions:
        return self._share(self._inner[namespace])


@dataclass(frozen=True, slots=True)
class RedisBackend:
    """The stores and the broker of a hub node on one Redis. Build it with :meth:`connect`.

    Attributes:
        url: the Redis URL, without credentials (for logs).
        client: the shared client.
        history: the history of every namespace.
        presence: the presence store.
        broker: the fan-out between nodes.
    """

    url: str
    client: Redis
    history: RedisHistory
    presence: RedisPresence
    broker: RedisBroker

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        clock: Callable[[], float] = time.time,
        dedupe_window: float = 120.0,
    ) -> RedisBackend:
        """Connect to ``url`` and check that Redis answers.

        Args:
            url: the Redis URL (see :func:`~wshub.hub.redis_support.redis_client`).
            prefix: the first part of every key and Pub/Sub channel; the nodes of one hub
                use the same.
            clock: wall-clock time for the history.
            dedupe_window: seconds a ``message_id`` makes a publish idempotent.

        Raises:
            ValueError: ``url`` is not a Redis URL.
            ConnectionError: Redis does not answer (a wrong address, a password refused).
        """
        client = redis_client(url)
        shown = describe_url(url)
        try:
            await client.ping()
        except RedisError as exc:
            await close_client(client)
            raise ConnectionError(f"cannot reach Redis at {shown}: {exc}") from exc
        logger.info("sharing history, presence and fan-out through Redis at %s", shown)
        return cls(
            url=shown,
            client=client,
            history=RedisHistory(client, prefix=prefix, clock=clock, dedupe_window=dedupe_window),
            presence=RedisPresence(client, prefix=prefix),
            broker=RedisBroker(client, prefix=prefix),
        )

    @staticmethod
    def registry(registry: ChannelRegistry | None) -> ChannelRegistry:
        """``registry`` (default: the demo namespaces) with every history in Redis."""
        return SharedRegistry(registry if registry is not None else default_registry())

    async def close(self) -> None:
        """Close the broker and the stores, then the connections."""
        await self.broker.close()
        await self.presence.close()
        await self.history.close()
        await close_client(self.client)
