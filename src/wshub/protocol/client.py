"""The client side of the opening handshake (RFC 6455 §4.1).

:class:`ClientHandshake` builds the upgrade request and checks the server's response.
Nothing here does I/O: the transport sends :meth:`ClientHandshake.request_bytes`, parses
the answer with :class:`~wshub.protocol.http11.ResponseParser` and calls
:meth:`ClientHandshake.validate`.
"""

from __future__ import annotations

import base64
import secrets
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence

from wshub.exceptions import InvalidResponse, NegotiationError
from wshub.protocol import speedups
from wshub.protocol.extensions.base import ClientExtensionFactory, Extension
from wshub.protocol.headers import (
    ExtensionParam,
    Headers,
    parse_extensions,
    parse_tokens,
    serialize_extension,
)
from wshub.protocol.http11 import Request, Response
from wshub.protocol.mask import new_mask
from wshub.protocol.server import Accepted, accept_key
from wshub.protocol.speedups import apply_mask
from wshub.protocol.uri import WebSocketURI

__all__ = ["ClientHandshake", "frame_message_masked", "frame_message_masked_python"]

# Frame headers of whole, masked text (0x81) and binary (0x82) messages (RFC 6455 §5.2):
# FIN and the opcode, then the mask bit and the length, 7 bits or the 126/127 escapes.
_SHORT_HEADERS = {op: [bytes((op, 0x80 | n)) for n in range(126)] for op in (0x81, 0x82)}
_pack16 = struct.Struct("!BBH").pack
_pack64 = struct.Struct("!BBQ").pack


def frame_message_masked_python(message: str | bytes) -> bytes:
    """Frame a whole message as a client sends it when no extension was negotiated.

    One masked frame with a fresh key (RFC 6455 §5.1, §5.3): text for ``str``, binary for
    bytes-like objects. It is the bytes :meth:`Connection.send
    <wshub.protocol.connection.Connection.send>` writes on a client connection without
    extensions, built with table lookups instead of the general frame builder, because
    a client sends every message through here.
    """
    if type(message) is bytes:
        opcode = 0x82
        payload = message
    elif isinstance(message, str):
        opcode = 0x81
        payload = message.encode("utf-8")
    else:
        opcode = 0x82
        payload = bytes(message)
    n = len(payload)
    if n < 126:
        head = _SHORT_HEADERS[opcode][n]
    elif n < 65536:
        head = _pack16(opcode, 0xFE, n)
    else:
        head = _pack64(opcode, 0xFF, n)
    mask = new_mask()
    return b"".join((head, mask, apply_mask(payload, mask)))


# Headers the caller's additional_headers replace rather than repeat.
_REPLACEABLE = ("Host", "Origin", "User-Agent", "Authorization")


class ClientHandshake:
    """One client opening handshake: the request to send and the check of the answer."""

    __slots__ = ("_factories", "_request", "_subprotocols", "key", "uri")

    def __init__(
        self,
        uri: WebSocketURI,
        *,
        subprotocols: Sequence[str] | None = None,
        extensions: Sequence[ClientExtensionFactory] = (),
        origin: str | None = None,
        additional_headers: Iterable[tuple[str, str]] | Mapping[str, str] | None = None,
        user_agent: str | None = "wshub/0.1",
        key: str | None = None,
    ) -> None:
        """Prepare the request.

        Args:
            uri: where to connect.
            subprotocols: subprotocols to offer, in our order of preference.
            extensions: extension factories, each making one offer, in preference order.
            origin: the ``Origin`` header, for servers that check it.
            additional_headers: more request headers; a ``Host``, ``Origin``,
                ``User-Agent`` or ``Authorization`` among them replaces ours.
            user_agent: the ``User-Agent`` header; ``None`` to omit it.
            key: the ``Sec-WebSocket-Key``; random by default (fixed only in tests).

        Raises:
            ValueError: a header name or value is invalid.
        """
        self.uri = uri
        # RFC 6455 §4.1: a nonce of 16 random bytes, base64-encoded, new for each
        # connection.
        self.key = key if key is not None else base64.b64encode(secrets.token_bytes(16)).decode()
        self._subprotocols = list(subprotocols or ())
        self._factories = list(extensions)

        extra = Headers(additional_headers or ())
        headers = Headers()
        defaults = [("Host", uri.host_header)]
        if origin is not None:
            defaults.append(("Origin", origin))
        if user_agent is not None:
            defaults.append(("User-Agent", user_agent))
        if uri.user_info is not None:
            # RFC 7617: user:password from the URI becomes Basic authentication.
            credentials = ":".join(uri.user_info).encode()
            defaults.append(("Authorization", "Basic " + base64.b64encode(credentials).decode()))
        for name, value in defaults:
            if name not in extra:
                headers.add(name, value)
        headers.add("Upgrade", "websocket")
        headers.add("Connection", "Upgrade")
        headers.add("Sec-WebSocket-Key", self.key)
        headers.add("Sec-WebSocket-Version", "13")
        if self._factories:
            offers = [serialize_extension(f.name, f.offer()) for f in self._factories]
            headers.add("Sec-WebSocket-Extensions", ", ".join(offers))
        if self._subprotocols:
            headers.add("Sec-WebSocket-Protocol", ", ".join(self._subprotocols))
        for name, value in extra:
            headers.add(name, value)
        self._request = Request("GET", uri.path, headers)

    @property
    def request(self) -> Request:
        """The upgrade request."""
        return self._request

    def request_bytes(self) -> bytes:
        """The upgrade request, serialized."""
        return self._request.serialize()

    def validate(self, response: Response) -> Accepted:
        """Check the server's response (RFC 6455 §4.1, "the client MUST validate").

        Returns:
            The negotiated subprotocol and extension instances.

        Raises:
            InvalidResponse: not a valid 101 for our request; ``status`` is the status
                the server answered with.
            NegotiationError: the server chose a subprotocol or extension we did not
                offer, or answered an offer with parameters we cannot accept.
        """
        headers = response.headers
        status = response.status
        if status != 101:
            raise InvalidResponse(f"server answered {status} instead of 101", status)
        if not any(v.lower() == "websocket" for v in parse_tokens(headers.get_all("Upgrade"))):
            raise InvalidResponse("missing Upgrade: websocket", status)
        if not any(v.lower() == "upgrade" for v in parse_tokens(headers.get_all("Connection"))):
            raise InvalidResponse("missing Connection: Upgrade", status)
        if headers.get_all("Sec-WebSocket-Accept") != [accept_key(self.key)]:
            raise InvalidResponse("invalid Sec-WebSocket-Accept", status)
        return Accepted(response, self._check_subprotocol(headers), self._check_extensions(headers))

    def _check_subprotocol(self, headers: Headers) -> str | None:
        values = parse_tokens(headers.get_all("Sec-WebSocket-Protocol"))
        if not values:
            return None
        # RFC 6455 §4.1 item 6: exactly one of the subprotocols we offered.
        if len(values) > 1:
            raise NegotiationError("server selected several subprotocols")
        if values[0] not in self._subprotocols:
            raise NegotiationError("server selected a subprotocol we did not offer")
        return values[0]

    def _check_extensions(self, headers: Headers) -> list[Extension]:
        try:
            answers = parse_extensions(headers.get_all("Sec-WebSocket-Extensions"))
        except ValueError:
            raise InvalidResponse("invalid Sec-WebSocket-Extensions header", 101) from None
        accepted: list[Extension] = []
        seen: set[str] = set()
        # RFC 6455 §4.1 item 5: only extensions we offered, each at most once.
        for name, params in answers:
            if name in seen:
                raise NegotiationError(f"server accepted {name} twice")
            seen.add(name)
            accepted.append(self._accept_extension(name, params))
        return accepted

    def _accept_extension(self, name: str, params: list[ExtensionParam]) -> Extension:
        # With several offers of one extension, the response answers one of them: the
        # first factory of that name that accepts the parameters is the one.
        error = NegotiationError(f"server accepted {name}, which we did not offer")
        for factory in self._factories:
            if factory.name == name:
                try:
                    return factory.accept(params)
                except NegotiationError as exc:
                    error = exc
        raise error


#: The compiled builder when it is built (same bytes but for the random key), else the above.
frame_message_masked: Callable[[str | bytes], bytes] = (
    speedups.frame_message_masked or frame_message_masked_python
)
