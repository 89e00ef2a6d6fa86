"""Fixtures for the hub tests.

``FakePeer`` stands in for the transport edge (what ``wshub.aio.ServerConnection`` gives a
session): it records what the hub writes and lets a test make the connection slow
(``writable = False``) or dead. The hub, sessions, stores and broker are the real ones.
"""

from __future__ import annotations

import asyncio
import itertools
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest

from wshub.apps.chat import DEMO_ANONYMOUS_PERMISSIONS, demo_config
from wshub.exceptions import ConnectionClosedError
from wshub.hub import Authenticator, ChannelRegistry, Hub
from wshub.hub.server import HubServer, start_hub
from wshub.hub.session import Session
from wshub.protocol import PreparedMessage


class FakePeer:
    """A connection that records what it is sent."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.closed = asyncio.Event()
        self._writable = True
        self._drained = asyncio.Event()
        self._drained.set()
        self._changed = asyncio.Event()
        self.dead = False
        self.corks = 0
        #: The messages a fan-out gave this peer framed once for all its subscribers.
        self.shared: list[PreparedMessage] = []

    @property
    def writable(self) -> bool:
        return self._writable

    @writable.setter
    def writable(self, value: bool) -> None:
        self._writable = value
        if value:
            self._drained.set()
        else:
            self._drained.clear()

    def cork(self) -> None:
        """Nothing to hold: messages are recorded as they are sent, in order (and counted)."""
        self.corks += 1

    def send_nowait(self, message: str | bytes) -> None:
        if self.dead or self.close_code is not None:
            raise ConnectionClosedError(1006, "")
        assert isinstance(message, str)
        self.sent.append(message)
        self._changed.set()

    def send_prepared_nowait(self, prepared: PreparedMessage) -> None:
        """A fan-out's shared message: recorded as sent, and counted as shared."""
        self.cork()
        self.shared.append(prepared)
        assert isinstance(prepared.message, str)
        self.send_nowait(prepared.message)

    async def drain(self) -> None:
        await self._drained.wait()
        if self.dead:
            raise ConnectionClosedError(1006, "")

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.close_code is None:
            self.close_code = code
            self.close_reason = reason
        self.closed.set()
        self._changed.set()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait (without a timeout of our own) until ``predicate()`` holds after a write."""
        while not predicate():
            self._changed.clear()
            await self._changed.wait()

    def messages(self) -> list[dict[str, Any]]:
        return [orjson.loads(m) for m in self.sent]

    def pushes(self, kind: str | None = None, channel: str | None = None) -> list[dict[str, Any]]:
        return [
            m
            for m in self.messages()
            if "push" in m
            and (kind is None or m["push"] == kind)
            and (channel is None or m["channel"] == channel)
        ]


class Client:
    """Drives one session the way a client would, through the wire format."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.peer = FakePeer()
        self.session: Session = hub.session(self.peer)
        self._ids = itertools.count(1)

    async def send(self, message: str | bytes) -> None:
        await self.session.handle(message)

    async def call(self, cmd: str, **fields: Any) -> dict[str, Any]:
        """Send a command and return its reply (``{"result": ...}`` or ``{"error": ...}``)."""
        command_id = next(self._ids)
        await self.send(orjson.dumps({"id": command_id, "cmd": cmd, **fields}).decode())
        for message in self.peer.messages():
            if message.get("id") == command_id:
                return message
        raise AssertionError(f"no reply to {cmd} #{command_id}")

    async def ok(self, cmd: str, **fields: Any) -> dict[str, Any]:
        """Send a command that must succeed; return its result."""
        answer = await self.call(cmd, **fields)
        assert "result" in answer, answer
        result: dict[str, Any] = answer["result"]
        return result

    async def error(self, cmd: str, **fields: Any) -> int:
        """Send a command that must fail; return the error code."""
        answer = await self.call(cmd, **fields)
        assert "error" in answer, answer
        code: int = answer["error"]["code"]
        return code

    def pubs(self, channel: str) -> list[dict[str, Any]]:
        return self.peer.pushes("pub", channel)

    async def lost(self) -> None:
        """The connection dies."""
        self.peer.dead = True
        await self.session.connection_lost()


MakeClient = Callable[..., Awaitable[Client]]


@pytest.fixture
def make_client() -> MakeClient:
    """``await make_client(hub, token=None, meta=None, connect=True)`` -> a :class:`Client`."""

    async def make(
        hub: Hub, *, token: str | None = None, meta: Any = None, connect: bool = True
    ) -> Client:
        client = Client(hub)
        if connect:
            fields: dict[str, Any] = {}
            if token is not None:
                fields["token"] = token
            if meta is not None:
                fields["meta"] = meta
            await client.ok("connect", **fields)
        return client

    return make


API_KEY = "test-api-key"
SECRET = "hub-server-tests-secret-0123456789abcdef"


@pytest.fixture
async def hub_server() -> AsyncIterator[HubServer]:
    """A hub listening on a free loopback port: in-memory history, anonymous allowed."""
    server = await start_demo_hub(
        "127.0.0.1",
        0,
        ephemeral=True,
        allow_anonymous=True,
        secret=SECRET,
        api_key=API_KEY,
        compression=None,
    )
    try:
        yield server
    finally:
        await server.close()


async def http(
    server: HubServer,
    method: str,
    path: str,
    body: Any = None,
    *,
    key: str | None = API_KEY,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    """Send one real HTTP/1.1 request to ``server``; returns status, headers, body (JSON
    decoded when it is JSON)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}{path}",
        method=method,
        data=raw if raw is not None else (None if body is None else orjson.dumps(body)),
        headers={**({"Authorization": f"Bearer {key}"} if key else {}), **(headers or {})},
    )

    def call() -> tuple[int, dict[str, str], bytes]:
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, dict(error.headers), error.read()

    status, response_headers, content = await asyncio.to_thread(call)
    if response_headers.get("Content-Type") == "application/json" and content:
        return status, response_headers, orjson.loads(content)
    return status, response_headers, content


# The library's defaults have no namespace and no anonymous user; most tests here run on the
# chat demo's configuration (its namespaces chat, ticker and board, and its anonymous
# permissions), which the chat app owns.
#: ``start_hub`` keywords for the demo's namespaces and anonymous permissions.
DEMO: dict[str, Any] = {"anonymous_permissions": DEMO_ANONYMOUS_PERMISSIONS}


def demo_registry() -> ChannelRegistry:
    """The chat demo's namespaces."""
    return demo_config().registry()


def demo_auth(**options: Any) -> Authenticator:
    """An authenticator that lets anonymous users in with the demo's permissions."""
    return Authenticator(
        **{"allow_anonymous": True, "anonymous_permissions": DEMO_ANONYMOUS_PERMISSIONS, **options}
    )


def demo_hub(**options: Any) -> Hub:
    """A :class:`Hub` on the demo's namespaces (and anonymous users unless ``auth=``)."""
    options.setdefault("registry", demo_registry())
    options.setdefault("auth", demo_auth())
    return Hub(**options)


async def start_demo_hub(*args: Any, **options: Any) -> HubServer:
    """``start_hub`` on the demo's namespaces and anonymous permissions (a caller's
    ``hub=`` has its own)."""
    if "hub" not in options:
        options.setdefault("registry", demo_registry())
        for key, value in DEMO.items():
            options.setdefault(key, value)
    return await start_hub(*args, **options)
