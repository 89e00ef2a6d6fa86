"""Tests for wshub.cli: ``wshub token`` in process, ``wshub serve`` as a real subprocess."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest

import wshub
from wshub.aio import TransportOptions
from wshub.cli import build_parser, main, serve_config
from wshub.exceptions import AuthError, HubError
from wshub.hub.auth import Authenticator, make_token
from wshub.hub.client import HubClient
from wshub.hub.config import RedisStorage, SQLiteStorage
from wshub.testing import RedisServer, TLSCertificate

SECRET = "cli-tests-secret-0123456789abcdef-0123"


def token_from_cli(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["token", *args]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    return out.strip()


# --- wshub token ------------------------------------------------------------------------


def test_token_verifies_and_carries_the_claims(capsys: pytest.CaptureFixture[str]) -> None:
    """The printed JWT verifies with the secret and has sub, exp - iat = ttl and channels."""
    token = token_from_cli(
        capsys,
        "--secret",
        SECRET,
        "--user",
        "alice",
        "--ttl",
        "60",
        "--channels",
        "chat:*:spr",
        "ticker:*:s",
    )
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["sub"] == "alice"
    assert claims["exp"] - claims["iat"] == 60
    assert claims["channels"] == ["chat:*:prs", "ticker:*:s"]
    identity = Authenticator(secret=SECRET).authenticate(token)
    assert identity.user == "alice"
    assert identity.permissions.allows("chat:lobby", "p")
    assert not identity.permissions.allows("ticker:AAPL", "p")


def test_token_secret_from_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --secret, WSHUB_SECRET signs the token; --ttl none leaves out exp."""
    monkeypatch.setenv("WSHUB_SECRET", SECRET)
    token = token_from_cli(capsys, "--user", "bob", "--ttl", "none")
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"require": ["sub"]})
    assert claims["sub"] == "bob" and "exp" not in claims and claims["channels"] == []


@pytest.mark.parametrize(
    "args",
    [
        ["--user", "carol"],  # no secret anywhere
        ["--user", "carol", "--secret", "short"],  # under 32 bytes
        ["--user", "carol", "--secret", SECRET, "--channels", "chat:*:x"],  # bad perms
    ],
)
def test_token_refuses_bad_input(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    """Bad configuration exits with status 2 and a one-line error, not a traceback."""
    monkeypatch.delenv("WSHUB_SECRET", raising=False)
    with pytest.raises(SystemExit) as info:
        main(["token", *args])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("wshub: error:") and "Traceback" not in err


def test_limit_options_reach_the_hub() -> None:
    """Core and hub limits keep their keyword names; 'none' means no limit."""
    line = "serve --ephemeral --max-size none --ping-interval 5 --max-channels 7"
    line += " --publish-rate none --compression none"
    hub = serve_config(build_parser().parse_args(line.split())).hub
    assert hub.transport.max_size is None and hub.transport.ping_interval == 5.0
    assert hub.transport.compression is None
    assert hub.limits.max_channels == 7 and hub.limits.publish_rate is None
    # not given: the layer's own default applies
    assert hub.transport.max_queue == TransportOptions().max_queue


def test_anonymous_unless_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """No secret: anonymous allowed (the demo); a secret: refused unless --allow-anonymous."""
    monkeypatch.delenv("WSHUB_SECRET", raising=False)
    parse = build_parser().parse_args
    assert serve_config(parse(["serve"])).hub.auth.allow_anonymous is True
    assert serve_config(parse(["serve"])).hub.storage == SQLiteStorage(data_dir=".wshub-data")
    monkeypatch.setenv("WSHUB_SECRET", SECRET)
    assert serve_config(parse(["serve"])).hub.auth.allow_anonymous is False
    assert serve_config(parse(["serve", "--allow-anonymous"])).hub.auth.allow_anonymous is True


# --- wshub serve ------------------------------------------------------------------------


class Served:
    def __init__(self, process: asyncio.subprocess.Process, port: int, lines: list[str]):
        self.process = process
        self.port = port
        self.lines = lines

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def get(self, path: str) -> tuple[int, bytes]:
        def call() -> tuple[int, bytes]:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=30) as r:
                return r.status, r.read()

        return await asyncio.to_thread(call)

    async def stop(self, signum: int = signal.SIGTERM) -> int:
        self.process.send_signal(signum)
        return await self.process.wait()


@asynccontextmanager
async def serve(*args: str, env: dict[str, str] | None = None) -> AsyncIterator[Served]:
    """``python -m wshub serve --port 0 ARGS`` until it says where the hub is."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("WSHUB_")}
    environment.update(env or {})
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wshub",
        "serve",
        "--port",
        "0",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=environment,
    )
    assert process.stdout is not None
    lines: list[str] = []
    try:
        while True:
            line = (await process.stdout.readline()).decode()
            assert line, f"wshub serve exited early: {lines}"
            lines.append(line)
            found = re.match(r"wshub: hub on wss?://127\.0\.0\.1:(\d+)/ws", line)
            if found:
                break
        yield Served(process, int(found.group(1)), lines)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.asyncio(loop_factories=["asyncio"])
async def test_serve_mounts_the_board_unless_no_board() -> None:
    """`wshub serve` serves /board next to the chat; --no-board leaves it out."""
    async with serve("--ephemeral") as served:
        assert f"wshub: board on http://127.0.0.1:{served.port}/board\n" in served.lines
        status, page = await served.get("/board")
        assert status == 200 and b'data-testid="board-canvas"' in page
    async with serve("--ephemeral", "--no-board") as served:
        assert not any("board on" in line for line in served.lines)
        with pytest.raises(urllib.error.HTTPError, match="404"):
            await served.get("/board")  # the hub's own answer: no page here


# The server runs in its own process on wshub.run's loop: one client-side loop is enough.
@pytest.mark.asyncio(loop_factories=["asyncio"])
async def test_serve_answers_http_and_websocket_then_stops_on_sigint() -> None:
    """The demo server: chat page, /healthz, a hub session; SIGINT: 1001 and exit code 0
    (SIGTERM drains with 1012: tests/hub/test_drain.py)."""
    async with serve("--ephemeral") as served:
        assert served.lines[0] == f"wshub: chat on http://127.0.0.1:{served.port}/\n"
        status, body = await served.get("/healthz")
        assert status == 200 and orjson.loads(body)["status"] == "ok"
        status, page = await served.get("/")
        assert status == 200 and b"<!doctype html>" in page.lower()
        async with wshub.connect(served.url, subprotocols=["wshub.v1"]) as ws:
            await ws.send('{"id": 1, "cmd": "connect"}')
            reply: Any = orjson.loads(await ws.recv())
            assert reply["id"] == 1 and reply["result"]["user"] == ""
            assert await served.stop(signal.SIGINT) == 0
            await ws.wait_closed()
            assert ws.close_code == 1001


@pytest.mark.asyncio(loop_factories=["asyncio"])
async def test_serve_mounts_the_console_unless_told_not_to() -> None:
    """serve serves /console and says where (and whether it has a key); --no-console: not."""
    async with serve("--ephemeral", "--api-key", "k") as served:
        url = f"http://127.0.0.1:{served.port}/console"
        assert f"wshub: console on {url} (with the API key)\n" in served.lines
        status, page = await served.get("/console")
        assert status == 200 and b"console-api-key" in page
        assert await served.stop() == 0
    async with serve("--ephemeral") as served:
        # The demo without a key makes one up for this run and prints it with the console:
        # it opens the HTTP API, and nothing else does.
        (line,) = [line for line in served.lines if "console on" in line]
        match = re.fullmatch(r"wshub: console on \S+/console \(API key: (\S+)\)\n", line)
        assert match is not None
        key = match.group(1)
        request = urllib.request.Request(
            f"http://127.0.0.1:{served.port}/api/stats", headers={"X-API-Key": key}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        with pytest.raises(urllib.error.HTTPError) as refused:
            await served.get("/api/stats")
        refused.value.close()
        assert refused.value.code == 401
        assert await served.stop() == 0
    async with serve("--ephemeral", "--no-console", "--no-chat") as served:
        assert not any("console" in line or "chat on" in line for line in served.lines)
        with pytest.raises(urllib.error.HTTPError) as refused:
            await served.get("/console")
        refused.value.close()
        assert refused.value.code != 200
        assert await served.stop() == 0


@pytest.mark.asyncio(loop_factories=["asyncio"])
async def test_serve_with_a_secret_and_a_data_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """WSHUB_SECRET turns anonymous off; history in --data-dir survives a restart."""
    env = {"WSHUB_SECRET": SECRET}
    data_dir = str(tmp_path / "data")
    token = token_from_cli(capsys, "--secret", SECRET, "--user", "dora", "--channels", "chat:*:spr")
    async with serve("--data-dir", data_dir, env=env) as served:
        with pytest.raises(AuthError):
            await HubClient(served.url).connect()
        async with HubClient(served.url, token) as client:
            await client.subscribe("chat:kept")
            offset = await client.publish("chat:kept", {"text": "still here"})
        assert await served.stop() == 0
    assert (tmp_path / "data" / "history.db").exists()
    async with serve("--data-dir", data_dir, env=env) as served:
        async with HubClient(served.url, token) as client:
            page = await client.history("chat:kept")
            assert [(p.offset, p.data) for p in page.publications] == [
                (offset, {"text": "still here"})
            ]
        assert await served.stop() == 0


@pytest.mark.redis
@pytest.mark.asyncio(loop_factories=["asyncio"])
async def test_serve_with_redis(redis: RedisServer) -> None:
    """--redis or WSHUB_REDIS_URL: two serve processes are two nodes of one hub."""
    async with (
        serve("--redis", redis.url) as one,
        serve(env={"WSHUB_REDIS_URL": redis.url}) as two,
    ):
        assert one.process.stdout is not None
        while not one.lines[-1].startswith("wshub: history, presence and fan-out in Redis"):
            one.lines.append((await one.process.stdout.readline()).decode())
        assert one.lines[-1].rstrip().endswith(f"Redis at {redis.url}")
        async with HubClient(one.url) as reader, HubClient(two.url) as writer:
            sub = await reader.subscribe("chat:cli-redis")
            await writer.subscribe("chat:cli-redis")
            offset = await writer.publish("chat:cli-redis", {"text": "across"})
            pub = await sub.get()
            assert (pub.offset, pub.data) == (offset, {"text": "across"})
        assert await one.stop() == 0
        assert await two.stop() == 0


def test_serve_redis_options_and_an_unreachable_redis(capsys: pytest.CaptureFixture[str]) -> None:
    """--redis replaces the data directory; a Redis that does not answer exits with 1."""
    hub = serve_config(build_parser().parse_args(["serve", "--redis", "redis://h:1/0"])).hub
    assert hub.storage == RedisStorage(url="redis://h:1/0")  # no data directory
    with pytest.raises(SystemExit) as info:
        main(["serve", "--port", "0", "--redis", "redis://127.0.0.1:1/0"])
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("wshub: error: cannot reach Redis") and "Traceback" not in err


# --- TLS, logging and the other serve options -----------------------------------------------


def test_serve_options_for_metrics_and_port_sharing() -> None:
    """--metrics, --reuse-port and --backlog reach the hub only when given."""
    parse = build_parser().parse_args
    hub = serve_config(parse(["serve"])).hub
    assert (hub.metrics.access, hub.listen.reuse_port, hub.listen.backlog) == ("local", False, 1024)
    assert hub.tls.certfile is None
    # --reuse-port shares the port with other processes: one hub only through Redis.
    line = "serve --metrics key --reuse-port --backlog 4096 --redis redis://h:1/0"
    hub = serve_config(parse(line.split())).hub
    assert (hub.metrics.access, hub.listen.reuse_port, hub.listen.backlog) == ("key", True, 4096)


def test_serve_options_for_tokens_and_dedupe(monkeypatch: pytest.MonkeyPatch) -> None:
    """--token-audience/--token-issuer (or their WSHUB_ variables), --token-leeway and
    --dedupe-window reach the hub only when given."""
    for name in ("WSHUB_TOKEN_AUDIENCE", "WSHUB_TOKEN_ISSUER"):
        monkeypatch.delenv(name, raising=False)
    parse = build_parser().parse_args

    def chosen(argv: list[str]) -> tuple[Any, ...]:
        hub = serve_config(parse(argv)).hub
        return hub.auth.audience, hub.auth.issuer, hub.auth.leeway, hub.dedupe_window

    assert chosen(["serve"]) == (None, None, 0.0, 120.0)
    line = "serve --token-audience hub --token-issuer https://auth.example"
    line += " --token-leeway 2.5 --dedupe-window 600"
    assert chosen(line.split()) == ("hub", "https://auth.example", 2.5, 600.0)
    monkeypatch.setenv("WSHUB_TOKEN_AUDIENCE", "from-env")
    monkeypatch.setenv("WSHUB_TOKEN_ISSUER", "https://env.example")
    assert chosen(["serve"])[:2] == ("from-env", "https://env.example")
    # the flag wins over the environment
    assert chosen(["serve", "--token-audience", "flag"])[0] == "flag"


@pytest.mark.parametrize(
    "args",
    [
        ["--token-leeway", "-1"],
        ["--token-leeway", "soon"],
        ["--token-leeway", "nan"],
        ["--dedupe-window", "0"],
        ["--dedupe-window", "-5"],
    ],
)
def test_serve_refuses_bad_seconds(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    """A negative leeway or a non-positive dedupe window is a usage error naming the flag."""
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["serve", *args])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {args[0]}:" in err and "Traceback" not in err


@pytest.mark.asyncio(loop_factories=["asyncio"])
async def test_serve_checks_the_token_audience() -> None:
    """wshub serve --token-audience: a token without that aud is refused, one with it enters."""
    claims = {"sub": "ann", "exp": int(time.time()) + 600, "channels": ["chat:*:spr"]}
    right = jwt.encode({**claims, "aud": "chat-hub"}, SECRET, "HS256")
    wrong = jwt.encode({**claims, "aud": "other"}, SECRET, "HS256")
    args = ("--ephemeral", "--secret", SECRET, "--token-audience", "chat-hub")
    async with serve(*args) as served:
        with pytest.raises(AuthError):
            await HubClient(served.url, wrong).connect()
        async with HubClient(served.url, right) as client:
            await client.subscribe("chat:aud")
        assert await served.stop() == 0


@pytest.mark.parametrize(
    "args",
    [
        ["--keyfile", "key.pem"],  # a key without a certificate
        ["--certfile", "/nonexistent/cert.pem"],  # a file that is not there
    ],
)
def test_serve_refuses_bad_tls_files(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    """A TLS misconfiguration exits with status 2 and a one-line error."""
    with pytest.raises(SystemExit) as info:
        main(
            [
                "serve",
                "--ephemeral",
                *args,
            ]
        )
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("wshub: error:") and "Traceback" not in err


def test_log_options_before_or_after_the_command() -> None:
    """--log-level and --log-format work before ``serve`` and after it (the latter wins)."""
    parse = build_parser().parse_args
    args = parse(["--log-level", "warning", "serve", "--log-format", "json"])
    assert (args.log_level, args.log_format) == ("warning", "json")
    args = parse(["--log-format", "json", "serve", "--log-level", "debug", "--log-format", "text"])
    assert (args.log_level, args.log_format) == ("debug", "text")
    assert (parse(["serve"]).log_level, parse(["serve"]).log_format) == ("info", "text")


@pytest.mark.asyncio(loop_factories=["asyncio"])
async def test_serve_over_tls(tmp_path: Path, tls_certificate: TLSCertificate) -> None:
    """--certfile/--keyfile: the page, /healthz and the hub answer over https and wss."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(tls_certificate.cert_pem)
    key.write_bytes(tls_certificate.key_pem)
    async with serve("--ephemeral", "--certfile", str(cert), "--keyfile", str(key)) as served:
        assert served.lines[0] == f"wshub: chat on https://127.0.0.1:{served.port}/\n"
        context = tls_certificate.client_context()

        def healthz() -> int:
            url = f"https://127.0.0.1:{served.port}/healthz"
            with urllib.request.urlopen(url, timeout=30, context=context) as response:
                return int(response.status)

        assert await asyncio.to_thread(healthz) == 200
        url = f"wss://127.0.0.1:{served.port}/ws"
        async with wshub.connect(url, ssl=context, subprotocols=["wshub.v1"]) as ws:
            await ws.send('{"id": 1, "cmd": "connect"}')
            reply: Any = orjson.loads(await ws.recv())
            assert reply["id"] == 1 and "result" in reply
        assert await served.stop() == 0


# --- failing like a tool: one line, exit status 2 (issue 8 §4) --------------------------------


def one_error_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run ``wshub ARGV`` in process; it must exit 2 with exactly one line on stderr."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("\n") and "Traceback" not in err, err
    return err


def test_serve_on_a_port_in_use(capsys: pytest.CaptureFixture[str]) -> None:
    """A port another process listens on: exit 2, one line naming the port."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        err = one_error_line(capsys, ["serve", "--ephemeral", "--port", str(port)])
    assert err == (
        f"wshub: error: cannot listen on 127.0.0.1:{port}: the port is in use "
        "(choose another with --port, or 0 for any)\n"
    )


def test_serve_on_an_address_that_is_not_local(capsys: pytest.CaptureFixture[str]) -> None:
    """--host with an address of no local interface: exit 2, one line naming it."""
    err = one_error_line(capsys, ["serve", "--ephemeral", "--host", "10.255.255.1", "--port", "0"])
    assert err.startswith("wshub: error: cannot listen on 10.255.255.1:0: ")
    assert "not one of this machine's" in err


def test_serve_with_a_data_dir_that_cannot_be_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A data directory under a regular file: exit 2, one line naming the directory."""
    (tmp_path / "file").write_text("not a directory")
    data_dir = tmp_path / "file" / "data"
    err = one_error_line(capsys, ["serve", "--port", "0", "--data-dir", str(data_dir)])
    assert err.startswith(
        f"wshub: error: storage.data_dir: cannot create the data directory '{data_dir}': "
    )


@pytest.mark.parametrize("port", ["99999", "-1", "65536", "http"])
def test_serve_refuses_a_port_out_of_range(capsys: pytest.CaptureFixture[str], port: str) -> None:
    """--port is 0-65535, checked by the parser (99999 was wrapped to another port)."""
    err = one_error_line(capsys, ["serve", "--port", port])
    assert err.startswith("wshub serve: error: argument --port: ")


@pytest.mark.parametrize("ttl", ["-5", "0", "nan", "soon"])
def test_token_refuses_a_ttl_that_is_not_positive(
    capsys: pytest.CaptureFixture[str], ttl: str
) -> None:
    """wshub token --ttl -5 printed an expired token with exit 0; now a usage error."""
    err = one_error_line(capsys, ["token", "--secret", SECRET, "--user", "eve", "--ttl", ttl])
    assert err.startswith("wshub token: error: argument --ttl: ")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """wshub --version prints the package's version and exits 0."""
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"wshub {wshub.__version__}\n"


ROOT = Path(__file__).resolve().parents[1]


def test_make_help_names_the_port_variable() -> None:
    """make help says that make run takes PORT."""
    done = subprocess.run(
        ["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert "make run [PORT=8765]" in done.stdout and "PORT=8765" in done.stdout.splitlines()[-1]


@pytest.mark.asyncio(loop_factories=["asyncio"])
async def test_make_run_on_another_port() -> None:
    """make run PORT=N serves the hub on port N."""
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    venv = Path(sys.executable).parent.parent
    environment = {k: v for k, v in os.environ.items() if not k.startswith("WSHUB_")}
    process = await asyncio.create_subprocess_exec(
        *("make", "-s", "run", f"PORT={port}", f"VENV={venv}"),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={**environment, "MAKEFLAGS": ""},
        start_new_session=True,
    )
    assert process.stdout is not None
    try:
        lines = []
        while not lines or not lines[-1].startswith("wshub: hub on"):
            line = (await process.stdout.readline()).decode()
            assert line, f"make run exited early: {lines}"
            lines.append(line)
        assert lines[-1] == f"wshub: hub on ws://127.0.0.1:{port}/ws\n"
        served = Served(process, port, lines)
        status, body = await served.get("/healthz")
        assert status == 200 and orjson.loads(body)["status"] == "ok"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        await process.wait()


# --- config files (issue 9 §2) ---------------------------------------------------------------


def test_config_init_writes_a_file_that_config_check_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """config init writes a commented file; config check passes on it; init never
    overwrites."""
    path = tmp_path / "wshub.toml"
    assert main(["config", "init", str(path)]) == 0
    text = path.read_text()
    assert text.startswith("# wshub configuration") and "\n# the TCP port, 0-65535" in text
    assert "[[namespaces]]" in text and "secret_file" in text
    capsys.readouterr()
    assert main(["config", "check", str(path)]) == 0
    assert capsys.readouterr().out == f"wshub: {path}: ok\n"
    err = one_error_line(capsys, ["config", "init", str(path)])
    assert err == f"wshub: error: {path}: exists already (not overwritten)\n"


def test_config_check_prints_one_line_per_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """config check FILE: exit 2 and one line per problem, each naming the field."""
    path = tmp_path / "bad.toml"
    path.write_text(
        'chat = "yes"\n[listen]\nport = 99999\n'
        '[[namespaces]]\nname = "a"\n[[namespaces]]\nname = "b"\nhistory_size = -1\n'
    )
    assert main(["config", "check", str(path)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "wshub: error: chat: must be true or false, got 'yes'",
        "wshub: error: listen.port: must be 0-65535, got 99999",
        "wshub: error: namespaces[1].history_size: must be >= 0, got -1",
    ]
    assert main(["config", "check", str(tmp_path / "missing.toml")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_serve_with_a_bad_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """serve --config with a bad file: exit 2, one line (the first problem, and how many more)."""
    path = tmp_path / "bad.toml"
    path.write_text('[listen]\nport = "x"\nhost = 5\n')
    err = one_error_line(capsys, ["serve", "--config", str(path)])
    assert err.startswith("wshub: error: listen.") and "(and 1 more: wshub config check)" in err
    path.write_text("[listen\n")
    err = one_error_line(capsys, ["serve", "--config", str(path)])
    assert err.startswith(f"wshub: error: {path}: not TOML")


def test_config_show_prints_the_effective_config_with_secrets_redacted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """config show: the file, then the environment, then the flags; secrets redacted."""
    monkeypatch.setenv("WSHUB_SECRET", SECRET)
    monkeypatch.setenv("WSHUB_API_KEY", "api-key-from-the-environment")
    path = tmp_path / "wshub.toml"
    path.write_text('chat = false\n[listen]\nport = 9000\n[[namespaces]]\nname = "news"\n')
    assert main(["config", "show", "--config", str(path), "--max-size", "4096"]) == 0
    out = capsys.readouterr().out
    shown = tomllib.loads(out)
    assert shown["chat"] is False and shown["listen"]["port"] == 9000
    assert shown["transport"]["max_size"] == 4096
    assert [namespace["name"] for namespace in shown["namespaces"]] == ["news"]
    assert shown["auth"]["secret"] == "<redacted>" and shown["api"]["api_key"] == "<redacted>"
    assert SECRET not in out and "api-key-from-the-environment" not in out
    assert main(["config", "show"]) == 0  # the demo
    demo = tomllib.loads(capsys.readouterr().out)
    assert [namespace["name"] for namespace in demo["namespaces"]] == ["chat", "ticker", "board"]


def test_flags_override_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A flag wins over the file, the file over the defaults; the file's secret is used."""
    monkeypatch.delenv("WSHUB_SECRET", raising=False)
    path = tmp_path / "wshub.toml"
    path.write_text(
        f'[listen]\nport = 9000\npath = "/hub"\n[auth]\nsecret = "{SECRET}"\n'
        '[storage]\nkind = "memory"\n[limits]\nmax_channels = 5\n'
    )
    parse = build_parser().parse_args
    hub = serve_config(parse(["serve", "--config", str(path), "--port", "9001"])).hub
    assert (hub.listen.port, hub.listen.path, hub.limits.max_channels) == (9001, "/hub", 5)
    assert hub.auth.secret == SECRET and hub.auth.allow_anonymous is False
    hub = serve_config(parse(["serve", "--config", str(path), "--data-dir", "d"])).hub
    assert hub.storage == SQLiteStorage(data_dir="d")


def test_storage_flags_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    """--data-dir, --ephemeral and --redis choose the storage: giving two is an error."""
    err = one_error_line(capsys, ["serve", "--ephemeral", "--data-dir", "d"])
    assert err == "wshub: error: storage: --data-dir and --ephemeral exclude each other: give one\n"


@pytest.mark.asyncio(loop_factories=["asyncio"])
async def test_serve_with_a_config_file(tmp_path: Path) -> None:
    """serve --config: namespaces, auth (secret from secret_file) and storage from the file."""
    (tmp_path / "secret").write_text(SECRET + "\n")
    path = tmp_path / "wshub.toml"
    path.write_text(
        "chat = false\n"
        f'[auth]\nsecret_file = "{tmp_path / "secret"}"\n'
        f'[storage]\nkind = "sqlite"\ndata_dir = "{tmp_path / "data"}"\n'
        '[[namespaces]]\nname = "news"\nhistory_size = 2\npublish = "any"\n'
    )
    token = make_token(SECRET, "ed", 600, ["news:*:spr", "chat:*:spr"])
    async with serve("--config", str(path)) as served:
        assert not any(line.startswith("wshub: chat on") for line in served.lines)
        with pytest.raises(AuthError):  # the file allows no anonymous user
            await HubClient(served.url).connect()
        async with HubClient(served.url, token) as client:
            for n in range(3):
                await client.publish("news:today", {"n": n})
            page = await client.history("news:today")
            assert [p.data for p in page.publications] == [{"n": 1}, {"n": 2}]
            with pytest.raises(HubError) as unknown:  # only the file's namespaces
                await client.subscribe("chat:lobby")
            assert unknown.value.code == 108
        status, _ = await served.get("/healthz")
        assert status == 200
        assert await served.stop() == 0
    assert (tmp_path / "data" / "history.db").exists()
