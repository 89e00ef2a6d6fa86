"""Hub counters.

Plain integer attributes incremented on the hot paths (no locks: the hub runs on one event
loop). :meth:`HubStats.snapshot` returns them as a dict, the shape the HTTP API serves and a
Prometheus collector can read later.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["HubStats"]


@dataclass(slots=True)
class HubStats:
    """Counters of one hub node.

    Attributes:
        connections: sessions open now.
        connections_total: sessions opened since start.
        subscriptions: subscriptions live now.
        publications: publications accepted (not counting duplicates and ephemeral ones).
        ephemeral: ephemeral publications accepted.
        deliveries: pushes handed to a subscriber's connection (one per recipient: written
            at once or queued in its outbox), publications and events alike.
        join_leave_pushes: ``join`` and ``leave`` pushes sent by this node (namespaces with
            ``join_leave_interval = none``; each goes to every subscriber of the channel).
        presence_diffs: ``presence_diff`` pushes sent by this node (at most one per channel
            and ``join_leave_interval``; each goes to every subscriber of the channel).
        duplicates: publishes that were no-ops thanks to their ``message_id``.
        drops: messages dropped for slow subscribers (``drop-oldest``, ``latest``,
            ephemeral pushes).
        slow_consumer_disconnects: sessions closed with 4004.
        recoveries: subscribes with a ``since`` position that recovered every publication
            missed.
        bad_commands: malformed or unknown commands received.
        auth_failures: tokens refused.
        rate_limited: commands refused by a rate limit.
    """

    connections: int = 0
    connections_total: int = 0
    subscriptions: int = 0
    publications: int = 0
    ephemeral: int = 0
    deliveries: int = 0
    join_leave_pushes: int = 0
    presence_diffs: int = 0
    duplicates: int = 0
    drops: int = 0
    slow_consumer_disconnects: int = 0
    recoveries: int = 0
    bad_commands: int = 0
    auth_failures: int = 0
    rate_limited: int = 0

    def snapshot(self) -> dict[str, int]:
        """The counters by name."""
        return asdict(self)
