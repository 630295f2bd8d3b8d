"""One rule for values (custom_components/data_exchange/rules.py), every type and edge.

The rule's C++ twin (esphome/components/data_exchange/rules.h) is proven equal to it in
tests/firmware/test_rules.py; here the Python side on its own.
"""

from __future__ import annotations

import math
from pathlib import Path
import re
import struct
from types import SimpleNamespace

from hypothesis import given, strategies as st
import pytest

from custom_components.data_exchange.float32 import FLOAT32_MAX, canonical_number, f32
from custom_components.data_exchange.protocol import REFUSAL_REASONS, PointType
from custom_components.data_exchange.rules import (
    Limits,
    Refusal,
    limits_of,
    number_refusal,
    refusal,
)

RULES_H = (
    Path(__file__).resolve().parents[1]
    / "esphome"
    / "components"
    / "data_exchange"
    / "rules.h"
)

SETPOINT = Limits(PointType.NUMBER, 5.0, 35.0, 0.5)  # the simulated node's setpoint
FINE = Limits(PointType.NUMBER, 0.0, 1000.0, f32(0.01))  # as the entity info has it
FREE = Limits(PointType.NUMBER, -1000.0, 1000.0, 0.0)  # no step
SWITCH = Limits(PointType.SWITCH)
SELECT = Limits(PointType.SELECT, options=("eco", "comfort", "Off", ""))
TEXT = Limits(PointType.TEXT, min_length=2, max_length=8)


def _float32_step(value: float, direction: int) -> float:
    """The next 32-bit float after ``value`` upwards (+1) or downwards (-1)."""
    bits = struct.unpack("<i", struct.pack("<f", value))[0]
    if value == 0:
        bits = 1 if direction > 0 else -(2**31) + 1
    elif (value > 0) == (direction > 0):
        bits += 1
    else:
        bits -= 1
    return float(struct.unpack("<f", struct.pack("<i", bits))[0])


# ---- numbers ----


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (5.0, None),
        (35.0, None),  # both ends are included
        (21.5, None),
        (21, None),  # an int is a number
        (-0.0 + 5, None),
        (21.3, Refusal.STEP),
        (21.25, Refusal.STEP),
        (21.5005, None),  # within a thousandth of a step
        (21.5006, Refusal.STEP),
        (4.5, Refusal.RANGE),
        (35.5, Refusal.RANGE),
        (-1e30, Refusal.RANGE),
        (math.nan, Refusal.FORMAT),
        (-math.nan, Refusal.FORMAT),
        (math.inf, Refusal.RANGE),
        (-math.inf, Refusal.RANGE),
        (10**400, Refusal.RANGE),  # beyond any float: no OverflowError
        (-(10**400), Refusal.RANGE),
        (2**128, Refusal.RANGE),
        (1e39, Refusal.RANGE),  # a double, but no 32-bit float
        (True, Refusal.FORMAT),  # a bool is no number, though an int in Python
        (False, Refusal.FORMAT),
        ("21.5", Refusal.FORMAT),
        (None, Refusal.FORMAT),
        ([21.5], Refusal.FORMAT),
    ],
)
def test_number(value: object, expected: Refusal | None) -> None:
    assert refusal(SETPOINT, value) is expected  # type: ignore[arg-type]


def test_number_range_is_judged_on_the_float32_value() -> None:
    """The node holds 32-bit floats: what rounds onto an end is within the range."""
    assert refusal(SETPOINT, 35.000000001) is None  # f32: 35.0
    assert refusal(SETPOINT, _float32_step(35.0, +1)) is Refusal.RANGE
    assert refusal(SETPOINT, 4.9999999999) is None  # f32: 5.0
    assert refusal(SETPOINT, _float32_step(5.0, -1)) is Refusal.RANGE
    # Limits that are no exact float: 0.1 is 0.100000001490116f on the node and in the
    # entity info; the text "0.1" a user types is the same float.
    tenth = Limits(PointType.NUMBER, f32(0.1), f32(0.9), f32(0.1))
    assert refusal(tenth, 0.1) is None
    assert refusal(tenth, 0.9) is None
    assert refusal(tenth, 0.3) is None
    assert refusal(tenth, 0.35) is Refusal.STEP


@pytest.mark.parametrize(
    "text", ["163.85", "0.01", "999.99", "1000", "0", "500.05", "333.33", "0.07"]
)
def test_fine_step_values_are_accepted(text: str) -> None:
    """Issue 13: the node's old rule refused 18,718 of these 100,001 (first 163.85)."""
    assert refusal(FINE, float(text)) is None


def test_every_value_on_a_fine_grid_is_accepted() -> None:
    """All 100,001 values of 0..1000 step 0.01, as typed (the firmware test sweeps more)."""
    refused = [k for k in range(100_001) if refusal(FINE, k / 100) is not None]
    assert refused == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.0, None), (-1000.0, None), (123.456789, None), (1000.01, Refusal.RANGE)],
)
def test_number_without_step(value: float, expected: Refusal | None) -> None:
    assert refusal(FREE, value) is expected


def test_step_tolerance_grows_with_the_values() -> None:
    """Far from zero a float cannot hold every step: the rule allows its rounding."""
    big = Limits(PointType.NUMBER, 1e6, 1e6 + 100, f32(0.01))
    assert refusal(big, 1e6 + 12.34) is None  # 1000012.3125f on the node
    # With a coarse step the thousandth of a step dominates: 0.3 off is off.
    coarse = Limits(PointType.NUMBER, 0.0, 1e4, 1.0)
    assert refusal(coarse, 5000.3) is Refusal.STEP
    assert refusal(coarse, 5000.0005) is None


def test_number_refusal_takes_float32_inputs() -> None:
    assert number_refusal(0.1, 0.0, 1.0, 0.1) is None
    assert number_refusal(f32(0.7), 0.0, 1.0, f32(0.1)) is None
    assert number_refusal(math.nan, 0.0, 1.0, 0.1) is Refusal.FORMAT
    assert number_refusal(1e39, 0.0, 1.0, 0.1) is Refusal.FORMAT  # inf as a float
    assert number_refusal(2.0, 0.0, 1.0, 0.1) is Refusal.RANGE


@given(st.integers(0, 60))
def test_setpoint_grid(k: int) -> None:
    assert refusal(SETPOINT, 5 + k * 0.5) is None
    assert refusal(SETPOINT, 5 + k * 0.5 + 0.2) is (
        Refusal.STEP if k < 60 else Refusal.RANGE
    )


@given(st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_a_number_is_judged_like_its_canonical_form(value: float) -> None:
    """Home Assistant keeps numbers canonical; the rule gives them the same answer."""
    limits = Limits(PointType.NUMBER, -1e30, 1e30, 0.0)
    assert refusal(limits, value) is refusal(limits, canonical_number(value))


def test_largest_float_as_the_node_reports_it() -> None:
    widest = Limits(PointType.NUMBER, -FLOAT32_MAX, FLOAT32_MAX, 0.0)
    assert refusal(widest, FLOAT32_MAX) is None
    assert refusal(widest, canonical_number(FLOAT32_MAX)) is None


@pytest.mark.parametrize("low", [-math.inf, math.nan])
def test_non_finite_minimum_does_not_raise(low: float) -> None:
    assert refusal(Limits(PointType.NUMBER, low, 10.0, 1.0), 5.0) is None


def test_non_finite_step_or_maximum() -> None:
    assert refusal(Limits(PointType.NUMBER, 0.0, math.inf, 1.0), 5.0) is None
    assert refusal(Limits(PointType.NUMBER, 0.0, math.inf, 1.0), 5.5) is Refusal.STEP
    assert refusal(Limits(PointType.NUMBER, 0.0, 10.0, math.nan), 5.3) is None
    assert refusal(Limits(PointType.NUMBER, 0.0, 10.0, math.inf), 5.3) is None


# ---- switch, select, text, read-only ----


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, None),
        (False, None),
        (1, Refusal.FORMAT),
        (0, Refusal.FORMAT),
        (1.0, Refusal.FORMAT),
        ("on", Refusal.FORMAT),
        (None, Refusal.FORMAT),
    ],
)
def test_switch(value: object, expected: Refusal | None) -> None:
    assert refusal(SWITCH, value) is expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("eco", None),
        ("Off", None),
        ("", None),  # an empty option is an option
        ("off", Refusal.OPTION),  # options are case-sensitive
        ("eco ", Refusal.OPTION),
        ("heat", Refusal.OPTION),
        (1, Refusal.FORMAT),
        (True, Refusal.FORMAT),
        (None, Refusal.FORMAT),
    ],
)
def test_select(value: object, expected: Refusal | None) -> None:
    assert refusal(SELECT, value) is expected  # type: ignore[arg-type]


def test_select_without_options() -> None:
    assert refusal(Limits(PointType.SELECT), "eco") is Refusal.OPTION


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("ab", None),
        ("abcdefgh", None),  # 8 bytes: the maximum
        ("abcdefghi", Refusal.LENGTH),
        ("a", Refusal.LENGTH),
        ("", Refusal.LENGTH),
        ("é", None),  # 1 character, 2 bytes
        ("ééé", None),  # 6 bytes
        ("éééé", None),  # 8 bytes
        ("ééééé", Refusal.LENGTH),  # 5 characters, 10 bytes
        ("abcdefgé", Refusal.LENGTH),  # 8 characters, 9 bytes
        ("€€", None),  # 6 bytes
        ("€€€", Refusal.LENGTH),  # 3 characters, 9 bytes
        ("😀😀", None),  # 8 bytes
        ("😀😀a", Refusal.LENGTH),
        ("a,b%c", None),  # escaped on the wire, counted decoded
        ("\x00\x01", None),
        ("\ud800", Refusal.FORMAT),  # a lone surrogate is no UTF-8 text
        ("ab\udfff", Refusal.FORMAT),
        ("\ud83d\ude00", Refusal.FORMAT),  # a surrogate pair in a str is still two
        (12, Refusal.FORMAT),
        (None, Refusal.FORMAT),
        (b"ab", Refusal.FORMAT),
    ],
)
def test_text(value: object, expected: Refusal | None) -> None:
    assert refusal(TEXT, value) is expected  # type: ignore[arg-type]


def test_text_limits_default_to_the_nodes() -> None:
    limits = Limits(PointType.TEXT)
    assert refusal(limits, "") is None
    assert refusal(limits, "x" * 255) is None
    assert refusal(limits, "x" * 256) is Refusal.LENGTH
    assert refusal(limits, "é" * 128) is Refusal.LENGTH  # 128 characters, 256 bytes


@pytest.mark.parametrize(
    "ptype", [PointType.SENSOR, PointType.BINARY_SENSOR, PointType.TEXT_SENSOR]
)
@pytest.mark.parametrize("value", [1.0, True, "x", None])
def test_read_only_points_take_no_desired_value(
    ptype: PointType, value: object
) -> None:
    assert refusal(Limits(ptype), value) is Refusal.FORMAT  # type: ignore[arg-type]


# ---- limits from entity infos; codes ----


def test_limits_of_entity_infos() -> None:
    number = SimpleNamespace(min_value=5.0, max_value=35.0, step=0.5)
    assert limits_of(PointType.NUMBER, number) == SETPOINT
    no_step = SimpleNamespace(min_value=0.0, max_value=1.0, step=None)
    assert limits_of(PointType.NUMBER, no_step).step == 0.0
    select = SimpleNamespace(options=["eco", "comfort"])
    assert limits_of(PointType.SELECT, select).options == ("eco", "comfort")
    text = SimpleNamespace(min_length=1, max_length=64)
    limits = limits_of(PointType.TEXT, text)
    assert (limits.min_length, limits.max_length) == (1, 64)
    assert limits_of(PointType.TEXT, SimpleNamespace()).max_length == 255
    assert limits_of(PointType.SWITCH, SimpleNamespace()) == SWITCH
    assert limits_of(PointType.SENSOR, object()) == Limits(PointType.SENSOR)


def test_codes_are_the_nodes() -> None:
    """The codes in rules.py are the strings rules.h sends in frame key e."""
    header = RULES_H.read_text()
    node_codes = set(re.findall(r'return "([a-z]+)";', header))
    assert {r.value for r in Refusal} <= node_codes
    assert node_codes == set(REFUSAL_REASONS)
