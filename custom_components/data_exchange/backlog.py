"""Store-and-forward, the plain part: backlog frames, deduplication, aggregation.

A node with a ``backlog:`` keeps the readings of its covered points while no Data Exchange
client takes live frames and replays them in **backlog frames** (docs/protocol.md,
*Backlog*). This module decodes them strictly, maps the node's uptimes to wall time, tells
new readings from ones already stored (boot id + reading sequence number) and aggregates
readings into statistics periods. No Home Assistant imports: ``backfill.py`` records what
this returns; tests/test_backlog.py tests it alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
import math
from typing import Final

from .codec import PointType, ProtocolError, decode_value
from .fields import is_uint, read_text, read_uint
from .protocol import Model, _check_version

# A node sends at most 256 readings per backlog frame (backlog.h, CHUNK); more is malformed.
MAX_READINGS: Final = 256
# The point types a backlog keeps: numbers, and booleans as 0 and 1.
BACKLOG_TYPES: Final = frozenset(
    {PointType.SENSOR, PointType.NUMBER, PointType.BINARY_SENSOR, PointType.SWITCH}
)
BACKLOG_KEYS: Final = frozenset({"v", "m", "u", "y", "j", "h"})


@dataclass(frozen=True, slots=True)
class Reading:
    """One reading the node kept: its sequence number (per boot), point, time and value."""

    seq: int
    point: int
    uptime_ms: int
    value: float


@dataclass(frozen=True, slots=True)
class BacklogFrame:
    """A backlog frame: consecutive readings from ``first_seq`` on, and the node's uptime
    when it sent them (key ``u``), the reference for mapping their uptimes to wall time."""

    model_id: str
    uptime_ms: int
    readings: tuple[Reading, ...]

    @property
    def last_seq(self) -> int:
        return self.readings[-1].seq

    @classmethod
    def from_event(cls, data: Mapping[str, str], model: Model) -> BacklogFrame:
        """Decode a backlog frame (an ``esphome.data_exchange`` event with key ``h``)."""
        _check_version(data)
        if set(data) != BACKLOG_KEYS:
            raise ProtocolError(f"backlog frame keys {sorted(data)[:8]!r}")
        model_id = read_text(data, "m")
        if model_id != model.model_id:
            raise ProtocolError(f"backlog frame of model {model_id[:16]!r}")
        uptime_ms, first_seq, time_ms = (
            read_uint(data, "u"),
            read_uint(data, "y"),
            read_uint(data, "j"),
        )
        if first_seq == 0:
            raise ProtocolError("backlog readings are numbered from 1")
        items = read_text(data, "h").split(",")
        if len(items) > MAX_READINGS:
            raise ProtocolError(f"{len(items)} readings in one backlog frame")
        readings = []
        for offset, item in enumerate(items):
            parts = item.split(":")
            if len(parts) != 3 or not is_uint(parts[0]) or not is_uint(parts[1]):
                raise ProtocolError(f"malformed reading {item[:32]!r}")
            point = int(parts[0])
            if (
                point >= len(model.points)
                or model.points[point].type not in BACKLOG_TYPES
            ):
                raise ProtocolError(f"reading of point {point}")
            ptype = model.points[point].type
            # Booleans travel as the numbers 0 and 1.
            value = decode_value(PointType.SENSOR, parts[2])
            if value is None or (ptype.encoding == "bool" and value not in (0.0, 1.0)):
                raise ProtocolError(f"reading value {parts[2][:16]!r}")
            time_ms += int(parts[1])
            if time_ms > uptime_ms:
                raise ProtocolError("a reading after the frame that carries it")
            assert isinstance(value, float)
            readings.append(Reading(first_seq + offset, point, time_ms, value))
        return cls(model_id, uptime_ms, tuple(readings))


@dataclass(slots=True)
class Ledger:
    """What is stored already: the node's boot id and the last reading stored of it.

    Reading sequence numbers restart with every boot, so the pair identifies a reading.
    Persisted with every batch (backfill.py) before it is acknowledged to the node.
    """

    boot_id: str = ""
    stored_seq: int = 0

    def acknowledgement(self, boot_id: str) -> int:
        """The desired frame's ``backlog`` argument for a node of ``boot_id``."""
        return self.stored_seq if boot_id == self.boot_id else 0

    def fresh(self, boot_id: str, frame: BacklogFrame) -> tuple[Reading, ...]:
        """The readings of ``frame`` not stored yet (resent after a reconnect: none)."""
        last = self.acknowledgement(boot_id)
        return tuple(r for r in frame.readings if r.seq > last)

    def stored(self, boot_id: str, seq: int) -> None:
        if boot_id != self.boot_id:
            self.boot_id, self.stored_seq = boot_id, 0
        self.stored_seq = max(self.stored_seq, seq)


@dataclass(frozen=True, slots=True)
class Aggregate:
    """A statistics period's figures: time-weighted mean, minimum, maximum."""

    start: float  # Unix s, aligned to the period
    mean: float
    min: float
    max: float


def period_start(when: float, period: float) -> float:
    return math.floor(when / period) * period


def aggregate(
    samples: Iterable[tuple[float, float]],
    start: float,
    period: float,
    before: float | None = None,
) -> Aggregate | None:
    """The figures of [start, start + period) from timed samples (Unix s, value).

    Each value holds until the next sample, as Home Assistant's own statistics take a
    state: the mean is weighted by time. ``before``: the value held when the period began
    (the last sample before it), counted from the start; without it the mean covers the
    time from the first sample on. Samples outside the period are ignored. None: no value.
    """
    end = start + period
    inside = sorted((t, v) for t, v in samples if start <= t < end)
    points = ([(start, before)] if before is not None else []) + inside
    if not points:
        return None
    total = weight = 0.0
    for (t, v), (t_next, _) in zip(points, [*points[1:], (end, 0.0)], strict=True):
        total += v * (t_next - t)
        weight += t_next - t
    values = [v for _, v in points]
    mean = total / weight if weight > 0 else values[-1]
    return Aggregate(start, mean, min(values), max(values))


def periods(times: Iterable[float], period: float) -> list[float]:
    """The starts of the periods the times fall in, ascending, each once."""
    return sorted({period_start(t, period) for t in times})


def merge_samples(
    *sources: Sequence[tuple[float, float]],
) -> list[tuple[float, float]]:
    """Samples of several sources in time order, a time present in more than one once."""
    merged: dict[float, float] = {}
    for source in sources:
        for t, v in source:
            merged.setdefault(round(t, 3), v)
    return sorted(merged.items())
