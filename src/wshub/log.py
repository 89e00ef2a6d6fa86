"""Logging set-up for the ``wshub`` command: plain text for people, JSON lines for shippers.

The library itself only creates loggers and never configures them (that is the
application's call). The loggers, one per layer:

* ``wshub.protocol``: the sans-I/O core; debug only (frames with their sizes, never their
  payloads; state changes; why a connection failed);
* ``wshub.server`` and ``wshub.client``: the asyncio transport (listening, refused
  handshakes, keepalive timeouts, peers that broke the protocol, reconnections);
* ``wshub.hub``: sessions, tokens refused (debug), the HTTP API; ``wshub.hub.client`` is
  the Python hub client;
* ``wshub.broker``: the brokers between hub nodes.

:func:`configure_logging` is what ``wshub serve --log-level --log-format`` calls; an
application that embeds wshub configures :mod:`logging` its own way, and may use
:class:`JsonFormatter` there.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

__all__ = ["LEVELS", "LOG_FORMATS", "JsonFormatter", "configure_logging"]

#: The level names the command line accepts.
LEVELS = ("debug", "info", "warning", "error")
#: The output formats the command line accepts.
LOG_FORMATS = ("text", "json")

#: The text format: one line per record, sortable by its leading UTC timestamp.
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Attributes every LogRecord has: whatever else a record carries came from ``extra=``.
_RECORD_ATTRIBUTES = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "taskName"}
)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, the shape log shippers (Vector, Fluent Bit, Loki) parse.

    Keys: ``time`` (ISO 8601, UTC, milliseconds), ``level``, ``logger``, ``message``, then
    ``exception`` (the formatted traceback) when there is one, then any ``extra=`` fields
    of the call (values that JSON cannot encode are written as their ``str()``). The
    message is formatted with its arguments first, so a line never carries a template.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _utc_timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and key not in entry:
                entry[key] = value
        return json.dumps(entry, ensure_ascii=False, default=str)


class _UTCFormatter(logging.Formatter):
    """The text format, with UTC timestamps: logs of several machines then line up."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc_timestamp(record.created)


def _utc_timestamp(created: float) -> str:
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def configure_logging(
    level: str = "info", fmt: str = "text", *, stream: TextIO | None = None
) -> logging.Handler:
    """Send the ``wshub`` loggers' records at ``level`` and above to ``stream`` as ``fmt``.

    Replaces the handlers of the root logger (without closing them: they may belong to a
    test harness): the command owns the process, and libraries that log through the root
    logger (asyncio) end up in the same stream, in the same format.

    Args:
        level: ``"debug"``, ``"info"``, ``"warning"`` or ``"error"``.
        fmt: ``"text"`` (one readable line per record) or ``"json"`` (one JSON object per
            line, see :class:`JsonFormatter`).
        stream: where to write; standard error by default (standard output stays free
            for what the command prints).

    Returns:
        The handler installed, for callers that want to remove it again.

    Raises:
        ValueError: an unknown level or format.
    """
    if level not in LEVELS:
        raise ValueError(f"unknown log level {level!r}; use one of {', '.join(LEVELS)}")
    if fmt not in LOG_FORMATS:
        raise ValueError(f"unknown log format {fmt!r}; use one of {', '.join(LOG_FORMATS)}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else _UTCFormatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    return handler
