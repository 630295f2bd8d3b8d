"""Store-and-forward on a real host node: readings kept while no Data Exchange client takes
live frames, replayed after the client's first desired frame in bounded, paced backlog
frames, freed only when acknowledged, overflow counted (docs/protocol.md, *Backlog*)."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from custom_components.data_exchange.backlog import MAX_READINGS, BacklogFrame
from tests.conftest import FIRMWARE
from tests.harness.dx_client import DxClient
from tests.harness.node import Node, NodeFactory

CYCLE_MS = 100
# Three sensors every 20 ms: 150 readings a second, so the ring of 1,000 readings (12 bytes
# each) overflows within seconds and a replay needs several frames and acknowledgements.
FAST_BACKLOG = {
    "cycle": f"{CYCLE_MS}ms",
    "sample_interval": "20ms",
    "backlog_size": "12000",
}
CAPACITY = 1000
WINDOW = 512  # backlog.h: readings sent and not acknowledged


@pytest.fixture
def backlog_node(node_factory: NodeFactory) -> Node:
    return node_factory.start(FIRMWARE / "sim-node.yaml", **FAST_BACKLOG)


async def _waiting(dx: DxClient) -> tuple[int, int]:
    frame = await dx.next_frame()
    assert frame.backlog_waiting is not None
    assert frame.backlog_dropped is not None
    return frame.backlog_waiting, frame.backlog_dropped


async def _replay(dx: DxClient, ack_from: int = 0) -> list[BacklogFrame]:
    """Take the backlog as Home Assistant does: acknowledge each frame once it arrived,
    until a full frame says nothing waits. Returns the backlog frames."""
    frames: list[BacklogFrame] = []
    await dx.write([None] * 5, overrides={"backlog": str(ack_from)})
    while True:
        try:
            frame = await dx.next_backlog(timeout=3)
        except TimeoutError:
            break
        frames.append(frame)
        await dx.write([None] * 5, overrides={"backlog": str(frame.last_seq)})
    waiting, _ = await _waiting(dx)
    assert waiting == 0
    return frames


async def test_readings_kept_without_client_and_replayed_paced(
    backlog_node: Node,
) -> None:
    await asyncio.sleep(3)  # no client: the node keeps every reading (about 450)
    dx = await DxClient(backlog_node).connect()
    try:
        waiting, dropped = await _waiting(dx)
        assert 200 <= waiting <= CAPACITY, waiting
        assert dropped == 0
        assert dx.backlog == []  # nothing before the client's first desired frame
        sent = time.monotonic()
        frames = await _replay(dx)
        seconds = time.monotonic() - sent
        readings = [r for f in frames for r in f.readings]
        # Numbered from 1 without gap, in time order; nothing resent.
        assert [r.seq for r in readings] == list(range(1, len(readings) + 1))
        assert len(readings) >= waiting
        assert all(a.uptime_ms <= b.uptime_ms for a, b in itertools.pairwise(readings))
        # The three sensors, their values as the random walks allow.
        assert {r.point for r in readings} == {0, 1, 2}
        assert all(15.0 <= r.value <= 30.0 for r in readings if r.point == 0)
        # Within the limits: at most 256 readings and far under the API's message size.
        assert all(len(f.readings) <= MAX_READINGS for f in frames)
        assert len(frames) >= 2
        # Live frames went on at the cycle while the backlog was replayed.
        full = [f for f in dx.frames if f.full]
        gaps = [b.uptime_ms - a.uptime_ms for a, b in itertools.pairwise(full[-10:])]
        assert all(g <= CYCLE_MS * 1.75 for g in gaps), gaps
        print(
            f"replay: {len(readings)} readings, {len(frames)} frames, {seconds:.3f} s"
        )
    finally:
        await dx.disconnect()


async def test_no_more_than_a_window_unacknowledged(backlog_node: Node) -> None:
    await asyncio.sleep(5)  # about 750 readings: more than one window
    dx = await DxClient(backlog_node).connect()
    try:
        await dx.write([None] * 5)
        first = await dx.next_backlog()
        second = await dx.next_backlog()
        # Without an acknowledgement nothing more comes: the window is full.
        with pytest.raises(TimeoutError):
            await dx.next_backlog(timeout=1)
        assert len(first.readings) + len(second.readings) == WINDOW
        await dx.write([None] * 5, overrides={"backlog": str(second.last_seq)})
        third = await dx.next_backlog()
        assert third.readings[0].seq == second.last_seq + 1
    finally:
        await dx.disconnect()


async def test_acknowledged_not_resent_unacknowledged_resent(
    backlog_node: Node,
) -> None:
    await asyncio.sleep(2)
    dx = await DxClient(backlog_node).connect()
    frames = await _replay(dx)
    stored = frames[-1].last_seq
    # A chunk sent but never acknowledged: the connection ends before.
    await dx.disconnect()
    await asyncio.sleep(1.5)
    dx = await DxClient(backlog_node).connect()
    await dx.write([None] * 5, overrides={"backlog": str(stored)})
    unacked = await dx.next_backlog()
    assert unacked.readings[0].seq == stored + 1
    await dx.disconnect()
    # Second reconnect: what was sent and not acknowledged comes again, from the same
    # reading; what was acknowledged never.
    await asyncio.sleep(0.5)
    dx = await DxClient(backlog_node).connect()
    try:
        again = await _replay(dx, stored)
        seqs = [r.seq for f in again for r in f.readings]
        assert seqs[0] == stored + 1
        assert seqs == list(range(stored + 1, stored + 1 + len(seqs)))
        assert again[0].readings[: len(unacked.readings)] == unacked.readings
    finally:
        await dx.disconnect()


async def test_overflow_drops_the_oldest_and_counts(backlog_node: Node) -> None:
    await asyncio.sleep(9)  # about 1,350 readings into a ring of 1,000
    dx = await DxClient(backlog_node).connect()
    try:
        waiting, dropped = await _waiting(dx)
        assert waiting == CAPACITY
        assert dropped > 0
        await dx.write([None] * 5)
        first = await dx.next_backlog()
        # The oldest went: the first reading held follows the dropped ones.
        _, dropped_now = await _waiting(dx)
        # Live since the desired frame: nothing more is kept, nothing more dropped.
        assert dropped_now >= dropped
        assert first.readings[0].seq == dropped_now + 1
    finally:
        await dx.disconnect()


# The default ring (48 KiB: 4,096 readings, one hour of the example ESP32 node's backlog
# points) filled fast: three sensors every 10 ms.
FULL_DEFAULT = {"cycle": "1s", "sample_interval": "10ms", "backlog_size": "49152"}


@pytest.fixture
def default_ring_node(node_factory: NodeFactory) -> Node:
    return node_factory.start(FIRMWARE / "sim-node.yaml", **FULL_DEFAULT)


async def test_replay_time_of_a_full_default_ring(default_ring_node: Node) -> None:
    """The figure in esphome/README.md: an hour of the example node's data (the default
    ring, full) replayed to a client that acknowledges each frame as it arrives, as Home
    Assistant does (it also writes each batch to disk first)."""
    dx = await DxClient(default_ring_node).connect()
    try:
        while (await _waiting(dx))[1] == 0:  # full once the first reading is dropped
            pass
        await dx.disconnect()
        dx = await DxClient(default_ring_node).connect()
        waiting, _ = await _waiting(dx)
        assert waiting == 4096
        sent = time.monotonic()
        await dx.write([None] * 5)
        readings = frames = 0
        last = sent
        while True:
            try:
                frame = await dx.next_backlog(timeout=3)
            except TimeoutError:
                break
            last = time.monotonic()
            readings += len(frame.readings)
            frames += 1
            await dx.write([None] * 5, overrides={"backlog": str(frame.last_seq)})
        seconds = last - sent
        assert readings >= 4096
        assert (await _waiting(dx))[0] == 0
        print(
            f"replay of a full default ring: {readings} readings in {frames} frames,"
            f" {seconds:.3f} s"
        )
        assert seconds < 10
    finally:
        await dx.disconnect()
