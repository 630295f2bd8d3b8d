"""One rule for values: what a node accepts as the desired value of a point.

Plain Python without Home Assistant imports. The node checks every desired value with the
same rule (esphome/components/data_exchange/rules.h); tests sweep whole ranges through both
and require the same answer. Home Assistant applies it to every write before accepting it,
and to every value it would adopt from the node, so no value it sends can be refused.

Numbers are what the node holds: 32-bit floats. A number is first rounded to the nearest
32-bit float and the step check runs on that value in double precision, with the same
operations in the same order as the node's C++.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
import math

from .float32 import f32
from .protocol import PointType, Value

# Tolerances of the step check: a thousandth of a step, plus the float rounding of the value,
# the minimum and the step (each within 2^-24 relative; 2^-21 leaves a factor 4 margin).
STEP_TOLERANCE = 1e-3
ROUNDING_TOLERANCE = 2.0**-21


class Refusal(StrEnum):
    """Why a value is refused; the codes are also the node's (frame key ``e``)."""

    FORMAT = "format"  # not a value of the point's kind (or not finite)
    RANGE = "range"
    STEP = "step"
    OPTION = "option"
    LENGTH = "length"


@dataclass(frozen=True, slots=True)
class Limits:
    """What a writable point accepts, from the node's entity info."""

    type: PointType
    min_value: float = 0.0
    max_value: float = 0.0
    step: float = 0.0
    options: tuple[str, ...] = ()
    min_length: int = 0
    max_length: int = 255
    # min, max and step as the node holds them (32-bit floats), made once: every value
    # adopted from the node is checked against them.
    f32_limits: tuple[float, float, float] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        limits = (f32(self.min_value), f32(self.max_value), f32(self.step))
        object.__setattr__(self, "f32_limits", limits)


def number_refusal(
    value: float, min_value: float, max_value: float, step: float
) -> Refusal | None:
    """The node's number check (rules.h ``check_number``), operation for operation."""
    return _number_refusal(f32(value), f32(min_value), f32(max_value), f32(step))


def _number_refusal(v: float, lo: float, hi: float, st: float) -> Refusal | None:
    """``number_refusal`` of values already rounded to 32-bit floats."""
    if not math.isfinite(v):
        return Refusal.FORMAT
    if v < lo or v > hi:
        return Refusal.RANGE
    if st > 0:
        q = (v - lo) / st + 0.5
        k = float(math.floor(q)) if math.isfinite(q) else q  # C's floor keeps inf/NaN
        grid = lo + k * st
        tolerance = st * STEP_TOLERANCE + (abs(v) + abs(lo)) * ROUNDING_TOLERANCE
        if abs(v - grid) > tolerance:
            return Refusal.STEP
    return None


def refusal(limits: Limits, value: Value) -> Refusal | None:
    """Why the node would refuse ``value`` as the desired value of the point, or None."""
    ptype = limits.type
    if ptype is PointType.NUMBER:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return Refusal.FORMAT
        try:
            number = float(value)
        except OverflowError:  # an int beyond any float
            return Refusal.RANGE
        if math.isnan(number):
            return Refusal.FORMAT
        number = f32(number)
        if math.isinf(number):  # beyond the largest float (which itself is fine)
            return Refusal.RANGE
        return _number_refusal(number, *limits.f32_limits)
    if ptype is PointType.SWITCH:
        return None if isinstance(value, bool) else Refusal.FORMAT
    if not isinstance(value, str):
        return Refusal.FORMAT
    if ptype is PointType.SELECT:
        return None if value in limits.options else Refusal.OPTION
    if ptype is PointType.TEXT:
        try:
            size = len(value.encode())  # the node counts bytes, not characters
        except UnicodeEncodeError:  # a lone surrogate: no UTF-8 text
            return Refusal.FORMAT
        if not limits.min_length <= size <= limits.max_length:
            return Refusal.LENGTH
        return None
    return Refusal.FORMAT  # read-only points take no desired value


def limits_of(ptype: PointType, info: object) -> Limits:
    """Limits from an aioesphomeapi entity info (read by attribute, no import needed)."""
    if ptype is PointType.NUMBER:
        return Limits(
            ptype,
            min_value=float(getattr(info, "min_value", 0.0)),
            max_value=float(getattr(info, "max_value", 0.0)),
            step=float(getattr(info, "step", 0.0) or 0.0),
        )
    if ptype is PointType.SELECT:
        options: Sequence[str] = getattr(info, "options", ())
        return Limits(ptype, options=tuple(options))
    if ptype is PointType.TEXT:
        return Limits(
            ptype,
            min_length=int(getattr(info, "min_length", 0)),
            max_length=int(getattr(info, "max_length", 255)),
        )
    return Limits(ptype)
