"""Per-connection limits of the hub (docs/hub.md, "Limits").

Their own module so that :mod:`wshub.hub.session` and :mod:`wshub.hub.host` can name them
without importing the hub; ``wshub.hub.HubLimits`` and ``wshub.hub.hub.HubLimits`` are
this class.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["HubLimits", "UserCounts"]


@dataclass(frozen=True, slots=True, kw_only=True)
class HubLimits:
    """Per-connection limits (docs/hub.md, "Limits"). ``None`` means no limit where allowed.

    Attributes:
        connect_timeout: seconds a client has to send ``connect`` (close 4002).
        max_channels: subscriptions per connection (error 112).
        max_connections_per_user: open connections of one authenticated user (error 112
            then close 4006); anonymous connections are not counted.
        command_rate: commands per second, token bucket refill (error 111).
        command_burst: the command bucket's capacity.
        publish_rate: publish commands per second.
        publish_burst: the publish bucket's capacity.
        max_bad_commands: malformed or unknown commands in a row before close 4000.
        max_rate_limited: rate-limited commands in a row before close 4005.
        max_publication_size: bytes of encoded publication data (error 114).
        max_meta_size: bytes of encoded ``meta`` sent in ``connect``.
        max_recovery: publications one ``subscribe`` may recover.
        max_history_limit: the largest ``limit`` of a history read.
        max_pending_replies: replies queued for a client that does not read (close 4004).
        max_queued_size: characters of JSON (about bytes) queued for a client that does not
            read, replies and pushes of all its channels together, beyond the transport's
            write buffer (close 4004, whatever the namespaces' slow-consumer policies;
            ephemeral pushes are dropped instead). ``None`` means no limit.
    """

    connect_timeout: float | None = 10.0
    max_channels: int = 128
    max_connections_per_user: int | None = 16
    command_rate: float | None = 50.0
    command_burst: int = 100
    publish_rate: float | None = 20.0
    publish_burst: int = 40
    max_bad_commands: int = 10
    max_rate_limited: int = 50
    max_publication_size: int = 65536
    max_meta_size: int = 1024
    max_recovery: int = 1000
    max_history_limit: int = 1000
    max_pending_replies: int = 256
    max_queued_size: int | None = 4 * 2**20


class UserCounts:
    """The open connections of each authenticated user on this node, against
    ``max_connections_per_user``."""

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def add(self, user: str, limit: int | None) -> bool:
        """Count one more connection of ``user``; ``False`` (not counted) at ``limit``."""
        count = self._counts.get(user, 0)
        if limit is not None and count >= limit:
            return False
        self._counts[user] = count + 1
        return True

    def release(self, user: str) -> None:
        """Count one connection of ``user`` less."""
        count = self._counts.get(user, 0) - 1
        if count > 0:
            self._counts[user] = count
        else:
            self._counts.pop(user, None)
