"""Values with their times and who changed them, and what the engine reports about node frames.

Plain Python, no Home Assistant import: the data the exchange engine (engine.py) keeps and
returns, the staleness rule, and how a value is written to and read from the Store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
import math
from typing import Any

from .float32 import canonical_number
from .protocol import NodeFrame, PointType, Value

CHANGED_BY_NODE = "node"


class StaleReason(StrEnum):
    """Why a node's values are stale (None: they are live)."""

    OFFLINE = "offline"
    PAUSED = "paused"
    SILENT = "silent"  # connected, but no frame for longer than stale_after


@dataclass(slots=True)
class Stamped:
    """A value with its times and who set it.

    ``time`` is monotonic and drives the rules: for a reported value when it arrived, for a
    desired value written in Home Assistant when the first desired frame carrying it was
    sent to the connected node (its writer-priority window opens then). ``wall`` is when it
    was set, for display. For a desired value, ``seq`` is the first desired frame that
    carries it to the node's current boot (0: not sent yet); until the node acknowledges
    that frame the value is pending, unless ``held``: the value was adopted from the node's
    current boot, which holds it already (its ``seq`` is the next frame, the first one to
    carry it). ``group`` ties the values of one grouped write.
    ``measured`` (reported values, wall time; 0: unknown) is when the node measured it
    (node_clock.py), for display and export only.
    """

    value: Value
    time: float
    changed_by: str
    wall: float = field(default=0.0, compare=False)
    seq: int = field(default=0, compare=False)
    group: int = field(default=0, compare=False)
    measured: float = field(default=0.0, compare=False)
    held: bool = field(default=False, compare=False)


@dataclass(slots=True)
class FrameStats:
    """Sequence tracking of node frames."""

    received: int = 0
    missed: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    restarts: int = 0
    refused_by_node: int = 0  # desired frames the node refused (its frame key r)
    foreign_requests: int = 0  # desired frames from other API clients it ignored (o)
    last_seq: int = 0

    def take(self, seq: int, *, first: bool) -> bool:
        """Track one frame's sequence number; False for a frame never to be applied.

        Within one connection frames arrive in order (TCP): a repeated or lower number is
        a duplicate or out of order; a gap is missed frames. The first frame of a
        connection starts the count afresh.
        """
        if not first:
            if seq <= self.last_seq:
                if seq == self.last_seq:
                    self.duplicates += 1
                else:
                    self.out_of_order += 1
                return False
            if seq > self.last_seq + 1:
                self.missed += seq - self.last_seq - 1
        self.received += 1
        self.last_seq = seq
        return True

    def take_frame(self, frame: NodeFrame, *, first: bool) -> bool | None:
        """Track a frame and the node's counters in it: None for a frame never to be
        applied, else whether a count shown to users changed."""
        missed = self.missed
        if not self.take(frame.seq, first=first):
            return None
        if not frame.full:  # the node's counters travel in full frames only
            return missed != self.missed
        node_counts = (frame.refused_frames, frame.foreign_requests)
        changed = missed != self.missed or node_counts != (
            self.refused_by_node,
            self.foreign_requests,
        )
        self.refused_by_node, self.foreign_requests = node_counts
        return changed


@dataclass(slots=True)
class WriteLatency:
    """A desired frame carrying writes sent -> the node's frame acknowledging it, in ms.

    Measured for writes only: the node answers a frame that changes something at once, the
    cyclic full state only with its next cycle frame.
    """

    ms: float | None = None
    sent_at: tuple[int, float] | None = None  # (seq, monotonic time) of that frame

    def sent(self, seq: int, now: float) -> None:
        self.sent_at = (seq, now)

    def acknowledged(self, applied_seq: int, now: float) -> bool:
        """The node applied desired frames up to ``applied_seq``; True if measured."""
        if self.sent_at is None or applied_seq < self.sent_at[0]:
            return False
        self.ms = round((now - self.sent_at[1]) * 1000, 2)
        self.sent_at = None
        return True


@dataclass(frozen=True, slots=True)
class NodeStats:
    """One snapshot of a node's exchange health, as its diagnostic entities show it.

    ``refused_frames``: desired frames the node refused (its frame key r), the last one's
    point and reason; ``malformed_frames``: node frames Home Assistant could not take;
    ``ignored_requests``: action requests and foreign events the node sent (never obeyed);
    ``foreign_requests``: desired frames from other API clients the node ignored (key o).
    """

    missed_frames: int
    refused_frames: int
    foreign_requests: int
    refused_point: str | None
    refused_reason: str | None
    latency_ms: float | None
    malformed_frames: int
    ignored_requests: int


@dataclass(frozen=True, slots=True)
class PointRefusal:
    """The node refused a desired frame because of this point (model index) and reason."""

    seq: int
    index: int | None
    reason: str


@dataclass(slots=True)
class FrameResult:
    """What one node frame changed."""

    accepted: bool
    changed: list[int] = field(default_factory=list)  # reported value changed
    adopted: list[int] = field(
        default_factory=list
    )  # local changes that became desired
    dropped: list[int] = field(default_factory=list)  # desired values a refusal dropped
    acknowledged: int | None = None  # desired seq acknowledged for the first time
    node_state_changed: bool = False  # acquisition or fail-safe flag changed
    desired_changed: bool = False  # a desired value or its acknowledgement changed
    refused: PointRefusal | None = (
        None  # a refusal the node reported for the first time
    )
    # missed frames, the node's refusal or foreign-request counters, or the write latency
    stats_changed: bool = False


def stale_reason(
    *,
    connected: bool,
    acquisition_running: bool,
    last_frame: float | None,
    now: float,
    stale_after: float,
) -> StaleReason | None:
    """Why values are stale, or None while they are live."""
    if not connected:
        return StaleReason.OFFLINE
    if not acquisition_running:
        return StaleReason.PAUSED
    if last_frame is None or now - last_frame > stale_after:
        return StaleReason.SILENT
    return None


def stale_deadline(
    *,
    connected: bool,
    acquisition_running: bool,
    last_frame: float | None,
    now: float,
    stale_after: float,
) -> float | None:
    """When values live at ``now`` turn stale by silence unless a frame comes first (just
    past ``stale_after``); None if they are stale already or cannot turn stale by silence."""
    live = stale_reason(
        connected=connected,
        acquisition_running=acquisition_running,
        last_frame=last_frame,
        now=now,
        stale_after=stale_after,
    )
    if live is not None or last_frame is None or math.isinf(stale_after):
        return None
    return last_frame + stale_after + 0.001


def same(a: Value, b: Value) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return type(a) is type(b) and a == b


def stamped_as_dict(s: Stamped) -> dict[str, Any]:
    raw = {"value": s.value, "wall": s.wall, "changed_by": s.changed_by, "seq": s.seq}
    if s.measured:
        raw["measured"] = s.measured
    if s.held:
        raw["held"] = True
    return raw


def stamped_from_dict(raw: dict[str, Any], ptype: PointType) -> Stamped:
    value = raw.get("value")
    encoding = ptype.encoding
    if value is not None:
        if encoding == "number":
            value = canonical_number(float(value))
        elif encoding == "bool":
            value = bool(value)
        else:
            value = str(value)
    return Stamped(
        value,
        -math.inf,
        str(raw["changed_by"]),
        float(raw.get("wall", raw.get("time", 0.0))),
        seq=int(raw.get("seq", 0)),
        measured=float(raw.get("measured", 0.0)),
        held=raw.get("held") is True,
    )


def changed_indices(result: FrameResult) -> Sequence[int]:
    """Points whose entity state must be written: reported or desired value changed."""
    if not result.adopted and not result.dropped:
        return result.changed
    return sorted({*result.changed, *result.adopted, *result.dropped})


def pending(desired: Stamped | None, reported: Stamped | None) -> Stamped | None:
    """A desired value written in Home Assistant that the node does not show (yet)."""
    if desired is None or desired.changed_by == CHANGED_BY_NODE:
        return None
    if reported is not None and same(desired.value, reported.value):
        return None
    return desired
