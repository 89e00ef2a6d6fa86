"""Sending a node's clients elsewhere before it stops: the body of :meth:`Hub.drain`.

A node that stops closes its sessions with 1012 (service restart); its clients reconnect,
through the balancer, to the other nodes. Closing thousands at once would make them all
reconnect at once, so the closes are spread evenly over a drain period: the i-th of n
goes at ``period * i / n``, which bounds the rate at which the rest of the cluster takes
them. Then the drain waits for the connections to be gone (each closing handshake done, or
dropped after its ``close_timeout``), up to a deadline counted from its start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from wshub.exceptions import WSHubError
from wshub.hub.session import Session
from wshub.hub.wire import DisconnectCode

__all__ = ["drain_sessions"]

logger = logging.getLogger("wshub.hub")


async def _closed(session: Session) -> None:
    """Wait until the connection of ``session``, which it is closing, is gone: the peer's
    ``close()`` of a closing connection only waits for its end (closing handshake done, or
    dropped after ``close_timeout``)."""
    code = DisconnectCode.SERVICE_RESTART
    with contextlib.suppress(WSHubError, ConnectionError):  # gone already, as wanted
        await session.peer.close(int(code), code.reason)


async def drain_sessions(
    sessions: Sequence[Session], *, drain_period: float, drain_timeout: float
) -> int:
    """Close ``sessions`` with 1012, spread over ``drain_period``; wait for them to go.

    Returns:
        How many connections were still open when ``drain_timeout`` ran out.

    Raises:
        ValueError: unless ``0 <= drain_period <= drain_timeout``.
    """
    if not 0 <= drain_period <= drain_timeout:
        raise ValueError("need 0 <= drain_period <= drain_timeout")
    loop = asyncio.get_running_loop()
    start = loop.time()
    deadline = start + drain_timeout
    logger.info(
        "draining %d connections over %.1f s (timeout %.1f s)",
        len(sessions),
        drain_period,
        drain_timeout,
    )
    gone: list[asyncio.Future[None]] = []
    try:
        for index, session in enumerate(sessions):
            delay = start + drain_period * index / len(sessions) - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            session.close(DisconnectCode.SERVICE_RESTART)
            gone.append(asyncio.ensure_future(_closed(session)))
        left = 0
        if gone:
            timeout = max(0.0, deadline - loop.time())
            left = len((await asyncio.wait(gone, timeout=timeout))[1])
    finally:  # also when cancelled (a second signal): the waiters are of no use then
        for waiter in gone:
            waiter.cancel()
    if left:
        logger.warning("drain timed out: %d connections left", left)
    else:
        logger.info("drained: no connection left")
    return left
