"""The in-process broker: the reference implementation of :class:`~.base.Broker`.

Publishing calls the subscribed callbacks synchronously, in subscription order, so within
one process delivery is immediate and ordered. Several hubs sharing one ``MemoryBroker``
behave like several nodes sharing a real broker, which is how the multi-node paths are
tested without a network.
"""

from __future__ import annotations

import logging

from wshub.exceptions import InvalidState
from wshub.hub.brokers.base import BrokerCallback

__all__ = ["MemoryBroker"]

logger = logging.getLogger("wshub.broker")


class MemoryBroker:
    """Delivers payloads to callbacks in the same process."""

    def __init__(self) -> None:
        # A dict keeps insertion order and makes double subscription a no-op.
        self._subscribers: dict[str, dict[BrokerCallback, None]] = {}
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidState("broker is closed")

    async def publish(self, channel: str, payload: bytes) -> None:
        self._check_open()
        callbacks = self._subscribers.get(channel)
        if not callbacks:
            return
        # Copy: a callback may subscribe or unsubscribe while we iterate.
        for callback in list(callbacks):
            try:
                callback(channel, payload)
            except Exception:
                logger.exception("broker callback failed for channel %s", channel)

    async def subscribe(self, channel: str, callback: BrokerCallback) -> None:
        self._check_open()
        self._subscribers.setdefault(channel, {})[callback] = None

    async def unsubscribe(self, channel: str, callback: BrokerCallback) -> None:
        callbacks = self._subscribers.get(channel)
        if callbacks is None:
            return
        callbacks.pop(callback, None)
        if not callbacks:
            del self._subscribers[channel]

    async def close(self) -> None:
        self._closed = True
        self._subscribers.clear()
