"""Tests for wshub.hub._outbox: queue policies, the byte bound and the order of writes."""

from __future__ import annotations

from wshub.hub._outbox import EPH, EVT, POS, ChannelQueue, Outbox


def drain(outbox: Outbox) -> list[str]:
    return [outbox.pop() for _ in range(outbox.pending)]


def test_replies_go_first_then_channels_in_turn() -> None:
    """Replies before channel messages; one message of each ready channel in turn."""
    outbox = Outbox(max_pending_replies=8, max_queued_size=None)
    a, b = ChannelQueue("disconnect", 8), ChannelQueue("disconnect", 8)
    for message in ("a1", "a2", "a3"):
        assert outbox.add(a, POS, message) == 0
    assert outbox.add(b, POS, "b1") == 0
    assert outbox.add_reply("r1")
    assert drain(outbox) == ["r1", "a1", "b1", "a2", "a3"]
    assert (outbox.pending, outbox.size) == (0, 0)


def test_size_counts_what_waits_and_what_leaves() -> None:
    """size follows adds, pops, drops and discards."""
    outbox = Outbox(max_pending_replies=8, max_queued_size=None)
    queue = ChannelQueue("drop-oldest", 2)
    outbox.add(queue, POS, "xxxx")
    outbox.add(queue, POS, "yy")
    assert outbox.add(queue, POS, "z") == 1  # "xxxx" dropped
    assert (outbox.pending, outbox.size) == (2, 3)
    assert outbox.pop() == "yy"
    assert (outbox.pending, outbox.size) == (1, 1)
    outbox.discard(queue)
    assert (outbox.pending, outbox.size) == (0, 0)


def test_byte_bound_refuses_whatever_the_policy_but_drops_ephemeral() -> None:
    """Over max_queued_size: a slow consumer (None/False), except an ephemeral push, which is
    dropped; the first message is always taken, however large."""
    outbox = Outbox(max_pending_replies=8, max_queued_size=10)
    queue = ChannelQueue("drop-oldest", 100)
    assert outbox.add(queue, POS, "x" * 50) == 0  # empty outbox: taken
    assert outbox.add(queue, POS, "y") is None
    assert outbox.add(queue, EPH, "e") == 1
    assert not outbox.add_reply("r")
    assert outbox.pending == 1


def test_reply_count_bound() -> None:
    """At most max_pending_replies replies wait."""
    outbox = Outbox(max_pending_replies=2, max_queued_size=None)
    assert outbox.add_reply("1") and outbox.add_reply("2")
    assert not outbox.add_reply("3")


def test_take_replies_forgets_channel_messages() -> None:
    """Closing: the replies are handed back, channel messages forgotten."""
    outbox = Outbox(max_pending_replies=4, max_queued_size=None)
    queue = ChannelQueue("disconnect", 4)
    outbox.add(queue, EVT, "join")
    outbox.add_reply("r")
    assert outbox.take_replies() == ["r"]
    assert (outbox.pending, outbox.size, len(queue)) == (0, 0, 0)


def test_latest_keeps_one_publication_and_events() -> None:
    """latest: one waiting publication per channel, the newest; events stay."""
    queue = ChannelQueue("latest", 4)
    assert queue.push(EVT, "join") == 0
    assert queue.push(POS, "p1") == 0
    assert queue.push(POS, "p2") == 1
    assert [queue.pop() for _ in range(len(queue))] == ["join", "p2"]


def test_full_disconnect_queue_drops_ephemeral_first() -> None:
    """disconnect: a full queue evicts an ephemeral message before refusing."""
    queue = ChannelQueue("disconnect", 2)
    queue.push(EPH, "e")
    queue.push(POS, "p1")
    assert queue.push(EPH, "e2") == 1  # full: the new ephemeral goes
    assert queue.push(POS, "p2") == 1  # evicts "e"
    assert queue.push(POS, "p3") is None
