"""What a node's fan-out missed while its broker connection was down, read back from history.

When the broker's subscriber connection comes back (a Redis outage, a Sentinel failover),
other nodes may have published meanwhile; the broker signals it (an empty payload, see
:class:`~wshub.hub.backends.Broker`) and the fan-out asks :func:`read_missed` for what came
after the last position it delivered.
"""

from __future__ import annotations

import logging

from wshub.exceptions import HubError
from wshub.hub._fanout import CaughtUp
from wshub.hub.backends import HistoryStore
from wshub.hub.wire import PublicationPush

__all__ = ["read_missed"]

logger = logging.getLogger("wshub.hub")


async def read_missed(
    store: HistoryStore, channel: str, offset: int, epoch: str, *, limit: int
) -> CaughtUp:
    """The publications of ``channel`` after ``offset`` in ``epoch``, each as ``(offset,
    epoch, push)``; only the latest when history cannot fill the gap (a new epoch, or more
    than ``limit``), so that subscribers see the gap and report it. Nothing when the store
    fails (logged): clients then notice the gap at the next publication."""
    try:
        recovery = await store.since(channel, offset, epoch, limit=limit)
        if recovery.complete:
            pubs, position = recovery.publications, recovery.position
        else:
            pubs, position = await store.latest(channel, limit=1)
    except HubError as exc:
        logger.warning("catching up %s after a broker reconnection failed: %s", channel, exc)
        return []
    now = position.epoch
    return [
        (pub.offset, now, PublicationPush(channel, now, pub).serialize().decode()) for pub in pubs
    ]
