"""Presence in Redis, shared by every hub node, cleaned up after a crash (:class:`RedisPresence`).

One hash per channel, ``<prefix>:presence:<channel>``: field = client id, value =
``"<expires ms> <arrived µs> <ClientInfo JSON>"``. Times are Redis's own (``TIME``), so the
nodes' clocks do not matter.

Each entry expires ``ttl`` seconds after it was last written. A node rewrites the entries
of its own clients every ``heartbeat_interval`` seconds, so:

* a node that crashes (no ``remove`` for its clients) stops rewriting them, and they vanish
  from :meth:`RedisPresence.get` within ``ttl`` seconds; the hash itself expires when no
  node writes to it any more;
* a Redis that restarted empty is filled again by the next heartbeat of every node;
* an ``add`` that fails (Redis briefly unreachable) is logged and repaired by the next
  heartbeat instead of failing the subscription, which has already been confirmed to the
  client when the hub adds its presence;
* a ``remove`` that fails is kept and sent again by the heartbeat once Redis answers, so a
  client that left during an outage disappears as soon as Redis is back (not only after
  ``ttl``, which a Redis restarted from disk would otherwise wait for).

Failures are logged once per outage: a warning when the first command fails, an info after
the first real round trip to Redis that succeeds again.

The Lua scripts are ``lua/presence*.lua``. Redis 7.4 has per-field expiry (``HEXPIRE``);
the expiry kept in the value works from Redis 6.2 on and lets :meth:`~RedisPresence.get`
drop expired entries in the same script.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from wshub.exceptions import HubError, InvalidState
from wshub.hub.backends.base import DEFAULT_PREFIX
from wshub.hub.backends.redis.connection import (
    Availability,
    close_client,
    lua_script,
    redis_client,
)
from wshub.hub.wire import ClientInfo

__all__ = ["RedisPresence"]

logger = logging.getLogger("wshub.hub")

#: Entries rewritten per round trip by the heartbeat.
_BATCH = 500


def _info(raw: bytes) -> ClientInfo:
    obj = orjson.loads(raw)
    return ClientInfo(obj["client"], obj["user"], obj.get("meta"))


class RedisPresence:
    """A :class:`~wshub.hub.backends.base.PresenceStore` in Redis, shared by every hub node.

    Args:
        redis: a Redis URL (the store then owns its client) or a client to share (not
            closed by :meth:`close`).
        prefix: the first part of every key.
        ttl: seconds an entry lives without being rewritten: how long the clients of a
            crashed node stay listed at most.
        heartbeat_interval: seconds between rewrites of this node's entries; well below
            ``ttl`` so that one late or failed heartbeat does not drop live clients.

    Raises:
        ValueError: ``heartbeat_interval`` is not positive or not below ``ttl``.
    """

    def __init__(
        self,
        redis: str | Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        ttl: float = 30.0,
        heartbeat_interval: float = 10.0,
    ) -> None:
        if not 0 < heartbeat_interval < ttl:
            raise ValueError("need 0 < heartbeat_interval < ttl")
        self._owns_client = isinstance(redis, str)
        self._client = redis_client(redis) if isinstance(redis, str) else redis
        self._prefix = prefix
        self._ttl_ms = str(max(1, round(ttl * 1000)))
        self._interval = heartbeat_interval
        register = self._client.register_script
        self._add = register(lua_script("presence", "presence_add"))
        self._remove = register(lua_script("presence", "presence_remove"))
        self._get = register(lua_script("presence", "presence_get"))
        # This node's entries, rewritten by the heartbeat: channel -> client -> info JSON.
        self._local: dict[str, dict[str, bytes]] = {}
        # Removals that failed (Redis unavailable), sent again by the heartbeat.
        self._removals: dict[str, set[str]] = {}
        self._heartbeat: asyncio.Task[None] | None = None
        self._health = Availability(logger, "presence")
        self._closed = False

    def _key(self, channel: str) -> str:
        return f"{self._prefix}:presence:{channel}"

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidState("presence store is closed")

    async def add(self, channel: str, info: ClientInfo) -> None:
        self._check_open()
        encoded = info.encode()
        self._local.setdefault(channel, {})[info.client] = encoded
        self._forget_removal(channel, info.client)
        self._start_heartbeat()
        try:
            await self._add([self._key(channel)], [info.client, encoded, self._ttl_ms])
        except RedisError as exc:
            # The heartbeat writes it as soon as Redis answers again.
            self._health.failed(exc)
            return
        self._health.succeeded()

    async def remove(self, channel: str, client: str) -> bool:
        self._check_open()
        entries = self._local.get(channel)
        was_local = entries is not None and entries.pop(client, None) is not None
        if entries is not None and not entries:
            del self._local[channel]
        try:
            removed = await self._remove([self._key(channel)], [client])
        except RedisError as exc:
            # No longer rewritten, the entry expires within ttl; the heartbeat removes it as
            # soon as Redis answers again.
            self._health.failed(exc)
            self._removals.setdefault(channel, set()).add(client)
            self._start_heartbeat()
            return was_local
        self._health.succeeded()
        return bool(removed)

    async def get(self, channel: str) -> list[ClientInfo]:
        self._check_open()
        try:
            live: list[bytes] = await self._get([self._key(channel)], [])
        except RedisError as exc:
            raise self._health.failed(exc) from exc
        self._health.succeeded()
        entries = sorted(zip(live[0::2], live[1::2], strict=True), key=lambda e: int(e[0]))
        return [_info(raw) for _, raw in entries]

    def _start_heartbeat(self) -> None:
        if self._heartbeat is None:
            self._heartbeat = asyncio.get_running_loop().create_task(self._beat())

    def _forget_removal(self, channel: str, client: str) -> None:
        pending = self._removals.get(channel)
        if pending is not None:
            pending.discard(client)
            if not pending:
                del self._removals[channel]

    async def refresh(self) -> None:
        """Rewrite this node's entries and send the removals that failed (the heartbeat).

        With nothing to write, Redis is asked only while it was unavailable (a ``PING``):
        recovery is reported after a real round trip, never assumed.

        Raises:
            HubError: Redis failed (code 100, temporary).
        """
        self._check_open()
        entries = [
            (channel, client, raw)
            for channel, clients in self._local.items()
            for client, raw in clients.items()
        ]
        removals = [
            (channel, client) for channel, clients in self._removals.items() for client in clients
        ]
        if not entries and not removals and self._health.up:
            return
        try:
            if not entries and not removals:
                await self._client.ping()
            for start in range(0, len(entries), _BATCH):
                async with self._client.pipeline(transaction=False) as pipe:
                    for channel, client, raw in entries[start : start + _BATCH]:
                        await self._add([self._key(channel)], [client, raw, self._ttl_ms], pipe)
                    await pipe.execute()
            for start in range(0, len(removals), _BATCH):
                async with self._client.pipeline(transaction=False) as pipe:
                    for channel, client in removals[start : start + _BATCH]:
                        await self._remove([self._key(channel)], [client], pipe)
                    await pipe.execute()
        except RedisError as exc:
            raise self._health.failed(exc) from exc
        for channel, client in removals:
            if client not in self._local.get(channel, ()):
                self._forget_removal(channel, client)
        self._health.succeeded()

    async def _beat(self) -> None:
        # The closed check, not only close()'s cancel, ends the loop: redis-py can swallow a
        # cancellation that lands inside a command, and close() waits for this task.
        while not self._closed:
            await asyncio.sleep(self._interval)
            if self._closed:
                return
            try:
                await self.refresh()
            except HubError:
                pass  # logged once by refresh; the next beat retries
            except InvalidState:
                return  # closed while the beat was writing
            except Exception:
                logger.exception("presence heartbeat failed")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        self._local.clear()
        self._removals.clear()
        if self._owns_client:
            await close_client(self._client)
