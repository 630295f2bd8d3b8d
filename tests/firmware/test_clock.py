"""Measurement time on a real simulated node (protocol 5, keys ``w`` and ``d``).

The sim node has ``time: platform: host`` and ``time_id``: its frames carry its Unix time;
a variant without the time source sends ages only.
"""

from __future__ import annotations

import time

import pytest

from custom_components.data_exchange.protocol import NodeFrame
from tests.firmware.conftest import CYCLE_MS, FAST
from tests.harness.dx_client import DxClient
from tests.harness.node import Node, NodeFactory, firmware_variant

# The sim node's sensors sample every second (esphome/sim-node.yaml).
SAMPLE_MS = 1000
# Host scheduling on a shared machine: how late a frame or a sample may be.
SLACK_MS = 400
NO_CLOCK_LINES = [
    "time:",
    "  - platform: host",
    "    id: node_time",
    "  time_id: node_time",
]


def _check_ages(frame: NodeFrame) -> None:
    assert len(frame.ages) == len(frame.values)
    for value, age in zip(frame.values, frame.ages, strict=True):
        # An age exactly for the points with a value.
        assert (age is None) == (value is None), frame


async def test_ages_follow_publish_times(dx: DxClient) -> None:
    assert dx.model is not None
    temperature = dx.point_index("temperature")
    setpoint = dx.point_index("setpoint")
    # From the fail-safe on (no desired frame for 1.5 s: it sets the setpoint once), the
    # setpoint is not published again until the write below.
    frames = [
        await dx.next_frame(lambda f: f.failsafe_active and None not in f.values[:3])
    ]
    frames += [await dx.next_frame() for _ in range(15)]
    for frame in frames:
        _check_ages(frame)
        # A sensor sampling every second is never older than a sample interval.
        age = frame.ages[temperature]
        assert age is not None
        assert age <= SAMPLE_MS + SLACK_MS, frame
    # A value published once keeps its publish time: u - age stays put while u grows.
    published = {f.uptime_ms - (f.ages[setpoint] or 0) for f in frames}
    assert len(published) == 1, published

    # A write makes the node publish now; its answer frame reports an age of (about) zero,
    # and later frames count from that same publish.
    values = [None] * len(dx.model.writable)
    values[dx.model.writable.index(setpoint)] = 23.5
    await dx.write(values)
    answer = await dx.next_frame(lambda f: f.values[setpoint] == 23.5)
    assert answer.ages[setpoint] is not None
    assert answer.ages[setpoint] <= CYCLE_MS + SLACK_MS
    at = answer.uptime_ms - answer.ages[setpoint]
    assert at > max(published)
    later = [await dx.next_frame() for _ in range(5)]
    assert {f.uptime_ms - (f.ages[setpoint] or 0) for f in later} == {at}
    assert later[-1].ages[setpoint] >= 4 * CYCLE_MS - SLACK_MS


async def test_change_frames_carry_fresh_ages(dx: DxClient) -> None:
    temperature = dx.point_index("temperature")
    await dx.next_frame()
    for _ in range(3):
        change = await dx.next_frame(
            lambda f: f.indices is not None and temperature in f.indices, changes=True
        )
        # Sent right after the sample: younger than scheduling delays on this machine.
        age = change.ages[temperature]
        assert age is not None
        assert age <= SLACK_MS


async def test_node_time_with_a_time_source(dx: DxClient) -> None:
    # The host time platform reads this machine's clock: d is Unix time in ms, now.
    frames = [await dx.next_frame() for _ in range(3)]
    for frame in frames:
        assert frame.node_time_ms is not None
        assert abs(frame.node_time_ms - time.time() * 1000) < 2000
    # d advances with u (both at sending).
    first, last = frames[0], frames[-1]
    assert first.node_time_ms is not None
    assert last.node_time_ms is not None
    elapsed = last.uptime_ms - first.uptime_ms
    assert abs((last.node_time_ms - first.node_time_ms) - elapsed) <= 50


@pytest.fixture
def no_clock_node(node_factory: NodeFactory) -> Node:
    """The sim node without its time source (built outside the event loop)."""
    yaml = firmware_variant("no-clock", "sim-node.yaml", drop=NO_CLOCK_LINES)
    return node_factory.start(yaml, **FAST)


async def test_no_node_time_without_a_time_source(no_clock_node: Node) -> None:
    client = await DxClient(no_clock_node).connect()
    try:
        frames = [await client.next_frame(lambda f: None not in f.values[:3])]
        frames += [await client.next_frame(changes=True) for _ in range(10)]
        for frame in frames:
            assert frame.node_time_ms is None, frame
            _check_ages(frame)
    finally:
        await client.disconnect()
