"""Compile the data_exchange component under the ESP32's type model, and read its stack use.

ESP32 builds need ESP-IDF, which cannot be fetched here. What a host build cannot show is
the type model: on 64-bit Linux ``uint32_t`` is ``unsigned int``, on the ESP32 (ESP-IDF 5's
toolchains) it is ``long unsigned int`` and ``long`` has 32 bits, so
``std::min(millis(), 100u)``, ``%u`` for a ``uint32_t`` or overloads on ``uint32_t`` versus
``unsigned`` build here and fail there. Debian's ``arm-none-eabi-g++`` (scripts/setup) is a
32-bit bare-metal toolchain with that type model: our sources are compiled with it against
the ESPHome headers of a host node's generated source tree, with a test-only stand-in for
the platform layer (tests/firmware/esp32_like/README.md).

``-fstack-usage`` and ``-fcallgraph-info=su`` give every function's frame and the calls
between them; ``stack_report`` finds the largest frame of our code and the deepest chain of
calls inside our objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import re
import shutil
import subprocess

from tests.harness.node import FIRMWARE_DIR

COMPONENT = FIRMWARE_DIR / "components" / "data_exchange"
STUB = Path(__file__).resolve().parent / "esp32_like"
TOOLCHAIN = "arm-none-eabi-g++"

# The ESP32's 32-bit type model on a 32-bit core; -Os as ESPHome's ESP32 builds. Thumb-2
# frames stand in for Xtensa's (README: the budget's margin covers the difference).
TARGET_FLAGS = ["-mcpu=cortex-m4", "-mthumb", "-Os"]
WARNING_FLAGS = ["-Wall", "-Wextra", "-Wformat=2", "-Werror"]
FLAGS = [
    "-std=gnu++20",
    *TARGET_FLAGS,
    "-ffunction-sections",
    "-fdata-sections",
    "-fstack-usage",
    "-fcallgraph-info=su",
    *WARNING_FLAGS,
    # The generated tree is a host node's: its platform is "host", whose layer the stand-in
    # replaces (found first: -I before -isystem).
    "-DUSE_HOST",
    "-include",
    "esp32_like.h",
]


@dataclass
class Compiled:
    """The result of compiling some sources."""

    returncode: int
    output: str
    out_dir: Path

    @property
    def su_files(self) -> list[Path]:
        return sorted(self.out_dir.glob("*.su"))

    @property
    def ci_files(self) -> list[Path]:
        return sorted(self.out_dir.glob("*.ci"))


def toolchain() -> str:
    found = shutil.which(TOOLCHAIN)
    # scripts/setup installs it (DX_FIRMWARE_PACKAGES): missing means a broken setup.
    assert found, f"{TOOLCHAIN} not found: run scripts/setup"
    return found


def compile_sources(sources: list[Path], esphome_src: Path, out_dir: Path) -> Compiled:
    """Compile ``sources`` to objects in ``out_dir`` (one compiler call per source)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs: list[str] = []
    worst = 0
    for source in sources:
        command = [
            toolchain(),
            *FLAGS,
            "-I",
            str(STUB),
            # ESPHome's headers are system headers here: -Werror is for our files.
            "-isystem",
            str(esphome_src),
            "-c",
            str(source),
            "-o",
            str(out_dir / f"{source.stem}.o"),
        ]
        result = subprocess.run(
            command,
            cwd=out_dir,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        outputs.append(result.stdout + result.stderr)
        worst = worst or result.returncode
    return Compiled(worst, "".join(outputs), out_dir)


def component_sources() -> list[Path]:
    return sorted(COMPONENT.glob("*.cpp"))


@dataclass(frozen=True)
class Frame:
    """One function's stack frame as -fstack-usage reports it."""

    function: str
    location: str
    size: int
    qualifier: str  # static, dynamic, dynamic,bounded

    def ours(self, roots: list[Path]) -> bool:
        return any(self.location.startswith(str(root)) for root in roots)


def read_frames(su_files: list[Path]) -> list[Frame]:
    frames = []
    for path in su_files:
        for line in path.read_text().splitlines():
            # "file:line:col:function<TAB>size<TAB>qualifier"
            head, size, qualifier = line.rsplit("\t", 2)
            match = re.match(r"(.*?:\d+:\d+):(.*)", head)
            assert match, line
            frames.append(Frame(match.group(2), match.group(1), int(size), qualifier))
    return frames


_NODE = re.compile(r'node: \{ title: "([^"]*)" label: "((?:[^"\\]|\\.)*)"')
_EDGE = re.compile(r'edge: \{ sourcename: "([^"]*)" targetname: "([^"]*)"')
_BYTES = re.compile(r"\\n(\d+) bytes \((\w[\w,]*)\)")


@dataclass
class CallGraph:
    """The calls between the functions of some objects (-fcallgraph-info=su)."""

    size: dict[str, int]
    label: dict[str, str]
    calls: dict[str, set[str]]

    @classmethod
    def read(cls, ci_files: list[Path]) -> CallGraph:
        size: dict[str, int] = {}
        label: dict[str, str] = {}
        calls: dict[str, set[str]] = {}
        for path in ci_files:
            text = path.read_text()
            for title, text_label in _NODE.findall(text):
                label[title] = text_label.split("\\n")[0]
                found = _BYTES.search(text_label)
                if found:  # functions defined in these objects; others are external
                    size[title] = int(found.group(1))
            for source, target in _EDGE.findall(text):
                calls.setdefault(source, set()).add(target)
        return cls(size, label, calls)

    def deepest(self) -> tuple[int, list[str]]:
        """The largest sum of frames along a chain of calls between functions of these
        objects (calls out of them count 0), and that chain. A cycle is an error."""
        best: dict[str, tuple[int, list[str]]] = {}
        active: set[str] = set()

        def visit(node: str) -> tuple[int, list[str]]:
            if node in best:
                return best[node]
            if node in active:
                raise AssertionError(f"recursion through {self.label.get(node, node)}")
            active.add(node)
            below: tuple[int, list[str]] = (0, [])
            for callee in sorted(self.calls.get(node, ())):
                if callee in self.size:
                    candidate = visit(callee)
                    if candidate[0] > below[0]:
                        below = candidate
            active.discard(node)
            best[node] = (self.size[node] + below[0], [node, *below[1]])
            return best[node]

        deepest: tuple[int, list[str]] = (0, [])
        for node in sorted(self.size):
            candidate = visit(node)
            if candidate[0] > deepest[0]:
                deepest = candidate
        return deepest


@dataclass(frozen=True)
class StackReport:
    largest: Frame
    chain_bytes: int
    chain: list[str]
    violations: list[str]

    def describe(self) -> str:
        lines = [
            f"largest frame of ours: {self.largest.size} bytes, {self.largest.function}",
            f"deepest chain in our objects: {self.chain_bytes} bytes",
            *(f"  {step}" for step in self.chain),
        ]
        return "\n".join(lines)


def stack_report(
    compiled: Compiled, roots: list[Path], frame_budget: int, chain_budget: int
) -> StackReport:
    """Our frames against ``frame_budget`` and the deepest chain against
    ``chain_budget``; a frame of dynamic size (alloca, a variable-length array) is a
    violation whatever its size."""
    frames = [f for f in read_frames(compiled.su_files) if f.ours(roots)]
    assert frames, "no function of ours in the stack usage files"
    violations = [
        f"{f.function}: {f.size} bytes > {frame_budget}"
        for f in frames
        if f.size > frame_budget
    ]
    violations += [
        f"{f.function}: {f.qualifier} stack" for f in frames if f.qualifier != "static"
    ]
    graph = CallGraph.read(compiled.ci_files)
    chain_bytes, chain = graph.deepest()
    if chain_bytes > chain_budget:
        violations.append(f"deepest chain {chain_bytes} bytes > {chain_budget}")
    named = [f"{graph.size[n]:5d}  {graph.label.get(n, n)}" for n in chain]
    largest = max(frames, key=lambda f: f.size)
    return StackReport(largest, chain_bytes, named, violations)
