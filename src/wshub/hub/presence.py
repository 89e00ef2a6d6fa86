"""Who is subscribed to a channel.

The hub adds a :class:`~wshub.hub.wire.ClientInfo` when a subscription to a channel of a
namespace with ``presence`` goes live and removes it when the subscription ends, including
when the connection dies (the session's cleanup runs on every way out). The ``join`` and
``leave`` pushes are sent by the hub through the broker, not by the store, so that a shared
store (Redis hashes with per-entry expiry) can replace :class:`MemoryPresence` unchanged.
"""

from __future__ import annotations

from typing import Protocol

from wshub.hub.wire import ClientInfo

__all__ = ["MemoryPresence", "PresenceStore"]


class PresenceStore(Protocol):
    """Presence entries per channel, keyed by client id."""

    async def add(self, channel: str, info: ClientInfo) -> None:
        """Record ``info`` as present in ``channel`` (replacing an entry of the same client)."""
        ...

    async def remove(self, channel: str, client: str) -> bool:
        """Forget ``client`` in ``channel``; returns whether it was present."""
        ...

    async def get(self, channel: str) -> list[ClientInfo]:
        """The clients present in ``channel``, in the order they arrived."""
        ...

    async def close(self) -> None:
        """Release resources."""
        ...


class MemoryPresence:
    """The reference :class:`PresenceStore`, in process memory."""

    def __init__(self) -> None:
        self._channels: dict[str, dict[str, ClientInfo]] = {}

    async def add(self, channel: str, info: ClientInfo) -> None:
        self._channels.setdefault(channel, {})[info.client] = info

    async def remove(self, channel: str, client: str) -> bool:
        entries = self._channels.get(channel)
        if entries is None or entries.pop(client, None) is None:
            return False
        if not entries:
            del self._channels[channel]
        return True

    async def get(self, channel: str) -> list[ClientInfo]:
        return list(self._channels.get(channel, {}).values())

    async def close(self) -> None:
        self._channels.clear()
