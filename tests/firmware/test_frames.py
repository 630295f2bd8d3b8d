"""The data_exchange component on a real simulated node, through the bare aioesphomeapi client."""

from __future__ import annotations

import asyncio
import itertools

from aioesphomeapi import HomeassistantServiceCall
import pytest

from custom_components.data_exchange.protocol import (
    FRAME_EVENT,
    NodeFrame,
    PointType,
)
from tests.firmware.conftest import CYCLE_MS, FAILSAFE_MS
from tests.harness.dx_client import DxClient
from tests.harness.node import Node

SIM_POINTS = [
    ("temperature", PointType.SENSOR),
    ("humidity", PointType.SENSOR),
    ("pressure", PointType.SENSOR),
    ("occupancy", PointType.BINARY_SENSOR),
    ("status", PointType.TEXT_SENSOR),
    ("setpoint", PointType.NUMBER),
    ("relay", PointType.SWITCH),
    ("led_brightness", PointType.NUMBER),
    ("mode", PointType.SELECT),
    ("label", PointType.TEXT),
]


def _writable(dx: DxClient, frame: NodeFrame) -> list[object]:
    assert dx.model is not None
    return [frame.values[i] for i in dx.model.writable]


async def test_model_describes_every_point(dx: DxClient) -> None:
    assert dx.model is not None
    assert dx.model.cycle_ms == CYCLE_MS
    assert dx.model.failsafe_ms == FAILSAFE_MS
    described = [(dx.entities[p.key].object_id, p.type) for p in dx.model.points]
    assert described == SIM_POINTS


async def test_frames_every_cycle_with_all_points(dx: DxClient) -> None:
    assert dx.model is not None
    first = await dx.next_frame()
    frames = [first] + [await dx.next_frame() for _ in range(10)]
    seqs = [f.seq for f in frames]
    assert seqs == list(range(first.seq, first.seq + 11))
    for frame in frames:
        assert frame.model_id == dx.model.model_id
        assert len(frame.values) == len(SIM_POINTS)
        assert frame.acquisition_running
        assert not frame.failsafe_active
    # The node's own clock: one frame per cycle (scheduler jitter allowed).
    gaps = [b.uptime_ms - a.uptime_ms for a, b in itertools.pairwise(frames)]
    assert all(CYCLE_MS * 0.5 <= g <= CYCLE_MS * 1.6 for g in gaps), gaps
    # Firmware defaults of the writable points, typed by the model.
    assert _writable(dx, frames[-1]) == [21.0, False, 0.0, "auto", "sim"]
    temperature = frames[-1].values[0]
    assert isinstance(temperature, float)
    assert 15.0 <= temperature <= 30.0


async def test_desired_frame_applied_atomically_and_acknowledged(dx: DxClient) -> None:
    await dx.next_frame()
    desired = [25.5, True, 40.0, "comfort", "a, b %50\u00b0"]
    seq = await dx.write(desired)
    frame = await dx.next_frame(lambda f: f.applied_seq == seq)
    # The first frame that acknowledges the desired frame carries all of it.
    assert _writable(dx, frame) == desired
    assert frame.rejected_frames == 0
    # The entities changed too (what Home Assistant's own esphome integration would show).
    states = {}
    got_all = asyncio.Event()

    def on_state(state: object) -> None:
        key = getattr(state, "key", None)
        if key is not None:
            states[dx.entities[key].object_id] = state
            if {"setpoint", "relay", "mode", "label"} <= states.keys():
                got_all.set()

    dx.api.subscribe_states(on_state)
    await asyncio.wait_for(got_all.wait(), 10)
    assert states["setpoint"].state == 25.5
    assert states["relay"].state is True
    assert states["mode"].state == "comfort"
    assert states["label"].state == "a, b %50\u00b0"


async def test_only_a_desired_frame_that_changes_something_is_answered_at_once(
    dx: DxClient,
) -> None:
    """Timed by the node's own uptime field: a cycle frame follows the previous frame by a
    cycle, an answer by the time the desired frame took to arrive."""
    desired = [26.5, True, 30.0, "comfort", "once"]
    before = await dx.next_frame()
    seq = await dx.write(desired)
    answer = await dx.next_frame(lambda f: f.applied_seq >= seq)
    assert answer.uptime_ms - before.uptime_ms < CYCLE_MS * 3 // 4
    assert _writable(dx, answer) == desired
    # The same values again (Home Assistant's cyclic full state): no extra frame; the next
    # cycle frame acknowledges it.
    last = await dx.next_frame()
    seq = await dx.write(desired)
    ack = await dx.next_frame(lambda f: f.applied_seq >= seq)
    assert ack.uptime_ms - last.uptime_ms >= CYCLE_MS * 3 // 4
    assert ack.seq == last.seq + 1


async def test_empty_desired_value_leaves_point_alone(dx: DxClient) -> None:
    await dx.next_frame()
    seq = await dx.write([None, True, None, None, None])
    frame = await dx.next_frame(lambda f: f.applied_seq == seq)
    assert _writable(dx, frame) == [21.0, True, 0.0, "auto", "sim"]


@pytest.mark.parametrize(
    ("case", "values", "overrides"),
    [
        ("wrong model id", [22.0, True, 10.0, "eco", "x"], {"model": "00000000"}),
        ("too few values", None, {"values": "22,1,10,'eco"}),
        ("too many values", None, {"values": "22,1,10,'eco,'x,"}),
        ("setpoint above max", [99.0, True, 10.0, "eco", "x"], {}),
        ("setpoint off step", [21.3, True, 10.0, "eco", "x"], {}),
        ("unknown option", [22.0, True, 10.0, "turbo", "x"], {}),
        ("text too long", [22.0, True, 10.0, "eco", "x" * 33], {}),
        ("switch not 0/1", None, {"values": "22,2,10,'eco,'x"}),
        ("nan", None, {"values": "nan,1,10,'eco,'x"}),
        ("inf", None, {"values": "inf,1,10,'eco,'x"}),
        ("garbage number", None, {"values": "22abc,1,10,'eco,'x"}),
        ("unquoted string", None, {"values": "22,1,10,eco,'x"}),
        ("bad escape", None, {"values": "22,1,10,'eco,'%G1"}),
        ("bad acquisition", [22.0, True, 10.0, "eco", "x"], {"acquisition": 7}),
    ],
)
async def test_invalid_desired_frame_changes_nothing(
    dx: DxClient, case: str, values: list[object] | None, overrides: dict[str, object]
) -> None:
    before = await dx.next_frame()
    seq = await dx.write(values or [None] * 5, overrides=overrides)
    # The node answers an accepted frame at once; a rejected one only shows in the count.
    after = await dx.next_frame(lambda f: f.rejected_frames > before.rejected_frames)
    assert after.rejected_frames == before.rejected_frames + 1, case
    assert after.applied_seq != seq
    assert (
        _writable(dx, after)
        == _writable(dx, before)
        == [21.0, False, 0.0, "auto", "sim"]
    )
    # Nothing half-applied later either, and a valid frame still works afterwards.
    seq = await dx.write([22.0, None, None, None, None])
    frame = await dx.next_frame(lambda f: f.applied_seq == seq)
    assert _writable(dx, frame) == [22.0, False, 0.0, "auto", "sim"]


async def test_failsafe_after_timeout_and_recovery(dx: DxClient) -> None:
    await dx.next_frame()
    seq = await dx.write([25.0, True, 60.0, "comfort", "kept"])
    await dx.next_frame(lambda f: f.applied_seq == seq)
    # No desired frames from now on: after the timeout the safe values are applied.
    frame = await dx.next_frame(
        lambda f: f.failsafe_active, timeout=FAILSAFE_MS / 1000 + 5
    )
    # setpoint 18, relay off, LED 0, mode eco; the label has no safe value and stays.
    assert _writable(dx, frame) == [18.0, False, 0.0, "eco", "kept"]
    # A desired frame ends the fail-safe and is applied.
    seq = await dx.write([23.0, True, 60.0, "comfort", None])
    frame = await dx.next_frame(lambda f: f.applied_seq == seq)
    assert not frame.failsafe_active
    assert _writable(dx, frame) == [23.0, True, 60.0, "comfort", "kept"]


async def test_acquisition_pause_and_resume(dx: DxClient) -> None:
    await dx.next_frame()
    seq = await dx.write([None] * 5, acquisition=False)
    paused = await dx.next_frame(lambda f: f.applied_seq == seq)
    assert not paused.acquisition_running
    # Sensors sample every second; while paused their values stay put, frames keep flowing.
    frames = [await dx.next_frame() for _ in range(25)]
    assert all(not f.acquisition_running for f in frames)
    assert {f.values[:3] for f in frames} == {paused.values[:3]}
    seq = await dx.write([None] * 5, acquisition=True)
    resumed = await dx.next_frame(lambda f: f.applied_seq == seq)
    assert resumed.acquisition_running
    changed = await dx.next_frame(
        lambda f: f.values[:3] != paused.values[:3], timeout=5
    )
    assert changed.acquisition_running


async def test_local_pause_is_not_undone_by_an_older_desired_frame(
    dx: DxClient,
) -> None:
    before = await dx.next_frame()
    await dx.call("local_pause")
    paused = await dx.next_frame(lambda f: not f.acquisition_running)
    # A desired frame composed before Home Assistant saw the pause does not resume.
    seq = await dx.write([None] * 5, acquisition=True, seen=before.seq)
    frame = await dx.next_frame(lambda f: f.applied_seq == seq)
    assert not frame.acquisition_running
    # Once it has seen the pause, its decision (resume) is applied.
    seq = await dx.write([None] * 5, acquisition=True, seen=paused.seq)
    frame = await dx.next_frame(lambda f: f.applied_seq == seq)
    assert frame.acquisition_running


async def test_local_change_survives_desired_frames_sent_before_it_was_seen(
    dx: DxClient,
) -> None:
    seq = await dx.write([22.0, None, None, None, None])
    await dx.next_frame(lambda f: f.applied_seq == seq)
    before = await dx.next_frame()
    setpoint = dx.point_index("setpoint")
    await dx.call("local_set_setpoint", value=30.0)
    reported = await dx.next_frame(lambda f: f.values[setpoint] == 30.0)
    # Home Assistant had not seen the local change when it composed this frame.
    seq = await dx.write([22.0, None, None, None, None], seen=before.seq)
    frame = await dx.next_frame(lambda f: f.applied_seq == seq)
    assert frame.values[setpoint] == 30.0
    # Having seen it, Home Assistant decides (here: its own value wins by writer priority).
    seq = await dx.write([22.0, None, None, None, None], seen=reported.seq)
    frame = await dx.next_frame(lambda f: f.applied_seq == seq)
    assert frame.values[setpoint] == 22.0


async def test_other_clients_receive_no_frames(dx: DxClient, sim_node: Node) -> None:
    # Home Assistant's own esphome integration introduces itself like this and subscribes to
    # actions and events; frames must never reach it (its event bus and recorder).
    other = DxClient(sim_node, client_info="Home Assistant 2026.10.4")
    await other.api.connect(login=True)
    received: list[HomeassistantServiceCall] = []
    other.api.subscribe_service_calls(received.append)
    try:
        first = await dx.next_frame()
        await dx.next_frame(lambda f: f.seq >= first.seq + 10)
        assert [c for c in received if c.service == FRAME_EVENT] == []
    finally:
        await other.disconnect()


async def test_unreported_local_change_survives_a_desired_frame(dx: DxClient) -> None:
    # The desired frame arrives before the node sent any frame after the local change:
    # the node must still recognise the change as local and keep it.
    seq = await dx.write([22.0, None, None, None, None])
    await dx.next_frame(lambda f: f.applied_seq == seq)
    setpoint = dx.point_index("setpoint")
    for _ in range(10):  # the race is timing-dependent; repeat it
        seen = dx.last_seen
        await dx.call("local_set_setpoint", value=30.0)
        seq = await dx.write([22.0, None, None, None, None], seen=seen)
        frame = await dx.next_frame(lambda f, s=seq: f.applied_seq == s)
        assert frame.values[setpoint] == 30.0
        # Home Assistant, having seen it, sets its value back (its write wins here).
        seq = await dx.write([22.0, None, None, None, None], seen=frame.seq)
        frame = await dx.next_frame(lambda f, s=seq: f.applied_seq == s)
        assert frame.values[setpoint] == 22.0
