"""``wshub client URL``: an interactive WebSocket client, for debugging any WebSocket server.

Lines read from standard input are sent as text messages; messages received are printed on
standard output as they come (text as is, binary as ``(binary) `` and its bytes in hex). What
the client itself has to say (``connection closed: CODE REASON`` at the end, ``/ping``'s
round-trip time, ``/help``) goes to standard error, so that standard output carries only
what the server sent.

A line that starts with ``/`` is a command (``//`` sends a line that starts with ``/``):

* ``/ping``: send a ping and print the round-trip time of its pong;
* ``/close [CODE [REASON]]``: close with CODE (default 1000) and REASON, then exit;
* ``/binary HEX``: send the bytes as a binary message (spaces between bytes allowed);
* ``/help``: list the commands.

Two modes, chosen by whether standard input and output are a terminal:

* **On a terminal**, the line being typed is edited with readline; a message that arrives
  meanwhile is printed above it and the prompt and the typed text are drawn again, so
  nothing is garbled. Ctrl-D or Ctrl-C closes with 1000.
* **From a pipe or a file**, each line is sent in turn. Before it closes, at ``/close`` or at
  the end of the input (then with 1000), the client keeps printing what arrives for
  ``--reply-timeout`` seconds (1 s by default): replies to the last lines may still be on
  their way. A bad command ends the client with exit status 2.

The exit status is that of the closing: 0 when the connection closed with 1000, 1 with any
other code (or when it could not be opened), 2 for bad usage (see :mod:`.common`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from wshub.aio import ClientConnection, connect
from wshub.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from wshub.protocol import Headers
from wshub.protocol.frames import is_valid_close_code
from wshub.protocol.uri import parse_uri

from .common import (
    EXIT_FAILURE,
    EXIT_OK,
    CommandError,
    add_command,
    describe,
    run_command,
    seconds,
    tls_context,
    until_stopped,
    usage_error,
)

__all__ = ["Binary", "Close", "Help", "Ping", "Text", "add_parser", "parse_line"]

PROG = "wshub client"
PROMPT = "> "
#: Seconds to keep reading before closing with piped input, for replies still in flight.
DEFAULT_REPLY_TIMEOUT = 1.0
#: The largest message accepted by default, in bytes (``connect()``'s default).
DEFAULT_MAX_SIZE = 2**20
#: Lines read ahead of the sending; the reader thread waits beyond that.
INPUT_QUEUE = 64
# Control frames carry at most 125 bytes, 2 of them the close code (RFC 6455 §5.5).
MAX_CLOSE_REASON = 123

HELP = """\
commands:
  /ping                     send a ping, print the round-trip time
  /close [CODE [REASON]]    close the connection (default 1000) and exit
  /binary HEX               send bytes as a binary message, e.g. /binary 01 ff
  /help                     this list
  //TEXT                    send /TEXT as a text message"""


# -- what a line of input asks for -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Text:
    """Send ``text`` as a text message."""

    text: str


@dataclass(frozen=True, slots=True)
class Binary:
    """Send ``data`` as a binary message (``/binary HEX``)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Ping:
    """Send a ping and report the round-trip time (``/ping``)."""


@dataclass(frozen=True, slots=True)
class Close:
    """Close the connection with ``code`` and ``reason`` (``/close``)."""

    code: int = 1000
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Help:
    """List the commands (``/help``)."""


Action = Text | Binary | Ping | Close | Help


def parse_line(line: str) -> Action:
    """What a line of input asks for.

    Raises:
        ValueError: an unknown command, or a command with bad arguments; the message says
            which, in words fit for the user.
    """
    if not line.startswith("/"):
        return Text(line)
    if line.startswith("//"):
        return Text(line[1:])
    command, _, rest = line.partition(" ")
    if command == "/ping" and not rest.strip():
        return Ping()
    if command == "/help" and not rest.strip():
        return Help()
    if command == "/binary":
        try:
            return Binary(bytes.fromhex(rest))
        except ValueError:
            raise ValueError(f"/binary needs hexadecimal bytes, got {rest!r}") from None
    if command == "/close":
        return _parse_close(rest)
    if command in ("/ping", "/help"):
        raise ValueError(f"{command} takes no arguments")
    raise ValueError(f"unknown command {command}; /help lists them")


def _parse_close(rest: str) -> Close:
    code_text, _, reason = rest.strip().partition(" ")
    if not code_text:
        return Close()
    if not code_text.isdigit() or not is_valid_close_code(int(code_text)):
        raise ValueError(
            f"/close needs a close code that may be sent (1000-1014 or 3000-4999), "
            f"got {code_text!r}"
        )
    if len(reason.encode("utf-8")) > MAX_CLOSE_REASON:
        raise ValueError(f"a close reason is at most {MAX_CLOSE_REASON} bytes")
    return Close(int(code_text), reason)


# -- the command line ----------------------------------------------------------------------------


def add_parser(commands: Any) -> None:
    """Add ``client`` to the subcommands of ``wshub``."""
    parser = add_command(
        commands,
        "client",
        func=client_command,
        help="an interactive WebSocket client (like wscat)",
        description=(
            "Connect to a WebSocket server; send each line of input as a text message and "
            "print each message received (binary ones in hex). Commands: /ping, "
            "/close [CODE [REASON]], /binary HEX, /help. With input from a pipe it exits "
            "with 0 when the connection closed with 1000, 1 otherwise."
        ),
    )
    parser.add_argument("url", metavar="URL", help="ws:// or wss:// URL")
    parser.add_argument(
        "--subprotocol",
        action="append",
        dest="subprotocols",
        default=[],
        metavar="NAME",
        help="offer this subprotocol (repeatable, in order of preference)",
    )
    parser.add_argument(
        "--header",
        action="append",
        dest="headers",
        default=[],
        metavar="NAME:VALUE",
        help="add a request header (repeatable), e.g. 'Authorization: Bearer x'",
    )
    parser.add_argument("--origin", help="the Origin header to send")
    parser.add_argument(
        "--max-size",
        type=_max_size,
        default=DEFAULT_MAX_SIZE,
        metavar="BYTES",
        help="largest message accepted; a larger one closes with 1009 "
        "(default 1 MiB; 'none': no limit)",
    )
    parser.add_argument(
        "--reply-timeout",
        type=seconds,
        default=DEFAULT_REPLY_TIMEOUT,
        metavar="SECONDS",
        help="with piped input: how long to keep printing replies before closing, at /close "
        f"or at the end of the input (default {DEFAULT_REPLY_TIMEOUT:g})",
    )


def _max_size(text: str) -> int | None:
    """An argparse type for ``--max-size``: bytes, or ``none`` for no limit."""
    if text.strip().lower() == "none":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of bytes: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 byte, got {text!r}")
    return value


def parse_headers(values: list[str]) -> Headers:
    """``NAME:VALUE`` strings as request headers.

    Raises:
        CommandError: one is malformed (exit status 2).
    """
    headers = Headers()
    for value in values:
        name, colon, text = value.partition(":")
        if not colon:
            raise usage_error(f"--header needs NAME:VALUE, got {value!r}")
        try:
            headers.add(name.strip(), text.strip())
        except ValueError as exc:
            raise usage_error(f"--header {value!r}: {exc}") from None
    return headers


def client_command(args: argparse.Namespace) -> int:
    """Run ``wshub client``; returns the exit status."""
    return run_command(PROG, lambda stop: _client(args, stop))


async def _open(args: argparse.Namespace) -> ClientConnection:
    try:
        secure = parse_uri(args.url).secure
    except InvalidURI as exc:
        raise usage_error(str(exc)) from None
    headers = parse_headers(args.headers)
    ssl = tls_context(args, secure=secure)
    try:
        return await connect(
            args.url,
            subprotocols=args.subprotocols or None,
            additional_headers=headers,
            origin=args.origin,
            ssl=ssl,
            max_size=args.max_size,
        )
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        raise CommandError(f"cannot connect to {args.url}: {describe(exc)}") from None


async def _client(args: argparse.Namespace, stop: asyncio.Event) -> int:
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    ws = await until_stopped(stop, _open(args))
    if ws is None:
        raise CommandError("interrupted before the connection was open")
    out = Output()
    if interactive:
        out = terminal = Terminal()
        accepted = f" (subprotocol {ws.subprotocol})" if ws.subprotocol else ""
        terminal.note(f"connected to {args.url}{accepted}; /help lists the commands")
        terminal.prompting = True  # from now on input() shows the prompt
    lines = InputLines(asyncio.get_running_loop())
    read = _read_terminal if interactive else _read_pipe
    threading.Thread(target=read, args=(lines,), name="stdin", daemon=True).start()
    session = Session(ws, out, interactive=interactive, reply_timeout=args.reply_timeout)
    try:
        await session.run(lines, stop)
    finally:
        out.restore()
    code = ws.close_code
    reason = ws.close_reason
    sent = session.sent
    if not reason and sent is not None and sent.code == code:
        reason = sent.reason  # servers echo the code of our close, seldom its reason
    out.note(f"connection closed: {code} {reason}".rstrip())
    return EXIT_OK if code == 1000 else EXIT_FAILURE


# -- the session ---------------------------------------------------------------------------------


class Session:
    """One connection: sends what the input asks for, prints what arrives, until closed."""

    def __init__(
        self, ws: ClientConnection, out: Output, *, interactive: bool, reply_timeout: float
    ) -> None:
        self.ws = ws
        self.out = out
        self.interactive = interactive
        self.reply_timeout = reply_timeout
        self._pings: set[asyncio.Task[None]] = set()
        #: The close this client started (``/close``, end of input, Ctrl-C), if any.
        self.sent: Close | None = None

    async def run(self, lines: InputLines, stop: asyncio.Event) -> None:
        """Until the connection is closed (by the input, Ctrl-C or the server).

        Raises:
            CommandError: a bad command in piped input (exit status 2), after closing.
        """
        loop = asyncio.get_running_loop()
        receiver = loop.create_task(self._receive())
        sender = loop.create_task(self._send(lines))
        stopper = loop.create_task(stop.wait())
        try:
            await asyncio.wait((receiver, sender, stopper), return_when=asyncio.FIRST_COMPLETED)
            if sender.done() and sender.exception() is not None:
                await self.ws.close()
                sender.result()  # a bad command: raise it
            if stopper.done():
                await self._close(Close(), linger=False)
            await receiver
        finally:
            for task in (receiver, sender, stopper, *self._pings):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self.ws.close()

    async def _receive(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in self.ws:
                if isinstance(message, str):
                    self.out.message(message)
                else:
                    self.out.message(f"(binary) {message.hex()}")

    async def _send(self, lines: InputLines) -> None:
        while True:
            line = await lines.get()
            if line is None:
                await self._close(Close())
                return
            try:
                action = parse_line(line)
            except ValueError as exc:
                if not self.interactive:
                    raise usage_error(str(exc)) from None
                self.out.note(f"error: {exc}")
                continue
            try:
                if not await self._do(action):
                    return
            except ConnectionClosed:
                return  # the receiver reports how it closed

    async def _do(self, action: Action) -> bool:
        """Carry out one action; ``False`` once the connection is closing."""
        match action:
            case Text(text):
                await self.ws.send(text)
            case Binary(data):
                await self.ws.send(data)
            case Ping():
                task = asyncio.get_running_loop().create_task(self._ping())
                self._pings.add(task)
                task.add_done_callback(self._pings.discard)
            case Close():
                await self._close(action)
                return False
            case Help():
                self.out.note(HELP)
        return True

    async def _close(self, close: Close, *, linger: bool = True) -> None:
        if linger and not self.interactive:
            # Replies to the last lines may still be on their way.
            await asyncio.sleep(self.reply_timeout)
        if self.ws.open and self.sent is None:
            self.sent = close
        await self.ws.close(close.code, close.reason)

    async def _ping(self) -> None:
        # Run apart from the input, so that lines typed meanwhile are not held up.
        with contextlib.suppress(ConnectionClosed):
            rtt = await self.ws.ping()
            self.out.note(f"pong: {rtt * 1000:.1f} ms")


# -- reading standard input ----------------------------------------------------------------------
# A thread reads, so that a blocking read works alike on a terminal, a pipe and a file; it is
# a daemon, so that a read still waiting when the connection closes does not hold up the exit.
# Lines reach the event loop through a bounded queue: a large file is read as fast as it is
# sent, not into memory.


class InputLines:
    """Lines from the reader thread to the event loop, at most ``INPUT_QUEUE`` ahead."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._room = threading.Semaphore(INPUT_QUEUE)

    def deliver(self, line: str | None) -> bool:
        """Hand over ``line`` (``None``: the end); ``False`` once the client is gone.

        Called by the reader thread; waits while ``INPUT_QUEUE`` lines are not yet taken.
        """
        self._room.acquire()
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, line)
        except RuntimeError:  # the event loop is closed: the client is done
            return False
        return True

    async def get(self) -> str | None:
        """The next line, or ``None`` at the end of the input."""
        line = await self._queue.get()
        self._room.release()
        return line


def _read_pipe(lines: InputLines) -> None:
    # os.read on the descriptor, not sys.stdin: a daemon thread must not hold the lock of a
    # buffered stream while the interpreter shuts down.
    pending = b""
    while True:
        try:
            chunk = os.read(0, 65536)
        except OSError:
            chunk = b""
        if not chunk:
            if pending and not lines.deliver(_decode(pending)):
                return
            lines.deliver(None)
            return
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for raw in complete:
            if not lines.deliver(_decode(raw)):
                return


def _decode(raw: bytes) -> str:
    # Undecodable bytes become U+FFFD: a text message must be UTF-8 (RFC 6455 §5.6).
    return raw.removesuffix(b"\r").decode("utf-8", "replace")


def _read_terminal(lines: InputLines) -> None:
    while True:
        try:
            line: str | None = input(PROMPT)
        except (EOFError, OSError, ValueError):
            line = None
        if not lines.deliver(line) or line is None:
            return


# -- printing ------------------------------------------------------------------------------------


class Output:
    """Where messages (standard output) and the client's notes (standard error) go."""

    def message(self, text: str) -> None:
        """Print a message received."""
        self._write(sys.stdout, text)

    def note(self, text: str) -> None:
        """Print something the client has to say."""
        self._write(sys.stderr, text)

    def _write(self, stream: TextIO, text: str) -> None:
        stream.write(text + "\n")
        stream.flush()

    def restore(self) -> None:
        """Undo what the output changed in the terminal (nothing here)."""


class Terminal(Output):
    """Output to a terminal where a line is being typed: print above it, then redraw it.

    The line under the cursor is erased (carriage return, then "erase to end of line"), the
    text is written, and the prompt and what was typed so far (readline's line buffer) are
    written again, so that the person typing just goes on.
    """

    def __init__(self) -> None:
        # What was typed so far, to draw it again: only readline knows.
        self._line_buffer: Callable[[], str] = lambda: ""
        with contextlib.suppress(ImportError):
            import readline  # line editing for input(); only for a terminal

            self._line_buffer = readline.get_line_buffer
        #: Whether input() is showing the prompt, to be drawn again below a message.
        self.prompting = False
        self._saved: list[Any] | None = None
        with contextlib.suppress(ImportError, OSError):
            import termios

            self._saved = termios.tcgetattr(sys.stdin.fileno())

    def _write(self, stream: TextIO, text: str) -> None:
        stream.write("\r\x1b[K" + text + "\n")
        stream.flush()
        if self.prompting:
            sys.stdout.write(PROMPT + self._line_buffer())
            sys.stdout.flush()

    def restore(self) -> None:
        """Give the terminal back as it was: readline may still be waiting for a line."""
        self.prompting = False
        sys.stdout.write("\r\x1b[K")
        sys.stdout.flush()
        if self._saved is not None:
            with contextlib.suppress(ImportError, OSError):
                import termios

                termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, self._saved)
