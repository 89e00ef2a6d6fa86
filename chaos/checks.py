"""The accounting of a chaos scenario: what each subscriber received against what the hub
acknowledged to the publishers.

Pure functions on plain values, unit-tested in tests/test_chaos_checks.py. A publication is
identified by its ``message_id`` (the idempotency id the publisher chose, carried in the
data too). For each subscription:

* every acknowledged publication of its channel must be delivered exactly once, at the
  offset of its acknowledgement, or fall inside a gap the subscriber was told about
  (error 116, ``recovered: false``): that counts as an explicit gap, anything else missing
  is **lost**;
* nothing is delivered twice (by message id or by position): **duplicated**;
* within an epoch the offsets only go up: **order**;
* a delivered publication's offset differs from its acknowledgement: **offset mismatch**.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "Ack",
    "Delivery",
    "Gap",
    "SubscriptionReport",
    "check_subscription",
    "compare_histories",
    "missing_from_history",
]


@dataclass(frozen=True, slots=True)
class Ack:
    """A publish the hub acknowledged: its message id and the offset the reply gave."""

    message_id: str
    offset: int


@dataclass(frozen=True, slots=True)
class Delivery:
    """A publication a subscriber received."""

    message_id: str
    offset: int
    epoch: str


@dataclass(frozen=True, slots=True)
class Gap:
    """An explicit gap: the subscriber was told that publications are gone (error 116)."""


Event = Delivery | Gap


@dataclass(slots=True)
class SubscriptionReport:
    """What one subscription got, against the acknowledgements of its channel.

    Attributes:
        deliveries: publications received (duplicates included).
        gaps: the gaps the subscriber was told about (error 116).
        gapped: message ids of acknowledged publications inside those gaps.
        lost, duplicated, out_of_order, offset_mismatch: message ids of each failure.
    """

    deliveries: int = 0
    gaps: int = 0
    gapped: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    out_of_order: list[str] = field(default_factory=list)
    offset_mismatch: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing lost, duplicated, out of order or at another offset than acknowledged."""
        return not (self.lost or self.duplicated or self.out_of_order or self.offset_mismatch)

    def problems(self) -> list[str]:
        """One line per kind of failure, with a few message ids as examples."""
        lines = []
        for name in ("lost", "duplicated", "out_of_order", "offset_mismatch"):
            ids: list[str] = getattr(self, name)
            if ids:
                shown = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
                lines.append(f"{len(ids)} {name.replace('_', ' ')}: {shown}")
        return lines


def check_subscription(events: Sequence[Event], acks: Iterable[Ack]) -> SubscriptionReport:
    """Account for one subscription's ``events`` (in the order it saw them) against the
    acknowledged publishes of its channel (all made while it was subscribed)."""
    report = SubscriptionReport()
    first_index: dict[str, int] = {}
    seen_positions: set[tuple[str, int]] = set()
    last_offset: dict[str, int] = {}
    for index, event in enumerate(events):
        if isinstance(event, Gap):
            report.gaps += 1
            continue
        report.deliveries += 1
        position = (event.epoch, event.offset)
        if event.message_id in first_index or position in seen_positions:
            report.duplicated.append(event.message_id)
            continue
        first_index[event.message_id] = index
        seen_positions.add(position)
        previous = last_offset.get(event.epoch)
        if previous is not None and event.offset <= previous:
            report.out_of_order.append(event.message_id)
        last_offset[event.epoch] = event.offset if previous is None else max(previous, event.offset)

    for ack in acks:
        where = first_index.get(ack.message_id)
        if where is not None:
            delivered = events[where]
            assert isinstance(delivered, Delivery)
            if delivered.offset != ack.offset:
                report.offset_mismatch.append(ack.message_id)
        elif _explained_by_gap(events, ack.offset):
            report.gapped.append(ack.message_id)
        else:
            report.lost.append(ack.message_id)
    return report


def _explained_by_gap(events: Sequence[Event], offset: int) -> bool:
    """Whether a publication acknowledged at ``offset`` that never arrived lies in a gap the
    subscriber was told about.

    The publish reply gives an offset, not an epoch, so the publication is placed by offset:
    it was skipped silently if two deliveries of one epoch that follow each other without a
    :class:`Gap` between them surround its offset. Otherwise it is explained by a Gap whose
    neighbouring deliveries (the last one before it, the first one after it) leave room for
    it: lower before, higher after, or a new epoch after the gap (the old stream is gone).
    """
    previous: Delivery | None = None
    gap_since_previous = False
    gaps: list[tuple[Delivery | None, Delivery | None]] = []
    open_gap = False
    for event in events:
        if isinstance(event, Gap):
            gap_since_previous = True
            if not open_gap:
                gaps.append((previous, None))
                open_gap = True
            continue
        if (
            previous is not None
            and not gap_since_previous
            and previous.epoch == event.epoch
            and previous.offset < offset < event.offset
        ):
            return False
        if open_gap:
            gaps[-1] = (gaps[-1][0], event)
            open_gap = False
        previous, gap_since_previous = event, False
    for before, after in gaps:
        new_epoch = before is not None and after is not None and before.epoch != after.epoch
        if new_epoch:
            return True
        if (before is None or before.offset < offset) and (after is None or after.offset > offset):
            return True
    return False


def compare_histories(histories: Mapping[str, Sequence[tuple[int, str]]]) -> list[str]:
    """Differences between the histories of one channel read through each node
    (``node -> [(offset, message_id), ...]``): empty when they are all identical."""
    problems: list[str] = []
    items = list(histories.items())
    if not items:
        return problems
    reference_node, reference = items[0]
    for node, history in items[1:]:
        if list(history) != list(reference):
            missing = sorted(set(reference) - set(history))[:3]
            extra = sorted(set(history) - set(reference))[:3]
            problems.append(
                f"{node} differs from {reference_node} ({len(history)} vs {len(reference)}"
                f" publications; missing {missing}, extra {extra})"
            )
    return problems


def missing_from_history(
    acks: Iterable[Ack],
    history: Iterable[tuple[int, str]],
    gapped: Sequence[set[str]],
    *,
    superseded: Sequence[Mapping[str, str]] = (),
    epoch: str | None = None,
) -> list[str]:
    """The acknowledged publications that ``history`` (``[(offset, message_id), ...]``) does
    not hold at their acknowledged offset, except those that every subscription of the channel
    (``gapped``: the message ids each one was told it missed) reported as a gap.

    A stream Redis lost and the hub replaced by a new ``epoch`` (a failover that dropped
    unreplicated writes) no longer holds its publications; anyone resuming from them is told
    (error 116). Such a publication is excused too when every subscription either was told it
    missed it or received it in an epoch other than the history's current ``epoch``
    (``superseded``: per subscription, message id -> epoch it was delivered in). In the same
    epoch, a missing publication is never excused by having been delivered.
    """
    stored = set(history)
    excused = set.intersection(*gapped) if gapped else set()
    if superseded and epoch is not None and len(superseded) == len(gapped):
        told_or_older = [
            told | {mid for mid, seen in got.items() if seen != epoch}
            for told, got in zip(gapped, superseded, strict=True)
        ]
        excused |= set.intersection(*told_or_older)
    return [
        ack.message_id
        for ack in acks
        if (ack.offset, ack.message_id) not in stored and ack.message_id not in excused
    ]
