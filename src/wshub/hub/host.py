"""What a :class:`~wshub.hub.session.Session` needs from the node that hosts it.

A session handles one connection's commands; everything that is about more than that
connection (the channel table, publishing, presence, history, the per-user connection
count, background tasks) it asks of its host through this small protocol, by public names.
:class:`~wshub.hub.Hub` is the host in production; a test can host sessions with a fake
one (tests/hub/test_session.py does), as it gives them a fake peer.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from wshub.hub.auth import Authenticator
from wshub.hub.backends import AppendResult
from wshub.hub.channels import ChannelRegistry, NamespaceOptions
from wshub.hub.limits import HubLimits
from wshub.hub.stats import HubStats
from wshub.hub.wire import ClientInfo, Position, StoredPublication, SubscribeResult

if TYPE_CHECKING:
    from wshub.hub.session import Session
    from wshub.hub.subscription import SessionSubscription

__all__ = ["SessionHost"]


@runtime_checkable
class SessionHost(Protocol):
    """The node a session runs on (``Hub`` implements it).

    Attributes:
        registry: the namespaces and their options.
        auth: verifies tokens.
        limits: per-connection limits.
        stats: counters the session updates (commands refused, drops, ...).
        clock: wall-clock seconds (token expiry).
        monotonic: monotonic seconds (rate limits).
    """

    registry: ChannelRegistry
    auth: Authenticator
    limits: HubLimits
    stats: HubStats
    clock: Callable[[], float]
    monotonic: Callable[[], float]

    def count_user(self, user: str) -> None:
        """Count one more connection of ``user``.

        Raises:
            HubError: 112, the user is at ``max_connections_per_user``.
        """
        ...

    def release_user(self, user: str) -> None:
        """Count one connection of ``user`` less."""
        ...

    async def attach(
        self, sub: SessionSubscription, since: Position | None, recent: int
    ) -> tuple[SubscribeResult, Position]:
        """Add ``sub`` to its channel (buffering) and read what it must receive first.

        Returns:
            The subscribe reply's result, and the position ``sub`` goes live at.
        """
        ...

    def detach(self, sub: SessionSubscription) -> None:
        """Remove ``sub`` from its channel: nothing of it is fed to ``sub`` afterwards."""
        ...

    async def announce_join(self, sub: SessionSubscription) -> None:
        """Presence and ``join`` for a subscription that just went live."""
        ...

    async def announce_leave(self, sub: SessionSubscription) -> None:
        """Presence and ``leave`` for a subscription that ended. Never raises."""
        ...

    async def publish_encoded(
        self,
        channel: str,
        options: NamespaceOptions,
        data: bytes,
        info: bytes | None,
        message_id: str | None,
    ) -> AppendResult:
        """Store and fan out a publication whose data (and info) are encoded JSON."""
        ...

    async def publish_ephemeral_encoded(
        self, channel: str, data: bytes, info: bytes | None
    ) -> None:
        """Fan out a publication without storing it."""
        ...

    async def presence(self, channel: str) -> list[ClientInfo]:
        """Who is subscribed to ``channel`` (errors as :meth:`Hub.presence`)."""
        ...

    async def history(
        self, channel: str, *, limit: int = 100, since: Position | None = None
    ) -> tuple[Sequence[StoredPublication], Position]:
        """A page of ``channel``'s history (errors as :meth:`Hub.history`)."""
        ...

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` in the background; the host waits for it when it closes."""
        ...

    def session_closed(self, session: Session) -> None:
        """``session`` has ended and cleaned up: forget it."""
        ...
