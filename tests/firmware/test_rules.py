"""One validation rule on both sides, proven equal (docs/exchange.md, "One rule for values").

The node's rule (esphome/components/data_exchange/rules.h, header-only, no ESPHome types) is
compiled alone into a small program with the machine's g++; Home Assistant's twin is
custom_components/data_exchange/rules.py. Then:

- every value Home Assistant accepts on whole grids (0..1000 step 0.01: 100,001 values, and
  more) goes the way it goes in operation: the decimal a user enters, Home Assistant's rule
  with the entity info's float32 limits, the text Home Assistant sends (format_f32), read by
  the node with strtof, judged by check_number: the node must accept every one;
- a large random sample of arbitrary floats (on a step, off by tiny amounts, at the
  tolerance, just outside the range, any bit pattern) gets the identical code from
  Python's number_refusal and C++'s check_number;
- the node's number formatting (append_float in codec.cpp, compiled as it is) gives
  the text format_f32 gives;
- and through the real simulated node: every setpoint Home Assistant accepts is applied,
  every one it refuses is refused by the node with the same reason.

The node's rule before protocol 2 is compiled alongside, for the record: the sweep finds
the refusals issue 13 reported (18,718 of 100,001 for 0..1000 step 0.01, first 163.85).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
import hashlib
import math
import os
from pathlib import Path
import random
import shutil
import struct
import subprocess

import pytest

from custom_components.data_exchange.float32 import f32, format_f32, strtof
from custom_components.data_exchange.protocol import PointType
from custom_components.data_exchange.rules import (
    Limits,
    Refusal,
    limits_of,
    number_refusal,
    refusal,
)
from tests.conftest import FIRMWARE, NODES
from tests.harness.dx_client import DxClient
from tests.harness.node import Node, NodeFactory, work_dir

COMPONENT = FIRMWARE / "components" / "data_exchange"
RULES_H = COMPONENT / "rules.h"
CODEC_H = COMPONENT / "codec.h"
CODEC_CPP = COMPONENT / "codec.cpp"

PROGRAM = r"""
// Reads commands from stdin, one per line; numbers are parsed with strtof (decimal or hex).
//   c V LO HI STEP  ->  check_number's code ("ok" for none) and V as parsed (%a)
//   o V LO HI STEP  ->  1 if the rule before protocol 2 refused V, else 0
//   f V             ->  the node's text for V (append_float, codec.cpp linked in)
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "codec.h"
#include "rules.h"

using namespace esphome::data_exchange;

// The node's step check before 10be348 (32-bit float, absolute tolerance 1e-3 of a step).
static bool old_refuses(float v, float lo, float hi, float step) {
  if (!std::isfinite(v) || v < lo || v > hi)
    return true;
  if (step > 0) {
    float k = (v - lo) / step;
    if (std::fabs(k - std::round(k)) > 1e-3f)
      return true;
  }
  return false;
}

int main() {
  char line[512];
  std::string text;
  while (std::fgets(line, sizeof(line), stdin) != nullptr) {
    char *p = line + 1;
    float v = std::strtof(p, &p);
    if (line[0] == 'f') {
      text.clear();
      append_float(text, v);
      std::printf("%s\n", text.c_str());
      continue;
    }
    float lo = std::strtof(p, &p);
    float hi = std::strtof(p, &p);
    float step = std::strtof(p, &p);
    if (line[0] == 'o') {
      std::printf("%d\n", old_refuses(v, lo, hi, step) ? 1 : 0);
    } else {
      Refusal r = check_number(v, lo, hi, step);
      std::printf("%s %a\n", r == Refusal::NONE ? "ok" : refusal_code(r), (double) v);
    }
  }
  return 0;
}
"""


@pytest.fixture(scope="module")
def rule_program() -> Path:
    """The compiled program, cached with the node builds (DX_WORK) by its sources."""
    source = PROGRAM
    compiler = shutil.which("g++")
    assert compiler, "g++ is needed to compile the node's rule"
    digest = hashlib.sha256(
        source.encode()
        + RULES_H.read_bytes()
        + CODEC_H.read_bytes()
        + CODEC_CPP.read_bytes()
        + compiler.encode()
    ).hexdigest()[:16]
    folder = work_dir() / "rules"
    binary = folder / f"rules-{digest}"
    if not binary.exists():
        folder.mkdir(parents=True, exist_ok=True)
        cpp = folder / f"rules-{digest}.cpp"
        cpp.write_text(source)
        partial = folder / f"rules-{digest}.{os.getpid()}"
        flags = ["-std=gnu++20", "-O2", "-Wall", "-Werror", "-I", str(COMPONENT)]
        subprocess.run(
            [compiler, *flags, str(cpp), str(CODEC_CPP), "-o", str(partial)],
            check=True,
            timeout=120,
        )
        partial.replace(binary)  # atomic: a concurrent run never sees half a file
    return binary


def run(program: Path, lines: Iterable[str]) -> list[str]:
    commands = list(lines)
    out = subprocess.run(
        [str(program)],
        input="\n".join(commands) + "\n",
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.splitlines()
    assert len(out) == len(commands)
    return out


def _code(answer: Refusal | None) -> str:
    return "ok" if answer is None else answer.value


def _bits(value: float) -> int:
    return int(struct.unpack("<I", struct.pack("<f", value))[0])


def _from_bits(bits: int) -> float:
    return float(struct.unpack("<f", struct.pack("<I", bits & 0xFFFFFFFF))[0])


# ---- every value Home Assistant accepts, through the node's rule ----


@dataclass(frozen=True)
class Grid:
    """A number as configured in YAML: min, max and step as written (decimal)."""

    lo: str
    hi: str
    step: str

    @property
    def decimals(self) -> int:
        return max(len(x.partition(".")[2]) for x in (self.lo, self.hi, self.step))

    def texts(self) -> Iterator[str]:
        """Every value on the grid, as a person types it: lo + k * step, exactly."""
        scale = 10**self.decimals
        lo, hi, step = (round(float(x) * scale) for x in (self.lo, self.hi, self.step))
        for units in range(lo, hi + 1, step):
            sign = "-" if units < 0 else ""
            whole, frac = divmod(abs(units), scale)
            point = f".{frac:0{self.decimals}d}" if self.decimals else ""
            yield f"{sign}{whole}{point}"

    def limits(self) -> Limits:
        """What Home Assistant gets in the entity info: the float32 the node holds."""
        return Limits(
            PointType.NUMBER, strtof(self.lo), strtof(self.hi), strtof(self.step)
        )


GRIDS = [
    Grid("0", "1000", "0.01"),
    Grid("0", "3000", "0.1"),
    Grid("0", "10000", "0.1"),
    Grid("5", "35", "0.5"),
    Grid("-1000", "1000", "0.01"),
    Grid("0", "1", "0.001"),
    Grid("-40", "125", "0.1"),
    Grid("-273.15", "1000", "0.05"),
    Grid("0", "100", "0.25"),
    Grid("0.1", "0.9", "0.1"),
    Grid("0", "255", "1"),
    Grid("100000", "100010", "0.001"),  # finer than a float holds there (1/128)
]

# What issue 13 measured with the node's rule before protocol 2.
OLD_REFUSALS = {
    Grid("0", "1000", "0.01"): (18_718, "163.85"),
    Grid("0", "3000", "0.1"): (1_904, None),
    Grid("0", "10000", "0.1"): (10_988, None),
}


def _is_float32_midpoint(d: float) -> bool:
    """True if the double ``d`` lies exactly halfway between two adjacent 32-bit floats."""
    c = f32(d)
    if c == d or not math.isfinite(c):
        return False
    toward = 1 if (d > c) == (c >= 0) else -1
    if c == 0:
        return abs(d) == _from_bits(1) / 2
    return (c + _from_bits(_bits(c) + toward)) / 2 == d


def wire_text(value: float) -> str:
    """format_f32(value), by the same steps, with a fast exact read-back test.

    format_f32 reads each candidate back with strtof, which decides with exact fractions
    (30 us a number). Reading through a double first gives the same float unless the double
    is exactly halfway between two floats (rounding twice); only then this asks strtof. The
    sweep checks the result against format_f32 itself on a sample.
    """
    v = f32(value)
    text = ""
    for precision in range(6, 10):
        text = f"{v:.{precision}g}"
        d = float(text)
        back = strtof(text) if _is_float32_midpoint(d) else f32(d)
        if back == v:
            break
    return text


def test_every_value_home_assistant_accepts_is_accepted_by_the_node(
    rule_program: Path,
) -> None:
    report = []
    checked = 0
    for grid in GRIDS:
        limits = grid.limits()
        texts = list(grid.texts())
        sent = []
        refused_by_ha = []
        for text in texts:
            value = float(text)  # what the number entity or action gets
            if refusal(limits, value) is not None:
                refused_by_ha.append(text)
                continue
            wire = wire_text(value)
            if len(sent) % 50 == 0:  # the text is format_f32's, as Home Assistant sends
                assert wire == format_f32(value), text
                checked += 1
            sent.append((text, wire))
        commands = [f"c {wire} {grid.lo} {grid.hi} {grid.step}" for _, wire in sent]
        answers = run(rule_program, commands)
        refused_by_node = [
            (text, answer)
            for (text, _), answer in zip(sent, answers, strict=True)
            if not answer.startswith("ok ")
        ]
        # The node read the text as the float Home Assistant holds.
        misread = [
            (text, wire)
            for (text, wire), answer in zip(sent, answers, strict=True)
            if float.fromhex(answer.split()[1]) != f32(float(text))
        ]
        # The rule before protocol 2, on the same texts.
        old = run(rule_program, (f"o{c[1:]}" for c in commands))
        old_refused = [text for (text, _), a in zip(sent, old, strict=True) if a == "1"]
        report.append(
            (grid, len(texts), len(refused_by_ha), len(refused_by_node), old_refused)
        )
        assert refused_by_ha == [], (grid, refused_by_ha[:10])
        assert refused_by_node == [], (grid, len(refused_by_node), refused_by_node[:10])
        assert misread == [], (grid, misread[:10])
        if grid in OLD_REFUSALS:
            count, first = OLD_REFUSALS[grid]
            assert len(old_refused) == count, (grid, len(old_refused))
            if first is not None:
                assert old_refused[0] == first
    assert sum(r[1] for r in report) > 450_000
    assert checked > 9000
    for grid, total, by_ha, by_node, old_refused in report:
        print(
            f"{grid.lo}..{grid.hi} step {grid.step}: {total} values, refused by Home "
            f"Assistant {by_ha}, by the node {by_node} (rule before protocol 2: "
            f"{len(old_refused)}{', first ' + old_refused[0] if old_refused else ''})"
        )


# ---- the same code for any float ----

# Ranges where float rounding and the step check meet, plus random ones below.
FIXED_RANGES = [
    (0.0, 1000.0, 0.01),
    (0.0, 10000.0, 0.1),
    (5.0, 35.0, 0.5),
    (-1000.0, 1000.0, 0.01),
    (0.0, 1.0, 0.001),
    (-40.0, 125.0, 0.1),
    (1e6, 1e6 + 100, 0.01),
    (0.0, 1e9, 1.0),
    (-1e-3, 1e-3, 1e-6),
    (0.0, 3e38, 1e30),
    (-3e38, 3e38, 0.0),
    (16777216.0, 16777316.0, 1.0),  # 2^24: integers stop being exact above
    (0.1, 0.9, 0.1),
]


def _random_range(rng: random.Random) -> tuple[float, float, float]:
    if rng.random() < 0.5:
        lo, hi, step = rng.choice(FIXED_RANGES)
        return f32(lo), f32(hi), f32(step)
    scale = 10.0 ** rng.randint(-8, 30)
    lo = f32(rng.uniform(-1, 1) * scale)
    roll = rng.random()
    if roll < 0.1:
        step = 0.0
    elif roll < 0.8:
        step = f32(10.0 ** rng.randint(-6, 6) * rng.choice([1, 2, 2.5, 5]))
    else:
        step = f32(rng.uniform(0, 1) * 10.0 ** rng.randint(-10, 10))
    span = (step or scale) * rng.choice([1, 10, 1000, 10**6, 10**9])
    hi = f32(min(lo + span, 3e38))
    return lo, max(lo, hi), step


def _random_value(rng: random.Random, lo: float, hi: float, step: float) -> float:
    kind = rng.randrange(10)
    if kind == 0:  # any bit pattern: NaN, infinities, subnormals, anything
        return _from_bits(rng.getrandbits(32))
    if kind == 1:  # at and just beyond the ends
        end = rng.choice([lo, hi])
        return _from_bits(_bits(end) + rng.choice([-2, -1, 0, 1, 2]))
    if kind == 2 or step <= 0:
        return f32(rng.uniform(lo, hi))
    steps = min((hi - lo) / step, 2.0**53)
    k = float(rng.randint(0, int(steps)))
    grid = lo + k * step
    if kind == 3:  # on a step, as the double nearest and as the float
        return f32(grid)
    if kind == 4:  # a few floats off a step
        return _from_bits(_bits(f32(grid)) + rng.randint(-8, 8))
    if kind in (5, 6):  # at the step tolerance (a thousandth of a step), either side
        off = step * 1e-3 * (1 + rng.choice([-1e-3, -1e-6, 0.0, 1e-6, 1e-3]))
        return f32(grid + rng.choice([-1, 1]) * off)
    if kind == 7:  # at the rounding tolerance, (|v| + |lo|) * 2^-21
        off = (abs(grid) + abs(lo)) * 2.0**-21 * rng.uniform(0.5, 1.5)
        return f32(grid + rng.choice([-1, 1]) * off)
    if kind == 8:  # half a step: the farthest from any step
        return f32(grid + step / 2)
    return f32(grid + rng.uniform(-0.01, 0.01) * step)


def _sample(seed: int, size: int) -> list[tuple[float, float, float, float]]:
    rng = random.Random(seed)
    cases = []
    for _ in range(size // 20):
        lo, hi, step = _random_range(rng)
        cases.extend(
            (_random_value(rng, lo, hi, step), lo, hi, step) for _ in range(20)
        )
    return cases


@pytest.mark.parametrize("seed", [13, 2026])
def test_python_and_cpp_give_the_same_code_for_any_float(
    rule_program: Path, seed: int
) -> None:
    cases = _sample(seed, 100_000)
    # Hex floats: every value reaches the program exactly.
    commands = ["c " + " ".join(x.hex() for x in case) for case in cases]
    answers = run(rule_program, commands)
    differ = []
    codes: dict[str, int] = {}
    for case, answer in zip(cases, answers, strict=True):
        code, parsed = answer.split()
        expected = _code(number_refusal(*case))
        codes[code] = codes.get(code, 0) + 1
        read = float.fromhex(parsed)  # NaN payloads aside, the very same float
        same = _bits(read) == _bits(case[0]) or (
            math.isnan(read) and math.isnan(case[0])
        )
        if code != expected or not same:
            differ.append((case, code, expected))
    assert differ == [], (len(differ), differ[:10])
    # The sample reaches every answer, and plenty of each (NaN and infinities are rarer).
    assert set(codes) == {"ok", "format", "range", "step"}
    assert min(codes.values()) > 300, codes
    assert min(codes["ok"], codes["step"], codes["range"]) > 10_000, codes


@pytest.mark.parametrize("lo", [-math.inf, math.nan])
def test_same_code_for_a_non_finite_minimum(rule_program: Path, lo: float) -> None:
    (answer,) = run(rule_program, [f"c 0x1p+2 {lo.hex()} 0x1p+4 0x1p+0"])
    assert answer.split()[0] == _code(number_refusal(4.0, lo, 16.0, 1.0))


def test_node_formats_numbers_as_home_assistant_does(rule_program: Path) -> None:
    rng = random.Random(7)
    values = [_from_bits(rng.getrandbits(32)) for _ in range(10_000)]
    values += [f32(rng.uniform(-1e4, 1e4)) for _ in range(10_000)]
    values += [f32(k / 100) for k in range(0, 100_001, 31)]
    values += [123456792.0, 16777216.0, 0.0, -0.0, f32(0.1), 3.4028234663852886e38]
    values = [v for v in values if math.isfinite(v)]
    texts = run(rule_program, (f"f {v.hex()}" for v in values))
    differ = [
        (v, text, format_f32(v))
        for v, text in zip(values, texts, strict=True)
        if text != format_f32(v)
    ]
    assert differ == [], differ[:10]


# ---- through the real node ----


async def test_real_node_takes_every_setpoint_home_assistant_accepts(
    dx: DxClient,
) -> None:
    """The sim node's setpoint (5..35 step 0.5): every value on the grid and values off it,
    sent as desired frames: applied exactly when Home Assistant's rule (with the limits
    from the node's own entity info) accepts, refused with the same reason otherwise."""
    assert dx.model is not None
    setpoint = dx.point_index("setpoint")
    info = dx.entities[dx.model.points[setpoint].key]
    limits = limits_of(PointType.NUMBER, info)
    assert (limits.min_value, limits.max_value, limits.step) == (5.0, 35.0, 0.5)
    grid = [5 + k / 2 for k in range(61)]
    off = [21.3, 21.25, 5.1, 34.9, 4.5, 35.5, 0.0, 1e6, -1e30]
    # Within and beyond the step tolerance, and at the ends.
    off += [21.0004, 20.9996, 21.0006, 20.9994, 34.9999, 5.0001, 35.0001, 4.9999]
    first = await dx.next_frame()
    held = first.values[setpoint]
    accepted = refused = 0
    mismatches = []
    for value in [*grid, *off, *reversed(grid)]:
        before = held
        expected = refusal(limits, value)
        seq = await dx.write([value, None, None, None, None])
        frame = await dx.next_frame(
            lambda f, s=seq: (
                f.applied_seq == s or (f.refusal is not None and f.refusal.seq == s)
            )
        )
        if frame.applied_seq == seq:
            got = None
            accepted += 1
            assert f32(frame.values[setpoint]) == f32(value)
            held = frame.values[setpoint]
        else:
            assert frame.refusal is not None
            assert frame.refusal.point == 0
            got = Refusal(frame.refusal.reason)
            refused += 1
            assert frame.values[setpoint] == before
        # (The node takes back the value it holds, whatever the rule says.)
        if got is not expected and not (value == before and expected is not None):
            mismatches.append((value, expected, got))
    assert mismatches == []
    last = await dx.next_frame()
    assert last.refused_frames - first.refused_frames == refused
    assert accepted == 2 * len(grid) + sum(refusal(limits, v) is None for v in off)
    print(f"real node, setpoint: {accepted} applied, {refused} refused, as predicted")


@pytest.fixture
def edge_node(node_factory: NodeFactory) -> Node:
    """The edge node: number ``fine`` is 0..1000 step 0.01, the range of issue 13."""
    return node_factory.start(NODES / "edge.yaml")


@pytest.fixture
def fine_values(rule_program: Path) -> list[str]:
    """Values of 0..1000 step 0.01 to send: all with DX_RULES_FULL_SWEEP=1, else 1,000 of
    the grid and 1,000 of those the node's rule before protocol 2 refused."""
    texts = list(Grid("0", "1000", "0.01").texts())
    if os.environ.get("DX_RULES_FULL_SWEEP"):
        return texts
    old = run(rule_program, (f"o {wire_text(float(t))} 0 1000 0.01" for t in texts))
    old_refused = [t for t, a in zip(texts, old, strict=True) if a == "1"]
    assert len(old_refused) == 18_718
    rng = random.Random(163)
    chosen = {*rng.sample(texts, 1000), *rng.sample(old_refused, 1000), "163.85"}
    return sorted(chosen, key=float)


async def test_real_node_takes_fine_steps_home_assistant_accepts(
    edge_node: Node, fine_values: list[str]
) -> None:
    """0..1000 step 0.01 through the real node's check, as desired frames back to back
    (Home Assistant's text, the node's strtof and check_number): none is refused."""
    chosen = fine_values
    dx = await DxClient(edge_node).connect()
    try:
        fine = dx.point_index("fine")
        assert dx.model is not None
        limits = limits_of(PointType.NUMBER, dx.entities[dx.model.points[fine].key])
        first = await dx.next_frame()
        for start in range(0, len(chosen), 100):
            batch = [float(t) for t in chosen[start : start + 100]]
            assert all(refusal(limits, v) is None for v in batch)
            for value in batch:
                seq = await dx.write([value, None, None])
            frame = await dx.next_frame(lambda f, s=seq: f.applied_seq >= s)
            assert frame.refused_frames == first.refused_frames, frame.refusal
            assert f32(frame.values[fine]) == f32(batch[-1])
        assert frame.refusal == first.refusal
    finally:
        await dx.disconnect()
    print(f"real node, 0..1000 step 0.01: {len(chosen)} values applied, 0 refused")
