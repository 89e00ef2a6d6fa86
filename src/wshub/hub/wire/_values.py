"""Values that commands, replies and pushes share: positions, client info, publications."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["ClientInfo", "Position", "StoredPublication"]


@dataclass(frozen=True, slots=True)
class Position:
    """Where a channel's stream is: the last ``offset`` within an ``epoch``."""

    offset: int
    epoch: str

    def to_json(self) -> dict[str, Any]:
        return {"offset": self.offset, "epoch": self.epoch}


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """Who a connection is: shown in presence and in the ``info`` of its publications."""

    client: str
    user: str
    meta: Any = None

    def to_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"client": self.client, "user": self.user}
        if self.meta is not None:
            obj["meta"] = self.meta
        return obj

    def encode(self) -> bytes:
        """The JSON bytes stored with a publication."""
        return orjson.dumps(self.to_json())


@dataclass(frozen=True, slots=True)
class StoredPublication:
    """One publication of a channel as stored in history.

    Attributes:
        offset: its position in the channel's epoch.
        time: server time of the publication, seconds since the Unix epoch.
        data: the payload as raw JSON bytes.
        info: who published it, as raw JSON bytes, or ``None``.
    """

    offset: int
    time: float
    data: bytes
    info: bytes | None = None
