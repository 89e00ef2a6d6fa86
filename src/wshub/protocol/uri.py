"""WebSocket URIs (RFC 6455 §3).

``ws-URI = "ws:" "//" host [ ":" port ] path [ "?" query ]``, and ``wss:`` alike.
Fragments are forbidden; the resource name is the path and the query.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from wshub.exceptions import InvalidURI

__all__ = ["WebSocketURI", "parse_uri"]

_DEFAULT_PORTS = {False: 80, True: 443}
# Characters left alone when quoting a resource name: those that may appear unescaped
# in a path or query (RFC 3986 §3.3-3.4), plus "%" so existing escapes are kept.
_SAFE = "/?:@!$&'()*+,;=%"


@dataclass(frozen=True, slots=True)
class WebSocketURI:
    """A parsed ``ws://`` or ``wss://`` URI.

    Attributes:
        secure: ``True`` for ``wss``.
        host: the host name (lowercase, IDNA-encoded) or IP address (no brackets).
        port: the port, defaulting to 80 or 443.
        path: the resource name: path and query, ``"/"`` when the path is empty.
        user_info: ``(user, password)`` from the URI, percent-decoded, or ``None``.
    """

    secure: bool
    host: str
    port: int
    path: str
    user_info: tuple[str, str] | None = None

    @property
    def host_header(self) -> str:
        """The ``Host`` header value: the default port is omitted, IPv6 is bracketed."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port == _DEFAULT_PORTS[self.secure]:
            return host
        return f"{host}:{self.port}"


def parse_uri(url: str) -> WebSocketURI:
    """Parse and check a WebSocket URI.

    Non-ASCII characters in the path and query are percent-encoded (as UTF-8) and a
    non-ASCII host name is IDNA-encoded, so the result can go on the wire as is.

    Raises:
        InvalidURI: the scheme is not ``ws``/``wss``, the host is missing, the port is
            invalid, the URI has a fragment, or the host cannot be encoded.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidURI(f"{url} is not a valid URI") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("ws", "wss"):
        raise InvalidURI(f"{url} is not a ws:// or wss:// URI")
    host = parts.hostname
    if not host:
        raise InvalidURI(f"{url} has no host")
    # RFC 6455 §3: fragment identifiers are meaningless here and must not be used.
    if parts.fragment or url.endswith("#"):
        raise InvalidURI(f"{url} has a fragment")
    secure = scheme == "wss"
    try:
        host.encode("ascii")
    except UnicodeEncodeError:
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise InvalidURI(f"{url} has an invalid host") from exc
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    path = urllib.parse.quote(path, safe=_SAFE)
    user_info = None
    if parts.username is not None:
        user_info = (
            urllib.parse.unquote(parts.username),
            urllib.parse.unquote(parts.password or ""),
        )
    return WebSocketURI(
        secure=secure,
        host=host,
        port=_DEFAULT_PORTS[secure] if port is None else port,
        path=path,
        user_info=user_info,
    )
