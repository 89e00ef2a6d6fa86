"""Brokers carry encoded publications between hub nodes (see :mod:`.base`)."""

from __future__ import annotations

from wshub.hub.brokers.base import Broker, BrokerCallback
from wshub.hub.brokers.memory import MemoryBroker

__all__ = ["Broker", "BrokerCallback", "MemoryBroker"]
