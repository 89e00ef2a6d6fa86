"""The one exception hierarchy of wshub.

Every exception that wshub raises on purpose derives from :class:`WSHubError`,
so ``except WSHubError`` catches all of them and nothing else::

    WSHubError
    ├── ProtocolError              the peer broke RFC 6455 / RFC 7692 (carries the close code)
    │   └── PayloadTooBig          a message or frame went over ``max_size`` (code 1009)
    ├── InvalidHandshake           the opening handshake failed
    │   ├── InvalidRequest         a server refused a client's request (carries the HTTP status)
    │   ├── InvalidResponse        a client refused a server's response (carries the status)
    │   └── NegotiationError       subprotocol or extension negotiation failed
    ├── ConnectionClosed           the connection is closed; carries code and reason
    │   ├── ConnectionClosedOK     ... after a normal close handshake (1000 / 1001)
    │   └── ConnectionClosedError  ... abnormally, or with an error code
    ├── InvalidState               local code used an object in the wrong state (our misuse)
    ├── InvalidURI                 ``connect()`` was given a URL it cannot use
    ├── ConfigError                a configuration is invalid (carries one line per field)
    └── HubError                   the hub refused a command (carries code and message)
        └── AuthError              a token was missing, invalid, expired or under-privileged

Peer errors (``ProtocolError``, ``InvalidHandshake``, ``ConnectionClosedError``) are
separated from local misuse (``InvalidState``) so that callers can tell "the other
side broke it" from "you closed it".
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "ConfigError",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "HubError",
    "InvalidHandshake",
    "InvalidRequest",
    "InvalidResponse",
    "InvalidState",
    "InvalidURI",
    "NegotiationError",
    "PayloadTooBig",
    "ProtocolError",
    "WSHubError",
]


class WSHubError(Exception):
    """Base class of every exception wshub raises on purpose."""


class ProtocolError(WSHubError):
    """The peer violated the WebSocket protocol.

    Attributes:
        code: the close code to send (1002 protocol error, 1007 invalid data,
            1009 too big, 1003 unsupported data).
    """

    def __init__(self, reason: str, code: int = 1002) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class PayloadTooBig(ProtocolError):
    """A message or frame exceeded ``max_size`` (RFC 6455 §7.4.1, code 1009)."""

    def __init__(self, reason: str = "message too big") -> None:
        super().__init__(reason, 1009)


class InvalidHandshake(WSHubError):
    """The opening handshake failed."""


class InvalidRequest(InvalidHandshake):
    """A client's upgrade request was refused.

    Attributes:
        status: the HTTP status to answer with (400, 403, 426, 503, ...).
        reason: a short, safe text for the response body.
        headers: extra response headers (``Sec-WebSocket-Version`` for 426).
    """

    def __init__(
        self, status: int, reason: str, headers: list[tuple[str, str]] | None = None
    ) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason
        self.headers = headers or []


class InvalidResponse(InvalidHandshake):
    """A server's handshake response was refused by the client.

    Attributes:
        status: the HTTP status the server answered with (0 if unparsable).
    """

    def __init__(self, reason: str, status: int = 0) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class NegotiationError(InvalidHandshake):
    """Subprotocol or extension negotiation failed."""


class ConnectionClosed(WSHubError):
    """The connection is closed.

    Attributes:
        code: close code received from the peer, or 1006 when no close frame arrived.
        reason: close reason received from the peer.
        rcvd_then_sent: whether the peer started the close handshake.
    """

    def __init__(self, code: int, reason: str, *, rcvd_then_sent: bool | None = None) -> None:
        super().__init__(f"connection closed: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason
        self.rcvd_then_sent = rcvd_then_sent


class ConnectionClosedOK(ConnectionClosed):
    """The connection was closed cleanly (1000 or 1001)."""


class ConnectionClosedError(ConnectionClosed):
    """The connection was closed abnormally or with an error code."""


class InvalidState(WSHubError):
    """Local code called an operation that the current state does not allow."""


class InvalidURI(WSHubError):
    """A URL given to ``connect()`` is not a usable ``ws://`` or ``wss://`` URL."""


class ConfigError(WSHubError, ValueError):
    """A configuration is invalid: options of a transport, of a hub, of a config file.

    Also a :class:`ValueError`, so that code that caught the ``ValueError`` of an invalid
    option keeps working.

    Attributes:
        errors: one line per problem, each naming the field first
            (``namespaces[1].history_size: must be >= 0``).
    """

    def __init__(self, errors: list[str] | tuple[str, ...]) -> None:
        self.errors = tuple(errors)
        super().__init__("; ".join(self.errors))

    @classmethod
    def check(cls, errors: list[str]) -> None:
        """Raise a :class:`ConfigError` of ``errors`` unless the list is empty."""
        if errors:
            raise cls(errors)

    def within(self, path: str) -> ConfigError:
        """The same errors with ``path`` (``namespaces[1]``) in front of each field."""
        return ConfigError([f"{path}.{error}" for error in self.errors])


class HubError(WSHubError):
    """The hub refused a command.

    Attributes:
        code: the hub error code (see docs/protocol.md).
        message: a short, safe explanation.
        temporary: the refusal is due to a passing condition (the broker or Redis is
            unavailable): the same command may succeed later, and a client retries it.
    """

    def __init__(
        self, code: int, message: str, *, channel: str | None = None, temporary: bool = False
    ) -> None:
        super().__init__(f"{code}: {message}" + (" (temporary)" if temporary else ""))
        self.code = code
        self.message = message
        self.channel = channel
        self.temporary = temporary


class AuthError(HubError):
    """A token was missing, malformed, forged, expired or lacks a permission."""
