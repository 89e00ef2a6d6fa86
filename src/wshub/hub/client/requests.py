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
import logging
from collections.abc import Callable, Iterator, Mapping
from enum import Enum
from typing import Any, Generic, TypeAlias, TypeVar

from wshub.exceptions import ConnectionClosed, ProtocolError, WSHubError
from wshub.hub.client.values import hub_error
from wshub.hub.wire import ErrorReply, Reply

__all__ = ["OnLost", "Outcome", "Read", "Request", "Requests", "no_result"]

logger = logging.getLogger("wshub.hub.client")

T = TypeVar("T")

#: How a request reads the ``result`` of its reply into a typed value (the ``parse()`` of
#: the command's result type in :mod:`wshub.hub.wire`); raises ``ValueError`` when the
#: result is not ``wshub.v1``.
Read: TypeAlias = Callable[[Mapping[str, Any]], T]
#: A reply as a request's handler sees it: the typed result, or the error it carried (a
#: :class:`~wshub.exceptions.HubError`, or a :class:`~wshub.exceptions.ProtocolError`
#: for a result that is not ``wshub.v1``).
Outcome: TypeAlias = T | WSHubError


def no_result(result: Mapping[str, Any]) -> None:
    """The reader of the empty result of ``ping``, ``unsubscribe`` and ephemeral publish."""
    return None


class OnLost(Enum):
    """What happens to a request whose connection is lost before its reply."""

    RETRY = 1  # send it again on the next connection (idempotent, or made so by message_id)
    RESOLVE = 2  # done anyway (unsubscribe: the next connection will not have the channel)
    FAIL = 3  # raise ConnectionClosedError (the connect handshake)


class Request(Generic[T]):
    """One command: its text, whether it went out on the current connection, its reply.

    Its ``future`` gets the typed result, or ``None`` when the request was settled
    without one: done anyway after a lost connection (:attr:`OnLost.RESOLVE`), or handed
    to its handler.
    """

    __slots__ = ("future", "handler", "id", "on_lost", "read", "sent", "text")

    def __init__(
        self,
        id: int,
        text: str,
        read: Read[T],
        on_lost: OnLost,
        handler: Callable[[Outcome[T]], None] | None,
    ) -> None:
        self.id = id
        self.text = text
        self.read = read
        self.on_lost = on_lost
        # Runs inside the receive path, before any later message is handled (subscribe
        # replies must take effect before the pushes that follow them).
        self.handler = handler
        self.future: asyncio.Future[T | None] = asyncio.get_running_loop().create_future()
        self.sent = False

    def resolve_lost(self, error: BaseException) -> None:
        """Settle a request that can no longer be answered, as its :class:`OnLost` says."""
        if self.future.done():
            return
        if self.on_lost is OnLost.RESOLVE:
            self.future.set_result(None)
        else:
            self.future.set_exception(error)
            self.future.exception()  # its waiter may be gone (connect timed out)

    def settle(self, reply: Reply | ErrorReply) -> None:
        """Read ``reply`` and hand it to the handler, then to the waiting caller."""
        outcome = hub_error(reply) if isinstance(reply, ErrorReply) else self._read(reply)
        result: T | None = None
        try:
            if self.handler is not None:
                self.handler(outcome)
            elif not isinstance(outcome, WSHubError):
                result = outcome
        finally:
            if self.future.done():
                pass
            elif isinstance(outcome, WSHubError) and self.handler is None:
                self.future.set_exception(outcome)
            else:
                self.future.set_result(result)

    def _read(self, reply: Reply) -> Outcome[T]:
        # parse_message() gives the raw object; None is the empty result of a Reply built
        # in this process (tests).
        result = reply.result
        try:
            return self.read(result if isinstance(result, Mapping) else {})
        except ValueError as exc:
            # A hub that breaks wshub.v1 is a bug on its side: the caller hears of it.
            logger.error("the reply to command %d: %s", self.id, exc)
            return ProtocolError(f"the reply to command {self.id}: {exc}")


class Requests:
    """The commands waiting for a reply, by request id, in the order they were made."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._pending: dict[int, Request[Any]] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def add(
        self,
        build: Callable[[int], str],
        read: Read[T],
        on_lost: OnLost,
        handler: Callable[[Outcome[T]], None] | None = None,
    ) -> Request[T]:
        """Register a command; ``build(id)`` serializes it with its request id, ``read``
        reads its reply's result."""
        id = next(self._ids)
        req = Request(id, build(id), read, on_lost, handler)
        self._pending[id] = req
        return req

    def discard(self, req: Request[Any]) -> None:
        """Forget ``req`` (answered, or its caller stopped waiting)."""
        self._pending.pop(req.id, None)

    def unsent(self) -> Iterator[Request[Any]]:
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

    def reply(self, reply: Reply | ErrorReply) -> bool:
        """Settle the request ``reply`` answers; ``False`` when no waiting request has its id."""
        req = self._pending.pop(reply.id, None) if reply.id is not None else None
        if req is None:
            return False
        req.settle(reply)
        return True
