"""The request/reply commands of ``wshub.v1`` that need no subscription bookkeeping.

:class:`HubCommands` is a base class of :class:`~wshub.hub.client.HubClient`: each command
builds its text with the command's wire value, hands it to ``_call`` with the ``parse()`` of
its result type (the client sends it now or after the reconnection, resends it after a lost
reply when that is safe, matches the reply and reads it, see
:mod:`~wshub.hub.client.requests`) and turns the typed result into what it returns.
Subscribing lives in the client itself, because it changes the client's own state.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import orjson

from wshub.exceptions import ProtocolError
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

T = TypeVar("T")


class HubCommands:
    """Publish, read presence and history, refresh the token, ping."""

    #: When the token expires (seconds since the Unix epoch), or ``None``.
    expires: float | None
    _token: TokenSource

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
        answers a duplicate with the offset it assigned the first time.

        Args:
            channel: ``namespace:name``; most namespaces need a subscription first.
            data: the payload, encoded as JSON.
            message_id: 1-64 characters that identify this publication for deduplication;
                a random one by default.

        Raises:
            HubError: 107, 108, 110 (not subscribed), 111 (rate limited), 114 (too large).
            AuthError: no ``p`` permission (104).
            TypeError: ``data`` cannot be encoded as JSON.
            ProtocolError: the hub's reply carried no offset.
        """
        payload = orjson.dumps(data)
        mid = message_id if message_id is not None else uuid.uuid4().hex
        result = await self._ask(
            lambda id: PublishCommand(id, channel, payload, mid).serialize(), PublishResult.parse
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
        return await self.history(channel, since=since, limit=limit)

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
