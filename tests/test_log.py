"""Tests for wshub.log and for the logging policy it documents (logger names, no payloads)."""

from __future__ import annotations

import ast
import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import wshub
from wshub.cli import main
from wshub.log import JsonFormatter, configure_logging
from wshub.testing import loopback_server, server_url

SRC = Path(__file__).resolve().parents[1] / "src" / "wshub"

#: The loggers src/wshub/log.py documents; a new one must be documented there first.
DOCUMENTED_LOGGERS = {
    "wshub.protocol",
    "wshub.server",
    "wshub.client",
    "wshub.hub",
    "wshub.hub.client",
    "wshub.broker",
}


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """The root logger, with its handlers and level put back after the test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield root
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


def test_json_lines_carry_time_level_logger_message_extra_and_exception(
    root_logger: logging.Logger,
) -> None:
    """Each record is one JSON object with the formatted message, extras and traceback."""
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    log = logging.getLogger("wshub.hub")
    log.info("publish to %s", "chat:lobby", extra={"channel": "chat:lobby", "odd": object()})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("it failed")
    log.debug("not at info level")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
    assert first["level"] == "info" and first["logger"] == "wshub.hub"
    assert first["message"] == "publish to chat:lobby"
    assert first["channel"] == "chat:lobby"
    assert first["odd"].startswith("<object object")
    assert "exception" not in first
    assert second["level"] == "error" and second["message"] == "it failed"
    assert "ValueError: boom" in second["exception"]


def test_text_lines_have_a_utc_timestamp_level_and_logger(root_logger: logging.Logger) -> None:
    """The text format is one line per record: UTC time, level, logger, message."""
    out = io.StringIO()
    configure_logging("debug", "text", stream=out)
    logging.getLogger("wshub.server").debug("listening on %d", 8765)
    line = out.getvalue()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z DEBUG wshub.server: listening on 8765\n", line
    )


def test_configure_replaces_the_root_handlers(root_logger: logging.Logger) -> None:
    """A second call leaves one handler: the newest stream gets the records, at its level."""
    first, second = io.StringIO(), io.StringIO()
    configure_logging("info", "text", stream=first)
    handler = configure_logging("warning", "json", stream=second)
    logging.getLogger("wshub.client").info("dropped at warning level")
    logging.getLogger("wshub.client").warning("kept")
    assert root_logger.handlers == [handler]
    assert first.getvalue() == ""
    assert json.loads(second.getvalue())["message"] == "kept"


@pytest.mark.parametrize(("level", "fmt"), [("verbose", "text"), ("info", "xml")])
def test_unknown_level_or_format_is_refused(level: str, fmt: str) -> None:
    """Only the documented levels and formats are accepted."""
    with pytest.raises(ValueError, match="unknown log"):
        configure_logging(level, fmt)


def test_json_formatter_works_without_configure() -> None:
    """JsonFormatter can be installed on any handler by an embedding application."""
    record = logging.LogRecord("wshub.broker", logging.WARNING, __file__, 1, "x=%d", (1,), None)
    assert json.loads(JsonFormatter().format(record))["message"] == "x=1"


def test_the_command_line_installs_the_json_formatter(
    root_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    """``wshub --log-format json --log-level debug ...`` logs JSON lines from debug up."""
    secret = "log-tests-secret-0123456789abcdef-0123"
    assert (
        main(
            [
                "--log-format",
                "json",
                "--log-level",
                "debug",
                "token",
                "--secret",
                secret,
                "--user",
                "eve",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.count(".") == 2  # the token was printed: a JWT
    assert isinstance(root_logger.handlers[-1].formatter, JsonFormatter)
    assert root_logger.level == logging.DEBUG


def logger_names() -> dict[str, str]:
    """Every ``logging.getLogger("...")`` name in the package, with one file that uses it."""
    found: dict[str, str] = {}
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "getLogger"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                found[str(node.args[0].value)] = str(path.relative_to(SRC))
    return found


def test_every_logger_is_a_documented_one() -> None:
    """The package logs only on the loggers log.py documents (STYLE convention 13)."""
    names = logger_names()
    assert names, "the scan found no loggers at all"
    undocumented = {name: path for name, path in names.items() if name not in DOCUMENTED_LOGGERS}
    assert undocumented == {}


async def test_debug_logs_of_a_connection_carry_no_payload(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """At debug level, a whole connection's life is logged without its messages' contents,
    and a failing handler's exception goes to the log, never into the close reason."""
    caplog.set_level(logging.DEBUG, logger="wshub")

    async def handler(ws: wshub.ServerConnection) -> None:
        message = await ws.recv()
        await ws.send(message)
        await ws.ping(b"secret-ping")
        raise RuntimeError(f"secret-detail {message!r}")

    async with (
        loopback_server(handler, compression=None) as server,
        wshub.connect(server_url(server)) as client,
    ):
        await client.send("secret-text")
        assert await client.recv() == "secret-text"
        with pytest.raises(wshub.ConnectionClosedError) as closed:
            await client.recv()
    assert (closed.value.code, closed.value.reason) == (1011, "")
    messages = "\n".join(record.getMessage() for record in caplog.records)
    assert "< PING [11 bytes]" in messages
    assert "secret" not in messages
    failures = [r for r in caplog.records if r.exc_info and "secret-detail" in str(r.exc_info[1])]
    assert [r.name for r in failures] == ["wshub.server"]
