"""The node test harness against real host-platform nodes, with the bare aioesphomeapi client."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from aioesphomeapi import APIClient, SensorState
import pytest

from tests.harness.node import Node, NodeBuild, NodeError, NodeFactory


async def _connect(node: Node) -> APIClient:
    client = APIClient(node.host, node.port, None)
    await client.connect(login=True)
    return client


@pytest.fixture
def minimal_node(node_factory: NodeFactory, nodes_dir: Path) -> Node:
    """A running minimal node (built and started outside the event loop)."""
    return node_factory.start(nodes_dir / "minimal.yaml")


@pytest.fixture
def three_nodes(node_factory: NodeFactory, nodes_dir: Path) -> list[Node]:
    return [node_factory.start(nodes_dir / "minimal.yaml") for _ in range(3)]


async def test_connect_device_info_and_state(minimal_node: Node) -> None:
    node = minimal_node
    client = await _connect(node)
    try:
        info = await client.device_info()
        assert info.name == node.name
        assert info.mac_address == node.mac
        entities, _ = await client.list_entities_services()
        keys = {e.key: e.object_id for e in entities}
        first: asyncio.Future[SensorState] = asyncio.get_running_loop().create_future()

        def on_state(state: object) -> None:
            # The initial state of a sensor that has not published yet is marked missing.
            if (
                isinstance(state, SensorState)
                and not state.missing_state
                and not first.done()
            ):
                first.set_result(state)

        client.subscribe_states(on_state)
        state = await asyncio.wait_for(first, 10)
        assert keys[state.key] == "answer"
        assert state.state == pytest.approx(42.0)
    finally:
        await client.disconnect()


async def test_several_nodes_side_by_side(three_nodes: list[Node]) -> None:
    nodes = three_nodes
    assert len({n.port for n in nodes}) == 3
    seen = set()
    for node in nodes:
        client = await _connect(node)
        try:
            info = await client.device_info()
            seen.add((info.name, info.mac_address))
        finally:
            await client.disconnect()
    assert seen == {(n.name, n.mac) for n in nodes}
    # One build serves every instance.
    assert len({n.build.program for n in nodes}) == 1


def test_build_is_cached(node_factory: NodeFactory, nodes_dir: Path) -> None:
    first = node_factory.build(nodes_dir / "minimal.yaml")
    mtime = first.program.stat().st_mtime_ns
    second = node_factory.build(nodes_dir / "minimal.yaml")
    assert second.program == first.program
    assert second.program.stat().st_mtime_ns == mtime


def test_stop_leaves_no_process(node_factory: NodeFactory, nodes_dir: Path) -> None:
    node = node_factory.start(nodes_dir / "minimal.yaml")
    assert node.process is not None
    pid = node.process.pid
    node.stop()
    assert not node.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_factory_close_stops_every_node(socket_enabled: None, nodes_dir: Path) -> None:
    factory = NodeFactory()
    nodes = [factory.start(nodes_dir / "minimal.yaml") for _ in range(2)]
    pids = [n.process.pid for n in nodes if n.process]
    factory.close()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_broken_yaml_reports_compile_error(
    node_factory: NodeFactory, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "esphome:\n  name: bad\nhost:\nsensor:\n  - platform: no_such_platform\n"
    )
    with pytest.raises(NodeError, match="no_such_platform"):
        NodeBuild.compile(bad)
