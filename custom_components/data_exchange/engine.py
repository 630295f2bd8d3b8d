"""The exchange engine: the state of one node's points, without Home Assistant.

The model, reported and desired values (values.Stamped), writer priority, acknowledgements,
sessions and node restarts. Time is passed in: ``now`` is monotonic (every rule uses it),
``wall`` the wall clock (display and Store only), so no clock step changes a decision. The
rules: docs/exchange.md; the model test (tests/model/) checks them independently.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
import math

from . import sessions
from .desired import ACQUISITION as _ACQUISITION, DesiredState
from .priority import Verdict, dropped_by_refusal, judge
from .protocol import Model, NodeFrame, Refusal as NodeRefusal, Value
from .rules import Limits
from .values import (
    CHANGED_BY_NODE,
    FrameResult,
    FrameStats,
    PointRefusal,
    StaleReason,
    Stamped,
    same,
    stale_deadline,
    stale_reason,
)


class ExchangeEngine(DesiredState):
    """One node's points: the node's side (its frames, writer priority, sessions) on top of
    Home Assistant's (desired.py: desired values and frames)."""

    def __init__(
        self, writer_priority_delay: float, stale_after: float = math.inf
    ) -> None:
        super().__init__()
        self.writer_priority_delay = writer_priority_delay
        self.stale_after = stale_after
        self.reported: list[Stamped | None] = []
        self.acquisition_running = True
        self.failsafe_active = False
        self.stats = FrameStats()
        self.node_boot: str | None = None  # the node's boot id; None: never heard of
        self.node_uptime_ms = 0  # last known, for diagnostics
        self.last_refusal: PointRefusal | None = None
        # Monotonic time of the newest full frame taken in this session (None: none yet).
        self.last_frame: float | None = None
        self._new_session = True
        self._deferred: set[int] = set()  # reports judged "pending", to be judged again
        self.refusal_seq = 0  # newest refusal taken into account
        # The quiet path: the key of the last full frame that changed nothing and left every
        # point settled; the same values again, with nothing changed since, are not judged
        # point by point again. And the points holds_desired found differing (_differing).
        self._quiet: tuple[object, ...] | None = None
        self._differing_points: set[int] = set()

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
        self.values_replaced()
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

    def start_session(self, boot_id: str, node_seq: int, kept_seq: int = 0) -> bool:
        """A new connection (sessions.py); True if the node restarted."""
        self._new_session = True
        self._deferred.clear()
        self.values_replaced()
        self.last_frame = None
        self.latency.sent_at = None
        self.stats.last_seq = 0
        return sessions.start_session(
            self, boot_id, node_seq, kept_seq, acquisition_key=_ACQUISITION
        )

    def resend(self, index: int, stamped: Stamped) -> None:
        """Carry a desired value again in the next frame, as not yet applied."""
        self._unsent[index] = stamped

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
        key = self._quiet_key(frame.values) if full else None
        # The quiet path: a full frame with the values of the last one, which changed
        # nothing and left every point settled, with nothing changed since (key): judging
        # every point again would change nothing.
        quiet = key is not None and key == self._quiet
        points = () if quiet else range(len(model.points)) if full else frame.indices
        settled = True
        # The safe values of the fail-safe (only full frames carry them; a change frame's
        # writable values are local changes): every point, if the node does not say which.
        safe: Collection[int] = (
            (
                range(len(model.points))
                if frame.safe_points is None
                else frame.safe_points
            )
            if full and self.failsafe_active
            else ()
        )
        for i, value in zip(points or (), () if quiet else frame.values, strict=True):
            current = self.reported[i]
            if current is None or not same(current.value, value):
                self.reported[i] = Stamped(value, now, CHANGED_BY_NODE, wall)
                self._changed(i)
                result.changed.append(i)
            if model.points[i].type.writable:
                verdict = self._judge(i, value, now, wall, i in safe)
                # Settled for good: equal, or nothing desired (Home Assistant winning is
                # "settled" only until its writer-priority window ends).
                if verdict is not Verdict.SETTLED or (
                    (d := self.desired.get(i)) is not None and not same(d.value, value)
                ):
                    settled = False
                _track(deferred, i, verdict)
                if verdict in (Verdict.FIRST, Verdict.ADOPT):
                    result.desired_changed = True
                    if verdict is Verdict.ADOPT:
                        result.adopted.append(i)
        if key is not None and not quiet:
            self._quiet = key if settled and key == self._quiet_key(key[0]) else None
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
                s is not None and not s.held and self.acked_seq < s.seq <= applied
                for s in carried
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

    def _judge(
        self, index: int, reported: Value, now: float, wall: float, safe: bool
    ) -> Verdict:
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
            failsafe=safe,
        )
        if verdict in (Verdict.FIRST, Verdict.ADOPT):
            if self._acceptable(index, reported):
                self._adopt(index, Stamped(reported, now, CHANGED_BY_NODE, wall))
            elif verdict is Verdict.FIRST:
                return Verdict.SETTLED
            else:
                self._drop_desired(index)
        return verdict

    def _quiet_key(self, values: object) -> tuple[object, ...]:
        """What the judgement of a settled frame's values depends on. Not the sequence
        numbers: a value equal to its desired value is settled, applied or not, so a
        heartbeat (an unchanged desired frame and its acknowledgement) keeps the quiet path.
        """
        return (
            values,
            self._generation,
            self.acquisition_running,
            self.failsafe_active,
        )

    def values_replaced(self) -> None:
        """Reported or desired values were replaced wholesale (a model, a session, values
        restored from the Store): every point is compared again."""
        self._generation += 1
        self._touched = None

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
        return not self._differing()

    def _differing(self) -> set[int]:
        """The points whose reported value is not their desired value, compared again only
        where a value changed since the last call (a change frame compares one point, not
        every desired one)."""
        touched, differing = self._touched, self._differing_points
        points = range(len(self.reported)) if touched is None else touched
        for i in points:
            d = self.desired.get(i)
            if d is None or (
                (r := self.reported[i]) is not None and same(r.value, d.value)
            ):
                differing.discard(i)
            else:
                differing.add(i)
        self._touched = set()
        return differing

    def report(self, index: int, value: Value, now: float, wall: float = 0.0) -> bool:
        """A reported value outside frames (entity mode); True if it changed."""
        current = self.reported[index]
        if current is not None and same(current.value, value):
            return False
        self.reported[index] = Stamped(value, now, CHANGED_BY_NODE, wall)
        self._changed(index)
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

    def stale_at(self, *, connected: bool, now: float) -> float | None:
        """When this node's live values turn stale by silence (values.stale_deadline)."""
        return stale_deadline(
            connected=connected,
            acquisition_running=self.acquisition_running,
            last_frame=self.last_frame,
            now=now,
            stale_after=self.stale_after,
        )


def _track(deferred: set[int], key: int, verdict: Verdict) -> None:
    (deferred.add if verdict is Verdict.DEFER else deferred.discard)(key)
