"""Fixtures for firmware tests: the simulated node with a fast cycle, and protocol clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.conftest import FIRMWARE
from tests.firmware.sanitizer import SANITIZED_SIM, SANITIZER_ENV, stop_and_check
from tests.harness.dx_client import DxClient
from tests.harness.node import Node, NodeFactory

# A fast cycle keeps the tests short; the fail-safe fires after 1.5 s without desired frames.
FAST = {"cycle": "100ms", "failsafe_timeout": "1500ms"}
CYCLE_MS = 100
FAILSAFE_MS = 1500


@pytest.fixture
def sim_node(node_factory: NodeFactory) -> Node:
    """A running simulated node (built and started outside the event loop)."""
    return node_factory.start(FIRMWARE / "sim-node.yaml", **FAST)


@pytest.fixture
async def dx(sim_node: Node) -> AsyncIterator[DxClient]:
    client = await DxClient(sim_node).connect()
    try:
        yield client
    finally:
        await client.disconnect()


@pytest.fixture
def sanitized_node(node_factory: NodeFactory) -> Iterator[Node]:
    """The simulated node built with ASan, LSan and UBSan, running with the fast cycle.

    Fails the test at teardown if any sanitizer reported anything or the node did not end
    cleanly."""
    node = Node(node_factory.build(SANITIZED_SIM, **FAST), env=dict(SANITIZER_ENV))
    node_factory.nodes.append(node)
    node.start(timeout=60)
    yield node
    problems = stop_and_check(node)
    assert problems == [], "\n".join([*problems, node.log_tail(60)])


@pytest.fixture
async def sanitized_dx(sanitized_node: Node) -> AsyncIterator[DxClient]:
    client = await DxClient(sanitized_node).connect()
    try:
        yield client
    finally:
        await client.disconnect()
