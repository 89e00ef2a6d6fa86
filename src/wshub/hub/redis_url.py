"""Redis Sentinel URLs: ``redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]``.

The hub reaches a Redis watched by Sentinel through the sentinels, not through the master's
address: the sentinels name the current master, and name another one after a failover.
This module only reads and writes the URL (it does not need the optional ``redis``
package), so that :class:`~wshub.hub.config.RedisStorage` can check a URL when it is
built; :mod:`wshub.hub.backends.redis.connection` makes the client.

The form, fixed:

* scheme ``redis+sentinel``;
* optional credentials ``user:password@`` or ``:password@``: they authenticate to the
  Redis master (and replicas), not to the sentinels (``sentinel_password`` does that);
* one or more sentinels ``host:port``, comma-separated; the port defaults to 26379; an
  IPv6 address is written in brackets, ``[::1]:26379``;
* the path: the service name the sentinels monitor (``sentinel monitor <name> ...``),
  then optionally ``/db``, the database number (default 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, unquote

__all__ = ["DEFAULT_SENTINEL_PORT", "SENTINEL_SCHEME", "SentinelURL", "is_sentinel_url"]

#: The scheme of a Sentinel URL.
SENTINEL_SCHEME = "redis+sentinel"
#: The port of a sentinel given without one.
DEFAULT_SENTINEL_PORT = 26379


def is_sentinel_url(url: str) -> bool:
    """Whether ``url`` names Redis through sentinels (by its scheme; not checked further)."""
    return url.lower().startswith(f"{SENTINEL_SCHEME}:")


def _parse_address(text: str) -> tuple[str, int]:
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not host or (rest and not rest.startswith(":")):
            raise ValueError(f"bad sentinel address {text!r}")
        port_text = rest[1:] if rest else ""
    else:
        host, _, port_text = text.partition(":")
        if not host or ":" in port_text:
            raise ValueError(f"bad sentinel address {text!r} (host:port)")
    if not port_text:
        return host, DEFAULT_SENTINEL_PORT
    if not port_text.isdigit() or not 0 < int(port_text) <= 65535:
        raise ValueError(f"bad sentinel port in {text!r}")
    return host, int(port_text)


@dataclass(frozen=True, slots=True)
class SentinelURL:
    """A parsed ``redis+sentinel://`` URL.

    Attributes:
        sentinels: the sentinels' ``(host, port)``, in the order given.
        service: the name the sentinels monitor the master under.
        db: the database number.
        username: the user for the Redis master (ACL); ``None`` for the default user.
        password: the password for the Redis master; ``None`` for none.
    """

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> SentinelURL:
        """Read ``url``.

        Raises:
            ValueError: not a ``redis+sentinel://`` URL of the form above (the message says
                what is wrong, without the password).
        """
        scheme, sep, rest = url.partition("://")
        if not sep or scheme.lower() != SENTINEL_SCHEME:
            raise ValueError(f"not a {SENTINEL_SCHEME}:// URL")
        if "?" in rest or "#" in rest:
            raise ValueError("a sentinel URL takes no query or fragment")
        netloc, _, path = rest.partition("/")
        credentials, at, hosts = netloc.rpartition("@")
        username = password = None
        if at:
            user, colon, secret = credentials.partition(":")
            username = unquote(user) or None
            password = unquote(secret) if colon else None
        if not hosts:
            raise ValueError("no sentinel host:port")
        sentinels = tuple(_parse_address(item) for item in hosts.split(","))
        service, _, db_text = path.partition("/")
        if not service:
            raise ValueError("no service name: redis+sentinel://host:port/SERVICE[/db]")
        if "/" in db_text or (db_text and not db_text.isdigit()):
            raise ValueError(f"bad database number {db_text!r} after the service name")
        return cls(
            sentinels=sentinels,
            service=unquote(service),
            db=int(db_text) if db_text else 0,
            username=username,
            password=password,
        )

    def serialize(self) -> str:
        """The URL, in the form :meth:`parse` reads (credentials included)."""
        credentials = ""
        if self.username is not None or self.password is not None:
            user = quote(self.username or "", safe="")
            secret = "" if self.password is None else f":{quote(self.password, safe='')}"
            credentials = f"{user}{secret}@"
        database = f"/{self.db}" if self.db else ""
        service = quote(self.service, safe="")
        return f"{SENTINEL_SCHEME}://{credentials}{self._hosts()}/{service}{database}"

    def describe(self) -> str:
        """The URL without its credentials, for logs and messages."""
        return f"{SENTINEL_SCHEME}://{self._hosts()}/{self.service}/{self.db}"

    def _hosts(self) -> str:
        return ",".join(
            f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host, port in self.sentinels
        )
