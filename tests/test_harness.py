"""The node test harness against real host-platform nodes, with the bare aioesphomeapi client."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from tests.harness import yaml_gen
from tests.harness.ha_process import known_upstream, problems
from tests.harness.node import Node, NodeBuild, NodeError, NodeFactory
from tests.harness.peer import Peer


@pytest.fixture
def minimal_node(node_factory: NodeFactory, nodes_dir: Path) -> Node:
    """A running minimal node (built and started outside the event loop)."""
    return node_factory.start(nodes_dir / "minimal.yaml")


@pytest.fixture
def three_nodes(node_factory: NodeFactory, nodes_dir: Path) -> list[Node]:
    return [node_factory.start(nodes_dir / "minimal.yaml") for _ in range(3)]


async def test_connect_device_info_and_state(minimal_node: Node) -> None:
    node = minimal_node
    async with Peer(node, states=True) as peer:
        info = await peer.api.device_info()
        assert info.name == node.name
        assert info.mac_address == node.mac
        assert {e.object_id for e in peer.entities.values()} >= {"answer", "relay"}
        assert "relay" in peer.keys
        # The initial state of a sensor that has not published yet is marked missing:
        # the peer waits for the first real one.
        assert await peer.state("answer") == pytest.approx(42.0)


async def test_several_nodes_side_by_side(three_nodes: list[Node]) -> None:
    nodes = three_nodes
    assert len({n.port for n in nodes}) == 3
    seen = set()
    for node in nodes:
        async with Peer(node) as peer:
            info = await peer.api.device_info()
            seen.add((info.name, info.mac_address))
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


def test_generated_yaml_reads_back_as_written(tmp_path: Path) -> None:
    included = tmp_path / "node.yaml"
    config = {
        "esphome": {"name": "gen", "name_add_mac_suffix": True},
        "host": None,
        "globals": [{"id": "g", "type": "int", "initial_value": "0"}],
        "values": {
            "numbers": [1, 2.5],
            "texts": ["a", "true", "it's", "1s", "x: y", " padded"],
            "lambda": "if (x) {\n  return;\n}\n\nid(g)++;",
        },
        "packages": {"node": yaml_gen.Include(included)},
    }
    text = yaml_gen.dump(config)
    assert "components: [a, b]" in yaml_gen.dump({"components": ["a", "b"]})
    assert "initial_value: '0'" in text

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!include", lambda loader, node: ("include", node.value))
    expected = config | {"packages": {"node": ("include", str(included))}}
    assert yaml.load(text, Loader) == expected
    assert yaml_gen.write(tmp_path / "gen.yaml", config).read_text() == text


def test_only_the_known_ffmpeg_start_timeout_is_dropped_from_a_log() -> None:
    """The browser and develop tests require a clean Home Assistant log; the one upstream
    fault tolerated is haffmpeg's start-up timeout, and only after its own warning."""
    block = (
        "2026-12-02 07:29:34.304 WARNING (MainThread) [haffmpeg.core] Timeout while "
        "waiting of FFmpeg\n"
        "2026-12-02 07:29:34.305 INFO (MainThread) [homeassistant.setup] Setup of domain "
        "ffmpeg took 15.01 seconds\n"
        "2026-12-02 07:29:34.309 ERROR (MainThread) [homeassistant] Error doing job: Task "
        "exception was never retrieved (task: None)\n"
        "Traceback (most recent call last):\n"
        '  File "/usr/lib/python3.14/asyncio/streams.py", line 542, in _wait_for_data\n'
        "    raise RuntimeError(\n"
        "RuntimeError: read() called while another coroutine is already waiting for "
        "incoming data\n"
    )
    assert problems(block)
    assert not problems(known_upstream(block))
    assert "haffmpeg" in known_upstream(block)
    # The same error without haffmpeg's timeout before it is still a problem.
    alone = block.split("\n", 1)[1]
    assert problems(known_upstream(alone))
    other = block.replace("RuntimeError: read()", "ValueError: read()")
    assert problems(known_upstream(other))
