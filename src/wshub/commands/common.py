"""What ``wshub client``, ``wshub sub`` and ``wshub pub`` share: exit statuses, one-line
errors, TLS options and the event loop they run on.

Exit statuses (the same for the three commands, documented in docs/api.md):

* ``0``: done (``client``: the connection closed with 1000);
* ``1``: a runtime failure: the server could not be reached or refused the handshake, the
  hub refused a command, a ``client`` connection closed with any code but 1000;
* ``2``: bad usage or bad input (an unknown option, a URL that is not ``ws://``/``wss://``,
  DATA that is not JSON, a malformed ``--header``).

An error is one line on standard error, ``wshub COMMAND: error: WHAT``, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import ssl
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, NoReturn, TypeVar

from wshub.aio import run

__all__ = [
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_USAGE",
    "CommandError",
    "add_command",
    "add_tls_options",
    "describe",
    "one_line_errors",
    "run_command",
    "seconds",
    "tls_context",
    "until_stopped",
    "usage_error",
    "warn",
]

T = TypeVar("T")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class CommandError(Exception):
    """Ends a command: ``message`` goes to standard error as one line, ``status`` is the exit."""

    def __init__(self, message: str, status: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def usage_error(message: str) -> CommandError:
    """A :class:`CommandError` for bad usage or bad input (exit status 2)."""
    return CommandError(message, EXIT_USAGE)


def add_command(
    commands: Any, name: str, *, func: Callable[[argparse.Namespace], int], **kwargs: Any
) -> argparse.ArgumentParser:
    """Add subcommand ``name`` to ``commands`` (``help``, ``description`` in ``kwargs``).

    The parser it returns runs ``func`` (parsed arguments in, exit status out), reports
    usage errors in one line and has the TLS options.
    """
    parser: argparse.ArgumentParser = commands.add_parser(name, **kwargs)
    one_line_errors(parser)
    add_tls_options(parser)
    parser.set_defaults(func=func)
    return parser


def one_line_errors(parser: argparse.ArgumentParser) -> None:
    """Make ``parser`` report a usage error as one line (exit 2) instead of usage + error.

    argparse prints the whole usage before the error; scripts and people reading a log
    want the one line that says what is wrong, and ``--help`` still shows the usage.
    """

    def error(message: str) -> NoReturn:
        parser.exit(EXIT_USAGE, f"{parser.prog}: error: {message} (see {parser.prog} --help)\n")

    parse_known_args = parser.parse_known_args

    def parse_all(*args: Any, **kwargs: Any) -> Any:
        # ``wshub`` hands a subcommand the rest of the line and reports what it left over
        # with the top-level usage; say it here, in the subcommand's one line.
        namespace, extras = parse_known_args(*args, **kwargs)
        if extras:
            error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras

    # Instance overrides, on purpose: the parser is made by ``add_parser``.
    setattr(parser, "error", error)  # noqa: B010
    setattr(parser, "parse_known_args", parse_all)  # noqa: B010


def warn(prog: str, message: str) -> None:
    """One line on standard error that does not end the command."""
    print(f"{prog}: {message}", file=sys.stderr, flush=True)


def add_tls_options(parser: argparse.ArgumentParser) -> None:
    """``--insecure`` and ``--cafile``: how a ``wss://``/``https://`` server is verified."""
    group = parser.add_argument_group("TLS (wss:// and https:// URLs)")
    group.add_argument(
        "--insecure",
        action="store_true",
        help="do not verify the server's certificate (for testing only)",
    )
    group.add_argument(
        "--cafile",
        metavar="PEM",
        help="trust the CA certificates in this file instead of the system's",
    )


def tls_context(args: argparse.Namespace, *, secure: bool) -> ssl.SSLContext | None:
    """The client TLS context for ``--insecure``/``--cafile``; ``None`` for a plain URL.

    Raises:
        CommandError: TLS options with a plain URL (exit 2), or an unreadable ``--cafile``.
    """
    if not secure:
        if args.insecure or args.cafile:
            raise usage_error("--insecure and --cafile need a wss:// or https:// URL")
        return None
    try:
        context = ssl.create_default_context(cafile=args.cafile)
    except (OSError, ssl.SSLError) as exc:
        raise usage_error(f"cannot read --cafile {args.cafile}: {exc}") from exc
    if args.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def seconds(text: str) -> float:
    """An argparse type for a duration in seconds, ``>= 0``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0:  # "not" also refuses nan
        raise argparse.ArgumentTypeError(f"must be >= 0 seconds, got {text!r}")
    return value


def describe(exc: BaseException) -> str:
    """A short, human description of a connection failure, for the one error line."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"certificate verification failed ({exc.verify_message}); "
            "use --cafile to trust its CA, or --insecure"
        )
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc)
    return text if text else type(exc).__name__


async def until_stopped(stop: asyncio.Event, awaitable: Awaitable[T]) -> T | None:
    """The result of ``awaitable``, or ``None`` when ``stop`` is set first (Ctrl-C).

    What a command waits for may take long (a hub that went away is retried without end);
    Ctrl-C must still end it. ``awaitable`` is then cancelled.
    """
    task = asyncio.ensure_future(awaitable)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((task, stopper), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return None if task.cancelled() else task.result()


def run_command(prog: str, main: Callable[[asyncio.Event], Coroutine[Any, Any, int]]) -> int:
    """Run ``main(stop)`` on wshub's event loop; return its exit status.

    ``stop`` is set on SIGINT (Ctrl-C) and SIGTERM, so that a command ends quietly the way
    it chooses (``sub`` exits 0, ``client`` closes the connection with 1000). A
    :class:`CommandError` raised by ``main`` becomes its one line on standard error.
    """

    async def wrapper() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):  # not on Windows' event loop
                loop.add_signal_handler(signum, stop.set)
        try:
            return await main(stop)
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError):
                    loop.remove_signal_handler(signum)

    try:
        return run(wrapper())
    except CommandError as exc:
        print(f"{prog}: error: {exc.message}", file=sys.stderr, flush=True)
        return exc.status
