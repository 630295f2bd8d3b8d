"""The sanitized node build notices what it is there to notice (tests/firmware/sanitizer.py).

Each self-test makes the node commit one fault (test-only component dx_probe): the report
must reach the test as a failure. A clean run of the same build reports nothing (the
sanitized_node fixture checks that after every test that uses it, e.g. test_fuzz.py).
"""

from __future__ import annotations

import contextlib

import pytest

from tests.firmware.conftest import FAST
from tests.firmware.sanitizer import (
    REPORT_EXIT,
    SANITIZED_SIM,
    SANITIZER_ENV,
    stop_and_check,
)
from tests.harness.dx_client import DxClient
from tests.harness.node import Node, NodeError, NodeFactory


@pytest.mark.parametrize(
    ("fault", "report"),
    [
        ("address", "heap-buffer-overflow"),
        ("undefined", "signed integer overflow"),
        ("leak", "detected memory leaks"),
    ],
)
def test_a_sanitizer_report_fails_the_node(
    node_factory: NodeFactory, fault: str, report: str
) -> None:
    node = Node(
        node_factory.build(SANITIZED_SIM, **FAST),
        env={**SANITIZER_ENV, "DX_PROBE_SELFTEST": fault},
    )
    node_factory.nodes.append(node)
    # A memory error or undefined behaviour ends the node during setup (it may or may not
    # have begun to listen); a leak is reported when it exits.
    with contextlib.suppress(NodeError):
        node.start(timeout=60)
    problems = stop_and_check(node)
    assert any(report in line for line in problems), problems
    assert f"node exited with {REPORT_EXIT}" in problems


async def test_a_clean_run_reports_nothing(sanitized_dx: DxClient) -> None:
    """The control: the same build, exchanging frames, stops with nothing to report
    (checked by the fixture at teardown)."""
    await sanitized_dx.next_frame()
    seq = await sanitized_dx.write([25.5, True, 40.0, "comfort", "a, b %50\u00b0"])
    await sanitized_dx.next_frame(lambda f: f.applied_seq == seq)
