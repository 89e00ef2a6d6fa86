"""The request/reply commands of ``wshub.v1`` that need no subscription bookkeeping.

:class:`HubCommands` is a base class of :class:`~wshub.hub.client.HubClient`: each command
builds its text with the command's wire value, hands it to ``_call`` with the ``parse()`` of
its result type (the client sends it now or after the reconnection, resends it after a lost
reply when that is safe, matches the reply and reads it, see
:mod:`~wshub.hub.client.requests`) and turns the typed result into what it returns.
Subscribing lives in the client itself, because it changes the client's own state.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import orjson

from wshub.exceptions import HubError, ProtocolError
from wshub.hub.client.reconnect import Backoff
from wshub.hub.client.requests import OnLost, Read, no_result
from wshub.hub.client.values import HistoryPage, TokenSource
from wshub.hub.wire import (
    ClientInfo,
    HistoryCommand,
    HistoryResult,
    PingCommand,
    Position,
    PresenceCommand,
    PresenceResult,
    PublishCommand,
    PublishResult,
    RefreshCommand,
    RefreshResult,
)

__all__ = ["HubCommands"]

logger = logging.getLogger("wshub.hub.client")

T = TypeVar("T")


class HubCommands:
    """Publish, read presence and history, refresh the token, ping."""

    #: When the token expires (seconds since the Unix epoch), or ``None``.
    expires: float | None
    _token: TokenSource
    #: Seconds a publish refused for now (a temporary error) is retried; ``None``: forever.
    _publish_retry_time: float | None

    def _temporary_backoff(self) -> Backoff:  # pragma: no cover - HubClient implements it
        """A fresh backoff for the retries of a command the hub refused for now."""
        raise NotImplementedError

    async def _call(
        self, build: Callable[[int], str], read: Read[T], on_lost: OnLost = OnLost.RETRY
    ) -> T | None:  # pragma: no cover - HubClient implements it
        """Send a command (now, or after the reconnection) and wait for its typed result;
        ``None`` when it was done without a reply (:attr:`OnLost.RESOLVE`)."""
        raise NotImplementedError

    async def _ask(self, build: Callable[[int], str], read: Read[T]) -> T:
        """:meth:`_call` for a command that is resent until it gets its reply."""
        result = await self._call(build, read)
        assert result is not None  # OnLost.RETRY: a reply or an exception, never nothing
        return result

    async def publish(self, channel: str, data: Any, message_id: str | None = None) -> int:
        """Publish ``data`` (any JSON value) to ``channel``; returns its offset.

        Exactly one publication is made even if the connection drops before the reply:
        the publish is resent with the same ``message_id`` after reconnecting, and the hub
        answers a duplicate with the offset it assigned the first time. A publish the hub
        refuses for now (a temporary error: its Redis is down) is sent again the same way
        after a jittered backoff delay (``backoff_initial`` doubling to ``max_delay``), for
        at most ``publish_retry_time`` seconds (30 by default) before the error is raised.

        Args:
            channel: ``namespace:name``; most namespaces need a subscription first.
            data: the payload, encoded as JSON.
            message_id: 1-64 characters that identify this publication for deduplication;
                a random one by default.

        Raises:
            HubError: 107, 108, 110 (not subscribed), 111 (rate limited), 114 (too large);
                100 with ``temporary`` set when the hub kept refusing it for
                ``publish_retry_time``.
            AuthError: no ``p`` permission (104).
            TypeError: ``data`` cannot be encoded as JSON.
            ProtocolError: the hub's reply carried no offset.
        """
        payload = orjson.dumps(data)
        mid = message_id if message_id is not None else uuid.uuid4().hex
        # Refused for now (the hub's Redis is down), it is sent again with the same
        # message_id: a publish the hub stored before failing is not made twice.
        result = await self._retrying(
            f"publish to {channel}",
            lambda: self._ask(
                lambda id: PublishCommand(id, channel, payload, mid).serialize(),
                PublishResult.parse,
            ),
            self._publish_retry_time,
        )
        if result.position is None:
            raise ProtocolError(f"the reply to a publish to {channel} has no offset")
        return result.position.offset

    async def publish_ephemeral(self, channel: str, data: Any) -> None:
        """Send ``data`` to the current subscribers only (e.g. a typing indicator).

        Not stored, no offset, never recovered (docs/protocol.md §4.4.1); subscribers see
        it as a :class:`ChannelEvent` of kind ``"ephemeral"``. Not resent after a
        reconnection: a stale signal is worth nothing.

        Raises:
            HubError, AuthError: as :meth:`publish`.
        """
        payload = orjson.dumps(data)
        await self._call(
            lambda id: PublishCommand(id, channel, payload, ephemeral=True).serialize(),
            no_result,
            OnLost.RESOLVE,
        )

    async def presence(self, channel: str) -> list[ClientInfo]:
        """Who is subscribed to ``channel`` now.

        Raises:
            HubError: 107, 108, 115 (presence off in this namespace).
            AuthError: no ``r`` permission (104).
        """
        result = await self._ask(
            lambda id: PresenceCommand(id, channel).serialize(), PresenceResult.parse
        )
        return list(result.clients)

    async def history(
        self, channel: str, since: Position | None = None, limit: int = 100
    ) -> HistoryPage:
        """Read stored publications of ``channel``.

        Args:
            channel: ``namespace:name``.
            since: return the publications after this position (page on with the last
                one's position); without it, the latest ``limit``.
            limit: 1-1000 publications.

        Raises:
            HubError: 107, 108, 115 (no history in this namespace), 116 (``since`` is no
                longer available).
            AuthError: no ``r`` permission (104).
        """
        return await self._ask(
            lambda id: HistoryCommand(id, channel, limit, since).serialize(), _read_history
        )

    async def _fetch_history(self, channel: str, since: Position, limit: int) -> HistoryPage:
        """:meth:`history` for filling a subscription's gap: retried for as long as the hub
        refuses it for now (the subscription's task is cancelled if it ends meanwhile)."""
        return await self._retrying(
            f"history of {channel}", lambda: self.history(channel, since=since, limit=limit), None
        )

    async def _retrying(
        self, what: str, call: Callable[[], Awaitable[T]], limit: float | None
    ) -> T:
        """``call()`` again after a jittered backoff delay while the hub refuses it for now
        (a temporary error), for at most ``limit`` seconds (``None``: as long as it takes)."""
        backoff: Backoff | None = None
        deadline = 0.0
        while True:
            try:
                return await call()
            except HubError as exc:
                if not exc.temporary:
                    raise
                if backoff is None:
                    backoff = self._temporary_backoff()
                    deadline = math.inf if limit is None else time.monotonic() + limit
                delay = backoff.next_delay()
                if time.monotonic() + delay > deadline:
                    raise
                logger.debug("%s refused for now, retrying: %s", what, exc)
                await asyncio.sleep(delay)

    async def refresh(self, token: str) -> float | None:
        """Replace the connection's token (before it expires); returns the new expiry.

        The new token is also used for later reconnections (unless the client was given a
        token callable, which stays in charge).

        Raises:
            AuthError: the token is invalid or of another user (103), or expired (113).
        """
        result = await self._ask(
            lambda id: RefreshCommand(id, token).serialize(), RefreshResult.parse
        )
        if not callable(self._token):
            self._token = token
        self.expires = None if result.expires is None else float(result.expires)
        return self.expires

    async def ping(self) -> float:
        """An application-level round trip to the hub; returns it in seconds."""
        # perf_counter, not loop.time(): uvloop's clock moves in whole milliseconds.
        start = time.perf_counter()
        await self._call(lambda id: PingCommand(id).serialize(), no_result)
        return time.perf_counter() - start


def _read_history(result: Mapping[str, Any]) -> HistoryPage:
    # Read in the receive path, so that a result that is not wshub.v1 fails the call.
    return HistoryPage.from_wire(HistoryResult.parse(result))
