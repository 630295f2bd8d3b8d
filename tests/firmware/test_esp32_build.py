"""The component under the ESP32's type model, with -Werror, and its stack within budget.

See tests/firmware/esp32_build.py for how, and esphome/README.md ("Stack and heap") for
the budgets and why.
"""

from __future__ import annotations

from pathlib import Path
import shutil
import subprocess

import pytest

from tests.conftest import FIRMWARE
from tests.firmware.conftest import FAST
from tests.firmware.esp32_build import (
    COMPONENT,
    Compiled,
    compile_sources,
    component_sources,
    stack_report,
)
from tests.harness.node import NodeBuild

# ESPHome runs our code on its loop task: 8,192 bytes of stack on the ESP32
# (esp32: loop_task_stack_size, default and minimum). esphome/README.md explains the split.
LOOP_TASK_STACK = 8192
FRAME_BUDGET = 512  # any one function of ours
CHAIN_BUDGET = 1024  # the deepest chain of calls inside our objects


@pytest.fixture(scope="module")
def esphome_src() -> Path:
    """The generated source tree of the sim node (ESPHome's headers of the pinned version).

    The same build as the firmware tests' sim node, so usually no extra compile."""
    build = NodeBuild.compile(FIRMWARE / "sim-node.yaml", FAST)
    src = build.program.parents[2] / "src"
    assert (src / "esphome" / "core" / "defines.h").is_file(), src
    return src


@pytest.fixture(scope="module")
def compiled(esphome_src: Path, tmp_path_factory: pytest.TempPathFactory) -> Compiled:
    return compile_sources(
        component_sources(), esphome_src, tmp_path_factory.mktemp("esp32")
    )


def test_component_compiles_under_the_esp32_type_model(compiled: Compiled) -> None:
    assert compiled.returncode == 0, compiled.output[-6000:]
    # -Werror turns warnings in our files into errors; none may remain as notes either.
    assert "warning:" not in compiled.output, compiled.output[-6000:]
    assert {p.stem for p in compiled.su_files} == {p.stem for p in component_sources()}


# Code that builds on 64-bit Linux and not for the ESP32: the check must catch each.
NOT_ESP32 = {
    # std::min(const T&, const T&): uint32_t and unsigned are one type only on Linux.
    "min of uint32_t and unsigned": (
        "uint32_t f() { return std::min(esphome::millis(), 100u); }\n",
        "no matching function",
    ),
    # %u for a uint32_t: fine where uint32_t is unsigned int, a format error here.
    "%u for uint32_t": (
        'void f(char *b) { snprintf(b, 8, "%u", esphome::millis()); }\n',
        "-Werror=format",
    ),
    # Overloads on uint32_t and unsigned: one function twice where they are the same type.
    "overloads on uint32_t and unsigned long": (
        "int g(uint32_t) { return 1; }\nint g(unsigned long) { return 2; }\n",
        "redefinition",
    ),
}


@pytest.mark.parametrize("case", sorted(NOT_ESP32))
def test_the_check_catches_code_that_only_builds_on_linux(
    esphome_src: Path, tmp_path: Path, case: str
) -> None:
    body, message = NOT_ESP32[case]
    source = tmp_path / "probe.cpp"
    source.write_text(
        "#include <algorithm>\n#include <cstdio>\n#include <cstdint>\n"
        '#include "esphome/core/hal.h"\n' + body
    )
    result = compile_sources([source], esphome_src, tmp_path / "out")
    assert result.returncode != 0, case
    assert message in result.output, result.output[-3000:]
    # The control: the machine's own (64-bit) compiler takes it.
    host = shutil.which("g++")
    assert host, "g++ (scripts/setup)"
    linux = subprocess.run(
        [
            host,
            *("-std=gnu++20", "-Wall", "-Wformat=2", "-Werror", "-fsyntax-only"),
            *("-DUSE_HOST", "-isystem", str(esphome_src), str(source)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert linux.returncode == 0, linux.stderr[-3000:]


def test_stack_of_our_functions_within_budget(compiled: Compiled) -> None:
    assert compiled.returncode == 0, compiled.output[-3000:]
    report = stack_report(compiled, [COMPONENT], FRAME_BUDGET, CHAIN_BUDGET)
    print(report.describe())  # the figures esphome/README.md quotes
    assert report.violations == [], report.describe()
    assert CHAIN_BUDGET < LOOP_TASK_STACK // 4


def test_stack_budget_check_can_fail(compiled: Compiled, tmp_path: Path) -> None:
    """The same check with budgets just under what our code needs fails, and so does a
    function with a large or dynamic frame."""
    report = stack_report(compiled, [COMPONENT], FRAME_BUDGET, CHAIN_BUDGET)
    tight = stack_report(
        compiled, [COMPONENT], report.largest.size - 1, report.chain_bytes - 1
    )
    assert len(tight.violations) >= 2, tight.violations
    assert any(report.largest.function in v for v in tight.violations)
    assert any(v.startswith("deepest chain") for v in tight.violations)


def test_stack_check_sees_large_and_dynamic_frames(
    esphome_src: Path, tmp_path: Path
) -> None:
    source = tmp_path / "frames.cpp"
    source.write_text(
        "#include <cstddef>\n#include <cstring>\n"
        "void use(char *);\n"
        "void big() { char b[2048]; std::memset(b, 1, sizeof(b)); use(b); }\n"
        "void sized(size_t n) { char b[n]; std::memset(b, 1, n); use(b); }\n"
        "void calls() { char b[300]; use(b); big(); }\n"
    )
    result = compile_sources([source], esphome_src, tmp_path / "out")
    # A variable-length array is a GNU extension; -Wextra does not reject it in C++.
    assert result.returncode == 0, result.output[-3000:]
    report = stack_report(result, [tmp_path], FRAME_BUDGET, CHAIN_BUDGET)
    assert report.largest.function.startswith("void big()")
    assert any("big()" in v and "> 512" in v for v in report.violations)
    assert any("sized(" in v and "dynamic" in v for v in report.violations)
    assert any(v.startswith("deepest chain") for v in report.violations)
    assert report.chain_bytes >= 2048 + 300
