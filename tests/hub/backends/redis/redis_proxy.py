"""A TCP relay in front of a redis-server: where the Redis tests break the wire on purpose.

The hub's Redis clients connect to the relay, never to Redis directly, so a test can drop
every connection (:meth:`RedisProxy.cut`), make Redis unreachable (:meth:`RedisProxy.point_to`
``None``), point the same address at a fresh redis-server (a restart that lost the data), or
keep connections open but silent (:meth:`RedisProxy.freeze`, a half-open link), or relay
the commands but lose Redis's replies (:meth:`RedisProxy.lose_replies`: a command ran, its
client never heard of it).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class _Link:
    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream = upstream

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            writer.transport.abort()

    def freeze(self) -> None:
        for writer in (self.client, self.upstream):
            writer.transport.pause_reading()


class RedisProxy:
    """Relays loopback TCP connections to ``127.0.0.1:<port>`` (see the module docstring)."""

    def __init__(self, port: int | None) -> None:
        self.port = port
        self.accepted = 0
        self._deaf = False
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    def point_to(self, port: int | None) -> None:
        """Relay new connections to ``port``; ``None`` closes them at once (Redis is down)."""
        self.port = port

    def cut(self) -> None:
        """Drop every current connection, on both sides."""
        for link in list(self._links):
            link.abort()

    def freeze(self) -> None:
        """Stop relaying on the current connections without closing them."""
        for link in self._links:
            link.freeze()

    def lose_replies(self, lost: bool = True) -> None:
        """Relay commands to Redis but drop its replies, on every connection (Redis runs
        the commands, their clients time out); ``False`` relays the replies again."""
        self._deaf = lost

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.port is None:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            writer.transport.abort()
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer, replies=True)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._links.discard(link)
            link.abort()
            for pump in pumps:
                pump.cancel()
                self._tasks.discard(pump)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, replies: bool = False
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if replies and self._deaf:
                    continue
                writer.write(data)
                await writer.drain()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@contextlib.asynccontextmanager
async def redis_proxy(port: int | None) -> AsyncIterator[RedisProxy]:
    """A running :class:`RedisProxy` to ``port``, closed on exit."""
    proxy = RedisProxy(port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
