"""The ``wshub`` command: ``wshub serve`` runs a hub with the chat page, ``wshub token`` signs
connection tokens.

``wshub serve`` with no options is the demo that ``make run`` starts: a hub on
http://127.0.0.1:8765/ whose chat room works in a browser with no configuration and no other
service. Without a token secret nobody could present a token, so anonymous users are then
allowed, with the default anonymous permissions (chat, board, tickers); history is kept in
SQLite under ``./.wshub-data``.

Every limit of the WebSocket layer and of the hub is an option with the name of its keyword
argument (``max_size`` is ``--max-size``); the hub's limits are read from
:class:`~wshub.hub.HubLimits` itself, so that a new limit appears here without another edit.
Secrets and the other deployment strings may come from the environment (``WSHUB_SECRET``,
``WSHUB_API_KEY``, ``WSHUB_REDIS_URL``, ``WSHUB_TOKEN_AUDIENCE``, ``WSHUB_TOKEN_ISSUER``),
read through :mod:`wshub.config` like every environment variable.

Production switches (docs/deployment.md): ``--certfile``/``--keyfile`` serve https and wss,
``--metrics`` says who may read ``/metrics``, ``--reuse-port`` lets several processes share
the port, ``--log-level``/``--log-format json`` shape the logs on standard error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import signal
import ssl
import sys
from collections.abc import Callable, Sequence
from typing import Any

from wshub import config
from wshub.aio import run
from wshub.apps.board import BoardApp
from wshub.apps.chat import ChatApp
from wshub.apps.ticker import TickerApp, run_feed
from wshub.apps.ticker.feed import run_http_feed
from wshub.commands import register as register_commands
from wshub.exceptions import HubError
from wshub.hub import HubLimits
from wshub.hub.auth import make_token
from wshub.hub.metrics import METRICS_ACCESS
from wshub.hub.server import HubServer, start_hub
from wshub.log import LEVELS, LOG_FORMATS, configure_logging

__all__ = ["build_parser", "main"]

logger = logging.getLogger("wshub.server")

DEFAULT_DATA_DIR = ".wshub-data"

# Options of the WebSocket layer offered on ``serve`` (name, parser, help); each is passed on
# only when given, so that the layer's own documented default applies otherwise.
_NONE_WORDS = ("none", "off", "unlimited")


def _optional(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type that also accepts ``none`` (no limit / disabled)."""

    def parse(text: str) -> Any:
        if text.strip().lower() in _NONE_WORDS:
            return None
        return kind(text)

    parse.__name__ = kind.__name__
    return parse


def _compression(text: str) -> str | None:
    if text.strip().lower() in _NONE_WORDS:
        return None
    if text != "deflate":
        raise argparse.ArgumentTypeError("use 'deflate' or 'none'")
    return text


_TRANSPORT_OPTIONS: tuple[tuple[str, Callable[[str], Any], str], ...] = (
    ("max_size", _optional(int), "largest message in bytes (default 1 MiB; 'none': no limit)"),
    ("max_queue", _optional(int), "unread messages buffered per connection (default 16)"),
    ("write_limit", int, "write buffer high-water mark in bytes (default 65536)"),
    ("ping_interval", _optional(float), "seconds between keepalive pings (default 20)"),
    ("ping_timeout", _optional(float), "seconds to wait for a pong (default 20)"),
    ("open_timeout", _optional(float), "seconds for the opening handshake (default 10)"),
    ("close_timeout", _optional(float), "seconds for the closing handshake (default 10)"),
    ("max_connections", _optional(int), "open connections before 503 (default: no limit)"),
    ("max_request_size", _optional(int), "largest HTTP request in bytes (default 1 MiB)"),
    ("compression", _compression, "'deflate' (default) or 'none'"),
)


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


def _limit_parser(annotation: Any) -> Callable[[str], Any]:
    """How to read one :class:`HubLimits` field from its annotation (``"float | None"``)."""
    text = str(annotation)
    kind: Callable[[str], Any] = float if "float" in text else int
    return _optional(kind) if "None" in text else kind


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``wshub`` (exposed for tests and documentation)."""
    parser = argparse.ArgumentParser(
        prog="wshub", description="WebSocket toolkit and real-time messaging hub."
    )
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
            "the HTTP API (/healthz, /api/...). With no secret (--secret or WSHUB_SECRET), "
            "anonymous users are allowed with the default anonymous permissions, so that the "
            "chat works with no configuration; with a secret, only token holders may connect "
            "unless --allow-anonymous is given."
        ),
    )
    serve.add_argument("--host", default="127.0.0.1", help="interface (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8765, help="TCP port, 0 = any (default 8765)")
    serve.add_argument("--path", default="/ws", help="WebSocket path (default: /ws)")
    serve.add_argument(
        "--data-dir",
        default=DEFAULT_DATA_DIR,
        help=f"where the SQLite history lives, created if needed (default: ./{DEFAULT_DATA_DIR})",
    )
    serve.add_argument(
        "--ephemeral", action="store_true", help="keep history in memory only (lost on exit)"
    )
    serve.add_argument(
        "--redis",
        metavar="URL",
        help="share history, presence and fan-out with the other nodes through Redis, e.g. "
        "redis://localhost:6379/0; replaces --data-dir (default: $WSHUB_REDIS_URL)",
    )
    serve.add_argument(
        "--allow-anonymous",
        action="store_true",
        help="accept connections without a token even when a secret is set",
    )
    serve.add_argument(
        "--secret",
        help="HS256 secret for connection tokens, at least 32 bytes (default: $WSHUB_SECRET)",
    )
    serve.add_argument(
        "--api-key", help="key for the HTTP API (default: $WSHUB_API_KEY; none: API off)"
    )
    serve.add_argument(
        "--token-audience",
        metavar="AUD",
        help="refuse tokens whose aud claim is not AUD (default: $WSHUB_TOKEN_AUDIENCE; "
        "unset: aud not checked)",
    )
    serve.add_argument(
        "--token-issuer",
        metavar="ISS",
        help="refuse tokens whose iss claim is not ISS (default: $WSHUB_TOKEN_ISSUER; "
        "unset: iss not checked)",
    )
    serve.add_argument(
        "--token-leeway",
        type=_seconds(positive=False),
        default=argparse.SUPPRESS,
        metavar="SECONDS",
        help="clock skew tolerated on a token's exp and nbf (default 0)",
    )
    serve.add_argument(
        "--dedupe-window",
        type=_seconds(positive=True),
        default=argparse.SUPPRESS,
        metavar="SECONDS",
        help="how long a publish's message_id is remembered, so that a retry is answered "
        "as a duplicate (default 120)",
    )
    serve.add_argument(
        "--origin",
        action="append",
        dest="origins",
        default=argparse.SUPPRESS,
        metavar="ORIGIN",
        help="allowed Origin of WebSocket upgrades (repeatable; default: any)",
    )
    serve.add_argument("--no-chat", action="store_true", help="do not serve the chat page")
    serve.add_argument("--no-board", action="store_true", help="do not serve the board page")
    serve.add_argument(
        "--no-ticker", action="store_true", help="do not serve /ticker nor run its price feed"
    )
    serve.add_argument(
        "--ticker-rate", type=float, default=20.0, help="price ticks per second (default 20)"
    )
    serve.add_argument(
        "--metrics",
        choices=METRICS_ACCESS,
        default=argparse.SUPPRESS,
        help="who may GET /metrics: local (loopback clients or the API key; the default), "
        "key, open, off",
    )
    serve.add_argument(
        "--reuse-port",
        action="store_true",
        default=argparse.SUPPRESS,
        help="set SO_REUSEPORT, so that several processes can listen on the port",
    )
    serve.add_argument(
        "--backlog", type=int, default=argparse.SUPPRESS, help="listen backlog (default 1024)"
    )
    tls = serve.add_argument_group("TLS (serve https:// and wss://)")
    tls.add_argument("--certfile", help="PEM certificate chain, the server's certificate first")
    tls.add_argument("--keyfile", help="PEM private key (default: in the certfile)")
    logs = serve.add_argument_group("logging (also accepted before the command)")
    logs.add_argument("--log-level", choices=LEVELS, default=argparse.SUPPRESS)
    logs.add_argument("--log-format", choices=LOG_FORMATS, default=argparse.SUPPRESS)
    transport = serve.add_argument_group("WebSocket limits")
    for name, kind, text in _TRANSPORT_OPTIONS:
        transport.add_argument(_flag(name), type=kind, default=argparse.SUPPRESS, help=text)
    hub = serve.add_argument_group("hub limits (docs/hub.md; 'none' where no limit is allowed)")
    for field in dataclasses.fields(HubLimits):
        hub.add_argument(
            _flag(field.name),
            dest=f"limit_{field.name}",
            type=_limit_parser(field.type),
            default=argparse.SUPPRESS,
            metavar=field.name.upper(),
            help=f"(default: {field.default})",
        )
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
        type=_optional(float),
        default=3600.0,
        help="seconds until it expires (default 3600; 'none': no exp claim)",
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``wshub`` with ``argv`` (default: the command line); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    try:
        status: int = args.func(args)
    except ValueError as exc:
        # Bad configuration (a short secret, an invalid permission): say what, not a traceback.
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


# --- wshub serve ------------------------------------------------------------------------


def _serve_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :func:`start_hub` for the parsed command line."""
    secret = args.secret or config.env_str("WSHUB_SECRET")
    api_key = args.api_key or config.env_str("WSHUB_API_KEY")
    redis_url = args.redis or config.env_str("WSHUB_REDIS_URL")
    audience = args.token_audience or config.env_str("WSHUB_TOKEN_AUDIENCE")
    issuer = args.token_issuer or config.env_str("WSHUB_TOKEN_ISSUER")
    given = vars(args)
    limits = {
        field.name: given[f"limit_{field.name}"]
        for field in dataclasses.fields(HubLimits)
        if f"limit_{field.name}" in given
    }
    options: dict[str, Any] = {
        "data_dir": None if args.ephemeral or redis_url else args.data_dir,
        "ephemeral": args.ephemeral,
        # Without a secret no token can be checked: anonymous is the only way in.
        "allow_anonymous": args.allow_anonymous or secret is None,
        "secret": secret,
        "api_key": api_key,
        "path": args.path,
        "http_handlers": ([] if args.no_chat else [ChatApp(ws_path=args.path)])
        + ([] if args.no_ticker else [TickerApp(ws_path=args.path)]),
        "limits": HubLimits(**limits),
    }
    if not args.no_board:
        size = options["limits"].max_publication_size
        options["http_handlers"].append(BoardApp(ws_path=args.path, max_publication_size=size))
    for name, _, _ in _TRANSPORT_OPTIONS:
        if name in given:
            options[name] = given[name]
    for name in ("origins", "metrics", "reuse_port", "backlog", "token_leeway", "dedupe_window"):
        if name in given:
            options[name] = given[name]
    if audience:
        options["token_audience"] = audience
    if issuer:
        options["token_issuer"] = issuer
    if args.certfile or args.keyfile:
        options["ssl"] = _tls_context(args.certfile, args.keyfile)
    if redis_url:
        options["redis_url"] = redis_url
    return options


def _tls_context(certfile: str | None, keyfile: str | None) -> ssl.SSLContext:
    """A server context with Python's secure defaults and the given certificate.

    Raises:
        ValueError: no certificate, or the files cannot be read or do not match.
    """
    if not certfile:
        raise ValueError("--keyfile needs --certfile")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot load the TLS certificate: {exc}") from exc
    return context


def _serve_command(args: argparse.Namespace) -> int:
    options = _serve_options(args)
    if not args.no_ticker and not 0 < args.ticker_rate <= 10_000:
        raise ValueError("--ticker-rate must be > 0 and at most 10000")
    # A feed belongs to the hub, not to each node: with Redis, `wshub feed` runs once instead.
    feed_rate = None if args.no_ticker or "redis_url" in options else args.ticker_rate
    run(_serve(args.host, args.port, options, feed_rate))
    return 0


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


async def _serve(
    host: str, port: int, options: dict[str, Any], feed_rate: float | None = None
) -> None:
    """Serve until SIGINT or SIGTERM, then close every connection with 1001.

    With ``feed_rate``, the ticker's price feed runs in the same process at that rate.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on Windows' event loop
            loop.add_signal_handler(signum, stop.set)
    server: HubServer = await start_hub(host or None, port, **options)
    feed = None if feed_rate is None else asyncio.create_task(run_feed(server.hub, rate=feed_rate))
    try:
        shown = _display_host(host)
        secure = "s" if "ssl" in options else ""
        if any(isinstance(handler, ChatApp) for handler in options["http_handlers"]):
            print(f"wshub: chat on http{secure}://{shown}:{server.port}/", flush=True)
        if any(isinstance(handler, TickerApp) for handler in options["http_handlers"]):
            fed = "" if feed is not None else " (no feed here: run `wshub feed` once for the hub)"
            print(
                f"wshub: live prices on http{secure}://{shown}:{server.port}/ticker{fed}",
                flush=True,
            )
        if any(isinstance(handler, BoardApp) for handler in options["http_handlers"]):
            print(f"wshub: board on http{secure}://{shown}:{server.port}/board", flush=True)
        print(f"wshub: hub on ws{secure}://{shown}:{server.port}{server.path}", flush=True)
        if options["allow_anonymous"]:
            print("wshub: anonymous users allowed", flush=True)
        if options["data_dir"] is not None:
            print(f"wshub: history in {options['data_dir']}", flush=True)
        if "redis_url" in options:
            from wshub.hub.backends.redis import describe_url  # redis is optional

            shown_url = describe_url(options["redis_url"])
            print(f"wshub: history, presence and fan-out in Redis at {shown_url}", flush=True)
        await stop.wait()
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
