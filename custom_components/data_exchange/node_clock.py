"""Measurement time: when a node's values were measured, on Home Assistant's wall clock.

Plain Python without Home Assistant imports; times are passed in. Every node frame
(protocol 5, docs/protocol.md *Measurement time*) carries per value its age in ms at the
frame's uptime ``u`` (key ``w``) and, while the node has a valid time source, the node's
Unix time in ms (key ``d``). A value was measured at

- with ``d``: ``d - age`` (the node's own clock; the node's clock offset from Home
  Assistant's is shown for diagnostics, never corrected);
- without: ``received - age``, the node's uptime mapped to Home Assistant's wall time at
  the frame's arrival (too late by the frame's transit time, a few ms on a LAN).

Where it is used and where not (docs/exchange.md *Measurement time*): the ``measured_at``
attribute, the Store, diagnostics and the CSV export. Never by a rule: writer priority,
staleness and reconciliation run on Home Assistant's monotonic clock, so a node clock that
is off or steps changes no decision.

API, one ``NodeClock`` per node (reset when a session starts; uptimes are of one boot):

- ``on_frame(uptime_ms, node_time_ms, received)``: take a frame's ``u``, ``d`` (None when
  absent) and Home Assistant's wall time (Unix seconds) at receipt;
- ``wall_time_of_uptime(uptime_ms) -> float | None``: the wall time (Unix seconds) of a node
  uptime of the same boot, by the latest frame (None before the first frame); what the
  backlog replay uses for readings stamped with the node's uptime;
- ``measured_at(age_ms) -> float | None``: the wall time of a value ``age_ms`` old in the
  latest frame (``age_ms`` None: the frame's own time);
- ``offset`` (seconds, node clock minus Home Assistant's at receipt; None without ``d``),
  ``has_time_source`` and ``as_dict()`` for diagnostics.

``stamp_measured(reported, frame, changed, clock)`` sets ``Stamped.measured`` of the points a
frame changed (and of points that have none yet): an unchanged value keeps the time it was
first measured at, so no state is written for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .protocol import NodeFrame
from .values import Stamped


@dataclass(slots=True)
class NodeClock:
    """How a node's uptime maps to wall time, by its latest frame."""

    uptime_ms: int | None = None  # ``u`` of the latest frame
    received: float = 0.0  # Home Assistant's wall time when it arrived (s)
    node_time_ms: int | None = None  # its ``d``

    def reset(self) -> None:
        """A new session: the node may have rebooted, its uptime started again."""
        self.uptime_ms = None
        self.node_time_ms = None
        self.received = 0.0

    def on_frame(
        self, uptime_ms: int, node_time_ms: int | None, received: float
    ) -> None:
        self.uptime_ms = uptime_ms
        self.node_time_ms = node_time_ms
        self.received = received

    @property
    def has_time_source(self) -> bool:
        return self.node_time_ms is not None

    @property
    def offset(self) -> float | None:
        """The node's clock minus Home Assistant's at the latest frame, in seconds."""
        if self.node_time_ms is None or self.uptime_ms is None:
            return None
        return self.node_time_ms / 1000 - self.received

    def _base(self) -> float:
        """Wall time (s) of the latest frame's uptime."""
        if self.node_time_ms is not None:
            return self.node_time_ms / 1000
        return self.received

    def wall_time_of_uptime(self, uptime_ms: int) -> float | None:
        if self.uptime_ms is None:
            return None
        return self._base() - (self.uptime_ms - uptime_ms) / 1000

    def measured_at(self, age_ms: int | None) -> float | None:
        if self.uptime_ms is None:
            return None
        return self._base() - (age_ms or 0) / 1000

    def as_dict(self) -> dict[str, Any]:
        return {
            "has_time_source": self.has_time_source,
            "offset_s": None if (offset := self.offset) is None else round(offset, 3),
            "uptime_ms": self.uptime_ms,
            "node_time_ms": self.node_time_ms,
        }


def stamp_measured(
    reported: Sequence[Stamped | None],
    frame: NodeFrame,
    changed: Sequence[int],
    clock: NodeClock,
    *,
    only_changed: bool = False,
) -> list[int]:
    """Set the measurement time of the points whose reported value ``frame`` changed (and
    of points with a value but no measurement time yet, e.g. restored from an older Store).

    ``clock`` has taken this frame already. A value the frame carries unchanged keeps its
    time: the age of a value grows in every full frame and must not rewrite anything.
    Returns the points whose unchanged value got its first measurement time: their
    entities must show it (once). ``only_changed``: the caller knows every value has a
    measurement time already (the per-frame loop over all points is skipped).
    """
    ages = frame.ages
    full = frame.indices is None
    new = set(changed)
    # (position in the frame, point index); a full frame's position is the point's index.
    where = (
        ((index, index) for index in changed)
        if only_changed and full
        else enumerate(range(len(frame.values)) if full else frame.indices or ())
    )
    first: list[int] = []
    for n, index in where:
        stamped = reported[index]
        if stamped is None or stamped.value is None:
            continue
        if index not in new and stamped.measured:
            continue
        at = clock.measured_at(ages[n] if n < len(ages) else None)
        if at is not None:
            if index not in new:
                first.append(index)
            stamped.measured = at
    return first


def all_measured(reported: Sequence[Stamped | None]) -> bool:
    """Every point with a value has its measurement time."""
    return all(s is None or s.value is None or s.measured for s in reported)
