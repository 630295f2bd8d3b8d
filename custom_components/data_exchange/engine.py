"""The exchange engine: the state of one node's points, without Home Assistant.

The model, reported and desired values (values.Stamped), writer priority, acknowledgements,
sessions and node restarts. Time is passed in: ``now`` is monotonic (every rule uses it),
``wall`` the wall clock (display and Store only), so no clock step changes a decision. The
rules: docs/exchange.md; the model test (tests/model/) checks them independently.
"""

from __future__ import annotations

from collections.abc import Sequence
import math

from .float32 import canonical_number
from .priority import Verdict, dropped_by_refusal, judge
from .protocol import (
    DesiredFrame,
    Model,
    NodeFrame,
    PointType,
    Refusal as NodeRefusal,
    Value,
    encode_desired_values,
)
from .rules import Limits, refusal
from .values import (
    CHANGED_BY_NODE,
    FrameResult,
    FrameStats,
    PointRefusal,
    StaleReason,
    Stamped,
    WriteLatency,
    same,
    stale_reason,
)

# Key of the desired acquisition state among the values not yet sent.
_ACQUISITION = -1


class ExchangeEngine:
    """One node's points: reported and desired values, writer priority, sequence tracking."""

    def __init__(
        self, writer_priority_delay: float, stale_after: float = math.inf
    ) -> None:
        self.writer_priority_delay = writer_priority_delay
        self.stale_after = stale_after
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
        # Monotonic time of the newest full frame taken in this session (None: none yet).
        self.last_frame: float | None = None
        self.latency = WriteLatency()
        self._new_session = True
        self._deferred: set[int] = set()  # reports judged "pending", to be judged again
        self.refusal_seq = 0  # newest refusal taken into account
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
        self.limits = list(limits or [Limits(p.type) for p in model.points])
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
            if kept is not None:
                self.keep_desired(i, kept)

    def _acceptable(self, index: int, value: Value) -> bool:
        """The node would take ``value`` as the desired value of point ``index``."""
        return value is not None and refusal(self.limits[index], value) is None

    # ---- Home Assistant side ----

    def write(
        self,
        index: int,
        value: Value,
        changed_by: str,
        now: float,
        *,
        wall: float = 0.0,
        group: int = 0,
    ) -> None:
        """A desired value written in Home Assistant, checked by the caller (rules.refusal);
        numbers kept as the node will hold them (32-bit floats)."""
        points = self._require_model().points
        if not 0 <= index < len(points):
            raise IndexError(index)
        point = points[index]
        if not point.type.writable:
            raise ValueError(f"point {index} is read-only")
        if point.type is PointType.NUMBER and isinstance(value, (int, float)):
            value = canonical_number(float(value))
        self._set_desired(index, Stamped(value, now, changed_by, wall, group=group))

    def new_group(self) -> int:
        """An id for the values of one grouped write (all-or-nothing on a refusal)."""
        self._group += 1
        return self._group

    def write_acquisition(
        self, running: bool, by: str, now: float, wall: float = 0
    ) -> None:
        self._set_acquisition(Stamped(running, now, by, wall))

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
        self._deferred.clear()
        self.last_frame = None
        self.latency.sent_at = None
        self.stats.last_seq = 0
        carried = [*self.desired.items(), (_ACQUISITION, self.desired_acquisition)]
        for index, stamped in carried:
            if stamped is not None and (restarted or self._pending(stamped)):
                stamped.seq = 0
                self._unsent[index] = stamped
        return restarted

    def next_desired_frame(self, now: float = 0.0) -> DesiredFrame:
        """The next desired frame (full state); values are encoded again only after one
        changed. Values carried for the first time get their frame number and, if written
        in Home Assistant, their writer-priority window from now."""
        model = self._require_model()
        self.desired_seq += 1
        self.frame_carries_writes = bool(self._unsent)
        if self.frame_carries_writes:
            self.latency.sent(self.desired_seq, now)
        if self._unsent:
            for stamped in self._unsent.values():
                if stamped.seq == 0:
                    stamped.seq = self.desired_seq
                    if stamped.changed_by != CHANGED_BY_NODE:
                        stamped.time = now
            self._unsent.clear()
        if self._values_text is None:
            self._values_text = encode_desired_values(
                model,
                [
                    d.value if (d := self.desired.get(i)) else None
                    for i in model.writable
                ],
            )
        acquisition = self.desired_acquisition
        return DesiredFrame(
            model.model_id,
            model.token,
            self.desired_seq,
            self.seen,
            self._values_text,
            None if acquisition is None else bool(acquisition.value),
        )

    # ---- node side ----

    def on_frame(self, frame: NodeFrame, now: float, wall: float = 0.0) -> FrameResult:
        """Take one node frame (already decoded against the current model)."""
        model = self._require_model()
        stats_changed = self.stats.take_frame(frame, first=self._new_session)
        if stats_changed is None:
            return FrameResult(accepted=False)
        self._new_session = False
        if full := frame.full:  # live once every point was reported in the session
            self.last_frame = now
        self.node_uptime_ms = frame.uptime_ms
        result = FrameResult(accepted=True, stats_changed=stats_changed)
        deferred = self._deferred
        if full:  # a change frame carries values only (protocol 4)
            self._take_ack(frame, now, result)
            deferred.clear()  # a full frame judges every point again
            self._take_node_state(frame, now, wall, result)
        points = range(len(model.points)) if full else frame.indices or ()
        for i, value in zip(points, frame.values, strict=True):
            current = self.reported[i]
            if current is None or not same(current.value, value):
                self.reported[i] = Stamped(value, now, CHANGED_BY_NODE, wall)
                result.changed.append(i)
            if model.points[i].type.writable:
                verdict = self._judge(i, value, now, wall)
                _track(deferred, i, verdict)
                if verdict in (Verdict.FIRST, Verdict.ADOPT):
                    result.desired_changed = True
                    if verdict is Verdict.ADOPT:
                        result.adopted.append(i)
        # `seen` covers a frame only when no report is left unjudged (a change frame judges
        # the points it carries; the others keep their judgement from earlier frames).
        if not deferred and frame.seq > self.seen:
            self.seen = frame.seq
        return result

    def _take_ack(self, frame: NodeFrame, now: float, result: FrameResult) -> None:
        """A full frame's acknowledgement (``a``) and last refusal (``e``)."""
        applied = frame.applied_seq
        if applied <= self.desired_seq and self.latency.acknowledged(applied, now):
            result.stats_changed = True
        if self.acked_seq < applied <= self.desired_seq:
            carried = [*self.desired.values(), self.desired_acquisition]
            result.desired_changed |= any(
                s is not None and self.acked_seq < s.seq <= applied for s in carried
            )
            self.acked_seq = result.acknowledged = applied
        if frame.refusal is not None:
            self._take_refusal(frame.refusal, result)

    def _take_node_state(
        self, frame: NodeFrame, now: float, wall: float, result: FrameResult
    ) -> None:
        """A full frame's acquisition and fail-safe state (acquisition judged like a point)."""
        running, deferred = frame.acquisition_running, self._deferred
        state = (running, frame.failsafe_active)
        if state != (self.acquisition_running, self.failsafe_active):
            result.node_state_changed = True
            self.acquisition_running, self.failsafe_active = state
        if (acquisition := self.desired_acquisition) is not None:
            verdict = judge(
                acquisition,
                running,
                pending=self._pending(acquisition),
                now=now,
                delay=self.writer_priority_delay,
            )
            _track(deferred, _ACQUISITION, verdict)
            if verdict is Verdict.ADOPT:
                self._set_acquisition(Stamped(running, now, CHANGED_BY_NODE, wall))
                result.desired_changed = True
        else:
            deferred.discard(_ACQUISITION)

    def _take_refusal(self, node_refusal: NodeRefusal, result: FrameResult) -> None:
        """The node refused a desired frame: drop the refused point's value and the rest of
        its grouped write (all or nothing); a value written since stays."""
        if node_refusal.seq <= self.refusal_seq or node_refusal.seq > self.desired_seq:
            return
        self.refusal_seq = node_refusal.seq
        writable, point = self._require_model().writable, node_refusal.point
        index = writable[point] if point is not None and point < len(writable) else None
        refused = PointRefusal(node_refusal.seq, index, node_refusal.reason)
        self.last_refusal = refused
        result.refused = refused
        if index is None:
            return
        for i in dropped_by_refusal(self.desired, index, refused.seq):
            self._drop_desired(i)
            result.dropped.append(i)
        result.desired_changed |= bool(result.dropped)

    def _pending(self, desired: Stamped) -> bool:
        """True until the node has applied a desired frame that carried this value."""
        return desired.seq == 0 or self.acked_seq < desired.seq

    def _judge(self, index: int, reported: Value, now: float, wall: float) -> Verdict:
        """Writer priority for one point of a frame (priority.py), applied. A value the
        node would refuse back is never made desired (the node's own value stands, or the
        desired value is dropped)."""
        desired = self.desired.get(index)
        verdict = judge(
            desired,
            reported,
            pending=desired is not None and self._pending(desired),
            now=now,
            delay=self.writer_priority_delay,
        )
        if verdict in (Verdict.FIRST, Verdict.ADOPT):
            if self._acceptable(index, reported):
                self._set_desired(index, Stamped(reported, now, CHANGED_BY_NODE, wall))
            elif verdict is Verdict.FIRST:
                return Verdict.SETTLED
            else:
                self._drop_desired(index)
        return verdict

    def holds_desired(self) -> bool:
        """The node's frames show it holds every desired value: a desired frame now would
        change nothing (a full frame of this session says so, nothing unsent, unjudged)."""
        acquisition = self.desired_acquisition
        if (
            self.last_frame is None
            or self._unsent
            or self._deferred
            or self.acked_seq < self.desired_seq
            or self.failsafe_active
            or (
                acquisition is not None
                and acquisition.value != self.acquisition_running
            )
        ):
            return False
        return all(
            (r := self.reported[i]) is not None and same(r.value, d.value)
            for i, d in self.desired.items()
        )

    def report(self, index: int, value: Value, now: float, wall: float = 0.0) -> bool:
        """A reported value outside frames (entity mode); True if it changed."""
        current = self.reported[index]
        if current is not None and same(current.value, value):
            return False
        self.reported[index] = Stamped(value, now, CHANGED_BY_NODE, wall)
        return True

    def stale_reason(self, *, connected: bool, now: float) -> StaleReason | None:
        """Why this node's values are stale now, or None while they are live."""
        return stale_reason(
            connected=connected,
            acquisition_running=self.acquisition_running,
            last_frame=self.last_frame,
            now=now,
            stale_after=self.stale_after,
        )

    def sent_entity_mode(self) -> None:
        """Entity mode sends each write as a command at once: nothing waits for a frame."""
        self._unsent.clear()

    # ---- restored values (the Store format: persistence.py) ----

    def keep_desired(self, index: int, stamped: Stamped) -> None:
        """Take a desired value as it was (restored): sent again only if still pending."""
        if not self._acceptable(index, stamped.value):
            return
        self.desired[index] = stamped
        self._values_text = None
        if self._pending(stamped):
            self._unsent[index] = stamped

    def keep_acquisition(self, stamped: Stamped) -> None:
        self.desired_acquisition = stamped
        if self._pending(stamped):
            self._unsent[_ACQUISITION] = stamped

    def _require_model(self) -> Model:
        if self.model is None:
            raise RuntimeError("no model yet")
        return self.model


def _track(deferred: set[int], key: int, verdict: Verdict) -> None:
    (deferred.add if verdict is Verdict.DEFER else deferred.discard)(key)
