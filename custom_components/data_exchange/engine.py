"""The exchange engine: the state of one node's points, without Home Assistant.

It holds the model, the reported value of every point and the desired value of every
writable point, each with the time it was set and who set it (the sender), applies the
writer-priority rule, tracks sequence numbers (missed, duplicate, out-of-order frames, node
restarts) and knows whether the node's values are stale. Time is passed in (seconds, any
monotonic origin for rules; wall-clock for display is the caller's business), so every rule
is testable without a clock.

Writer priority: Home Assistant writes d at t_w; the node reports r != d at t_r after it has
applied a desired frame of this session. If t_r - t_w < writer_priority_delay, d wins and
keeps being sent; otherwise the node changed the point locally and r becomes the desired
value, with the node as its sender. Reports from before the node applied a desired frame of
the current session do not count: after a reconnect or a restart, Home Assistant's desired
values are re-applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
import math
from typing import Any

from .protocol import Model, NodeFrame, PointType, Value, encode_desired_values

SENDER_NODE = "node"


class StaleReason(StrEnum):
    """Why a node's values are stale (None: they are live)."""

    OFFLINE = "offline"
    PAUSED = "paused"
    SILENT = "silent"  # connected, but no frame for longer than stale_after


@dataclass(slots=True)
class Stamped:
    """A value with the time it was set and who set it.

    For a desired value, ``seq`` is the first desired frame that carried it in the current
    session (0: not sent yet); until the node acknowledges that frame the value is pending.
    """

    value: Value
    time: float
    sender: str
    seq: int = field(default=0, compare=False)


@dataclass(slots=True)
class FrameStats:
    """Sequence tracking of node frames."""

    received: int = 0
    missed: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    restarts: int = 0
    rejected_by_node: int = 0
    last_seq: int = 0


@dataclass(slots=True)
class FrameResult:
    """What one node frame changed."""

    accepted: bool
    changed: list[int] = field(
        default_factory=list
    )  # points whose reported value changed
    adopted: list[int] = field(
        default_factory=list
    )  # local changes that became desired
    acknowledged: int | None = (
        None  # desired seq this frame acknowledged for the first time
    )
    node_state_changed: bool = False  # acquisition or fail-safe flag changed


class ExchangeEngine:
    """One node's points: reported and desired values, writer priority, sequence tracking."""

    def __init__(self, writer_priority_delay: float) -> None:
        self.writer_priority_delay = writer_priority_delay
        self.model: Model | None = None
        self.reported: list[Stamped | None] = []
        self.desired: dict[int, Stamped] = {}  # point index -> desired value
        self.desired_acquisition: Stamped | None = None
        self.acquisition_running = True
        self.failsafe_active = False
        self.stats = FrameStats()
        self.desired_seq = 0  # last desired frame sent (continues across sessions)
        self._session_first_seq = 1  # acks below this are from an earlier session
        self._acked_seq = 0
        self._uptime_ms = 0
        self._new_session = True
        self._previous_seq = 0
        # The encoded desired values, rebuilt only after a desired value changed (not every
        # cycle), and the desired values not yet carried by a frame of this session.
        self._values_text: str | None = None
        self._unsent: list[Stamped] = []
        self.frame_carries_writes = False

    # ---- model ----

    def set_model(self, model: Model) -> None:
        """Take a (new) model; values of points that still exist (same key and type) stay."""
        old = self.model
        old_reported = self.reported
        old_desired = self.desired
        self.model = model
        self.reported = [None] * len(model.points)
        self.desired = {}
        self._values_text = None
        if old is None:
            return
        where = {(p.key, p.type): i for i, p in enumerate(old.points)}
        for i, point in enumerate(model.points):
            j = where.get((point.key, point.type))
            if j is None:
                continue
            self.reported[i] = old_reported[j] if j < len(old_reported) else None
            if j in old_desired:
                self.desired[i] = old_desired[j]

    # ---- Home Assistant side ----

    def write(self, index: int, value: Value, sender: str, now: float) -> None:
        """A desired value written in Home Assistant (a user, an automation, an action)."""
        point = self._point(index)
        if not point.type.writable:
            raise ValueError(f"point {index} is read-only")
        self._set_desired(index, Stamped(value, now, sender))

    def write_acquisition(self, running: bool, sender: str, now: float) -> None:
        self._set_acquisition(Stamped(running, now, sender))

    def _set_desired(self, index: int, stamped: Stamped) -> None:
        self.desired[index] = stamped
        self._unsent.append(stamped)
        self._values_text = None

    def _set_acquisition(self, stamped: Stamped) -> None:
        self.desired_acquisition = stamped
        self._unsent.append(stamped)

    def start_session(self) -> None:
        """A new connection: desired values must be applied again before reports count.

        Frames travel over one TCP connection, so within a session sequence numbers only
        grow; a node restart always starts a new session (and shows as lower uptime).
        """
        self._session_first_seq = self.desired_seq + 1
        self._acked_seq = 0
        self._new_session = True
        self._previous_seq = self.stats.last_seq
        self.stats.last_seq = 0
        self._unsent = list(self.desired.values())
        if self.desired_acquisition is not None:
            self._unsent.append(self.desired_acquisition)
        for stamped in self._unsent:
            stamped.seq = 0

    def next_desired_frame(self) -> dict[str, int | str]:
        """The arguments of the next desired frame (every cycle, full state).

        Per cycle this costs a counter and a dict: the values are encoded again only after
        one of them changed.
        """
        model = self._require_model()
        self.desired_seq += 1
        # Writes the node has not been sent yet go out in this frame.
        self.frame_carries_writes = bool(self._unsent)
        if self._unsent:
            for stamped in self._unsent:
                if stamped.seq == 0:
                    stamped.seq = self.desired_seq
            self._unsent.clear()
        if self._values_text is None:
            self._values_text = encode_desired_values(
                model, [self._desired_value(i) for i in model.writable]
            )
        acquisition = self.desired_acquisition
        return {
            "seq": self.desired_seq,
            "seen": self.stats.last_seq,
            "model": model.model_id,
            "values": self._values_text,
            "acquisition": -1 if acquisition is None else int(bool(acquisition.value)),
        }

    def _desired_value(self, index: int) -> Value:
        stamped = self.desired.get(index)
        return None if stamped is None else stamped.value

    # ---- node side ----

    def on_frame(self, frame: NodeFrame, now: float) -> FrameResult:
        """Take one node frame (already decoded against the current model)."""
        model = self._require_model()
        stats = self.stats
        if self._new_session:
            self._new_session = False
            # A node counts frames from 1 after boot; across a mere reconnect it goes on.
            if self._previous_seq and (
                frame.seq <= self._previous_seq or frame.uptime_ms < self._uptime_ms
            ):
                stats.restarts += 1
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
        stats.rejected_by_node = frame.rejected_frames
        self._uptime_ms = frame.uptime_ms

        result = FrameResult(accepted=True)
        if (
            self._session_first_seq <= frame.applied_seq <= self.desired_seq
            and frame.applied_seq > self._acked_seq
        ):
            self._acked_seq = frame.applied_seq
            result.acknowledged = frame.applied_seq

        for i, value in enumerate(frame.values):
            current = self.reported[i]
            if current is None or not _same(current.value, value):
                self.reported[i] = Stamped(value, now, SENDER_NODE)
                result.changed.append(i)
            if model.points[i].type.writable and self._writer_priority(i, value, now):
                result.adopted.append(i)

        if (frame.acquisition_running, frame.failsafe_active) != (
            self.acquisition_running,
            self.failsafe_active,
        ):
            result.node_state_changed = True
            self.acquisition_running = frame.acquisition_running
            self.failsafe_active = frame.failsafe_active
        self._acquisition_priority(frame.acquisition_running, now)
        return result

    def _pending(self, desired: Stamped) -> bool:
        """True until the node has applied a desired frame that carried this value."""
        return desired.seq == 0 or self._acked_seq < desired.seq

    def _writer_priority(self, index: int, reported: Value, now: float) -> bool:
        """Settle a reported value against the desired one; True if the report was adopted."""
        desired = self.desired.get(index)
        if reported is None:
            return False
        if desired is None:
            # Nothing desired yet: the node's value is the desired value.
            self._set_desired(index, Stamped(reported, now, SENDER_NODE))
            return False
        if _same(desired.value, reported) or self._pending(desired):
            return False
        if (
            desired.sender != SENDER_NODE
            and now - desired.time < self.writer_priority_delay
        ):
            return False  # Home Assistant's recent write wins and keeps being sent
        self._set_desired(index, Stamped(reported, now, SENDER_NODE))
        return True

    def _acquisition_priority(self, running: bool, now: float) -> None:
        desired = self.desired_acquisition
        if desired is None or bool(desired.value) == running or self._pending(desired):
            return
        if (
            desired.sender != SENDER_NODE
            and now - desired.time < self.writer_priority_delay
        ):
            return
        self._set_acquisition(Stamped(running, now, SENDER_NODE))

    def report(self, index: int, value: Value, now: float) -> bool:
        """A reported value outside frames (entity mode); True if it changed."""
        current = self.reported[index]
        if current is not None and _same(current.value, value):
            return False
        self.reported[index] = Stamped(value, now, SENDER_NODE)
        return True

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
        """What survives a Home Assistant restart (see from_dict)."""
        return {
            "desired_seq": self.desired_seq,
            "reported": [
                None if s is None else _stamped_dict(s) for s in self.reported
            ],
            "desired": {str(i): _stamped_dict(s) for i, s in self.desired.items()},
            "desired_acquisition": None
            if self.desired_acquisition is None
            else _stamped_dict(self.desired_acquisition),
            "acquisition_running": self.acquisition_running,
        }

    def restore(self, data: dict[str, Any], time_offset: float) -> None:
        """Restore values saved by as_dict; ``time_offset`` maps saved times to this clock."""
        model = self._require_model()
        self.desired_seq = int(data.get("desired_seq", 0))
        self._session_first_seq = self.desired_seq + 1
        reported = data.get("reported") or []
        if len(reported) == len(model.points):
            self.reported = [
                None if r is None else _stamped(r, model.points[i].type, time_offset)
                for i, r in enumerate(reported)
            ]
        for key, raw in (data.get("desired") or {}).items():
            index = int(key)
            if 0 <= index < len(model.points) and model.points[index].type.writable:
                self._set_desired(
                    index, _stamped(raw, model.points[index].type, time_offset)
                )
        acq = data.get("desired_acquisition")
        if acq is not None:
            self._set_acquisition(
                Stamped(
                    bool(acq["value"]),
                    float(acq["time"]) + time_offset,
                    str(acq["sender"]),
                )
            )
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


def _same(a: Value, b: Value) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return type(a) is type(b) and a == b


def _stamped_dict(s: Stamped) -> dict[str, Any]:
    return {"value": s.value, "time": s.time, "sender": s.sender}


def _stamped(raw: dict[str, Any], ptype: PointType, time_offset: float) -> Stamped:
    value = raw.get("value")
    kind = ptype.kind
    if value is not None:
        if kind == "number":
            value = float(value)
        elif kind == "bool":
            value = bool(value)
        else:
            value = str(value)
    return Stamped(value, float(raw["time"]) + time_offset, str(raw["sender"]))


def changed_indices(result: FrameResult) -> Sequence[int]:
    """Points whose entity state must be written: reported or desired value changed."""
    if not result.adopted:
        return result.changed
    return sorted(set(result.changed) | set(result.adopted))
