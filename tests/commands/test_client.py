"""Tests for ``wshub client``: piped and on a pseudo-terminal, against real servers on loopback."""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import signal
import subprocess
import sys
import termios
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import orjson
import pytest

from wshub import Request, Response, ServerConnection
from wshub.aio import Server
from wshub.commands.client import Binary, Close, Help, Ping, Text, parse_line
from wshub.testing import TLSCertificate, echo, loopback_server, server_url

from .conftest import WAIT, assert_one_line_error, environment, running, wshub


class Peer:
    """A server handler that answers ``echo: TEXT``, reports the handshake, closes on demand."""

    def __init__(self) -> None:
        self.connections: list[ServerConnection] = []
        self.received: list[str | bytes] = []

    async def __call__(self, ws: ServerConnection) -> None:
        self.connections.append(ws)
        async for message in ws:
            self.received.append(message)
            if message == "handshake":
                assert ws.request is not None
                headers = ws.request.headers
                report = {
                    "subprotocol": ws.subprotocol,
                    "origin": headers.get("Origin"),
                    "x-test": headers.get_all("X-Test"),
                }
                await ws.send(orjson.dumps(report).decode())
            elif message == "big":
                await ws.send("x" * (2**20 + 1))
            elif message == "leave":
                await ws.close(4001, "go away")
            elif isinstance(message, str):
                await ws.send(f"echo: {message}")
            else:
                await ws.send(message)


@pytest.fixture
async def peer_server() -> AsyncIterator[tuple[Server, Peer]]:
    peer = Peer()
    async with loopback_server(peer, subprotocols=["v2.test"], close_timeout=1.0) as server:
        yield server, peer


@pytest.fixture
async def echo_server() -> AsyncIterator[Server]:
    async with loopback_server(echo, close_timeout=1.0) as server:
        yield server


# -- what a line asks for ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "action"),
    [
        ("hello", Text("hello")),
        ("", Text("")),
        ("//etc/hosts", Text("/etc/hosts")),
        ("/ping", Ping()),
        ("/help", Help()),
        ("/binary 01 ff", Binary(b"\x01\xff")),
        ("/binary", Binary(b"")),
        ("/close", Close(1000, "")),
        ("/close 4000", Close(4000, "")),
        ("/close 4000 bye bye", Close(4000, "bye bye")),
    ],
)
def test_parse_line(line: str, action: object) -> None:
    """Plain lines are text, ``//`` escapes a slash, commands take their arguments."""
    assert parse_line(line) == action


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("/nope", "unknown command /nope"),
        ("/binary zz", "hexadecimal"),
        ("/close 1006", "close code"),
        ("/close abc", "close code"),
        ("/close 4000 " + "x" * 124, "at most 123 bytes"),
        ("/ping now", "no arguments"),
    ],
)
def test_parse_line_refuses_bad_commands(line: str, words: str) -> None:
    """A bad command is a ValueError whose message says what is wrong."""
    with pytest.raises(ValueError, match=words):
        parse_line(line)


# -- piped input ---------------------------------------------------------------------------------


async def test_piped_text_binary_and_close_code(echo_server: Server) -> None:
    """Text and /binary are echoed; /close 4000 bye ends with that code, printed, and exit 1."""
    script = b"hello\n/binary 01 ff\n/ping\n/close 4000 bye\nnever sent\n"
    result = await wshub("client", server_url(echo_server), stdin=script)
    assert result.out == "hello\n(binary) 01ff\n"
    assert result.status == 1
    assert re.search(r"^pong: \d+\.\d ms$", result.err, re.MULTILINE), result.err
    assert result.err_lines[-1] == "connection closed: 4000 bye"


async def test_piped_end_of_input_closes_normally(echo_server: Server) -> None:
    """At the end of the input the replies in flight are printed, then 1000 and exit 0."""
    lines = b"".join(f"line {n}\n".encode() for n in range(50)) + b"last, no newline"
    result = await wshub("client", server_url(echo_server), "--reply-timeout", "0.5", stdin=lines)
    assert result.out.splitlines() == [f"line {n}" for n in range(50)] + ["last, no newline"]
    assert result.err_lines == ["connection closed: 1000"]
    assert result.status == 0


async def test_piped_crlf_and_slash_escape(peer_server: tuple[Server, Peer]) -> None:
    """CRLF line ends are dropped and ``//`` sends a line that starts with a slash."""
    server, peer = peer_server
    result = await wshub("client", server_url(server), stdin=b"a\r\n//b\n")
    assert result.status == 0
    assert peer.received == ["a", "/b"]
    assert result.out == "echo: a\necho: /b\n"


async def test_server_close_code_is_the_exit_status(peer_server: tuple[Server, Peer]) -> None:
    """The server closing with 4001 ends the client at once: the code printed, exit 1."""
    server, _ = peer_server
    result = await wshub("client", server_url(server), stdin=b"leave\nignored\n")
    assert result.err_lines == ["connection closed: 4001 go away"]
    assert result.status == 1


async def test_subprotocol_headers_and_origin(peer_server: tuple[Server, Peer]) -> None:
    """--subprotocol, repeated --header and --origin reach the server's handshake."""
    server, _ = peer_server
    result = await wshub(
        "client",
        server_url(server),
        "--subprotocol",
        "v1.test",
        "--subprotocol",
        "v2.test",
        "--header",
        "X-Test: one",
        "--header",
        "X-Test:two",
        "--origin",
        "https://example.test",
        stdin=b"handshake\n",
    )
    assert result.status == 0, result
    assert orjson.loads(result.out) == {
        "subprotocol": "v2.test",
        "origin": "https://example.test",
        "x-test": ["one", "two"],
    }


async def test_max_size(peer_server: tuple[Server, Peer]) -> None:
    """Over 1 MiB the client fails the connection (1009, exit 1); --max-size none accepts it."""
    server, _ = peer_server
    refused = await wshub("client", server_url(server), stdin=b"big\n")
    assert (refused.status, refused.out) == (1, "")
    # The client sends 1009 and drops the connection without waiting for the server's
    # close frame, so the closing it reports is 1006; the log line says why.
    assert refused.err_lines[-1] == "connection closed: 1006"
    assert "1009 message too big" in refused.err
    accepted = await wshub("client", server_url(server), "--max-size", "none", stdin=b"big\n")
    assert (accepted.status, accepted.out) == (0, "x" * (2**20 + 1) + "\n")


async def test_bad_command_in_piped_input_exits_2(peer_server: tuple[Server, Peer]) -> None:
    """In a script a bad command is an error: what came before is sent, then exit 2."""
    server, peer = peer_server
    result = await wshub("client", server_url(server), stdin=b"first\n/binary xyz\nsecond\n")
    assert_one_line_error(result, 2, "/binary needs hexadecimal")
    assert peer.received == ["first"]


# -- TLS -----------------------------------------------------------------------------------------


@pytest.fixture
async def tls_server(tls_certificate: TLSCertificate) -> AsyncIterator[Server]:
    async with loopback_server(
        echo, ssl=tls_certificate.server_context(), close_timeout=1.0
    ) as server:
        yield server


async def test_wss_with_cafile_and_insecure(
    tls_server: Server, tls_certificate: TLSCertificate, tmp_path: Path
) -> None:
    """A self-signed server: trusted with --cafile, accepted with --insecure."""
    cafile = tmp_path / "ca.pem"
    cafile.write_bytes(tls_certificate.cert_pem)
    url = server_url(tls_server, secure=True)
    trusted = await wshub("client", url, "--cafile", str(cafile), stdin=b"over tls\n")
    assert (trusted.status, trusted.out) == (0, "over tls\n")
    insecure = await wshub("client", url, "--insecure", stdin=b"unverified\n")
    assert (insecure.status, insecure.out) == (0, "unverified\n")


async def test_wss_unverified_certificate_is_refused(tls_server: Server) -> None:
    """Without --cafile or --insecure a self-signed certificate is one error line, exit 1."""
    result = await wshub("client", server_url(tls_server, secure=True), stdin=b"x\n")
    assert_one_line_error(result, 1, "certificate verification failed", "--insecure")


# -- errors --------------------------------------------------------------------------------------


async def refusing(connection: ServerConnection, request: Request) -> Response:
    return Response.text(403, "Forbidden\n")


async def test_connection_refused_and_handshake_refused() -> None:
    """No server, or a server that answers 403: one line and exit 1."""
    async with loopback_server(echo) as server:
        port = server.port
    refused = await wshub("client", f"ws://127.0.0.1:{port}/", stdin=b"")
    assert_one_line_error(refused, 1, "cannot connect", "refused")
    async with loopback_server(echo, process_request=refusing) as server:
        forbidden = await wshub("client", server_url(server), stdin=b"")
    assert_one_line_error(forbidden, 1, "cannot connect", "403")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ([], "required: URL"),
        (["http://127.0.0.1/"], "not a ws:// or wss://"),
        (["ws://127.0.0.1/", "--header", "no colon"], "NAME:VALUE"),
        (["ws://127.0.0.1/", "--header", "bad name: x"], "invalid header name"),
        (["ws://127.0.0.1/", "--insecure"], "need a wss://"),
        (["wss://127.0.0.1/", "--cafile", "/nonexistent.pem"], "cannot read --cafile"),
        (["ws://127.0.0.1/", "--reply-timeout", "-1"], "must be >= 0"),
        (["ws://127.0.0.1/", "--max-size", "0"], "at least 1 byte"),
        (["ws://127.0.0.1/", "--max-size", "lots"], "not a number of bytes"),
        (["ws://127.0.0.1/", "--bogus"], "unrecognized arguments"),
    ],
)
async def test_usage_errors_exit_2(args: list[str], words: str) -> None:
    """Bad usage: exit 2 and one line on standard error, before any connection."""
    result = await wshub("client", *args, stdin=b"")
    assert_one_line_error(result, 2, words)


# -- on a terminal -------------------------------------------------------------------------------


class Terminal:
    """The master side of a pseudo-terminal whose slave is the client's stdin/out/err."""

    def __init__(self, master: int) -> None:
        self.master = master
        self.output = ""
        self._data = asyncio.Event()
        asyncio.get_running_loop().add_reader(master, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.master, 65536)
        except OSError:  # the slave side closed: the client is gone
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self.master)
        self.output += data.decode(errors="replace")
        self._data.set()

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    async def expect(self, pattern: str, start: int = 0) -> int:
        """Wait until ``pattern`` (a regex) shows after ``start``; return where it ends."""

        async def seen() -> int:
            while True:
                match = re.compile(pattern).search(self.output, start)
                if match:
                    return match.end()
                self._data.clear()
                await self._data.wait()

        return await asyncio.wait_for(seen(), WAIT)

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.master)
        os.close(self.master)


@asynccontextmanager
async def pty_client(url: str) -> AsyncIterator[tuple[Terminal, subprocess.Popen[bytes]]]:
    """``wshub client URL`` with a pseudo-terminal as its stdin, stdout and stderr."""
    master, slave = os.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "wshub", "client", url],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**environment(), "TERM": "dumb"},
        start_new_session=True,
        # The terminal becomes the client's controlling terminal, so that Ctrl-C typed on
        # it is a SIGINT to the client, as in a shell.
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
    )
    os.close(slave)
    terminal = Terminal(master)
    try:
        yield terminal, process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        terminal.close()


async def exit_status(process: subprocess.Popen[bytes]) -> int:
    return await asyncio.wait_for(asyncio.to_thread(process.wait), WAIT)


async def test_interactive_on_a_pseudo_terminal(peer_server: tuple[Server, Peer]) -> None:
    """Typed lines are sent; a message arriving mid-line is printed above it, the line redrawn."""
    server, peer = peer_server
    async with pty_client(server_url(server)) as (terminal, process):
        at = await terminal.expect(r"connected to ws://127.0.0.1:\d+/; /help lists")
        terminal.type("hello\n")
        at = await terminal.expect(r"echo: hello", at)
        # Half a line typed, then the server speaks: its message goes above the line,
        # and the prompt and the half line are drawn again below it.
        terminal.type("par")
        at = await terminal.expect(r"par", at)
        await server_send(peer, "news from the server")
        at = await terminal.expect(r"\r\x1b\[Knews from the server\r?\n> par", at)
        terminal.type("t\n")
        at = await terminal.expect(r"echo: part", at)
        assert peer.received == ["hello", "part"]
        terminal.type("/close\n")
        await terminal.expect(r"connection closed: 1000", at)
        assert await exit_status(process) == 0
    assert "Traceback" not in terminal.output


async def test_interactive_commands_and_end_of_input(peer_server: tuple[Server, Peer]) -> None:
    """/help, /ping and a bad command (reported, not fatal) on a terminal; Ctrl-D closes."""
    server, peer = peer_server
    async with pty_client(server_url(server)) as (terminal, process):
        at = await terminal.expect(r"connected to ")
        terminal.type("/help\n")
        at = await terminal.expect(r"/binary HEX", at)
        terminal.type("/ping\n")
        at = await terminal.expect(r"pong: \d+\.\d ms", at)
        terminal.type("/close 99\n")
        at = await terminal.expect(r"error: /close needs a close code", at)
        terminal.type("/binary 6869\n")
        at = await terminal.expect(r"\(binary\) 6869", at)
        terminal.type("\x04")  # Ctrl-D on an empty line: the end of the input
        await terminal.expect(r"connection closed: 1000", at)
        assert await exit_status(process) == 0
    assert peer.received == [b"hi"]


async def test_interactive_ctrl_c(peer_server: tuple[Server, Peer]) -> None:
    """Ctrl-C typed on the terminal, mid-line: the line is dropped, 1000, exit 0."""
    server, peer = peer_server
    async with pty_client(server_url(server)) as (terminal, process):
        at = await terminal.expect(r"connected to ")
        terminal.type("half a li")
        at = await terminal.expect(r"half a li", at)
        terminal.type("\x03")
        await terminal.expect(r"connection closed: 1000", at)
        assert await exit_status(process) == 0
    assert peer.received == []
    assert "Traceback" not in terminal.output


async def test_sigint_closes_normally(peer_server: tuple[Server, Peer]) -> None:
    """Ctrl-C (SIGINT) closes with 1000 and exits 0, without waiting for the input."""
    server, _ = peer_server
    async with running("client", server_url(server), stdin=True) as client:
        await client.send_line("first")
        assert await client.line() == "echo: first\n"
        client.process.send_signal(signal.SIGINT)
        result = await client.wait()
    assert (result.status, result.err) == (0, "connection closed: 1000\n")


async def server_send(peer: Peer, text: str) -> None:
    assert len(peer.connections) == 1
    await peer.connections[0].send(text)
