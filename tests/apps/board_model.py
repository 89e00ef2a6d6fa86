"""The board's rules in Python (docs/board.md), as board.js applies them.

The 10x-history test uses it twice: to publish a long board the way the pages do (posting
snapshots by the same rule), and to compute what a page that loads it must show.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from wshub.hub.wire import ClientInfo

BOARD_W, BOARD_H = 1600, 1000
COLORS = ("ink", "red", "orange", "green", "blue", "violet")
WIDTHS = (2, 4, 8, 16)
MAX_POINTS = 1000
_TAB = re.compile(r"[0-9a-f]{8,64}")


def author_of(info: ClientInfo | None) -> str:
    """The author key: the verified user, else the declared tab id, else the connection."""
    if info is None:
        return "server"
    if info.user:
        return f"u:{info.user}"
    tab = info.meta.get("tab") if isinstance(info.meta, dict) else None
    if isinstance(tab, str) and _TAB.fullmatch(tab):
        return f"t:{tab}"
    return f"c:{info.client}"


def name_of(info: ClientInfo | None) -> str:
    name = info.meta.get("name") if info is not None and isinstance(info.meta, dict) else None
    if isinstance(name, str) and name.strip():
        return name.strip()[:32]
    if info is not None and info.user:
        return info.user
    return "anonymous" if info is not None else "server"


def _points(points: Any) -> list[int] | None:
    if not isinstance(points, list) or len(points) < 2 or len(points) % 2:
        return None
    if len(points) > 2 * MAX_POINTS:
        return None
    for i, v in enumerate(points):
        limit = BOARD_W if i % 2 == 0 else BOARD_H
        if type(v) is not int or not 0 <= v <= limit:
            return None
    return points


def _stroke(
    offset: Any, author: Any, name: Any, color: Any, width: Any, points: Any
) -> list[Any] | None:
    pts = _points(points)
    if pts is None or type(offset) is not int or offset < 1:
        return None
    return [
        offset,
        str(author),
        str(name)[:32],
        color if color in COLORS else "ink",
        width if width in WIDTHS else 4,
        pts,
    ]


@dataclass
class Board:
    """A replay of a board channel; ``strokes`` maps offset -> snapshot entry."""

    strokes: dict[int, list[Any]] = field(default_factory=dict)
    last: int = 0
    first: int = 0
    snapshot: tuple[int, int] | None = None  # (offset, base) of the latest snapshot
    anchored: bool = False
    log: list[tuple[int, dict[str, Any], str, str]] = field(default_factory=list)

    def apply(self, offset: int, data: Any, info: ClientInfo | None) -> None:
        if offset <= self.last:
            return
        self.first = self.first or offset
        self.last = offset
        op = data if isinstance(data, dict) else {}
        if op.get("type") == "snapshot":
            self._snapshot(offset, op)
            return
        entry = (offset, op, author_of(info), name_of(info))
        if not self.anchored:
            self.log.append(entry)
        self._op(*entry)
        if not self.anchored and (offset == 1 or op.get("type") == "clear"):
            self.anchored, self.log = True, []

    def since_snapshot(self) -> int:
        return self.last - (self.snapshot[1] if self.snapshot else 0)

    def snapshot_data(self) -> dict[str, Any]:
        return {"type": "snapshot", "base": self.last, "strokes": list(self.strokes.values())}

    def _snapshot(self, offset: int, op: dict[str, Any]) -> None:
        base = op.get("base")
        if (
            type(base) is not int
            or not 0 <= base < offset
            or not isinstance(op.get("strokes"), list)
        ):
            return
        if self.snapshot is None or offset > self.snapshot[0]:
            self.snapshot = (offset, base)
        if self.anchored or base + 1 < self.first:
            return
        self.strokes = {}
        for item in op["strokes"]:
            stroke = _stroke(*item) if isinstance(item, list) and len(item) == 6 else None
            if stroke is not None and stroke[0] <= base:
                self.strokes[stroke[0]] = stroke
        for entry in self.log:
            if entry[0] > base:
                self._op(*entry)
        self.anchored, self.log = True, []

    def _op(self, offset: int, op: dict[str, Any], author: str, name: str) -> None:
        kind = op.get("type")
        if kind == "stroke":
            stroke = _stroke(
                offset, author, name, op.get("color"), op.get("width"), op.get("points")
            )
            if stroke is not None:
                self.strokes[offset] = stroke
        elif kind == "undo":
            target = self.strokes.get(op.get("target"))  # type: ignore[arg-type]
            if target is not None and target[1] == author:
                del self.strokes[target[0]]
        elif kind == "clear":
            self.strokes = {k: v for k, v in self.strokes.items() if k > offset}
