"""The configuration of a hub server as one frozen value: :class:`HubConfig`.

A :class:`HubConfig` is made of parts, each owned by the layer it configures:
:class:`~wshub.aio.TransportOptions` (the WebSocket limits, shared with ``serve()``,
``connect()`` and ``HubClient``), :class:`~wshub.hub.HubLimits`, :class:`AuthConfig`, a
storage (:class:`MemoryStorage`, :class:`SQLiteStorage` or :class:`RedisStorage`), the
namespaces (:class:`Namespace`, each a name and its
:class:`~wshub.hub.channels.NamespaceOptions`), :class:`ApiConfig`, :class:`MetricsConfig`,
:class:`ListenConfig` and :class:`TLSConfig`. :func:`wshub.hub.start_hub` takes one.

Every part checks itself when it is built and raises :class:`~wshub.exceptions.ConfigError`
with one line per problem, naming the field; :meth:`HubConfig.parse` reads the shape of a
TOML file (``wshub serve --config``, docs/configuration.md) and reports every problem of the
whole file at once, with its path (``namespaces[1].history_size: must be >= 0``).
:meth:`HubConfig.serialize` is the inverse, with secrets redacted unless asked otherwise.

The library's defaults are safe: no anonymous users, no namespace. The chat demo's
configuration lives with the chat app (:func:`wshub.apps.chat.demo_config`).
"""

from __future__ import annotations

import dataclasses
import math
import ssl
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

from wshub.aio.options import TransportOptions
from wshub.exceptions import ConfigError
from wshub.hub._tables import (
    REDACTED,
    build,
    parse_table,
    parse_value,
    serialize_table,
    union_members,
)
from wshub.hub.auth import MIN_SECRET_SIZE, Authenticator, Permissions
from wshub.hub.channels import ChannelRegistry, NamespaceOptions, split_channel
from wshub.hub.limits import HubLimits
from wshub.hub.metrics import METRICS_ACCESS, MetricsAccess
from wshub.hub.redis_url import SentinelURL, is_sentinel_url

__all__ = [
    "PARTS",
    "REDACTED",
    "SECRET",
    "STORAGES",
    "ApiConfig",
    "AuthConfig",
    "HubConfig",
    "ListenConfig",
    "MemoryStorage",
    "MetricsConfig",
    "Namespace",
    "RedisStorage",
    "SQLiteStorage",
    "Storage",
    "TLSConfig",
]

#: ``field(metadata=SECRET)`` marks a field that :meth:`HubConfig.serialize` redacts.
SECRET: Mapping[str, bool] = types.MappingProxyType({"secret": True})

_T = TypeVar("_T")


def _positive_seconds(name: str, value: float | None, errors: list[str]) -> None:
    """``value`` must be ``> 0`` and finite (``None`` is allowed where the type says so)."""
    if value is not None and not (value > 0 and math.isfinite(value)):
        errors.append(f"{name}: must be > 0 seconds, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenConfig:
    """Where and how the hub listens.

    Attributes:
        host: the interface (``0.0.0.0`` or ``::`` for all IPv4 / IPv6 ones, ``""`` for
            every interface).
        port: the TCP port, 0-65535; 0 picks a free one.
        path: the WebSocket path (upgrades elsewhere get 404).
        origins: allowed ``Origin`` values of WebSocket upgrades (others get 403);
            none allows any.
        backlog: the listen backlog.
        reuse_port: set ``SO_REUSEPORT``, so that several processes can share the port.
        max_connections: open WebSocket connections above which upgrades get 503; none
            means no limit.
        max_request_size: largest HTTP request in bytes (head and body): it must hold an
            HTTP API publication of ``limits.max_publication_size``; none means no limit.
        drain_period: seconds over which a drain (SIGTERM) spreads the 1012 closes of its
            connections, so that their reconnections elsewhere do not come as one storm;
            0 closes them all at once.
        drain_timeout: seconds a drain waits for its connections to go, counted from its
            start, before the node closes what is left (1001) and stops.
    """

    host: str = "127.0.0.1"
    port: int = 8765
    path: str = "/ws"
    origins: tuple[str, ...] | None = None
    backlog: int = 1024
    reuse_port: bool = False
    max_connections: int | None = None
    max_request_size: int | None = 2**20
    # 5 s spreads thousands of reconnections over enough time for the other nodes to take
    # them; 30 s leaves room for the slowest client's closing handshake and stays below
    # the grace period of systemd (90 s) and Kubernetes (30 s, to be raised, see
    # docs/deployment.md).
    drain_period: float = 5.0
    drain_timeout: float = 30.0

    def __post_init__(self) -> None:
        errors: list[str] = []
        if not (0 <= self.drain_period < math.inf):
            errors.append(f"drain_period: must be >= 0 seconds, got {self.drain_period!r}")
        _positive_seconds("drain_timeout", self.drain_timeout, errors)
        if self.drain_period > self.drain_timeout:
            errors.append(
                f"drain_period: must not exceed drain_timeout ({self.drain_timeout!r}), "
                f"got {self.drain_period!r}"
            )
        if not 0 <= self.port <= 65535:
            errors.append(f"port: must be 0-65535, got {self.port!r}")
        if not self.path.startswith("/"):
            errors.append(f"path: must start with '/', got {self.path!r}")
        if self.backlog < 1:
            errors.append(f"backlog: must be >= 1, got {self.backlog!r}")
        for name in ("max_connections", "max_request_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                errors.append(f"{name}: must be >= 1 or none, got {value!r}")
        ConfigError.check(errors)


@dataclass(frozen=True, slots=True, kw_only=True)
class TLSConfig:
    """Serve ``https://`` and ``wss://``: off unless ``certfile`` is set.

    Attributes:
        certfile: PEM certificate chain, the server's certificate first.
        keyfile: PEM private key, unencrypted (none: in the certfile).
    """

    certfile: str | None = None
    keyfile: str | None = None

    def __post_init__(self) -> None:
        if self.keyfile is not None and self.certfile is None:
            raise ConfigError(["keyfile: needs certfile"])

    def context(self) -> ssl.SSLContext | None:
        """A server context with Python's secure defaults, or ``None`` without TLS.

        Raises:
            ConfigError: the files cannot be read or do not match.
        """
        if self.certfile is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(self.certfile, self.keyfile)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError([f"certfile: cannot load the TLS certificate: {exc}"]) from exc
        return context


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthConfig:
    """Who may connect: token holders, and anonymous users when allowed.

    Attributes:
        secret: HS256 secret for connection tokens, at least 32 bytes (a secret:
            redacted when shown; a file gives it as ``secret_file``).
        public_key: PEM public key for RS256 (RSA) or ES256 (EC P-256) tokens (a file
            gives it as ``public_key_file``).
        audience: tokens must carry this ``aud`` claim; none: not checked.
        issuer: tokens must carry this ``iss`` claim; none: not checked.
        leeway: seconds of clock skew tolerated on a token's ``exp`` and ``nbf``.
        allow_anonymous: accept connections without a token.
        anonymous_permissions: what anonymous connections may do (``pattern:perms``
            entries, as in a token's ``channels`` claim).
    """

    secret: str | None = field(default=None, repr=False, metadata=SECRET)
    public_key: str | None = None
    audience: str | None = None
    issuer: str | None = None
    leeway: float = 0.0
    allow_anonymous: bool = False
    anonymous_permissions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        errors: list[str] = []
        if self.secret is not None and len(self.secret.encode()) < MIN_SECRET_SIZE:
            errors.append(f"secret: must be at least {MIN_SECRET_SIZE} bytes")
        if not (self.leeway >= 0 and math.isfinite(self.leeway)):
            errors.append(f"leeway: must be >= 0 seconds, got {self.leeway!r}")
        for index, entry in enumerate(self.anonymous_permissions):
            try:
                Permissions.parse([entry])
            except ValueError as exc:
                errors.append(f"anonymous_permissions[{index}]: {exc}")
        ConfigError.check(errors)

    def authenticator(self, *, clock: Callable[[], float]) -> Authenticator:
        """The token verifier this configuration describes.

        Raises:
            ConfigError: ``public_key`` is not a PEM public key of a supported kind.
        """
        try:
            return Authenticator(
                secret=self.secret,
                public_key=self.public_key,
                allow_anonymous=self.allow_anonymous,
                anonymous_permissions=self.anonymous_permissions,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                clock=clock,
            )
        except ValueError as exc:
            raise ConfigError([f"public_key: {exc}"]) from exc


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryStorage:
    """History in process memory: lost on exit, for one node (``kind = "memory"``)."""

    kind: ClassVar[str] = "memory"


@dataclass(frozen=True, slots=True, kw_only=True)
class SQLiteStorage:
    """History in a SQLite file, ``history.db`` in ``data_dir`` (``kind = "sqlite"``).

    Attributes:
        data_dir: the directory, created if needed.
    """

    kind: ClassVar[str] = "sqlite"
    data_dir: str = ".wshub-data"

    def __post_init__(self) -> None:
        if not self.data_dir:
            raise ConfigError(["data_dir: must not be empty"])


@dataclass(frozen=True, slots=True, kw_only=True)
class RedisStorage:
    """History, presence and fan-out in Redis, shared by the nodes of one hub
    (``kind = "redis"``; needs ``wshub[redis]``).

    Attributes:
        url: ``redis://host:6379/0``, ``rediss://`` (TLS), ``unix:///path``, or through
            Sentinel ``redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]``
            (its password is redacted when shown).
        prefix: the first part of every key and Pub/Sub channel: the same for the nodes
            of one hub, another one for another hub on the same Redis.
        sentinel_password: the sentinels' own password, with a ``redis+sentinel://`` URL
            whose sentinels need one (a secret: redacted when shown; a file gives it as
            ``sentinel_password_file``); the URL's password is the Redis master's.
    """

    kind: ClassVar[str] = "redis"
    url: str = "redis://127.0.0.1:6379/0"
    prefix: str = "wshub"
    sentinel_password: str | None = field(default=None, repr=False, metadata=SECRET)

    def __post_init__(self) -> None:
        errors: list[str] = []
        if is_sentinel_url(self.url):
            try:
                SentinelURL.parse(self.url)
            except ValueError as exc:
                errors.append(f"url: {exc}")
        elif urlsplit(self.url).scheme not in ("redis", "rediss", "unix"):
            errors.append("url: must be a redis://, rediss://, unix:// or redis+sentinel:// URL")
        elif self.sentinel_password is not None:
            errors.append("sentinel_password: only with a redis+sentinel:// url")
        if not self.prefix:
            errors.append("prefix: must not be empty")
        ConfigError.check(errors)


#: Where history (and, with Redis, presence and fan-out) lives.
Storage = MemoryStorage | SQLiteStorage | RedisStorage
#: The storage dataclass of each ``kind`` of the ``[storage]`` table.
STORAGES: dict[str, type[MemoryStorage | SQLiteStorage | RedisStorage]] = {
    cls.kind: cls for cls in (MemoryStorage, SQLiteStorage, RedisStorage)
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Namespace:
    """One namespace the hub serves: its name and how it treats its channels.

    Attributes:
        name: the part of a channel name before ``:`` (``chat`` in ``chat:lobby``).
        options: history, presence, publish policy, slow-consumer policy (docs/hub.md).
    """

    name: str
    options: NamespaceOptions = field(default_factory=NamespaceOptions)

    def __post_init__(self) -> None:
        if split_channel(f"{self.name}:x") is None:
            raise ConfigError(
                [
                    f"name: must be 1-32 of a-z, 0-9, '_', '-', starting with a letter or digit, "
                    f"got {self.name!r}"
                ]
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiConfig:
    """The HTTP API (``/api/...``, docs/http-api.md).

    Attributes:
        api_key: the key callers present (a secret: redacted when shown; a file gives it
            as ``api_key_file``). Without one every ``/api/`` call gets 401.
        enabled: serve the API; off refuses every call as if there were no key.
    """

    api_key: str | None = field(default=None, repr=False, metadata=SECRET)
    enabled: bool = True

    @property
    def effective_key(self) -> str | None:
        """The key the API checks, ``None`` when it refuses everything."""
        return self.api_key if self.enabled else None


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsConfig:
    """``GET /metrics`` (Prometheus text format).

    Attributes:
        access: who may read it: ``local`` (loopback clients that did not come through a
            proxy, or the API key), ``key`` (the API key only), ``open`` or ``off`` (not
            served, and no message/byte counting).
    """

    access: MetricsAccess = "local"

    def __post_init__(self) -> None:
        if self.access not in METRICS_ACCESS:
            choices = ", ".join(METRICS_ACCESS)
            raise ConfigError([f"access: must be one of {choices}, got {self.access!r}"])


def _check_limits(limits: HubLimits) -> list[str]:
    """:class:`HubLimits` has no checks of its own: rates and timeouts ``> 0``, counts and
    sizes ``>= 0`` (``none``, where allowed, means no limit)."""
    errors: list[str] = []
    hints = typing.get_type_hints(HubLimits)
    for item in dataclasses.fields(limits):
        value = getattr(limits, item.name)
        if value is None:
            continue
        if float in union_members(hints[item.name]):
            _positive_seconds(f"limits.{item.name}", value, errors)
        elif value < 0:
            errors.append(f"limits.{item.name}: must be >= 0, got {value!r}")
    return errors


@dataclass(frozen=True, slots=True, kw_only=True)
class HubConfig:
    """Everything a hub server needs, checked as a whole when it is built.

    Attributes:
        listen: where and how the hub listens.
        tls: certificate and key for ``https://`` and ``wss://``.
        transport: the WebSocket limits of each connection.
        limits: the hub's per-connection limits (docs/hub.md, "Limits").
        auth: tokens and anonymous users.
        storage: where history lives: memory, SQLite or Redis.
        namespaces: the namespaces served.
        default_namespace: the options of a namespace not in ``namespaces``; none
            refuses its channels (error 108).
        api: the HTTP API.
        metrics: the ``/metrics`` endpoint.
        dedupe_window: seconds a publish's ``message_id`` is remembered, so that a retry
            within it is answered as a duplicate; it reaches every store.
    """

    listen: ListenConfig = field(default_factory=ListenConfig)
    tls: TLSConfig = field(default_factory=TLSConfig)
    transport: TransportOptions = field(default_factory=TransportOptions)
    limits: HubLimits = field(default_factory=HubLimits)
    auth: AuthConfig = field(default_factory=AuthConfig)
    storage: Storage = field(default_factory=MemoryStorage)
    namespaces: tuple[Namespace, ...] = ()
    default_namespace: NamespaceOptions | None = None
    api: ApiConfig = field(default_factory=ApiConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    dedupe_window: float = 120.0

    def __post_init__(self) -> None:
        errors = _check_limits(self.limits)
        _positive_seconds("dedupe_window", self.dedupe_window, errors)
        seen: set[str] = set()
        for index, namespace in enumerate(self.namespaces):
            if namespace.name in seen:
                errors.append(f"namespaces[{index}].name: {namespace.name!r} is declared twice")
            seen.add(namespace.name)
        ConfigError.check(errors)

    def registry(self) -> ChannelRegistry:
        """The namespaces as the hub's :class:`ChannelRegistry`."""
        return ChannelRegistry(
            {namespace.name: namespace.options for namespace in self.namespaces},
            default=self.default_namespace,
        )

    # --- the file form ---------------------------------------------------------------------

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> HubConfig:
        """Build a configuration from the shape of a TOML file (docs/configuration.md).

        Raises:
            ConfigError: every problem found, one line each, naming the field by its path.
        """
        errors: list[str] = []
        parts: dict[str, Any] = {}
        for key, value in data.items():
            if key == "storage":
                parts[key] = _parse_storage(value, errors)
            elif key == "namespaces":
                parts[key] = _parse_namespaces(value, errors)
            elif key == "default_namespace":
                parts[key] = parse_table(NamespaceOptions, value, key, errors)
            elif key in PARTS:
                parts[key] = parse_table(PARTS[key], value, key, errors)
            elif key == "dedupe_window":
                parts[key] = parse_value(float, value, key, errors)
            else:
                errors.append(f"{key}: unknown field")
        if errors:
            raise ConfigError(errors)
        return build(cls, parts, "")

    def serialize(self, *, redact: bool = True) -> dict[str, Any]:
        """The shape :meth:`parse` reads (a dict for a TOML file); secrets are shown as
        ``REDACTED`` unless ``redact`` is false, unset ones are left out."""
        data: dict[str, Any] = {"dedupe_window": self.dedupe_window}
        for name in PARTS:
            data[name] = serialize_table(getattr(self, name), redact)
        data["storage"] = {"kind": self.storage.kind, **serialize_table(self.storage, redact)}
        if isinstance(self.storage, RedisStorage) and redact:
            data["storage"]["url"] = _redact_url(self.storage.url)
        data["namespaces"] = [
            {"name": namespace.name, **serialize_table(namespace.options, redact)}
            for namespace in self.namespaces
        ]
        if self.default_namespace is not None:
            data["default_namespace"] = serialize_table(self.default_namespace, redact)
        return data


#: The parts that are plain tables of fields, by their key in the file.
#: The dataclass of each table of :class:`HubConfig` that is one part (``[listen]``, ...).
PARTS: dict[str, type[Any]] = {
    "listen": ListenConfig,
    "tls": TLSConfig,
    "transport": TransportOptions,
    "limits": HubLimits,
    "auth": AuthConfig,
    "api": ApiConfig,
    "metrics": MetricsConfig,
}


def _redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", f":{REDACTED}@", 1)
    return parts._replace(netloc=netloc).geturl()


def _parse_storage(data: Any, errors: list[str]) -> Storage | None:
    if not isinstance(data, Mapping):
        errors.append("storage: must be a table")
        return None
    rest = dict(data)
    kind = rest.pop("kind", None)
    if kind not in STORAGES:
        errors.append(f"storage.kind: must be one of {', '.join(STORAGES)}, got {kind!r}")
        return None
    return parse_table(STORAGES[kind], rest, "storage", errors)


def _parse_namespaces(data: Any, errors: list[str]) -> tuple[Namespace, ...]:
    if not isinstance(data, list):
        errors.append("namespaces: must be an array of tables ([[namespaces]])")
        return ()
    found: list[Namespace] = []
    for index, item in enumerate(data):
        path = f"namespaces[{index}]"
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            errors.append(f"{path}.name: required, a string")
            continue
        options = {key: value for key, value in item.items() if key != "name"}
        parsed = parse_table(NamespaceOptions, options, path, errors)
        if parsed is not None:
            try:
                found.append(build(Namespace, {"name": item["name"], "options": parsed}, path))
            except ConfigError as exc:
                errors.extend(exc.errors)
    return tuple(found)
