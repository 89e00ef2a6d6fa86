"""Joins and leaves batched into one ``presence_diff`` push per channel and interval.

Sending a ``join`` push to every member for every client that joins costs n(n+1)/2 pushes
while a room of n members fills up (500,500 for 1,000), and as many ``leave`` pushes when
they go: the reconnect storm of a big room. Batching, as Phoenix's ``presence_diff`` does,
sends each member one push per interval with the net change, whatever the number of
clients that came and went: O(n) pushes per interval.

Batching is per node and per channel. A client's join and leave both happen on the node
its connection is on, so that node sees both and can cancel a join and a leave of the same
client in one interval out; the diff then goes through the broker like any push, and
reaches the subscribers of every node.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Literal

from wshub.exceptions import HubError
from wshub.hub._outbox import EVT
from wshub.hub.stats import HubStats
from wshub.hub.wire import ClientInfo, EventPush, PresenceDiffPush

__all__ = ["DiffBatcher", "JoinLeave"]


class _Pending:
    """The net change of one channel since its last diff, by client id."""

    __slots__ = ("handle", "joins", "leaves")

    def __init__(self, handle: asyncio.TimerHandle) -> None:
        self.handle = handle
        self.joins: dict[str, ClientInfo] = {}
        self.leaves: dict[str, ClientInfo] = {}


class DiffBatcher:
    """Collects joins and leaves per channel and hands one diff per interval to ``send``.

    Args:
        send: called (on the event loop, never awaited) with each diff; it must not raise.
    """

    def __init__(self, send: Callable[[PresenceDiffPush], None]) -> None:
        self._send = send
        self._pending: dict[str, _Pending] = {}

    def _channel(self, channel: str, interval: float) -> _Pending:
        pending = self._pending.get(channel)
        if pending is None:
            loop = asyncio.get_running_loop()
            handle = loop.call_later(interval, self.flush, channel)
            pending = self._pending[channel] = _Pending(handle)
        return pending

    def join(self, channel: str, info: ClientInfo, interval: float) -> None:
        """``info`` joined ``channel``: in the diff sent at most ``interval`` seconds from
        the first change of this batch, unless it leaves again before."""
        pending = self._channel(channel, interval)
        if pending.leaves.pop(info.client, None) is None:
            pending.joins[info.client] = info

    def leave(self, channel: str, info: ClientInfo, interval: float) -> None:
        """``info`` left ``channel`` (cancels a join of the same batch)."""
        pending = self._channel(channel, interval)
        if pending.joins.pop(info.client, None) is None:
            pending.leaves[info.client] = info

    def flush(self, channel: str) -> None:
        """Send the diff of ``channel`` now, if anything changed (the timer calls it)."""
        pending = self._pending.pop(channel, None)
        if pending is None:
            return
        pending.handle.cancel()
        if pending.joins or pending.leaves:
            joins, leaves = tuple(pending.joins.values()), tuple(pending.leaves.values())
            self._send(PresenceDiffPush(channel, joins, leaves))

    def close(self) -> None:
        """Drop what is pending (the hub is closing: its subscribers are going too)."""
        for pending in self._pending.values():
            pending.handle.cancel()
        self._pending.clear()


class JoinLeave:
    """What a hub node tells subscribers when a client joins or leaves a channel: a ``join``
    or ``leave`` push at once (``join_leave_interval=None``), or the change batched into
    the channel's next ``presence_diff``.

    Args:
        publish: the fan-out's publish (``channel, kind, offset, epoch, push``): sends an
            encoded push to every node's subscribers of a channel.
        spawn: runs a coroutine in the background (the hub keeps track of it).
        stats: the node's counters (``join_leave_pushes``, ``presence_diffs``).
    """

    def __init__(
        self,
        publish: Callable[[str, int, int, str, bytes], Coroutine[Any, Any, None]],
        *,
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
        stats: HubStats,
    ) -> None:
        self._publish = publish
        self._spawn = spawn
        self._stats = stats
        self._diffs = DiffBatcher(self._send_diff)
        self._closed = False

    async def announce(
        self,
        kind: Literal["join", "leave"],
        channel: str,
        info: ClientInfo,
        interval: float | None,
    ) -> None:
        """``info`` joined or left ``channel`` (nothing once closed)."""
        if self._closed:
            return
        if interval is None:
            self._stats.join_leave_pushes += 1
            await self._send(channel, EventPush(kind, channel, info).serialize())
        elif kind == "join":
            self._diffs.join(channel, info, interval)
        else:
            self._diffs.leave(channel, info, interval)

    def flush(self, channel: str) -> None:
        """Send the pending diff of ``channel`` now."""
        self._diffs.flush(channel)

    def _send_diff(self, diff: PresenceDiffPush) -> None:
        self._stats.presence_diffs += 1
        self._spawn(self._send(diff.channel, diff.serialize()))

    async def _send(self, channel: str, push: bytes) -> None:
        try:
            if not self._closed:
                await self._publish(channel, EVT, 0, "-", push)
        except HubError as exc:
            if not exc.temporary:  # lost while the broker is down; presence catches up
                raise

    def close(self) -> None:
        """Send nothing more; pending diffs are dropped."""
        self._closed = True
        self._diffs.close()
