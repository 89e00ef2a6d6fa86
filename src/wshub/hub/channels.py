"""Channel names and per-namespace options.

A channel is ``namespace:name``; the namespace selects how the hub treats the channel
(history, presence, who may publish, what happens to a slow subscriber). The options are
frozen dataclasses validated on construction, so that a misconfigured hub fails at start-up
rather than on the first publication.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from wshub.exceptions import HubError
from wshub.hub.wire import ErrorCode

__all__ = [
    "ChannelRegistry",
    "NamespaceOptions",
    "PublishPolicy",
    "SlowConsumerPolicy",
    "default_registry",
    "split_channel",
    "validate_channel",
]

PublishPolicy = Literal["subscribers", "any", "none"]
SlowConsumerPolicy = Literal["disconnect", "drop-oldest", "latest"]

_NAMESPACE_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_NAME_RE = re.compile(r"[A-Za-z0-9_\-.=@+,!~]{1,200}")


def split_channel(channel: str) -> tuple[str, str] | None:
    """Split ``namespace:name``; ``None`` when ``channel`` is not a valid channel name."""
    namespace, sep, name = channel.partition(":")
    if not sep or _NAMESPACE_RE.fullmatch(namespace) is None or _NAME_RE.fullmatch(name) is None:
        return None
    return namespace, name


def validate_channel(channel: str) -> str:
    """Return the namespace of ``channel``.

    Raises:
        HubError: code 107 when the name is invalid.
    """
    parts = split_channel(channel)
    if parts is None:
        raise HubError(ErrorCode.INVALID_CHANNEL, ErrorCode.INVALID_CHANNEL.message)
    return parts[0]


@dataclass(frozen=True, slots=True, kw_only=True)
class NamespaceOptions:
    """How the hub treats the channels of one namespace (see docs/hub.md).

    Attributes:
        history_size: publications kept per channel; 0 keeps none, but offsets are still
            assigned so that clients can detect gaps.
        history_ttl: seconds a publication is kept; ``None`` means no age limit.
        persistent: keep history in the hub's durable store; ``False`` keeps it in process
            memory (cheap for high-rate channels, lost on restart, which changes the epoch).
        presence: track who is subscribed.
        join_leave: push ``join`` and ``leave`` events to subscribers.
        publish: who may publish from a client connection.
        slow_consumer: what to do when a subscriber's outbound queue for a channel is full.
        queue_size: the bound of that queue, in messages.
    """

    history_size: int = 0
    history_ttl: float | None = None
    persistent: bool = True
    presence: bool = False
    join_leave: bool = False
    publish: PublishPolicy = "subscribers"
    slow_consumer: SlowConsumerPolicy = "disconnect"
    queue_size: int = 256

    def __post_init__(self) -> None:
        if self.history_size < 0:
            raise ValueError("history_size must be >= 0")
        if self.history_ttl is not None and self.history_ttl <= 0:
            raise ValueError("history_ttl must be > 0 or None")
        if self.publish not in ("subscribers", "any", "none"):
            raise ValueError(f"invalid publish policy: {self.publish!r}")
        if self.slow_consumer not in ("disconnect", "drop-oldest", "latest"):
            raise ValueError(f"invalid slow_consumer policy: {self.slow_consumer!r}")
        if self.queue_size < 1:
            raise ValueError("queue_size must be >= 1")


class ChannelRegistry:
    """The namespaces a hub serves, with their options.

    Args:
        namespaces: options by namespace name.
        default: options for namespaces not listed; ``None`` refuses them (error 108).
    """

    def __init__(
        self,
        namespaces: Mapping[str, NamespaceOptions],
        *,
        default: NamespaceOptions | None = None,
    ) -> None:
        for namespace in namespaces:
            if _NAMESPACE_RE.fullmatch(namespace) is None:
                raise ValueError(f"invalid namespace name: {namespace!r}")
        self._namespaces = dict(namespaces)
        self._default = default

    def options(self, channel: str) -> NamespaceOptions:
        """The options of ``channel``.

        Raises:
            HubError: 107 for an invalid channel name, 108 for an unknown namespace.
        """
        namespace = validate_channel(channel)
        options = self._namespaces.get(namespace, self._default)
        if options is None:
            raise HubError(ErrorCode.UNKNOWN_NAMESPACE, ErrorCode.UNKNOWN_NAMESPACE.message)
        return options

    def __iter__(self) -> Iterator[str]:
        return iter(self._namespaces)

    def __getitem__(self, namespace: str) -> NamespaceOptions:
        return self._namespaces[namespace]


def default_registry() -> ChannelRegistry:
    """The demo namespaces: ``chat``, ``ticker`` and ``board`` (table in docs/hub.md)."""
    day = 24 * 3600.0
    return ChannelRegistry(
        {
            "chat": NamespaceOptions(
                history_size=100, history_ttl=day, presence=True, join_leave=True
            ),
            # A ticker only needs the last price on subscribe; a slow client wants the newest
            # price, not a backlog, and the data is worthless after a restart.
            "ticker": NamespaceOptions(
                history_size=1,
                persistent=False,
                publish="none",
                slow_consumer="latest",
                queue_size=16,
            ),
            # The board's state is the replay of its operations, so keep many and a long time.
            "board": NamespaceOptions(
                history_size=1000,
                history_ttl=7 * day,
                presence=True,
                join_leave=True,
                queue_size=1024,
            ),
        }
    )
