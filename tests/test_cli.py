"""Tests for wshub.cli: ``wshub token`` in process, ``wshub serve`` as a real subprocess."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
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
from wshub.cli import _serve_options, build_parser, main
from wshub.exceptions import AuthError
from wshub.hub.auth import Authenticator
from wshub.hub.client import HubClient
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
    args = build_parser().parse_args(line.split())
    options = _serve_options(args)
    assert options["max_size"] is None and options["ping_interval"] == 5.0
    assert options["compression"] is None
    assert options["limits"].max_channels == 7 and options["limits"].publish_rate is None
    assert "max_queue" not in options  # not given: the layer's own default applies


def test_anonymous_unless_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """No secret: anonymous allowed (the demo); a secret: refused unless --allow-anonymous."""
    monkeypatch.delenv("WSHUB_SECRET", raising=False)
    parse = build_parser().parse_args
    assert _serve_options(parse(["serve"]))["allow_anonymous"] is True
    assert _serve_options(parse(["serve"]))["data_dir"] == ".wshub-data"
    monkeypatch.setenv("WSHUB_SECRET", SECRET)
    assert _serve_options(parse(["serve"]))["allow_anonymous"] is False
    assert _serve_options(parse(["serve", "--allow-anonymous"]))["allow_anonymous"] is True


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

    async def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
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
async def test_serve_answers_http_and_websocket_then_stops_on_sigterm() -> None:
    """The demo server: chat page, /healthz, a hub session; SIGTERM: 1001 and exit code 0."""
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
            assert await served.stop() == 0
            await ws.wait_closed()
            assert ws.close_code == 1001


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
    options = _serve_options(build_parser().parse_args(["serve", "--redis", "redis://h:1/0"]))
    assert (options["redis_url"], options["data_dir"]) == ("redis://h:1/0", None)
    with pytest.raises(SystemExit) as info:
        main(["serve", "--port", "0", "--redis", "redis://127.0.0.1:1/0"])
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("wshub: error: cannot reach Redis") and "Traceback" not in err


# --- TLS, logging and the other serve options -----------------------------------------------


def test_serve_options_for_metrics_and_port_sharing() -> None:
    """--metrics, --reuse-port and --backlog reach start_hub only when given."""
    parse = build_parser().parse_args
    assert not {"metrics", "reuse_port", "backlog", "ssl"} & set(_serve_options(parse(["serve"])))
    options = _serve_options(
        parse(["serve", "--metrics", "key", "--reuse-port", "--backlog", "4096"])
    )
    assert (options["metrics"], options["reuse_port"], options["backlog"]) == ("key", True, 4096)


def test_serve_options_for_tokens_and_dedupe(monkeypatch: pytest.MonkeyPatch) -> None:
    """--token-audience/--token-issuer (or their WSHUB_ variables), --token-leeway and
    --dedupe-window reach start_hub only when given."""
    for name in ("WSHUB_TOKEN_AUDIENCE", "WSHUB_TOKEN_ISSUER"):
        monkeypatch.delenv(name, raising=False)
    parse = build_parser().parse_args
    names = {"token_audience", "token_issuer", "token_leeway", "dedupe_window"}
    assert not names & set(_serve_options(parse(["serve"])))
    line = "serve --token-audience hub --token-issuer https://auth.example"
    line += " --token-leeway 2.5 --dedupe-window 600"
    options = _serve_options(parse(line.split()))
    assert {name: options[name] for name in names} == {
        "token_audience": "hub",
        "token_issuer": "https://auth.example",
        "token_leeway": 2.5,
        "dedupe_window": 600.0,
    }
    monkeypatch.setenv("WSHUB_TOKEN_AUDIENCE", "from-env")
    monkeypatch.setenv("WSHUB_TOKEN_ISSUER", "https://env.example")
    options = _serve_options(parse(["serve"]))
    assert (options["token_audience"], options["token_issuer"]) == (
        "from-env",
        "https://env.example",
    )
    options = _serve_options(parse(["serve", "--token-audience", "flag"]))
    assert options["token_audience"] == "flag"  # the flag wins over the environment


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
