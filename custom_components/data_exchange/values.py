"""Values with their times and sender, and what the engine reports about node frames.

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
from .protocol import PointType, Value

SENDER_NODE = "node"


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
    carried it to the node's current boot (0: not sent yet); until the node acknowledges
    that frame the value is pending. ``group`` ties the values of one grouped write.
    """

    value: Value
    time: float
    sender: str
    wall: float = field(default=0.0, compare=False)
    seq: int = field(default=0, compare=False)
    group: int = field(default=0, compare=False)


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
    acknowledged: int | None = None  # desired seq acknowledged for the first time
    node_state_changed: bool = False  # acquisition or fail-safe flag changed
    desired_changed: bool = False  # a desired value or its acknowledgement changed
    refused: PointRefusal | None = (
        None  # a refusal the node reported for the first time
    )


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


def same(a: Value, b: Value) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return type(a) is type(b) and a == b


def stamped_as_dict(s: Stamped) -> dict[str, Any]:
    return {"value": s.value, "wall": s.wall, "sender": s.sender, "seq": s.seq}


def stamped_from_dict(raw: dict[str, Any], ptype: PointType) -> Stamped:
    value = raw.get("value")
    kind = ptype.kind
    if value is not None:
        if kind == "number":
            value = canonical_number(float(value))
        elif kind == "bool":
            value = bool(value)
        else:
            value = str(value)
    return Stamped(
        value,
        -math.inf,
        str(raw["sender"]),
        float(raw.get("wall", raw.get("time", 0.0))),
        seq=int(raw.get("seq", 0)),
    )


def changed_indices(result: FrameResult) -> Sequence[int]:
    """Points whose entity state must be written: reported or desired value changed."""
    if not result.adopted:
        return result.changed
    return sorted(set(result.changed) | set(result.adopted))
