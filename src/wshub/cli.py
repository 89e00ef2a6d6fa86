"""The ``wshub`` command: ``wshub serve`` runs a hub with the chat page, ``wshub token`` signs
connection tokens, ``wshub config init|check|show`` write, check and print config files.

``wshub serve`` with no options is the demo that ``make run`` starts: the chat app's own
configuration (:func:`wshub.apps.chat.demo_config`), a hub on http://127.0.0.1:8765/ whose
chat room works in a browser with no other service, anonymous users allowed (unless a
token secret is given: then only with ``--allow-anonymous``), history in SQLite under
``./.wshub-data``.

``wshub serve --config wshub.toml`` runs the :class:`~wshub.hub.config.HubConfig` of a TOML
file instead (docs/configuration.md). Every option is a field of that file, and an option
given on the command line wins over the file. Flags are generated from the dataclasses
(``max_size`` of :class:`~wshub.aio.TransportOptions` is ``--max-size``, each field of
:class:`~wshub.hub.HubLimits` is a flag of its own name), so that a new limit appears here
without another edit. Secrets come from the environment (``WSHUB_SECRET``,
``WSHUB_API_KEY``) or from a file named in the config (``secret_file``), read through
:mod:`wshub.config` like every environment variable; they are never needed on the command
line.

Every error ends the command with status 2 and one line on standard error (1 when Redis does
not answer), never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import errno
import gc
import logging
import os
import secrets
import signal
import sys
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn

from wshub import __version__, config
from wshub.aio import TransportOptions, run
from wshub.apps.board import BoardApp
from wshub.apps.board.app import DEFAULT_HISTORY_SIZE
from wshub.apps.chat import ChatApp, demo_config
from wshub.apps.console import ConsoleApp
from wshub.apps.ticker import TickerApp, run_feed
from wshub.apps.ticker.feed import run_http_feed
from wshub.commands import register as register_commands
from wshub.exceptions import ConfigError, HubError
from wshub.hub import HubLimits
from wshub.hub.auth import make_token
from wshub.hub.channels import NamespaceOptions
from wshub.hub.config import (
    HubConfig,
    ListenConfig,
    MemoryStorage,
    Namespace,
    RedisStorage,
    SQLiteStorage,
)
from wshub.hub.config_file import dump_toml, field_docs, read_file
from wshub.hub.metrics import METRICS_ACCESS
from wshub.hub.server import HubServer, start_hub
from wshub.log import LEVELS, LOG_FORMATS, configure_logging
from wshub.supervisor import Supervisor, prepare_worker, reserve_port

__all__ = ["ServeConfig", "build_parser", "main", "serve_config"]

logger = logging.getLogger("wshub.server")

#: The file ``wshub config init`` writes when no path is given.
DEFAULT_CONFIG_FILE = "wshub.toml"

_NONE_WORDS = ("none", "off", "unlimited")


def _optional(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type that also accepts ``none`` (no limit / disabled)."""

    def parse(text: str) -> Any:
        if text.strip().lower() in _NONE_WORDS:
            return None
        return kind(text)

    parse.__name__ = kind.__name__
    return parse


def _seconds(*, positive: bool) -> Callable[[str], float]:
    """An argparse type for a duration in seconds: ``>= 0``, or ``> 0`` when ``positive``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
        # "not" also refuses nan, which compares false with everything.
        if not (value > 0 if positive else value >= 0):
            raise argparse.ArgumentTypeError(
                f"must be {'> 0' if positive else '>= 0'} seconds, got {text!r}"
            )
        return value

    parse.__name__ = "seconds"
    return parse


def _port(text: str) -> int:
    """An argparse type for a TCP port: an integer from 0 (any free port) to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0-65535, got {text!r}")
    return value


def _workers(text: str) -> int:
    """An argparse type for a number of worker processes: an integer >= 1."""
    value = int(text) if text.strip().lstrip("+-").isdigit() else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def _field_parser(annotation: Any) -> Callable[[str], Any]:
    """How to read a number (or ``none``) of a config field from its annotation."""
    members = typing.get_args(annotation) or (annotation,)
    kind: Callable[[str], Any] = float if float in members else int
    if str in members or any(typing.get_origin(member) is Literal for member in members):
        kind = str
    return _optional(kind) if type(None) in members else kind


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


#: Sections whose every field (or these fields) is a ``serve`` flag of the same name, with
#: the field's documentation and default as its help; ``dest`` is ``section.field``.
_GENERATED: tuple[tuple[str, type[Any], tuple[str, ...] | None, str], ...] = (
    ("transport", TransportOptions, None, "WebSocket limits ('none' where allowed)"),
    ("listen", ListenConfig, ("max_connections", "max_request_size"), ""),
    ("limits", HubLimits, None, "hub limits (docs/hub.md; 'none' where no limit is allowed)"),
)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, like every other error of wshub
    (argparse's own prints the whole usage first, which buries the line that matters)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _add_serve_arguments(serve: argparse.ArgumentParser) -> None:
    """The options of ``serve`` (and ``config show``): each is a field of the config file,
    and is set only when given, so that the file's value (or the default) applies."""
    given = argparse.SUPPRESS
    serve.add_argument(
        "--config", metavar="FILE", help="a TOML config file (default: the chat demo)"
    )
    serve.add_argument("--host", default=given, help="interface (default: 127.0.0.1)")
    serve.add_argument(
        "--port", type=_port, default=given, help="TCP port 0-65535, 0 = any (default 8765)"
    )
    serve.add_argument("--path", default=given, help="WebSocket path (default: /ws)")
    serve.add_argument(
        "--data-dir",
        default=given,
        help="keep history in SQLite in this directory, created if needed "
        "(the demo's default: ./.wshub-data)",
    )
    serve.add_argument(
        "--ephemeral",
        action="store_true",
        default=given,
        help="keep history in memory only (lost on exit)",
    )
    serve.add_argument(
        "--redis",
        metavar="URL",
        default=given,
        help="share history, presence and fan-out with the other nodes through Redis, e.g. "
        "redis://localhost:6379/0 (default: $WSHUB_REDIS_URL)",
    )
    serve.add_argument(
        "--allow-anonymous",
        action="store_true",
        default=given,
        help="accept connections without a token even when a secret is set",
    )
    serve.add_argument(
        "--secret",
        default=given,
        help="HS256 secret for connection tokens, at least 32 bytes (better: $WSHUB_SECRET "
        "or secret_file in the config file, which no process listing shows)",
    )
    serve.add_argument(
        "--api-key",
        default=given,
        help="key for the HTTP API (default: $WSHUB_API_KEY; none: every call gets 401)",
    )
    serve.add_argument(
        "--token-audience",
        metavar="AUD",
        default=given,
        help="refuse tokens whose aud claim is not AUD (default: $WSHUB_TOKEN_AUDIENCE; "
        "unset: aud not checked)",
    )
    serve.add_argument(
        "--token-issuer",
        metavar="ISS",
        default=given,
        help="refuse tokens whose iss claim is not ISS (default: $WSHUB_TOKEN_ISSUER; "
        "unset: iss not checked)",
    )
    serve.add_argument(
        "--token-leeway",
        type=_seconds(positive=False),
        default=given,
        metavar="SECONDS",
        help="clock skew tolerated on a token's exp and nbf (default 0)",
    )
    serve.add_argument(
        "--dedupe-window",
        type=_seconds(positive=True),
        default=given,
        metavar="SECONDS",
        help="how long a publish's message_id is remembered, so that a retry is answered "
        "as a duplicate (default 120)",
    )
    serve.add_argument(
        "--origin",
        action="append",
        dest="origins",
        default=given,
        metavar="ORIGIN",
        help="allowed Origin of WebSocket upgrades (repeatable; default: any)",
    )
    for name, what in (
        ("chat", "the chat page"),
        ("ticker", "/ticker nor run its price feed"),
        ("board", "the board page"),
        ("console", "the operator console (/console)"),
    ):
        serve.add_argument(
            f"--no-{name}", action="store_true", default=given, help=f"do not serve {what}"
        )
    serve.add_argument(
        "--ticker-rate",
        type=float,
        default=given,
        help="price ticks per second of the in-process feed (default 20)",
    )
    serve.add_argument(
        "--metrics",
        choices=METRICS_ACCESS,
        default=given,
        help="who may GET /metrics: local (loopback clients or the API key; the default), "
        "key, open, off",
    )
    serve.add_argument(
        "--reuse-port",
        action="store_true",
        default=given,
        help="set SO_REUSEPORT, so that several processes can listen on the port",
    )
    serve.add_argument("--backlog", type=int, default=given, help="listen backlog (default 1024)")
    serve.add_argument(
        "--workers",
        type=_workers,
        default=given,
        metavar="N",
        help="run N worker processes on the port under one supervisor; more than 1 needs "
        "--redis (default 1: this process serves)",
    )
    # Set by the supervisor on the command line of each worker it starts (never by hand).
    serve.add_argument("--worker-of", type=int, default=given, help=argparse.SUPPRESS)
    drain = serve.add_argument_group(
        "shutdown (SIGTERM drains, SIGINT or a second signal stops at once with 1001)"
    )
    for name, positive, what in (
        ("drain_period", False, "spread the 1012 closes of the connections over this long"),
        ("drain_timeout", True, "wait at most this long for the connections to go, then exit"),
    ):
        drain.add_argument(
            _flag(name),
            dest=f"listen.{name}",
            type=_seconds(positive=positive),
            default=given,
            metavar="SECONDS",
            help=f"on SIGTERM, {what} (default {getattr(ListenConfig(), name):g})",
        )
    tls = serve.add_argument_group("TLS (serve https:// and wss://)")
    tls.add_argument(
        "--certfile", default=given, help="PEM certificate chain, the server's certificate first"
    )
    tls.add_argument("--keyfile", default=given, help="PEM private key (default: in the certfile)")
    logs = serve.add_argument_group("logging (also accepted before the command)")
    logs.add_argument("--log-level", choices=LEVELS, default=given)
    logs.add_argument("--log-format", choices=LOG_FORMATS, default=given)
    group = None
    for section, cls, names, title in _GENERATED:
        if title or group is None:
            group = serve.add_argument_group(title or None)
        hints, docs = typing.get_type_hints(cls), field_docs(cls)
        for item in dataclasses.fields(cls):
            if names is not None and item.name not in names:
                continue
            group.add_argument(
                _flag(item.name),
                dest=f"{section}.{item.name}",
                type=_field_parser(hints[item.name]),
                default=given,
                metavar=item.name.upper(),
                help=f"{docs.get(item.name, '')} (default: {item.default})".replace("%", "%%"),
            )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``wshub`` (exposed for tests and documentation)."""
    parser = _Parser(prog="wshub", description="WebSocket toolkit and real-time messaging hub.")
    parser.add_argument("--version", action="version", version=f"wshub {__version__}")
    parser.add_argument(
        "--log-level", default="info", choices=LEVELS, help="logging level (default: info)"
    )
    parser.add_argument(
        "--log-format",
        default="text",
        choices=LOG_FORMATS,
        help="log lines as text or as JSON objects (default: text)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run a hub with the chat page",
        description=(
            "Run a hub: the chat page on http://HOST:PORT/, the WebSocket endpoint at PATH and "
            "the HTTP API (/healthz, /api/...). Without --config, the chat demo: anonymous "
            "users allowed unless a secret is set (--secret or WSHUB_SECRET). With --config "
            "FILE, the hub that file describes; options given here win over the file."
        ),
    )
    _add_serve_arguments(serve)
    serve.set_defaults(func=_serve_command)

    token = commands.add_parser(
        "token",
        help="print a connection token (JWT)",
        description="Sign an HS256 connection token for the hub (claims: docs/hub.md, Tokens).",
    )
    token.add_argument("--secret", help="the hub's secret (default: $WSHUB_SECRET)")
    token.add_argument("--user", required=True, help="the user id (the token's sub)")
    token.add_argument(
        "--ttl",
        type=_optional(_seconds(positive=True)),
        default=3600.0,
        help="seconds until it expires, > 0 (default 3600; 'none': no exp claim)",
    )
    token.add_argument(
        "--channels",
        nargs="+",
        default=[],
        metavar="PATTERN:PERMS",
        help="permissions, e.g. 'chat:*:spr' 'ticker:*:s' (s subscribe, p publish, r read)",
    )
    token.set_defaults(func=_token_command)

    feed = commands.add_parser(
        "feed",
        help="run the ticker's simulated price feed against a hub's HTTP API",
        description="Publish the demo price feed (docs/ticker.md) to a hub over its HTTP API, "
        "as a backend would: one tick per request, until interrupted.",
    )
    feed.add_argument("--url", required=True, help="the hub's base URL, e.g. http://HOST:8765")
    feed.add_argument("--api-key", help="the hub's API key (default: $WSHUB_API_KEY)")
    feed.add_argument("--rate", type=str, default="20", help="ticks per second (default 20)")
    feed.add_argument("--seed", type=int, help="make the random walk reproducible")
    feed.set_defaults(func=_feed_command)
    register_commands(commands)

    files = commands.add_parser(
        "config",
        help="write, check or show a config file",
        description="Config files for 'wshub serve --config FILE' (docs/configuration.md).",
    )
    actions = files.add_subparsers(dest="action", required=True, metavar="ACTION")
    init = actions.add_parser("init", help="write a commented starting file")
    init.add_argument(
        "path", nargs="?", default=DEFAULT_CONFIG_FILE, help=f"(default: {DEFAULT_CONFIG_FILE})"
    )
    init.set_defaults(func=_config_init)
    check = actions.add_parser("check", help="check a file: exit 0, or 2 with one line per error")
    check.add_argument("path", metavar="FILE")
    check.set_defaults(func=_config_check)
    show = actions.add_parser(
        "show",
        help="print the effective configuration (secrets redacted)",
        description="Print, as TOML, the configuration 'wshub serve' would run with the same "
        "options and environment; secrets are shown as <redacted>.",
    )
    _add_serve_arguments(show)
    show.set_defaults(func=_config_show)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``wshub`` with ``argv`` (default: the command line); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what a worker runs again
    configure_logging(args.log_level, args.log_format)
    try:
        status: int = args.func(args)
    except ConfigError as exc:
        # A configuration names the field of each problem; the first says what to fix.
        more = len(exc.errors) - 1
        hint = f" (and {more} more: wshub config check)" if more > 0 else ""
        parser.exit(2, f"wshub: error: {exc.errors[0]}{hint}\n")
    except ValueError as exc:
        # Bad input (a short secret, an invalid permission): say what, not a traceback.
        parser.exit(2, f"wshub: error: {exc}\n")
    except ConnectionError as exc:
        # A service the hub needs does not answer (Redis): also not worth a traceback.
        parser.exit(1, f"wshub: error: {exc}\n")
    return status


# --- wshub token ------------------------------------------------------------------------


def _token_command(args: argparse.Namespace) -> int:
    secret = args.secret or config.env_str("WSHUB_SECRET")
    if not secret:
        raise ValueError("a secret is needed: --secret or WSHUB_SECRET")
    print(make_token(secret, args.user, args.ttl, args.channels))
    return 0


# --- the effective configuration -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServeConfig:
    """What ``wshub serve`` runs: a hub, and which of the apps are served with it.

    Attributes:
        hub: the hub's configuration.
        chat: serve the chat page at ``/`` (``chat = false`` in a file, ``--no-chat``).
        ticker: serve the live prices page at ``/ticker`` and run its simulated feed
            (``ticker = false``, ``--no-ticker``).
        ticker_rate: price ticks per second of that feed (``ticker_rate``, ``--ticker-rate``).
        board: serve the shared whiteboard at ``/board`` (``board = false``, ``--no-board``).
        console: serve the operator console at ``/console`` (``console = false``,
            ``--no-console``); it shows nothing without the API key.
        workers: processes serving the port (``workers``, ``--workers``): 1 serves in
            this process; more start a supervisor and that many workers sharing the port
            with ``SO_REUSEPORT`` (:mod:`wshub.supervisor`), which needs Redis storage.

    Raises:
        ConfigError: ``workers`` is not an integer >= 1, or the processes would split into
            separate hubs (several workers, or ``listen.reuse_port``, without Redis).
    """

    hub: HubConfig
    chat: bool = True
    ticker: bool = True
    ticker_rate: float = 20.0
    board: bool = True
    console: bool = True
    workers: int = 1

    def __post_init__(self) -> None:
        ConfigError.check(_check_workers(self.workers) or _check_shared_state(self))

    def apps(self) -> dict[str, Any]:
        """The top-level settings as they are written in a file: the apps and ``workers``."""
        return {
            "chat": self.chat,
            "ticker": self.ticker,
            "ticker_rate": self.ticker_rate,
            "board": self.board,
            "console": self.console,
            "workers": self.workers,
        }


#: The app switches of a config file (top-level booleans, beside the hub's tables).
_APP_SWITCHES = ("chat", "ticker", "board", "console")


def _check_rate(rate: object) -> list[str]:
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= 10_000:
        return [f"ticker_rate: must be a number > 0 and at most 10000, got {rate!r}"]
    return []


def _check_workers(workers: object) -> list[str]:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        return [f"workers: must be an integer >= 1, got {workers!r}"]
    return []


def _check_shared_state(settings: ServeConfig) -> list[str]:
    """Processes that share a port must share one hub through Redis: without it each would
    be a hub of its own, and a publication would reach only the subscribers of one."""
    if isinstance(settings.hub.storage, RedisStorage):
        return []
    why = "each process would be a separate hub: use Redis storage (--redis URL)"
    if settings.workers > 1:
        return [f"workers: {settings.workers} workers need a shared broker, {why}"]
    if settings.hub.listen.reuse_port:
        return [f"listen.reuse_port: sharing the port needs a shared broker, {why}"]
    return []


def load_file(path: str | Path) -> ServeConfig:
    """The :class:`ServeConfig` of a config file: a :class:`HubConfig` and the top-level
    settings (the apps, ``workers``).

    Raises:
        ConfigError: every problem of the file, one line each, naming the field.
    """
    hub, top = _read_serve_file(path)
    return ServeConfig(hub, **top)


def _read_serve_file(path: str | Path) -> tuple[HubConfig, dict[str, Any]]:
    """The hub of a config file and its top-level settings, each checked on its own: whether
    they fit together is checked once the command line has had its say (``--redis``)."""
    data = read_file(path)
    switches = {name: data.pop(name, True) for name in _APP_SWITCHES}
    errors = [
        f"{name}: must be true or false, got {value!r}"
        for name, value in switches.items()
        if not isinstance(value, bool)
    ]
    rate = data.pop("ticker_rate", 20.0)
    errors.extend(_check_rate(rate))
    workers = data.pop("workers", 1)
    errors.extend(_check_workers(workers))
    try:
        hub = HubConfig.parse(data)
    except ConfigError as exc:
        errors.extend(exc.errors)
    ConfigError.check(errors)
    return hub, {"ticker_rate": float(rate), "workers": workers, **switches}


def serve_config(args: argparse.Namespace) -> ServeConfig:
    """The configuration ``serve`` runs: the file (or the demo), then the environment, then
    the options given on the command line.

    Raises:
        ConfigError: the file or an option is invalid (the message names the field).
    """
    given = vars(args)
    hub, top = _read_serve_file(args.config) if args.config else (demo_config(), {})
    defaults = {item.name: item.default for item in dataclasses.fields(ServeConfig)}
    base = {**defaults, **top}
    sections: dict[str, dict[str, Any]] = {"listen": {}, "auth": {}, "api": {}, "tls": {}}
    for name in ("host", "port", "path", "origins", "reuse_port", "backlog"):
        if name in given:
            sections["listen"][name] = given[name]
    for key, value in given.items():
        section, dot, name = key.partition(".")
        if dot:
            sections.setdefault(section, {})[name] = value
    auth, api = sections["auth"], sections["api"]
    for name, flag, variable in (
        ("secret", "secret", "WSHUB_SECRET"),
        ("audience", "token_audience", "WSHUB_TOKEN_AUDIENCE"),
        ("issuer", "token_issuer", "WSHUB_TOKEN_ISSUER"),
    ):
        value = given.get(flag) or config.env_str(variable)
        if value:
            auth[name] = value
    if "token_leeway" in given:
        auth["leeway"] = given["token_leeway"]
    if "allow_anonymous" in given:
        auth["allow_anonymous"] = True
    elif not args.config and "secret" in auth:
        # The demo lets anonymous users in because nobody could present a token; with a
        # secret, tokens are the way in unless --allow-anonymous says otherwise.
        auth["allow_anonymous"] = False
    api_key = given.get("api_key") or config.env_str("WSHUB_API_KEY")
    if api_key:
        api["api_key"] = api_key
    for name in ("certfile", "keyfile"):
        if name in given:
            sections["tls"][name] = given[name]
    changes: dict[str, Any] = {}
    for section, fields in sections.items():
        if fields:
            try:
                changes[section] = dataclasses.replace(getattr(hub, section), **fields)
            except ConfigError as exc:
                raise exc.within(section) from None
    storage = _storage_option(given)
    if storage is not None:
        changes["storage"] = storage
    if "metrics" in given:
        changes["metrics"] = dataclasses.replace(hub.metrics, access=given["metrics"])
    if "dedupe_window" in given:
        changes["dedupe_window"] = given["dedupe_window"]
    rate = given.get("ticker_rate", base["ticker_rate"])
    ConfigError.check(_check_rate(rate))
    # --no-NAME turns off an app the file (or the demo) turns on; no flag turns one on.
    switches = {name: base[name] and f"no_{name}" not in given for name in _APP_SWITCHES}
    workers = given.get("workers", base["workers"])
    return ServeConfig(
        dataclasses.replace(hub, **changes), ticker_rate=rate, workers=workers, **switches
    )


def _storage_option(given: dict[str, Any]) -> SQLiteStorage | MemoryStorage | RedisStorage | None:
    """The storage the options (or ``WSHUB_REDIS_URL``) choose, ``None`` when they don't."""
    chosen = [name for name in ("data_dir", "ephemeral", "redis") if name in given]
    if len(chosen) > 1:
        flags = " and ".join(_flag(name) for name in chosen)
        raise ConfigError([f"storage: {flags} exclude each other: give one"])
    if "data_dir" in given:
        return SQLiteStorage(data_dir=given["data_dir"])
    if "ephemeral" in given:
        return MemoryStorage()
    url = given.get("redis") or (None if chosen else config.env_str("WSHUB_REDIS_URL"))
    if url:
        try:
            return RedisStorage(url=url)
        except ConfigError as exc:
            raise exc.within("storage") from None
    return None


# --- wshub config ---------------------------------------------------------------------------

_STARTING_FILE_HEADER = """\
# wshub configuration: run it with `wshub serve --config {path}`, check it with
# `wshub config check {path}`, see what runs with `wshub config show --config {path}`.
# Every option of `wshub serve` is a field here (--max-size is max_size in [transport]);
# an option given on the command line wins over this file. Secrets do not belong here:
# set WSHUB_SECRET and WSHUB_API_KEY in the environment, or name a file that holds one
# (secret_file in [auth], api_key_file in [api]). Reference: docs/configuration.md.

# the demo pages: chat at /, live prices at /ticker (with a simulated feed of ticker_rate
# ticks per second) and the whiteboard at /board. Off here: their namespaces (chat, ticker,
# board, as in `wshub config show` without --config) are not all declared below.
# workers: how many processes serve the port; more than 1 needs kind = "redis" in [storage]
# (docs/deployment.md, "Several workers").
"""


def starting_config() -> ServeConfig:
    """What ``wshub config init`` writes: history in SQLite, one namespace, no anonymous
    users (they are allowed with ``allow_anonymous = true`` in ``[auth]``)."""
    chat = Namespace(
        name="chat",
        options=NamespaceOptions(history_size=100, history_ttl=86400.0, presence=True),
    )
    hub = HubConfig(storage=SQLiteStorage(), namespaces=(chat,))
    # The demo pages need the demo's namespaces (ticker, board): off in a file of one's own.
    return ServeConfig(hub, chat=False, ticker=False, board=False)


def _config_init(args: argparse.Namespace) -> int:
    path = Path(args.path)
    starting = starting_config()
    text = _STARTING_FILE_HEADER.format(path=path) + dump_toml(
        {**starting.apps(), **starting.hub.serialize(redact=False)}, comments=True
    )
    try:
        with path.open("x", encoding="utf-8") as file:
            file.write(text)
    except FileExistsError:
        raise ConfigError([f"{path}: exists already (not overwritten)"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot write: {exc.strerror or exc}"]) from exc
    print(f"wshub: wrote {path}; check it with: wshub config check {path}")
    return 0


def _config_check(args: argparse.Namespace) -> int:
    try:
        load_file(args.path)
    except ConfigError as exc:
        sys.stderr.write("".join(f"wshub: error: {error}\n" for error in exc.errors))
        return 2
    print(f"wshub: {args.path}: ok")
    return 0


def _config_show(args: argparse.Namespace) -> int:
    effective = serve_config(args)
    print(dump_toml({**effective.apps(), **effective.hub.serialize()}), end="")
    return 0


# --- wshub serve ------------------------------------------------------------------------


def _serve_command(args: argparse.Namespace) -> int:
    settings = serve_config(args)
    if "worker_of" in args:
        if not prepare_worker(args.worker_of):
            return 0  # the supervisor died before this worker could ask to follow it
    elif settings.workers > 1:
        return _supervise(args, settings)
    shown_key = None
    if not args.config and settings.console and settings.hub.api.api_key is None:
        # The demo's console (and its HTTP API) need a key: one for this run, printed once
        # to whoever started the hub. A file-configured hub never gets one it did not ask for.
        shown_key = secrets.token_urlsafe(18)
        api = dataclasses.replace(settings.hub.api, api_key=shown_key)
        settings = dataclasses.replace(settings, hub=dataclasses.replace(settings.hub, api=api))
    # A feed belongs to the hub, not to each node: with Redis, `wshub feed` runs once instead.
    redis = isinstance(settings.hub.storage, RedisStorage)
    feed_rate = None if not settings.ticker or redis else settings.ticker_rate
    run(_serve(settings, feed_rate=feed_rate, shown_key=shown_key))
    return 0


def _supervise(args: argparse.Namespace, settings: ServeConfig) -> int:
    """Run ``settings.workers`` copies of this command on one port (:mod:`wshub.supervisor`).

    Each worker runs this command line again, plus ``--workers 1``, ``--reuse-port`` and the
    port: one picked here when ``--port 0``, held by a socket that accepts nothing. A worker
    still running ``drain_timeout`` + 20 s after SIGTERM (50 s by default) is killed.
    """
    listen = settings.hub.listen
    with contextlib.ExitStack() as stack:
        port = listen.port
        if port == 0:
            try:
                reserved = stack.enter_context(reserve_port(listen.host))
            except OSError as exc:
                raise ValueError(_listen_error(listen.host, port, exc)) from exc
            port = reserved.getsockname()[1]
        command = [sys.executable, "-m", "wshub", *args.argv]
        command += ["--workers", "1", "--reuse-port", "--port", str(port)]
        command += ["--worker-of", str(os.getpid())]
        env, announce = None, []
        if not args.config and settings.console and settings.hub.api.api_key is None:
            # As a lone demo does, with one key for every worker: through their environment.
            key = secrets.token_urlsafe(18)
            env = config.environment(WSHUB_API_KEY=key)
            announce.append(f"wshub: API key of the console and the HTTP API: {key}")
        # A worker's SIGTERM is a drain: give it drain_timeout, and its closing handshakes.
        supervisor = Supervisor(
            command,
            workers=settings.workers,
            env=env,
            announce=announce,
            stop_timeout=listen.drain_timeout + 20.0,
        )
        return supervisor.run()


def _feed_command(args: argparse.Namespace) -> int:
    api_key = args.api_key or config.env_str("WSHUB_API_KEY")
    if not api_key:
        raise ValueError("an API key is needed: --api-key or WSHUB_API_KEY")
    try:
        rate = float(args.rate)
    except ValueError:
        raise ValueError(f"--rate must be a number, not {args.rate!r}") from None
    try:
        run(run_http_feed(args.url, api_key, rate=rate, seed=args.seed))
    except (OSError, HubError) as exc:  # the first publications: a wrong URL, key or hub
        raise ValueError(f"cannot publish to the hub at {args.url}: {exc}") from exc
    except KeyboardInterrupt:
        pass
    return 0


def _display_host(host: str) -> str:
    if host in ("", "0.0.0.0", "::"):
        return "localhost"
    return f"[{host}]" if ":" in host else host


def _listen_error(host: str, port: int, exc: OSError) -> str:
    """One line saying why the hub cannot listen on ``host:port``."""
    where = f"cannot listen on {_display_host(host) if host else '*'}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return f"{where}: the port is in use (choose another with --port, or 0 for any)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{where}: the address is not one of this machine's (see --host)"
    return f"{where}: {exc.strerror or exc}"


class _Signals:
    """What the signals asked: the first one (SIGTERM: drain, SIGINT: stop), a second one."""

    def __init__(self) -> None:
        self.first = asyncio.Event()
        self.second = asyncio.Event()
        self.drain = False

    def received(self, signum: int) -> None:
        if self.first.is_set():
            self.second.set()
        else:
            self.drain = signum == signal.SIGTERM
            self.first.set()


async def _drain(server: HubServer, stop: asyncio.Event) -> None:
    """``server.drain()``, cut short when ``stop`` is set (the rest is closed with 1001)."""
    drain = asyncio.ensure_future(server.drain())
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait((drain, stopped), return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not drain.done():
        logger.info("second signal: stopping at once")
    drain.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await drain


async def _serve(
    settings: ServeConfig, *, feed_rate: float | None = None, shown_key: str | None = None
) -> None:
    """Serve until a signal: SIGTERM drains (:meth:`HubServer.drain`: 1012 closes spread
    over ``listen.drain_period``, at most ``listen.drain_timeout``), SIGINT closes every
    connection with 1001 at once, and so does a second signal during a drain.

    ``shown_key``, the API key made up for the demo, is printed with the console's address.

    The apps ``settings`` switches on are served; with ``feed_rate``, the ticker's price
    feed runs in the same process at that rate.
    """
    hub, listen = settings.hub, settings.hub.listen
    signals = _Signals()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on Windows' event loop
            loop.add_signal_handler(signum, signals.received, signum)
    handlers: list[Any] = [ChatApp(ws_path=listen.path)] if settings.chat else []
    if settings.ticker:
        handlers.append(TickerApp(ws_path=listen.path))
    if settings.board:
        # The page's snapshot rule depends on how much history the board namespace keeps.
        board = next((n.options for n in hub.namespaces if n.name == "board"), None)
        handlers.append(
            BoardApp(
                ws_path=listen.path,
                history_size=DEFAULT_HISTORY_SIZE if board is None else board.history_size,
                max_publication_size=hub.limits.max_publication_size,
            )
        )
    if settings.console:
        handlers.append(ConsoleApp(ws_path=listen.path))
    try:
        server: HubServer = await start_hub(hub, http_handlers=handlers)
    except ConnectionError:
        raise  # a service the hub needs (Redis) does not answer: main() says so
    except OSError as exc:
        raise ValueError(_listen_error(listen.host, listen.port, exc)) from exc
    # The cyclic garbage collector's cost grows with what is alive: 76 of ~310 us of CPU per
    # connect+subscribe at 10,000 connections (benchmarks/PROFILE.md, "Handshake"). What
    # start-up made (modules, apps, the hub) lives as long as the process: frozen, full
    # collections stop walking it. A young generation of 10,000 objects instead of 700 makes
    # every collection rarer; the hub's objects are mostly freed by reference counting.
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    feed = None if feed_rate is None else asyncio.create_task(run_feed(server.hub, rate=feed_rate))
    try:
        shown = _display_host(listen.host)
        secure = "s" if hub.tls.certfile else ""
        if settings.chat:
            print(f"wshub: chat on http{secure}://{shown}:{server.port}/", flush=True)
        if settings.ticker:
            fed = "" if feed is not None else " (no feed here: run `wshub feed` once for the hub)"
            print(
                f"wshub: live prices on http{secure}://{shown}:{server.port}/ticker{fed}",
                flush=True,
            )
        if settings.board:
            print(f"wshub: board on http{secure}://{shown}:{server.port}/board", flush=True)
        if settings.console:
            if shown_key is not None:
                key = f"API key: {shown_key}"
            else:
                key = "with the API key" if hub.api.effective_key else "needs --api-key"
            print(
                f"wshub: console on http{secure}://{shown}:{server.port}/console ({key})",
                flush=True,
            )
        print(f"wshub: hub on ws{secure}://{shown}:{server.port}{server.path}", flush=True)
        if hub.auth.allow_anonymous:
            print("wshub: anonymous users allowed", flush=True)
        if isinstance(hub.storage, SQLiteStorage):
            print(f"wshub: history in {hub.storage.data_dir}", flush=True)
        if isinstance(hub.storage, RedisStorage):
            from wshub.hub.backends.redis import describe_url  # redis is optional

            shown_url = describe_url(hub.storage.url)
            print(f"wshub: history, presence and fan-out in Redis at {shown_url}", flush=True)
        await signals.first.wait()
        if signals.drain:
            logger.info("SIGTERM: draining (a second signal stops at once)")
            await _drain(server, signals.second)
        logger.info("shutting down")
    finally:
        if feed is not None:
            feed.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feed
        await server.close()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(signum)


if __name__ == "__main__":  # pragma: no cover - python -m wshub.cli
    sys.exit(main())
