"""Commands waiting for their reply: request ids, reply matching, and what a lost link does.

Every command the client sends carries a request id (docs/protocol.md §3); the hub answers
it once, with ``result`` or ``error``. :class:`Requests` keeps the commands sent or waiting to
be sent, matches each reply to its command, and decides per command what happens when the
connection is lost before the reply (:class:`OnLost`): sent again on the next connection,
done anyway, or failed.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator, Mapping
from enum import Enum
from typing import Any, TypeAlias

from wshub.exceptions import ConnectionClosed, HubError
from wshub.hub.client.values import hub_error

__all__ = ["OnLost", "Outcome", "Request", "Requests"]

#: A reply as a request's handler sees it: the ``result`` object, or the error it carried.
Outcome: TypeAlias = Mapping[str, Any] | HubError


class OnLost(Enum):
    """What happens to a request whose connection is lost before its reply."""

    RETRY = 1  # send it again on the next connection (idempotent, or made so by message_id)
    RESOLVE = 2  # done anyway (unsubscribe: the next connection will not have the channel)
    FAIL = 3  # raise ConnectionClosedError (the connect handshake)


class Request:
    """One command: its text, whether it went out on the current connection, its reply."""

    __slots__ = ("future", "handler", "id", "on_lost", "sent", "text")

    def __init__(
        self,
        id: int,
        text: str,
        on_lost: OnLost,
        handler: Callable[[Outcome], None] | None,
    ) -> None:
        self.id = id
        self.text = text
        self.on_lost = on_lost
        # Runs inside the receive path, before any later message is handled (subscribe
        # replies must take effect before the pushes that follow them).
        self.handler = handler
        self.future: asyncio.Future[Mapping[str, Any]] = asyncio.get_running_loop().create_future()
        self.sent = False

    def resolve_lost(self, error: BaseException) -> None:
        """Settle a request that can no longer be answered, as its :class:`OnLost` says."""
        if self.future.done():
            return
        if self.on_lost is OnLost.RESOLVE:
            self.future.set_result({})
        else:
            self.future.set_exception(error)
            self.future.exception()  # its waiter may be gone (connect timed out)


class Requests:
    """The commands waiting for a reply, by request id, in the order they were made."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._pending: dict[int, Request] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def add(
        self,
        build: Callable[[int], str],
        on_lost: OnLost,
        handler: Callable[[Outcome], None] | None = None,
    ) -> Request:
        """Register a command; ``build(id)`` serializes it with its request id."""
        id = next(self._ids)
        req = Request(id, build(id), on_lost, handler)
        self._pending[id] = req
        return req

    def discard(self, req: Request) -> None:
        """Forget ``req`` (answered, or its caller stopped waiting)."""
        self._pending.pop(req.id, None)

    def unsent(self) -> Iterator[Request]:
        """The requests to send on a new connection, oldest first."""
        return (req for req in list(self._pending.values()) if not req.sent)

    def connection_lost(self, error: ConnectionClosed) -> None:
        """The connection dropped: retry, resolve or fail each request that went out on it."""
        for req in list(self._pending.values()):
            if not req.sent:
                continue
            req.sent = False
            if req.on_lost is OnLost.RETRY:
                continue
            del self._pending[req.id]
            req.resolve_lost(error)

    def fail_all(self, error: BaseException) -> None:
        """The client stopped: every waiting call raises ``error``."""
        pending = list(self._pending.values())
        self._pending.clear()
        for req in pending:
            if not req.future.done():
                req.future.set_exception(error)
                req.future.exception()  # its caller may have been cancelled meanwhile

    def reply(self, obj: Mapping[str, Any]) -> bool:
        """Settle the request ``obj`` answers; ``False`` when no waiting request has its id."""
        id = obj.get("id")
        req = self._pending.pop(id, None) if isinstance(id, int) else None
        if req is None:
            return False
        error = obj.get("error")
        outcome: Outcome
        if isinstance(error, dict):
            outcome = hub_error(error)
        else:
            result = obj.get("result")
            outcome = result if isinstance(result, dict) else {}
        try:
            if req.handler is not None:
                req.handler(outcome)
                outcome = {}
        finally:
            if req.future.done():
                pass
            elif isinstance(outcome, HubError):
                req.future.set_exception(outcome)
            else:
                req.future.set_result(outcome)
        return True
