"""Values that commands, replies and pushes share: positions, client info, publications."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import orjson

__all__ = ["ClientInfo", "Position", "StoredPublication", "slot_setters"]


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
        """The JSON bytes stored with a publication.

        A right-sized copy: a session keeps these bytes for its lifetime, and the object
        ``orjson.dumps`` returns keeps its whole initial buffer (about 4 KiB) allocated.
        """
        return bytes(memoryview(orjson.dumps(self.to_json())))

    @classmethod
    def parse(cls, obj: Any) -> ClientInfo:
        """Read an ``info`` object (of presence, a join or leave push): the inverse of
        :meth:`to_json`.

        Raises:
            ValueError: ``obj`` is not an object with string ``client`` and ``user``.
        """
        if not isinstance(obj, Mapping):
            raise ValueError("not a wshub.v1 message: info")
        client, user = obj.get("client"), obj.get("user")
        if not isinstance(client, str) or not isinstance(user, str):
            raise ValueError("not a wshub.v1 message: info")
        return cls(client, user, obj.get("meta"))

    @classmethod
    def decode(cls, raw: bytes) -> ClientInfo:
        """Read the JSON bytes of a publication's ``info``: the inverse of :meth:`encode`.

        Raises:
            ValueError: ``raw`` is not JSON, or not an ``info`` object.
        """
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ValueError("not a wshub.v1 message: info") from exc
        return cls.parse(obj)


@dataclass(frozen=True, slots=True, init=False)
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

    def __init__(self, offset: int, time: float, data: bytes, info: bytes | None = None) -> None:
        # Written out (see slot_setters): a client builds one per publication it reads.
        _SET_OFFSET(self, offset)
        _SET_TIME(self, time)
        _SET_DATA(self, data)
        _SET_INFO(self, info)


def slot_setters(cls: type) -> list[Callable[[Any, Any], None]]:
    """The setters of the slots of the frozen dataclass ``cls``, one per field, in order.

    For the few values built once per message on a client's receive path: the ``__init__``
    that ``dataclass`` writes for a frozen class sets every field through
    ``object.__setattr__``, which costs about twice as much as setting the slot directly
    (benchmarks/hub_client_receive.py). Such a class is declared with ``init=False`` and a
    written-out ``__init__``; unpacking this list into one name per field makes a field
    added without updating the ``__init__`` fail at import.
    """
    return [getattr(cls, field.name).__set__ for field in fields(cls)]


_SET_OFFSET, _SET_TIME, _SET_DATA, _SET_INFO = slot_setters(StoredPublication)
