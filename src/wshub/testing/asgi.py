"""A real uvicorn server in the test's event loop, for ASGI applications such as the hub's.

``uvicorn`` (``pip install 'wshub[asgi]'``) is imported when a server starts.
"""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import uvicorn

__all__ = ["UvicornServer"]


class UvicornServer:
    """uvicorn serving ``app`` on a loopback port, in the running event loop; restartable.

    ``start()`` listens on a free port the first time and on the same port after ``stop()``,
    so that clients reconnect to a restarted server as they would in production::

        async with UvicornServer(app) as server:
            url = f"ws://127.0.0.1:{server.port}/hub/ws"

    Args:
        app: the ASGI application.
        **config: more ``uvicorn.Config`` options (default: ``log_level="warning"``,
            ``lifespan="on"``).
    """

    def __init__(self, app: Any, **config: Any) -> None:
        self.app = app
        self.config: dict[str, Any] = {"log_level": "warning", "lifespan": "on", **config}
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT/``."""
        return f"http://127.0.0.1:{self.port}/"

    async def start(self) -> None:
        """Listen (on the same port as before, after a stop) and run the app's startup.

        Raises:
            RuntimeError: uvicorn stopped before it started (its log says why).
        """
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # The port of a stopped server may still have connections in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", self.port))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(self.app, **self.config))
        task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
        self._server, self._task = server, task
        # uvicorn says it has started with a flag, not an event: look at it between turns.
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if task.done():
            self._server = self._task = None
            sock.close()
            await task
            raise RuntimeError("uvicorn stopped before it started")

    async def stop(self) -> None:
        """uvicorn's graceful shutdown: open WebSockets get 1012, then the lifespan ends."""
        server, task = self._server, self._task
        if server is not None and task is not None:
            self._server = self._task = None
            server.should_exit = True
            await task

    async def __aenter__(self) -> UvicornServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
