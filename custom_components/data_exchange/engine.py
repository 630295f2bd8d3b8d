"""The exchange engine: the state of one node's points, without Home Assistant.

It holds the model, the reported value of every point and the desired value of every
writable point, each with its times and who set it (the sender), applies the writer-priority
rule, tracks sequence numbers (missed, duplicate, out-of-order frames, node restarts) and
knows whether the node's values are stale. Time is passed in: ``now`` is monotonic (every
rule uses it), ``wall`` is the wall clock (display and the Store only), so every rule is
testable without a clock and no clock step changes a decision.

The rules are stated in docs/exchange.md ("Writer priority", "Reconciliation"); the model
test (tests/model/) checks them against an independent restatement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
import math
from typing import Any

from .protocol import (
    Model,
    NodeFrame,
    PointType,
    Refusal as NodeRefusal,
    Value,
    canonical_number,
    desired_args,
    encode_desired_values,
)
from .rules import Limits, refusal

SENDER_NODE = "node"
# Key of the desired acquisition state among the values not yet sent.
_ACQUISITION = -1
# Desired frame numbers are saved at most STORE_MAX_DELAY after they moved; after a crash
# the counter goes on this far ahead, so no number is used twice (at the shortest cycle,
# 50 ms, 600 s are 12,000 frames).
SEQ_RESTORE_MARGIN = 1 << 20


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
    last_seq: int = 0


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


class ExchangeEngine:
    """One node's points: reported and desired values, writer priority, sequence tracking."""

    def __init__(self, writer_priority_delay: float) -> None:
        self.writer_priority_delay = writer_priority_delay
        self.model: Model | None = None
        self.limits: list[Limits] = []
        self.reported: list[Stamped | None] = []
        self.desired: dict[int, Stamped] = {}  # point index -> desired value
        self.desired_acquisition: Stamped | None = None
        self.acquisition_running = True
        self.failsafe_active = False
        self.stats = FrameStats()
        self.desired_seq = 0  # last desired frame sent (continues across sessions)
        self.acked_seq = 0  # newest desired frame the node's current boot applied
        # The newest node frame in which every point was judged: a desired frame's `seen`.
        self.seen = 0
        self.node_boot: str | None = None  # the node's boot id; None: never heard of
        self.node_uptime_ms = 0  # last known, for diagnostics
        self.last_refusal: PointRefusal | None = None
        self.frame_carries_writes = False
        self._new_session = True
        self._refusal_seq = 0  # newest refusal taken into account
        self._group = 0
        # The encoded desired values, rebuilt only after a desired value changed (not every
        # cycle), and the desired values not yet carried by a frame (one entry per point).
        self._values_text: str | None = None
        self._unsent: dict[int, Stamped] = {}

    # ---- model ----

    def set_model(self, model: Model, limits: Sequence[Limits] | None = None) -> None:
        """Take a (new) model; values of points that still exist (same key and type) stay.

        ``limits`` says what each point accepts (from the node's entity infos); a kept
        desired value the point no longer accepts is dropped.
        """
        old = self.model
        old_reported = self.reported
        old_desired = self.desired
        self.model = model
        self.limits = (
            list(limits)
            if limits is not None
            else [Limits(p.type) for p in model.points]
        )
        self.reported = [None] * len(model.points)
        self.desired = {}
        self._unsent = {}
        self._values_text = None
        if old is None:
            return
        where = {(p.key, p.type): i for i, p in enumerate(old.points)}
        for i, point in enumerate(model.points):
            j = where.get((point.key, point.type))
            if j is None:
                continue
            self.reported[i] = old_reported[j] if j < len(old_reported) else None
            kept = old_desired.get(j)
            if kept is not None and self._acceptable(i, kept.value):
                self.desired[i] = kept
                if self._pending(kept):
                    self._unsent[i] = kept

    def _acceptable(self, index: int, value: Value) -> bool:
        """The node would take ``value`` as the desired value of point ``index``."""
        return value is not None and refusal(self.limits[index], value) is None

    # ---- Home Assistant side ----

    def write(
        self,
        index: int,
        value: Value,
        sender: str,
        now: float,
        *,
        wall: float = 0.0,
        group: int = 0,
    ) -> None:
        """A desired value written in Home Assistant (a user, an automation, an action).

        The caller has checked it with the rule (rules.refusal); numbers are kept as the
        node will hold them (32-bit floats).
        """
        point = self._point(index)
        if not point.type.writable:
            raise ValueError(f"point {index} is read-only")
        if point.type is PointType.NUMBER and isinstance(value, (int, float)):
            value = canonical_number(float(value))
        self._set_desired(index, Stamped(value, now, sender, wall, group=group))

    def new_group(self) -> int:
        """An id for the values of one grouped write (all-or-nothing on a refusal)."""
        self._group += 1
        return self._group

    def write_acquisition(
        self, running: bool, sender: str, now: float, wall: float = 0.0
    ) -> None:
        self._set_acquisition(Stamped(running, now, sender, wall))

    def _set_desired(self, index: int, stamped: Stamped) -> None:
        self.desired[index] = stamped
        self._unsent[index] = stamped
        self._values_text = None

    def _drop_desired(self, index: int) -> None:
        if self.desired.pop(index, None) is not None:
            self._unsent.pop(index, None)
            self._values_text = None

    def _set_acquisition(self, stamped: Stamped) -> None:
        self.desired_acquisition = stamped
        self._unsent[_ACQUISITION] = stamped

    def start_session(self, boot_id: str, node_seq: int) -> bool:
        """A new connection; the node said (describe answer) its boot id and last frame.

        Returns True if the node restarted since Home Assistant last heard of it (or Home
        Assistant never did): then nothing it acknowledged counts, every desired value is
        applied again and ``seen`` starts from its current frame. Otherwise values it
        acknowledged keep their state; values not yet acknowledged go out again.
        """
        restarted = boot_id != self.node_boot
        if restarted:
            if self.node_boot is not None:
                self.stats.restarts += 1
            self.acked_seq = 0
            self.seen = node_seq
        self.node_boot = boot_id
        self._new_session = True
        self.stats.last_seq = 0
        for index, stamped in self.desired.items():
            if restarted or self._pending(stamped):
                stamped.seq = 0
                self._unsent[index] = stamped
        acquisition = self.desired_acquisition
        if acquisition is not None and (restarted or self._pending(acquisition)):
            acquisition.seq = 0
            self._unsent[_ACQUISITION] = acquisition
        return restarted

    def next_desired_frame(self, now: float = 0.0) -> dict[str, int | str]:
        """The arguments of the next desired frame (every cycle, full state).

        Per cycle this costs a counter and a dict: the values are encoded again only after
        one of them changed. Values carried for the first time get their frame number and,
        if written in Home Assistant, their writer-priority window from now.
        """
        model = self._require_model()
        self.desired_seq += 1
        self.frame_carries_writes = bool(self._unsent)
        if self._unsent:
            for stamped in self._unsent.values():
                if stamped.seq == 0:
                    stamped.seq = self.desired_seq
                    if stamped.sender != SENDER_NODE:
                        stamped.time = now
            self._unsent.clear()
        if self._values_text is None:
            self._values_text = encode_desired_values(
                model, [self._desired_value(i) for i in model.writable]
            )
        acquisition = self.desired_acquisition
        return desired_args(
            model,
            self.desired_seq,
            self.seen,
            self._values_text,
            None if acquisition is None else bool(acquisition.value),
        )

    def _desired_value(self, index: int) -> Value:
        stamped = self.desired.get(index)
        return None if stamped is None else stamped.value

    # ---- node side ----

    def on_frame(self, frame: NodeFrame, now: float, wall: float = 0.0) -> FrameResult:
        """Take one node frame (already decoded against the current model)."""
        model = self._require_model()
        stats = self.stats
        if self._new_session:
            self._new_session = False
        elif frame.seq <= stats.last_seq:
            # Within one connection: a repeated or replayed frame, never applied.
            if frame.seq == stats.last_seq:
                stats.duplicates += 1
            else:
                stats.out_of_order += 1
            return FrameResult(accepted=False)
        elif frame.seq > stats.last_seq + 1:
            stats.missed += frame.seq - stats.last_seq - 1
        stats.received += 1
        stats.last_seq = frame.seq
        stats.refused_by_node = frame.refused_frames
        self.node_uptime_ms = frame.uptime_ms

        result = FrameResult(accepted=True)
        if self.acked_seq < frame.applied_seq <= self.desired_seq:
            cleared = any(
                self.acked_seq < s.seq <= frame.applied_seq for s in self._carried()
            )
            self.acked_seq = frame.applied_seq
            result.acknowledged = frame.applied_seq
            result.desired_changed |= cleared
        if frame.refusal is not None:
            self._take_refusal(frame.refusal, result)

        deferred = False
        for i, value in enumerate(frame.values):
            current = self.reported[i]
            if current is None or not _same(current.value, value):
                self.reported[i] = Stamped(value, now, SENDER_NODE, wall)
                result.changed.append(i)
            if model.points[i].type.writable:
                verdict = self._writer_priority(i, value, now, wall)
                if verdict is _DEFER:
                    deferred = True
                elif verdict is _ADOPTED:
                    result.adopted.append(i)
                    result.desired_changed = True
                elif verdict is _CHANGED:
                    result.desired_changed = True

        if (frame.acquisition_running, frame.failsafe_active) != (
            self.acquisition_running,
            self.failsafe_active,
        ):
            result.node_state_changed = True
            self.acquisition_running = frame.acquisition_running
            self.failsafe_active = frame.failsafe_active
        verdict = self._acquisition_priority(frame.acquisition_running, now, wall)
        if verdict is _DEFER:
            deferred = True
        elif verdict is not _SETTLED:
            result.desired_changed = True
        if not deferred and frame.seq > self.seen:
            self.seen = frame.seq
        return result

    def _carried(self) -> list[Stamped]:
        carried = [s for s in self.desired.values() if s.seq]
        if self.desired_acquisition is not None and self.desired_acquisition.seq:
            carried.append(self.desired_acquisition)
        return carried

    def _take_refusal(self, node_refusal: NodeRefusal, result: FrameResult) -> None:
        """The node refused a desired frame: drop what it refused, so the rest flows again.

        The refused point's desired value goes (the point gets the node's value back as its
        desired value if that is acceptable), and with it the other values of the same
        grouped write: a grouped write is all-or-nothing.
        """
        if node_refusal.seq <= self._refusal_seq or node_refusal.seq > self.desired_seq:
            return
        self._refusal_seq = node_refusal.seq
        model = self._require_model()
        index = None
        writable = model.writable
        if node_refusal.point is not None and node_refusal.point < len(writable):
            index = writable[node_refusal.point]
        refused = PointRefusal(node_refusal.seq, index, node_refusal.reason)
        self.last_refusal = refused
        result.refused = refused
        if index is None:
            return
        stamped = self.desired.get(index)
        group = stamped.group if stamped is not None else 0
        self._drop_desired(index)
        if group:
            for other in [i for i, s in self.desired.items() if s.group == group]:
                self._drop_desired(other)
        result.desired_changed = True

    def _pending(self, desired: Stamped) -> bool:
        """True until the node has applied a desired frame that carried this value."""
        return desired.seq == 0 or self.acked_seq < desired.seq

    def _writer_priority(
        self, index: int, reported: Value, now: float, wall: float
    ) -> object:
        """Judge a reported value against the desired one (docs/exchange.md, rules 1-6)."""
        if reported is None:
            return _SETTLED
        desired = self.desired.get(index)
        if desired is None:
            # Nothing desired (yet): the node's value is the desired value, if the node
            # would take it back; otherwise the node's own value stands, nothing is sent.
            if not self._acceptable(index, reported):
                return _SETTLED
            self._set_desired(index, Stamped(reported, now, SENDER_NODE, wall))
            return _CHANGED
        if _same(desired.value, reported):
            return _SETTLED
        if self._pending(desired):
            return _DEFER
        if (
            desired.sender != SENDER_NODE
            and now - desired.time < self.writer_priority_delay
        ):
            return _SETTLED  # Home Assistant's recent write wins and keeps being sent
        if self._acceptable(index, reported):
            self._set_desired(index, Stamped(reported, now, SENDER_NODE, wall))
        else:
            self._drop_desired(index)
        return _ADOPTED

    def _acquisition_priority(self, running: bool, now: float, wall: float) -> object:
        desired = self.desired_acquisition
        if desired is None or bool(desired.value) == running:
            return _SETTLED
        if self._pending(desired):
            return _DEFER
        if (
            desired.sender != SENDER_NODE
            and now - desired.time < self.writer_priority_delay
        ):
            return _SETTLED
        self._set_acquisition(Stamped(running, now, SENDER_NODE, wall))
        return _ADOPTED

    def report(self, index: int, value: Value, now: float, wall: float = 0.0) -> bool:
        """A reported value outside frames (entity mode); True if it changed."""
        current = self.reported[index]
        if current is not None and _same(current.value, value):
            return False
        self.reported[index] = Stamped(value, now, SENDER_NODE, wall)
        return True

    def sent_entity_mode(self) -> None:
        """Entity mode sends each write as a command at once: nothing waits for a frame."""
        self._unsent.clear()

    # ---- staleness ----

    @staticmethod
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

    # ---- persistence ----

    def as_dict(self) -> dict[str, Any]:
        """What survives a Home Assistant restart (see restore)."""
        return {
            "desired_seq": self.desired_seq,
            "acked_seq": self.acked_seq,
            "seen": self.seen,
            "node_boot": self.node_boot,
            "reported": [
                None if s is None else _stamped_dict(s) for s in self.reported
            ],
            "desired": {str(i): _stamped_dict(s) for i, s in self.desired.items()},
            "desired_acquisition": None
            if self.desired_acquisition is None
            else _stamped_dict(self.desired_acquisition),
            "acquisition_running": self.acquisition_running,
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Restore values saved by as_dict.

        Monotonic times do not survive a restart: restored values count as set long ago,
        and values still pending get their writer-priority window when they are sent.
        """
        model = self._require_model()
        self.desired_seq = int(data.get("desired_seq", 0)) + SEQ_RESTORE_MARGIN
        self.acked_seq = int(data.get("acked_seq", 0))
        self.seen = int(data.get("seen", 0))
        boot = data.get("node_boot")
        self.node_boot = None if boot is None else str(boot)
        reported = data.get("reported") or []
        if len(reported) == len(model.points):
            self.reported = [
                None if r is None else _stamped(r, model.points[i].type)
                for i, r in enumerate(reported)
            ]
        for key, raw in (data.get("desired") or {}).items():
            index = int(key)
            if 0 <= index < len(model.points) and model.points[index].type.writable:
                stamped = _stamped(raw, model.points[index].type)
                if self._acceptable(index, stamped.value):
                    self.desired[index] = stamped
                    if self._pending(stamped):
                        self._unsent[index] = stamped
        self._values_text = None
        acq = data.get("desired_acquisition")
        if acq is not None:
            self.desired_acquisition = _stamped(acq, PointType.SWITCH)
            if self._pending(self.desired_acquisition):
                self._unsent[_ACQUISITION] = self.desired_acquisition
        self.acquisition_running = bool(data.get("acquisition_running", True))

    def _point(self, index: int) -> Any:
        model = self._require_model()
        if not 0 <= index < len(model.points):
            raise IndexError(index)
        return model.points[index]

    def _require_model(self) -> Model:
        if self.model is None:
            raise RuntimeError("no model yet")
        return self.model


# Verdicts of the writer-priority rule for one point of one frame.
_SETTLED = object()  # nothing to do (equal, Home Assistant wins, or unknown)
_DEFER = object()  # the desired value is pending: judged once the node applied it
_ADOPTED = object()  # a local change became the desired value (or dropped it)
_CHANGED = object()  # the node's first value became the desired value


def _same(a: Value, b: Value) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return type(a) is type(b) and a == b


def _stamped_dict(s: Stamped) -> dict[str, Any]:
    return {"value": s.value, "wall": s.wall, "sender": s.sender, "seq": s.seq}


def _stamped(raw: dict[str, Any], ptype: PointType) -> Stamped:
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
