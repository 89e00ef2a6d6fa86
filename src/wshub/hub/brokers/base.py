"""The broker interface.

A broker moves opaque payloads from the node that accepted a publication to every node with
subscribers of the channel, the node itself included. The hub encodes a publication once and
hands the same bytes to the broker; the broker never looks inside them.

Contract (checked for every implementation by ``tests/hub/brokers/test_contract.py``):

* payloads are delivered byte for byte, in publish order per channel, to every callback
  subscribed to that channel when the publish happened;
* :meth:`Broker.subscribe` returns only once delivery is active, so a publication made after
  it returns is delivered (the hub relies on this for gap-free recovery);
* subscribing the same callback twice to a channel is a no-op, and so is unsubscribing one
  that is not subscribed;
* a callback that raises is logged and does not stop delivery to the others;
* after :meth:`Broker.close`, publish and subscribe raise :class:`~wshub.exceptions.InvalidState`.

Callbacks are plain functions, called on the event loop; they must not block.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

__all__ = ["Broker", "BrokerCallback"]

#: ``callback(channel, payload)``.
BrokerCallback = Callable[[str, bytes], None]


class Broker(Protocol):
    """Fan-out of opaque payloads between hub nodes, per channel."""

    async def publish(self, channel: str, payload: bytes) -> None:
        """Deliver ``payload`` to the callbacks subscribed to ``channel`` on every node."""
        ...

    async def subscribe(self, channel: str, callback: BrokerCallback) -> None:
        """Start delivering ``channel`` to ``callback``; returns once delivery is active."""
        ...

    async def unsubscribe(self, channel: str, callback: BrokerCallback) -> None:
        """Stop delivering ``channel`` to ``callback``."""
        ...

    async def close(self) -> None:
        """Stop all deliveries and release resources."""
        ...
