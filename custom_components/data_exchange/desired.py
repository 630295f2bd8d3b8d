"""Home Assistant's side of the exchange: the desired values and the frames that carry them.

Plain Python, no Home Assistant import; the base of ``engine.ExchangeEngine``, which adds
the node's side (its frames, writer priority, sessions). Here: writes, grouped writes, the
desired acquisition state, which values no frame has carried yet, the next desired frame
(encoded again only after a value changed) and what the Store gives back. The rules:
docs/exchange.md.
"""

from __future__ import annotations

from .float32 import canonical_number
from .protocol import DesiredFrame, Model, PointType, Value, encode_desired_values
from .rules import Limits, refusal
from .values import CHANGED_BY_NODE, Stamped, WriteLatency

# Key of the desired acquisition state among the values not yet sent.
ACQUISITION = -1


class DesiredState:
    """The desired values of one node's writable points and its desired frames."""

    def __init__(self) -> None:
        self.model: Model | None = None
        self.limits: list[Limits] = []
        self.desired: dict[int, Stamped] = {}  # point index -> desired value
        self.desired_acquisition: Stamped | None = None
        self.desired_seq = 0  # last desired frame sent (continues across sessions)
        self.acked_seq = 0  # newest desired frame the node's current boot applied
        # The newest node frame in which every point was judged: a desired frame's `seen`.
        self.seen = 0
        self.frame_carries_writes = False
        self.latency = WriteLatency()
        self._group = 0
        # The encoded desired values, rebuilt only after a desired value changed (not every
        # cycle), and the desired values not yet carried by a frame (one entry per point).
        self._values_text: str | None = None
        self._unsent: dict[int, Stamped] = {}
        # +1 whenever a desired or reported value changes: what the quiet path of a full
        # frame (engine.py) compares against. And the points whose desired or reported
        # value changed since holds_desired last compared them (None: all of them).
        self._generation = 0
        self._touched: set[int] | None = None

    def _changed(self, index: int | None) -> None:
        """A desired or reported value of point ``index`` changed (None: the acquisition
        state's desired value, which holds_desired compares every time)."""
        self._generation += 1
        if index is not None and self._touched is not None:
            self._touched.add(index)

    @property
    def has_unsent(self) -> bool:
        """Some desired value (or the acquisition state) waits for its first frame."""
        return bool(self._unsent)

    def _acceptable(self, index: int, value: Value) -> bool:
        """The node would take ``value`` as the desired value of point ``index``."""
        return value is not None and refusal(self.limits[index], value) is None

    def _pending(self, desired: Stamped) -> bool:
        """True until the node has applied a desired frame that carried this value (or
        the value came from the node's current boot)."""
        return desired.seq == 0 or (self.acked_seq < desired.seq and not desired.held)

    def _require_model(self) -> Model:
        if self.model is None:
            raise RuntimeError("no model yet")
        return self.model

    # ---- writes ----

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
        self, running: bool, changed_by: str, now: float, wall: float = 0.0
    ) -> None:
        self._set_acquisition(Stamped(running, now, changed_by, wall))

    def _set_desired(self, index: int, stamped: Stamped) -> None:
        self.desired[index] = stamped
        self._unsent[index] = stamped
        self._values_text = None
        self._changed(index)

    def _adopt(self, index: int, stamped: Stamped) -> None:
        """The node's own value becomes the desired value (rules 2 and 6). The node holds
        it: once it has applied a desired frame of this boot, the value is not pending and
        no frame has to go out for it. It is first carried by the next frame (the cyclic
        one), and that is its ``seq``: a record the node kept of an earlier frame may
        predate the change (docs/exchange.md, *Reconciliation*)."""
        if not self.acked_seq:
            self._set_desired(index, stamped)
            return
        stamped.seq = self.desired_seq + 1
        stamped.held = True
        self.desired[index] = stamped
        self._unsent.pop(index, None)
        self._values_text = None
        self._changed(index)

    def _drop_desired(self, index: int) -> None:
        if self.desired.pop(index, None) is not None:
            self._unsent.pop(index, None)
            self._values_text = None
            self._changed(index)

    def _set_acquisition(self, stamped: Stamped) -> None:
        self.desired_acquisition = stamped
        self._unsent[ACQUISITION] = stamped
        self._changed(None)

    def sent_entity_mode(self) -> None:
        """Entity mode sends each write as a command at once: nothing waits for a frame."""
        self._unsent.clear()

    # ---- desired frames ----

    def next_desired_frame(self, now: float = 0.0) -> DesiredFrame:
        """The next desired frame (full state); values are encoded again only after one
        changed. Values carried for the first time get their frame number and, if written
        in Home Assistant, their writer-priority window from now."""
        model = self._require_model()
        self.desired_seq += 1
        self.frame_carries_writes = bool(self._unsent)
        if self.frame_carries_writes:
            self.latency.sent(self.desired_seq, now)
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

    # ---- restored values (the Store format: persistence.py) ----

    def keep_desired(self, index: int, stamped: Stamped) -> None:
        """Take a desired value as it was (restored): sent again only if still pending."""
        if not self._acceptable(index, stamped.value):
            return
        self.desired[index] = stamped
        self._values_text = None
        self._changed(index)
        if self._pending(stamped):
            self._unsent[index] = stamped

    def keep_acquisition(self, stamped: Stamped) -> None:
        self.desired_acquisition = stamped
        self._changed(None)
        if self._pending(stamped):
            self._unsent[ACQUISITION] = stamped
