"""Tests for wshub.hub._presence: joins and leaves batched into one diff per channel."""

from __future__ import annotations

import asyncio

from wshub.hub._presence import DiffBatcher
from wshub.hub.wire import ClientInfo, PresenceDiffPush

A, B, C = ClientInfo("a", ""), ClientInfo("b", "u"), ClientInfo("c", "", {"nick": "C"})
HOUR = 3600.0


async def test_one_diff_per_channel_with_the_net_change() -> None:
    """Changes of one interval make one diff per channel; join+leave of one client cancel."""
    sent: list[PresenceDiffPush] = []
    batcher = DiffBatcher(sent.append)
    batcher.join("r:x", A, HOUR)
    batcher.join("r:x", B, HOUR)
    batcher.leave("r:x", C, HOUR)
    batcher.join("r:x", C, HOUR)  # left then came back: no change
    batcher.join("r:y", C, HOUR)
    batcher.leave("r:y", C, HOUR)  # came and went: no change
    batcher.flush("r:x")
    batcher.flush("r:y")
    batcher.flush("r:z")
    assert sent == [PresenceDiffPush("r:x", (A, B), ())]


async def test_the_timer_flushes_and_close_cancels() -> None:
    """The first change starts the interval; close drops what is pending."""
    sent: list[PresenceDiffPush] = []
    batcher = DiffBatcher(sent.append)
    batcher.leave("r:x", A, 0.001)
    batcher.join("r:y", B, 0.001)
    batcher.close()
    await asyncio.sleep(0.01)
    assert sent == []
    batcher.leave("r:x", A, 0.001)
    while not sent:
        await asyncio.sleep(0.001)
    assert sent == [PresenceDiffPush("r:x", (), (A,))]
