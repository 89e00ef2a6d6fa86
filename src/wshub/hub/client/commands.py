"""The request/reply commands of ``wshub.v1`` that need no subscription bookkeeping.

:class:`HubCommands` is a base class of :class:`~wshub.hub.client.HubClient`: each command
builds its text, hands it to ``_call`` (the client sends it now or after the reconnection,
resends it after a lost reply when that is safe, and matches the reply, see
:mod:`~wshub.hub.client.requests`) and reads the result. Subscribing lives in the client
itself, because it changes the client's own state.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from wshub.hub.client.requests import OnLost
from wshub.hub.client.values import HistoryPage, Publication, TokenSource, client_info
from wshub.hub.wire import (
    ClientInfo,
    HistoryCommand,
    PingCommand,
    Position,
    PresenceCommand,
    PublishCommand,
    RefreshCommand,
)

__all__ = ["HubCommands"]


class HubCommands:
    """PublishCommand, read presence and history, refresh the token, ping."""

    #: When the token expires (seconds since the Unix epoch), or ``None``.
    expires: float | None
    _token: TokenSource

    async def _call(
        self, build: Callable[[int], str], on_lost: OnLost = OnLost.RETRY
    ) -> Mapping[str, Any]:  # pragma: no cover - HubClient implements it
        """Send a command (now, or after the reconnection) and wait for its reply."""
        raise NotImplementedError

    async def publish(self, channel: str, data: Any, message_id: str | None = None) -> int:
        """PublishCommand ``data`` (any JSON value) to ``channel``; returns its offset.

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
        """
        payload = orjson.dumps(data)
        mid = message_id if message_id is not None else uuid.uuid4().hex
        result = await self._call(lambda id: PublishCommand(id, channel, payload, mid).serialize())
        return int(result["offset"])

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
            OnLost.RESOLVE,
        )

    async def presence(self, channel: str) -> list[ClientInfo]:
        """Who is subscribed to ``channel`` now.

        Raises:
            HubError: 107, 108, 115 (presence off in this namespace).
            AuthError: no ``r`` permission (104).
        """
        result = await self._call(lambda id: PresenceCommand(id, channel).serialize())
        clients = result.get("clients") or ()
        return [info for info in map(client_info, clients) if info is not None]

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
        result = await self._call(lambda id: HistoryCommand(id, channel, limit, since).serialize())
        epoch = str(result.get("epoch", ""))
        offset = result.get("offset")
        pubs = [Publication.parse(obj, channel, epoch) for obj in result.get("publications") or ()]
        return HistoryPage(channel, Position(offset if isinstance(offset, int) else 0, epoch), pubs)

    async def _fetch_history(self, channel: str, since: Position, limit: int) -> HistoryPage:
        return await self.history(channel, since=since, limit=limit)

    async def refresh(self, token: str) -> float | None:
        """Replace the connection's token (before it expires); returns the new expiry.

        The new token is also used for later reconnections (unless the client was given a
        token callable, which stays in charge).

        Raises:
            AuthError: the token is invalid or of another user (103), or expired (113).
        """
        result = await self._call(lambda id: RefreshCommand(id, token).serialize())
        if not callable(self._token):
            self._token = token
        expires = result.get("expires")
        self.expires = float(expires) if isinstance(expires, int | float) else None
        return self.expires

    async def ping(self) -> float:
        """An application-level round trip to the hub; returns it in seconds."""
        # perf_counter, not loop.time(): uvloop's clock moves in whole milliseconds.
        start = time.perf_counter()
        await self._call(lambda id: PingCommand(id).serialize())
        return time.perf_counter() - start
