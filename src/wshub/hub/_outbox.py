"""What one connection has queued to write: replies first, then its channels in turn.

A session writes at once while its connection keeps up; when the transport's write buffer
is above its high-water mark, what it would write waits here instead. Two bounds apply:

- each subscription's :class:`ChannelQueue` holds at most ``queue_size`` messages and
  applies its namespace's slow-consumer policy (``disconnect``, ``drop-oldest``,
  ``latest``) when full; ephemeral publications are always the first to go;
- the whole :class:`Outbox` holds at most ``max_pending_replies`` replies and
  ``max_queued_size`` characters of JSON (about bytes: the wire format is mostly ASCII),
  whatever the namespaces say, so that no client can make the hub buffer without bound by
  subscribing to many busy channels or by sending commands whose replies it never reads.

Both classes allocate their deques on first use and drop them when cleared: most
connections never queue anything, and an empty deque costs about 760 bytes.

Nothing here awaits or writes: the session asks for :meth:`Outbox.pop` when its
connection can take more. A refusal (``None`` / ``False``) means "slow consumer": the
session closes the connection with 4004.
"""

from __future__ import annotations

from collections import deque

__all__ = ["EPH", "EVT", "POS", "ChannelQueue", "Outbox"]

# Kinds of channel messages: they decide what may be dropped.
POS = 0  # a positioned publication
EPH = 1  # an ephemeral publication: always the first to go
EVT = 2  # a join/leave event


class ChannelQueue:
    """One subscription's bounded queue with its namespace's overflow policy.

    Args:
        policy: ``"disconnect"``, ``"drop-oldest"`` or ``"latest"``.
        capacity: the most messages it holds.
    """

    __slots__ = ("_items", "capacity", "policy", "size")

    def __init__(self, policy: str, capacity: int) -> None:
        self._items: deque[tuple[int, str]] | None = None
        self.policy = policy
        self.capacity = capacity
        #: Characters of JSON queued here.
        self.size = 0

    def __len__(self) -> int:
        return 0 if self._items is None else len(self._items)

    def _remove(self, index: int) -> None:
        items = self._items
        assert items is not None
        self.size -= len(items[index][1])
        del items[index]

    def push(self, kind: int, message: str) -> int | None:
        """Queue ``message``.

        Returns:
            How many queued messages were dropped to make room (``message`` itself
            counts when it is the one dropped), or ``None`` when the queue is full and the
            policy is to disconnect.
        """
        items = self._items
        if items is None:
            items = self._items = deque()
        dropped = 0
        if self.policy == "latest" and kind == POS:
            # Conflation: at most one publication waits per channel, the newest.
            for index, item in enumerate(items):
                if item[0] == POS:
                    self._remove(index)
                    dropped = 1
                    break
        if len(items) >= self.capacity:
            if kind == EPH:
                return dropped + 1
            first_eph = next((i for i, item in enumerate(items) if item[0] == EPH), None)
            if first_eph is not None:
                self._remove(first_eph)
            elif self.policy == "disconnect":
                return None
            else:
                self._remove(0)
            dropped += 1
        items.append((kind, message))
        self.size += len(message)
        return dropped

    def pop(self) -> str:
        """The oldest queued message (the queue must not be empty)."""
        assert self._items is not None
        message = self._items.popleft()[1]
        self.size -= len(message)
        return message

    def clear(self) -> None:
        self._items = None
        self.size = 0


class Outbox:
    """Everything one connection has waiting: replies, then channel queues round-robin.

    Args:
        max_pending_replies: replies that may wait.
        max_queued_size: characters of JSON that may wait in all; ``None`` means no
            limit. A message is always accepted into an empty outbox, so that one large
            reply (a history page) never counts as a slow consumer by itself.

    Attributes:
        pending: messages waiting (replies and channel messages).
        size: characters of JSON waiting.
    """

    __slots__ = ("_ready", "_replies", "max_pending_replies", "max_queued_size", "pending", "size")

    def __init__(self, *, max_pending_replies: int, max_queued_size: int | None) -> None:
        self.max_pending_replies = max_pending_replies
        self.max_queued_size = max_queued_size
        self._replies: deque[str] | None = None
        self._ready: deque[ChannelQueue] | None = None
        self.pending = 0
        self.size = 0

    def _fits(self, message: str) -> bool:
        limit = self.max_queued_size
        return limit is None or self.pending == 0 or self.size + len(message) <= limit

    def add_reply(self, message: str) -> bool:
        """Queue a reply or control push; ``False``: over a bound (slow consumer)."""
        replies = self._replies
        if replies is None:
            replies = self._replies = deque()
        if len(replies) >= self.max_pending_replies or not self._fits(message):
            return False
        replies.append(message)
        self.pending += 1
        self.size += len(message)
        return True

    def add(self, queue: ChannelQueue, kind: int, message: str) -> int | None:
        """Queue a channel message in ``queue``.

        Returns:
            How many messages were dropped (see :meth:`ChannelQueue.push`), or ``None``
            for a slow consumer: ``queue`` is full under the disconnect policy, or the
            outbox is over ``max_queued_size`` (ephemeral messages are dropped instead).
        """
        if not self._fits(message):
            return 1 if kind == EPH else None
        was_empty = not queue
        before_count, before_size = len(queue), queue.size
        dropped = queue.push(kind, message)
        if dropped is None:
            return None
        self.pending += len(queue) - before_count
        self.size += queue.size - before_size
        if was_empty and queue:
            if self._ready is None:
                self._ready = deque()
            self._ready.append(queue)
        return dropped

    def pop(self) -> str:
        """The next message to write (``pending`` must be positive): replies first, then
        one message of each channel in turn, so that a busy channel cannot starve others."""
        if self._replies:
            message = self._replies.popleft()
        else:
            ready = self._ready
            assert ready is not None
            while True:
                queue = ready.popleft()
                if queue:
                    message = queue.pop()
                    if queue:
                        ready.append(queue)
                    break
        self.pending -= 1
        self.size -= len(message)
        return message

    def discard(self, queue: ChannelQueue) -> None:
        """Forget what ``queue`` holds (its subscription ended)."""
        self.pending -= len(queue)
        self.size -= queue.size
        queue.clear()

    def take_replies(self) -> list[str]:
        """Remove and return the waiting replies, and forget every channel message."""
        replies = list(self._replies or ())
        self.clear()
        return replies

    def clear(self) -> None:
        for queue in self._ready or ():
            queue.clear()
        self._replies = None
        self._ready = None
        self.pending = 0
        self.size = 0
