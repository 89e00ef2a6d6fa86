"""Channel names and per-namespace options.

A channel is ``namespace:name``; the namespace selects how the hub treats the channel
(history, presence, who may publish, what happens to a slow subscriber). The options are
frozen dataclasses validated on construction, so that a misconfigured hub fails at start-up
rather than on the first publication.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, get_args

from wshub.exceptions import ConfigError, HubError
from wshub.hub.wire import ErrorCode

__all__ = [
    "ChannelRegistry",
    "NamespaceOptions",
    "PublishPolicy",
    "SlowConsumerPolicy",
    "split_channel",
    "validate_channel",
]

PublishPolicy = Literal["subscribers", "any", "none"]


class SlowConsumerPolicy(StrEnum):
    """What the hub does when a subscriber's outbound queue for a channel is full.

    A member equals its string (``SlowConsumerPolicy.LATEST == "latest"``), which is also
    how a config file names it.
    """

    #: close the connection with 4004 (the client reconnects and recovers from history)
    DISCONNECT = "disconnect"
    #: drop the oldest queued publication (the client sees a gap and fills it)
    DROP_OLDEST = "drop-oldest"
    #: keep only the newest publication per channel (conflation, for tickers)
    LATEST = "latest"


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
        join_leave: tell subscribers who joins and leaves.
        join_leave_interval: seconds over which joins and leaves are batched into one
            ``presence_diff`` push per channel, so that n clients joining a room cost each
            member one push per interval instead of n (a reconnect storm costs O(n) pushes
            per interval, not O(n^2)). ``None`` sends one ``join`` or ``leave`` push per
            event instead: immediate, for small rooms. The default, 0.5 s, is short enough
            for a member list people watch and long enough to batch a storm (1,000 clients
            reconnecting take about that long to set up).
        publish: who may publish from a client connection.
        slow_consumer: what to do when a subscriber's outbound queue for a channel is full.
        queue_size: the bound of that queue, in messages.
    """

    history_size: int = 0
    history_ttl: float | None = None
    persistent: bool = True
    presence: bool = False
    join_leave: bool = False
    join_leave_interval: float | None = 0.5
    publish: PublishPolicy = "subscribers"
    slow_consumer: SlowConsumerPolicy = SlowConsumerPolicy.DISCONNECT
    queue_size: int = 256

    def __post_init__(self) -> None:
        errors: list[str] = []
        if self.history_size < 0:
            errors.append(f"history_size: must be >= 0, got {self.history_size!r}")
        ttl = self.history_ttl
        if ttl is not None and not (ttl > 0 and math.isfinite(ttl)):
            errors.append(f"history_ttl: must be > 0 seconds or none, got {ttl!r}")
        interval = self.join_leave_interval
        if interval is not None and not (interval > 0 and math.isfinite(interval)):
            errors.append(f"join_leave_interval: must be > 0 seconds or none, got {interval!r}")
        if self.publish not in get_args(PublishPolicy):
            choices = ", ".join(get_args(PublishPolicy))
            errors.append(f"publish: must be one of {choices}, got {self.publish!r}")
        try:  # a plain string names a policy too
            object.__setattr__(self, "slow_consumer", SlowConsumerPolicy(self.slow_consumer))
        except ValueError:
            choices = ", ".join(policy.value for policy in SlowConsumerPolicy)
            errors.append(f"slow_consumer: must be one of {choices}, got {self.slow_consumer!r}")
        if self.queue_size < 1:
            errors.append(f"queue_size: must be >= 1, got {self.queue_size!r}")
        ConfigError.check(errors)


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

    @property
    def default(self) -> NamespaceOptions | None:
        """The options of namespaces not listed; ``None`` when they are refused."""
        return self._default

    def __iter__(self) -> Iterator[str]:
        return iter(self._namespaces)

    def __getitem__(self, namespace: str) -> NamespaceOptions:
        return self._namespaces[namespace]
