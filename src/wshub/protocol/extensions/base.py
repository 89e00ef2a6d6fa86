"""The interfaces between extensions, the handshake and the frame layer (RFC 6455 §9).

A factory takes part in the opening handshake and, when negotiation succeeds, creates an
:class:`Extension` instance that lives as long as the connection. The frame layer calls
the instance for every message; the handshake code only talks to the factories.

The only extension wshub ships is permessage-deflate, so the data interface is the one a
per-message compression extension needs (RFC 7692 §6): whole messages are compressed,
and the payloads of a compressed message — the frames after one with RSV1 set — are
decompressed frame by frame, in bounded pieces, with a bound on the output.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from wshub.protocol.headers import ExtensionParam

__all__ = ["ClientExtensionFactory", "Extension", "ServerExtensionFactory"]


class Extension(Protocol):
    """A negotiated extension, one instance per connection."""

    # Empty slots keep implementations that declare __slots__ free of a __dict__.
    __slots__ = ()

    #: The extension token, e.g. ``"permessage-deflate"``.
    name: str

    def decompress(self, data: bytes, *, fin: bool, max_size: int | None) -> bytes:
        """Decompress the payload of one data frame of a compressed message.

        Args:
            data: the frame's payload.
            fin: whether this frame ends the message.
            max_size: how many bytes this call may produce at most; ``None`` for no limit.

        Raises:
            PayloadTooBig: the output would exceed ``max_size``; the extension stops
                before producing more than ``max_size + 1`` bytes.
            ProtocolError: the data is corrupt (close code 1007).
        """
        ...

    def inflate(self, data: bytes, *, fin: bool, max_size: int | None) -> Iterator[bytes]:
        """Like :meth:`decompress`, in bounded pieces the caller can buffer one by one.

        Raises:
            PayloadTooBig: the output would exceed ``max_size``; raised before the
                piece that would cross it, so at most ``max_size`` bytes were yielded.
            ProtocolError: the data is corrupt (close code 1007).
        """
        ...

    def compress(self, data: bytes) -> bytes:
        """Compress one whole message; the caller sets RSV1 on its first frame."""
        ...

    def release_idle(self) -> bool:
        """Free state that can be rebuilt if nothing was sent since the last call.

        Called now and then on a quiet connection (the aio layer does it at each keepalive
        ping); returns whether anything was freed.
        """
        ...


class ServerExtensionFactory(Protocol):
    """Negotiates an extension on the server side of the handshake."""

    # Empty slots keep implementations that declare __slots__ free of a __dict__.
    __slots__ = ()

    #: The extension token this factory answers to.
    name: str

    def accept(
        self, offer_params: list[ExtensionParam]
    ) -> tuple[list[ExtensionParam], Extension] | None:
        """Consider one offer from the client.

        Returns:
            ``None`` when this offer is not acceptable (the next offer is tried), else the
            parameters of the response and the extension instance for the connection.
        """
        ...


class ClientExtensionFactory(Protocol):
    """Negotiates an extension on the client side of the handshake."""

    # Empty slots keep implementations that declare __slots__ free of a __dict__.
    __slots__ = ()

    #: The extension token this factory offers.
    name: str

    def offer(self) -> list[ExtensionParam]:
        """Return the parameters of our offer."""
        ...

    def accept(self, response_params: list[ExtensionParam]) -> Extension:
        """Check the server's response to our offer and create the extension instance.

        Raises:
            NegotiationError: the response does not fit our offer.
        """
        ...
