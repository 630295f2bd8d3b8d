"""Numbers as a node holds them: 32-bit floats, and their shortest decimal text.

Plain Python. The node formats a float as the shortest of %.6g .. %.9g that reads back as
the same float (strtof); Home Assistant does the same, so both agree on every number's text,
and Home Assistant keeps numbers as the value the node holds (123456789 is 123456790).
"""

from __future__ import annotations

from fractions import Fraction
import math
import struct
from typing import Final

FLOAT32_MAX: Final = 3.4028234663852886e38


def f32(number: float) -> float:
    """The 32-bit float nearest to ``number`` (as a Python float); inf beyond its range."""
    try:
        return float(struct.unpack("<f", struct.pack("<f", number))[0])
    except OverflowError:
        return math.copysign(math.inf, number)


def _f32_neighbours(value: float) -> tuple[float, float]:
    bits = struct.unpack("<I", struct.pack("<f", value))[0]
    below = struct.unpack("<f", struct.pack("<I", (bits - 1) & 0xFFFFFFFF))[0]
    above = struct.unpack("<f", struct.pack("<I", (bits + 1) & 0xFFFFFFFF))[0]
    return float(below), float(above)


def strtof(text: str) -> float:
    """A decimal read straight into the nearest 32-bit float, as C's strtof does.

    Going through a double first can round twice, but only when the double lands exactly
    halfway between two floats (or on one); then exact fractions decide.
    """
    double = float(text)
    candidate = f32(double)
    if double == candidate or not math.isfinite(candidate):
        # A double that is itself a 32-bit float: the decimal lies within half a double's
        # step of it, far closer than to any other 32-bit float (integers, halves, ...).
        return candidate
    if all(
        not math.isfinite(other) or double != (candidate + other) / 2
        for other in _f32_neighbours(candidate)
    ):
        return candidate  # no tie: the double's rounding is the decimal's
    exact = Fraction(text)
    if Fraction(candidate) == exact:
        return candidate
    best = candidate
    for other in _f32_neighbours(candidate):
        if not math.isfinite(other):
            continue
        d_best, d_other = abs(Fraction(best) - exact), abs(Fraction(other) - exact)
        if d_other < d_best or (d_other == d_best and _even(other)):
            best = other
    return best


def _even(value: float) -> bool:
    bits: int = struct.unpack("<I", struct.pack("<f", value))[0]
    return bits % 2 == 0


def format_f32(number: float) -> str:
    """The shortest decimal (6 to 9 significant digits) that reads back as the same float.

    The node formats its values the same way, so Home Assistant and the node agree on the
    text of every number.
    """
    value = f32(number)
    text = ""
    for precision in range(6, 10):
        text = f"{value:.{precision}g}"
        if strtof(text) == value:
            break
    return text


def canonical_number(number: float) -> float:
    """The number as Home Assistant keeps it: the float the node holds, shortest decimal."""
    return float(format_f32(number))
