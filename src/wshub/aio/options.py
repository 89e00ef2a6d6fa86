"""The limits of one WebSocket connection, as one value shared by every layer.

:func:`wshub.serve`, :func:`wshub.connect`, :class:`wshub.HubClient` and the hub's
configuration (:class:`wshub.hub.config.HubConfig`) all take the same
:class:`TransportOptions`, so a limit has one name, one default and one check everywhere
(``max_size`` is ``--max-size`` on the command line and ``max_size`` in a config file).

The keyword arguments of ``serve()`` and ``connect()`` stay; ``options=`` is the way to pass
the whole set at once, and giving a limit both ways is refused rather than silently
resolved.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any, Literal

from wshub.exceptions import ConfigError

from .connection import Callbacks, ConnectionOptions

__all__ = ["COMPRESSIONS", "TransportOptions"]

#: What ``compression`` accepts (``None``: no permessage-deflate).
COMPRESSIONS = ("deflate", "deflate-shared", None)


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportOptions:
    """Per-connection limits of the WebSocket transport (docs/configuration.md).

    Attributes:
        compression: ``"deflate"`` (permessage-deflate, RFC 7692), ``"deflate-shared"``
            (the same, with ``server_no_context_takeover`` always: a server compresses a
            message sent to many connections once for all of them; a client asks the
            server for it) or ``None``.
        max_size: largest incoming message in bytes, after decompression (over it: close
            1009); ``None`` means no limit (trusted peers only).
        max_queue: unread incoming messages buffered before reading pauses; ``None``
            means no limit.
        write_limit: high-water mark of the write buffer in bytes (low water: a quarter).
        ping_interval: seconds between keepalive pings; ``None`` sends none.
        ping_timeout: seconds a pong may take before closing with 1011; ``None`` waits
            forever.
        open_timeout: seconds for the opening handshake; ``None`` waits forever.
        close_timeout: seconds for the closing handshake before dropping TCP.
    """

    compression: Literal["deflate", "deflate-shared"] | None = "deflate"
    max_size: int | None = 2**20
    max_queue: int | None = 16
    write_limit: int = 2**16
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    open_timeout: float | None = 10.0
    close_timeout: float | None = 10.0

    def __post_init__(self) -> None:
        errors: list[str] = []
        if self.compression not in COMPRESSIONS:
            errors.append(
                "compression: must be 'deflate', 'deflate-shared' or none, "
                f"got {self.compression!r}"
            )
        for name in ("max_size", "max_queue"):
            value = getattr(self, name)
            if value is not None and value < 1:
                errors.append(f"{name}: must be >= 1 or none, got {value!r}")
        if self.write_limit < 0:
            errors.append(f"write_limit: must be >= 0, got {self.write_limit!r}")
        for name in ("ping_interval", "ping_timeout", "open_timeout", "close_timeout"):
            value = getattr(self, name)
            # "not >" also refuses nan; inf is refused because "none" says "forever".
            if value is not None and not (value > 0 and math.isfinite(value)):
                errors.append(f"{name}: must be > 0 seconds or none, got {value!r}")
        ConfigError.check(errors)

    @classmethod
    def merge(cls, options: TransportOptions | None, **keywords: Any) -> TransportOptions:
        """``options`` when given, else the options that ``keywords`` name.

        The keyword arguments of ``serve()``/``connect()`` that are also fields here arrive
        in ``keywords``; with ``options`` given, each must be left at its default.

        Raises:
            ConfigError: a limit given both in ``options`` and as a keyword.
        """
        if options is None:
            return cls(**keywords)
        both = [
            field.name
            for field in dataclasses.fields(cls)
            if field.name in keywords and keywords[field.name] != field.default
        ]
        ConfigError.check([f"{name}: given both in options= and as a keyword" for name in both])
        return options

    def connection_options(
        self, callbacks: Callbacks, *, modern: bool, logger: logging.Logger
    ) -> ConnectionOptions:
        """The settings every connection of one server or client shares."""
        return ConnectionOptions(
            callbacks=callbacks,
            modern=modern,
            max_size=self.max_size,
            max_queue=self.max_queue,
            write_limit=self.write_limit,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
            open_timeout=self.open_timeout,
            close_timeout=self.close_timeout,
            logger=logger,
        )
