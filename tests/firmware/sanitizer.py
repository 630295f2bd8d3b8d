"""Nodes built with AddressSanitizer, LeakSanitizer and UndefinedBehaviorSanitizer.

The build variant is tests/firmware/nodes/sim-node.yaml (the simulated node plus the
test-only component dx_probe with ``sanitize: true``). A report of any sanitizer fails the
test that ran the node: the node's log (its stderr) is read when it stops, and so is its
exit status (LeakSanitizer reports at exit, after a clean SIGTERM shutdown).
"""

from __future__ import annotations

from pathlib import Path
import re

from tests.harness.node import Node

SANITIZED_SIM = Path(__file__).resolve().parent / "nodes" / "sim-node.yaml"

# Every report ends the node (halt_on_error, -fno-sanitize-recover) with this exit status,
# so a report is never only a line in a log nobody reads.
REPORT_EXIT = 66
SANITIZER_ENV = {
    "ASAN_OPTIONS": (
        f"halt_on_error=1:exitcode={REPORT_EXIT}:detect_leaks=1:"
        "detect_stack_use_after_return=1:check_initialization_order=1:"
        "strict_init_order=1:print_summary=1"
    ),
    "LSAN_OPTIONS": f"exitcode={REPORT_EXIT}",
    "UBSAN_OPTIONS": f"print_stacktrace=1:halt_on_error=1:exitcode={REPORT_EXIT}",
}

_REPORT = re.compile(
    r"ERROR: (?:AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: \w+Sanitizer"
)


def sanitizer_reports(text: str) -> list[str]:
    """The lines of a node log that are (the start of) a sanitizer report."""
    return [line for line in text.splitlines() if _REPORT.search(line)]


def stop_and_check(node: Node) -> list[str]:
    """Stop ``node`` cleanly and return what is wrong: its sanitizer reports, or an exit
    that was not the clean one (0 after SIGTERM)."""
    node.stop(grace=30)  # LeakSanitizer's scan at exit takes a moment
    problems = sanitizer_reports(node.log_path.read_text(errors="replace"))
    assert node.process is not None
    if node.process.returncode != 0:
        problems.append(f"node exited with {node.process.returncode}")
    return problems
