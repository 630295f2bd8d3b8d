"""Desired values kept on the node (keep_desired), on a real host node killed with SIGKILL.

tests/nodes/keep.yaml: the writable points have no restore_value, so after a restart only
the kept record can bring a value back; keep_desired_interval 2 s and ESPHome's
flash_write_interval 500 ms. The preferences file (ESPHOME_PREFDIR) is read to know when
the record reached the disk, the only event a killed node leaves behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
import shutil
import subprocess
import time

import pytest

from custom_components.data_exchange.protocol import Value
from tests.conftest import FIRMWARE, NODES
from tests.harness.dx_client import DxClient
from tests.harness.node import Node, NodeFactory, esphome_command
from tests.harness.peer import Peer

KEEP = NODES / "keep.yaml"
INTERVAL = 2.0  # keep_desired_interval of keep.yaml
# The YAML's initial values: setpoint, relay, mode, label (the writable points in order).
DEFAULTS: list[Value] = [21.0, False, "auto", "sim"]
FIRST: list[Value] = [27.5, True, "comfort", "first write"]
SECOND: list[Value] = [18.0, False, "eco", "second write"]


def _prefs(node: Node) -> bytes:
    files = list((node.state_dir / "prefs").glob("*.prefs"))
    return b"".join(f.read_bytes() for f in files)


async def _until(check: Callable[[], bool], within: float = 15.0) -> float:
    """Polls ``check`` (a file on disk: a killed node sends no event) until it holds;
    returns the monotonic time it first held."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.05)
    return time.monotonic()


def _writable(dx: DxClient, values: tuple[Value, ...]) -> list[Value]:
    assert dx.model is not None
    return [values[i] for i in dx.model.writable]


async def _applied(dx: DxClient, values: list[Value]) -> int:
    """Writes ``values`` and waits for a full frame that acknowledges them."""
    seq = await dx.write(values)
    frame = await dx.next_frame(lambda f: f.applied_seq >= seq)
    assert _writable(dx, frame.values) == values
    return seq


def _restart(node: Node) -> None:
    node.kill()  # SIGKILL: nothing is flushed at exit
    node.start()


@pytest.fixture
def keep_node(node_factory: NodeFactory) -> Node:
    return node_factory.start(KEEP)


async def test_restart_starts_with_kept_values_not_yaml_defaults(
    keep_node: Node,
) -> None:
    dx = await DxClient(keep_node).connect()
    try:
        assert dx.model is not None
        assert dx.model.kept_seq == 0  # nothing kept yet: started as configured
        first = await dx.next_frame()
        assert _writable(dx, first.values) == DEFAULTS
        seq = await _applied(dx, FIRST)
        await _until(lambda: b"first write" in _prefs(keep_node))
    finally:
        await dx.disconnect()
    _restart(keep_node)
    # No Data Exchange client while the node boots: the values are the node's own.
    dx = await DxClient(keep_node).connect()
    try:
        assert dx.model is not None
        assert dx.model.kept_seq == seq  # model key g
        frame = await dx.next_frame()
        assert _writable(dx, frame.values) == FIRST
        assert frame.applied_seq == 0  # nothing applied on this boot yet
    finally:
        await dx.disconnect()


async def test_a_change_within_the_interval_is_written_when_it_ends(
    keep_node: Node,
) -> None:
    dx = await DxClient(keep_node).connect()
    try:
        first_seq = await _applied(dx, FIRST)
        first_on_disk = await _until(lambda: b"first write" in _prefs(keep_node))
        second_seq = await _applied(dx, SECOND)
        applied_at = time.monotonic()
        # Inside the interval the record still holds the first write.
        if applied_at - first_on_disk < INTERVAL - 1.0:
            assert b"second write" not in _prefs(keep_node)
            assert b"first write" in _prefs(keep_node)
        second_on_disk = await _until(lambda: b"second write" in _prefs(keep_node))
        # Written once the interval since the first record ended (the first reached the
        # disk up to one flash_write_interval after it was written).
        assert second_on_disk - first_on_disk >= INTERVAL - 0.6
    finally:
        await dx.disconnect()
    _restart(keep_node)
    dx = await DxClient(keep_node).connect()
    try:
        assert dx.model is not None
        assert dx.model.kept_seq == second_seq > first_seq
        frame = await dx.next_frame()
        assert _writable(dx, frame.values) == SECOND
    finally:
        await dx.disconnect()


async def test_killed_within_the_interval_starts_with_the_last_record(
    keep_node: Node,
) -> None:
    """The newer desired frame was not written yet: the node starts with the older one
    and says so (g), so Home Assistant sends the newer values again."""
    dx = await DxClient(keep_node).connect()
    try:
        first_seq = await _applied(dx, FIRST)
        await _until(lambda: b"first write" in _prefs(keep_node))
        await _applied(dx, SECOND)
        killed_at = time.monotonic()
        keep_node.kill()
    finally:
        await dx.disconnect()
    assert b"second write" not in _prefs(keep_node), killed_at
    keep_node.start()
    dx = await DxClient(keep_node).connect()
    try:
        assert dx.model is not None
        assert dx.model.kept_seq == first_seq
        frame = await dx.next_frame()
        assert _writable(dx, frame.values) == FIRST
    finally:
        await dx.disconnect()


async def test_clean_stop_writes_the_change_waiting_for_its_interval(
    keep_node: Node,
) -> None:
    """SIGTERM (a reboot, an update): the node writes and commits what it holds."""
    dx = await DxClient(keep_node).connect()
    try:
        await _applied(dx, FIRST)
        await _until(lambda: b"first write" in _prefs(keep_node))
        second_seq = await _applied(dx, SECOND)
    finally:
        await dx.disconnect()
    keep_node.stop()  # SIGTERM, within the interval of the first record
    assert b"second write" in _prefs(keep_node)
    keep_node.start()
    dx = await DxClient(keep_node).connect()
    try:
        assert dx.model is not None
        assert dx.model.kept_seq == second_seq
        frame = await dx.next_frame()
        assert _writable(dx, frame.values) == SECOND
    finally:
        await dx.disconnect()


async def test_local_change_while_away_is_kept_with_the_older_frame(
    keep_node: Node,
) -> None:
    """A change made on the node after the last desired frame is kept too, with that
    frame's number: Home Assistant judges it as a local change (rule 6)."""
    dx = await DxClient(keep_node).connect()
    try:
        seq = await _applied(dx, FIRST)
        await _until(lambda: b"first write" in _prefs(keep_node))
    finally:
        await dx.disconnect()
    # Another API client (not Data Exchange) changes the setpoint, as a person would.
    async with Peer(keep_node, "a person at the device") as peer:
        await peer.call("local_set_setpoint", value=33.0)
    # 2 s interval since the first record; ESPHome syncs every 500 ms.
    await _until(lambda: b"33" in _prefs(keep_node), within=INTERVAL + 10)
    _restart(keep_node)
    dx = await DxClient(keep_node).connect()
    try:
        assert dx.model is not None
        assert dx.model.kept_seq == seq
        frame = await dx.next_frame()
        assert _writable(dx, frame.values) == [33.0, *FIRST[1:]]
    finally:
        await dx.disconnect()


async def test_record_of_another_layout_is_ignored(
    keep_node: Node, node_factory: NodeFactory
) -> None:
    dx = await DxClient(keep_node).connect()
    try:
        seq = await _applied(dx, FIRST)
        await _until(lambda: b"first write" in _prefs(keep_node))
    finally:
        await dx.disconnect()
    keep_node.kill()
    # The same node name and preferences, another point list (humidity for temperature).
    other = Node(
        node_factory.build(KEEP, extra_point="humidity"),
        mac=keep_node.mac,
        state_dir=keep_node.state_dir,
    )
    other.start()
    try:
        dx = await DxClient(other).connect()
        try:
            assert dx.model is not None
            assert dx.model.kept_seq == 0
            frame = await dx.next_frame()
            assert _writable(dx, frame.values) == DEFAULTS
        finally:
            await dx.disconnect()
    finally:
        other.kill()
    # The first layout's record is still there for its own firmware.
    keep_node.start()
    dx = await DxClient(keep_node).connect()
    try:
        assert dx.model is not None
        assert dx.model.kept_seq == seq
        frame = await dx.next_frame()
        assert _writable(dx, frame.values) == FIRST
    finally:
        await dx.disconnect()


async def test_kept_value_the_firmware_now_refuses_discards_the_record(
    keep_node: Node, node_factory: NodeFactory
) -> None:
    """Same points (same record key), but the setpoint now stops at 25: the kept 27.5 fails
    the one rule, so nothing of the record is applied (all or nothing)."""
    dx = await DxClient(keep_node).connect()
    try:
        await _applied(dx, FIRST)
        await _until(lambda: b"first write" in _prefs(keep_node))
    finally:
        await dx.disconnect()
    keep_node.kill()
    narrower = Node(
        node_factory.build(KEEP, setpoint_max="25"),
        mac=keep_node.mac,
        state_dir=keep_node.state_dir,
    )
    node_factory.nodes.append(narrower)
    narrower.start()
    dx = await DxClient(narrower).connect()
    try:
        assert dx.model is not None
        assert dx.model.kept_seq == 0
        frame = await dx.next_frame()
        assert _writable(dx, frame.values) == DEFAULTS
    finally:
        await dx.disconnect()
    assert "not valid any more" in narrower.log_path.read_text()


async def test_paused_acquisition_is_kept(keep_node: Node) -> None:
    dx = await DxClient(keep_node).connect()
    try:
        seq = await dx.write(FIRST, acquisition=False)
        await dx.next_frame(
            lambda f: f.applied_seq >= seq and not f.acquisition_running
        )
        await _until(lambda: b"first write" in _prefs(keep_node))
    finally:
        await dx.disconnect()
    _restart(keep_node)
    dx = await DxClient(keep_node).connect()
    try:
        frame = await dx.next_frame()
        assert not frame.acquisition_running
        assert _writable(dx, frame.values) == FIRST
    finally:
        await dx.disconnect()


def test_keep_yaml_is_where_the_tests_expect(nodes_dir: Path) -> None:
    text = (nodes_dir / "keep.yaml").read_text()
    assert "keep_desired: ${keep}" in text
    assert 'keep: "true"' in text
    assert "restore_value:" not in text  # only the kept record restores values


def test_config_refuses_a_record_that_does_not_fit(tmp_path: Path) -> None:
    """A text counts its max_length in the record: 255 bytes do not fit with the header
    and the other points, so `esphome config` refuses it (nothing is truncated)."""
    root = tmp_path / "esphome"
    shutil.copytree(FIRMWARE, root, ignore=shutil.ignore_patterns(".esphome"))
    sim = (root / "sim-node.yaml").read_text()
    assert "keep_desired: true" in sim
    assert "    max_length: 32\n" in sim
    for text, valid in (
        (sim, True),
        (sim.replace("max_length: 32", "max_length: 255"), False),
    ):
        (root / "keep-node.yaml").write_text(text)
        result = subprocess.run(
            [*esphome_command(), "config", "keep-node.yaml"],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        output = result.stdout + result.stderr
        assert (result.returncode == 0) is valid, output[-3000:]
        if not valid:
            assert "keep_desired: the kept record would take" in output, output[-3000:]
