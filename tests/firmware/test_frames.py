"""The data_exchange component on a real simulated node, through the bare aioesphomeapi client."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from pathlib import Path
import re
import shutil
import subprocess

from aioesphomeapi import APIClient, HomeassistantServiceCall
import pytest

from custom_components.data_exchange.protocol import (
    CLIENT_INFO_PREFIX,
    FRAME_EVENT,
    PROTOCOL_VERSION,
    NodeFrame,
    PointType,
    Refusal,
)
from tests.firmware.conftest import CYCLE_MS, FAILSAFE_MS
from tests.harness.dx_client import DxClient
from tests.harness.node import FIRMWARE_DIR, Node, NodeBuild, NodeFactory, work_dir
from tests.harness.yaml_gen import peer_node

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
    # Every frame is numbered, change frames (sent between cycles) included.
    seqs = [f.seq for f in dx.frames if first.seq <= f.seq <= frames[-1].seq]
    assert seqs == list(range(first.seq, frames[-1].seq + 1))
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
    # Protocol 2: the count is of desired frames *refused* (key r), and key e names the
    # last refusal; none since boot here.
    assert frame.refused_frames == 0
    assert frame.refusal is None
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
    # No full frame in between (sensor changes may have gone out in change frames).
    assert all(f.indices is not None for f in dx.frames if last.seq < f.seq < ack.seq)


async def test_empty_desired_value_leaves_point_alone(dx: DxClient) -> None:
    await dx.next_frame()
    seq = await dx.write([None, True, None, None, None])
    frame = await dx.next_frame(lambda f: f.applied_seq == seq)
    assert _writable(dx, frame) == [21.0, True, 0.0, "auto", "sim"]


# Writable points in a desired frame: setpoint 0, relay 1, led_brightness 2, mode 3, label 4.
# Protocol 2: a refused frame names the point (its writable index; None for the frame) and
# the reason in key e of the node's frames.
@pytest.mark.parametrize(
    ("case", "values", "overrides", "point", "reason"),
    [
        (
            "wrong model id",
            [22.0, True, 10.0, "eco", "x"],
            {"model": "00000000"},
            None,
            "model",
        ),
        ("too few values", None, {"values": "22,1,10,'eco"}, None, "count"),
        ("too many values", None, {"values": "22,1,10,'eco,'x,"}, None, "count"),
        ("setpoint above max", [99.0, True, 10.0, "eco", "x"], {}, 0, "range"),
        ("setpoint off step", [21.3, True, 10.0, "eco", "x"], {}, 0, "step"),
        ("unknown option", [22.0, True, 10.0, "turbo", "x"], {}, 3, "option"),
        ("text too long", [22.0, True, 10.0, "eco", "x" * 33], {}, 4, "length"),
        ("switch not 0/1", None, {"values": "22,2,10,'eco,'x"}, 1, "format"),
        ("nan", None, {"values": "nan,1,10,'eco,'x"}, 0, "format"),
        ("inf", None, {"values": "inf,1,10,'eco,'x"}, 0, "format"),
        ("garbage number", None, {"values": "22abc,1,10,'eco,'x"}, 0, "format"),
        ("unquoted string", None, {"values": "22,1,10,eco,'x"}, 3, "format"),
        ("bad escape", None, {"values": "22,1,10,'eco,'%G1"}, 4, "format"),
        (
            "bad acquisition",
            [22.0, True, 10.0, "eco", "x"],
            {"acquisition": 7},
            None,
            "acquisition",
        ),
        # Protocol 2: sequence numbers are decimal strings of uint64; anything else is a
        # malformed frame (a seq that cannot be read is reported as desired frame 0).
        (
            "seq not a number",
            [22.0, True, 10.0, "eco", "x"],
            {"seq": "12a"},
            None,
            "format",
        ),
        ("seq negative", [22.0, True, 10.0, "eco", "x"], {"seq": "-1"}, None, "format"),
        ("seq empty", [22.0, True, 10.0, "eco", "x"], {"seq": ""}, None, "format"),
        (
            "seq over uint64",
            [22.0, True, 10.0, "eco", "x"],
            {"seq": str(2**64)},
            None,
            "format",
        ),
        (
            "seen not a number",
            [22.0, True, 10.0, "eco", "x"],
            {"seen": "0x10"},
            None,
            "format",
        ),
    ],
)
async def test_invalid_desired_frame_changes_nothing(
    sanitized_dx: DxClient,
    case: str,
    values: list[object] | None,
    overrides: dict[str, object],
    point: int | None,
    reason: str,
) -> None:
    # The node built with ASan, LSan and UBSan: any report fails the test (conftest.py).
    dx = sanitized_dx
    before = await dx.next_frame()
    seq = await dx.write(values or [None] * 5, overrides=overrides)
    # The node answers an accepted frame at once; a refused one only shows in the count.
    after = await dx.next_frame(lambda f: f.refused_frames > before.refused_frames)
    assert after.refused_frames == before.refused_frames + 1, case
    assert after.applied_seq != seq
    numbered = str(overrides.get("seq", seq))
    expected_seq = int(numbered) if numbered.isdigit() and int(numbered) < 2**64 else 0
    assert after.refusal == Refusal(expected_seq, point, reason), case
    assert (
        _writable(dx, after)
        == _writable(dx, before)
        == [21.0, False, 0.0, "auto", "sim"]
    )
    # Nothing half-applied later either, and a valid frame still works afterwards.
    seq = await dx.write([22.0, None, None, None, None])
    frame = await dx.next_frame(lambda f: f.applied_seq == seq)
    assert _writable(dx, frame) == [22.0, False, 0.0, "auto", "sim"]
    # The last refusal stays in the frames (it is the last one since boot), unchanged.
    assert frame.refusal == after.refusal
    assert frame.refused_frames == after.refused_frames


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
    # Full frames say which points hold the safe value the fail-safe set ("y") ...
    safe = {dx.point_index(p) for p in ("setpoint", "relay", "led_brightness", "mode")}
    assert frame.safe_points == safe
    # ... and a point changed on the device meanwhile no longer does.
    await dx.call("local_set_setpoint", value=24.5)
    frame = await dx.next_frame(lambda f: f.full and f.values[5] == 24.5)
    assert frame.failsafe_active
    assert frame.safe_points == safe - {dx.point_index("setpoint")}
    # A desired frame ends the fail-safe and is applied; "y" is gone with it.
    seq = await dx.write([23.0, True, 60.0, "comfort", None])
    frame = await dx.next_frame(lambda f: f.applied_seq == seq)
    assert not frame.failsafe_active
    assert frame.safe_points is None
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


# ---- protocol 2 (issue #13) ----


def _warnings(node: Node, since: int, words: str) -> list[str]:
    """The node's warning lines containing ``words`` logged after byte ``since``."""
    with node.log_path.open("rb") as log:
        log.seek(since)
        text = log.read().decode(errors="replace")
    return [line for line in text.splitlines() if "[W]" in line and words in line]


def _log_size(node: Node) -> int:
    return node.log_path.stat().st_size


async def test_describe_answer_says_where_the_node_stands(
    dx: DxClient, sim_node: Node
) -> None:
    """The model event carries the node's boot id, uptime and last frame number (b, u, s):
    Home Assistant knows before its first desired frame whether the node restarted.
    Its token (k) changes with every boot as well."""
    assert dx.model is not None
    assert PROTOCOL_VERSION == 5
    boot = dx.model.boot_id
    assert re.fullmatch(r"[0-9a-f]{16}", boot), boot
    assert re.fullmatch(r"[0-9a-f]{16}", dx.model.token)  # k, drawn per boot too
    before = await dx.next_frame(lambda f: f.seq >= 3)
    again = await dx.describe()
    after = await dx.next_frame()
    assert before.seq <= again.node_seq < after.seq
    assert before.uptime_ms <= again.uptime_ms <= after.uptime_ms
    assert again.boot_id == boot
    assert again == dx.model  # b, u, s are not part of the model's identity
    # Another connection to the same boot: the same boot id, the frame count goes on.
    await dx.disconnect()
    other = await DxClient(sim_node).connect()
    try:
        assert other.model is not None
        assert other.model.boot_id == boot
        assert other.model.node_seq >= after.seq
    finally:
        await other.disconnect()
    # A restart (preferences kept): another boot id, frames counted from 1 again.
    sim_node.stop()
    sim_node.start()
    restarted = await DxClient(sim_node).connect()
    try:
        assert restarted.model is not None
        assert restarted.model.boot_id != boot
        assert re.fullmatch(r"[0-9a-f]{16}", restarted.model.boot_id)
        assert restarted.model.token != dx.model.token
        first = await restarted.next_frame()
        assert restarted.model.node_seq < first.seq < after.seq
    finally:
        await restarted.disconnect()


async def test_value_set_off_step_on_the_device_is_accepted_back(
    dx: DxClient,
) -> None:
    """(#13, 1) A number set on the device off its step (ESPHome checks only min/max) and
    sent back as the desired value does not block the frame: a relay switch in the same
    frame arrives."""
    setpoint = dx.point_index("setpoint")
    relay = dx.point_index("relay")
    before = await dx.next_frame()
    await dx.call("local_set_setpoint", value=21.3)  # the setpoint's step is 0.5
    reported = await dx.next_frame(lambda f: f.values[setpoint] == 21.3)
    # Home Assistant adopted the local change (21.3, as the node holds it) and switches on.
    seq = await dx.write([21.3, True, None, None, None], seen=reported.seq)
    frame = await dx.next_frame(lambda f: f.applied_seq == seq)
    assert frame.values[setpoint] == 21.3
    assert frame.values[relay] is True
    assert frame.refused_frames == before.refused_frames
    assert frame.refusal is None
    # The cyclic full state keeps carrying it: accepted every time.
    for _ in range(5):
        seq = await dx.write([21.3, True, None, None, None])
        frame = await dx.next_frame(lambda f, s=seq: f.applied_seq == s)
    assert frame.refused_frames == before.refused_frames
    # Control: once the node holds another value, 21.3 is off step again and refused.
    seq = await dx.write([22.0, None, None, None, None])
    await dx.next_frame(lambda f: f.applied_seq == seq)
    seq = await dx.write([21.3, None, None, None, None])
    frame = await dx.next_frame(lambda f: f.refusal is not None)
    assert frame.refusal == Refusal(seq, 0, "step")
    assert frame.values[setpoint] == 22.0


async def test_refused_frames_named_logged_once_and_keep_failsafe_off(
    dx: DxClient, sim_node: Node
) -> None:
    """(#13, 1 and 9) A frame with one bad value is refused whole and names the point and
    reason; repeated identical refusals are logged as a warning once; refused frames still
    count as frames from Home Assistant, so the fail-safe stays off while they arrive."""
    before = await dx.next_frame()
    assert not before.failsafe_active
    log_start = _log_size(sim_node)
    first_index = len(dx.frames)
    bad = [25.5, True, 40.0, "comfort", "x" * 33]  # the label takes at most 32 bytes
    refused: list[NodeFrame] = []
    deadline = (
        before.uptime_ms + 2 * FAILSAFE_MS
    )  # refused frames for twice the timeout
    while not refused or refused[-1].uptime_ms < deadline:
        seq = await dx.write(bad)
        frame = await dx.next_frame(
            lambda f, s=seq: f.refusal is not None and f.refusal.seq == s
        )
        assert frame.refusal == Refusal(seq, 4, "length")
        # Whole: nothing of the frame applied, not even the valid values.
        assert _writable(dx, frame) == [21.0, False, 0.0, "auto", "sim"]
        assert frame.applied_seq == before.applied_seq
        refused.append(frame)
    assert len(refused) >= 2 * FAILSAFE_MS // CYCLE_MS // 2  # about one per cycle
    assert refused[-1].refused_frames == before.refused_frames + len(refused)
    assert not any(f.failsafe_active for f in dx.frames[first_index:])
    warnings = _warnings(sim_node, log_start, "Refused desired frame")
    assert len(warnings) == 1, warnings
    assert "length" in warnings[0]
    assert "writable point 4" in warnings[0]
    # Another point and reason is news: logged again.
    seq = await dx.write([99.0, None, None, None, None])
    frame = await dx.next_frame(lambda f: f.refusal == Refusal(seq, 0, "range"))
    warnings = _warnings(sim_node, log_start, "Refused desired frame")
    assert len(warnings) == 2, warnings
    assert "range" in warnings[1]
    assert "writable point 0" in warnings[1]
    # Control: with no frame at all the fail-safe engages, a timeout after the last one.
    failsafe = await dx.next_frame(
        lambda f: f.failsafe_active, timeout=FAILSAFE_MS / 1000 + 5
    )
    assert failsafe.uptime_ms - frame.uptime_ms >= FAILSAFE_MS - 2 * CYCLE_MS


async def test_sequence_numbers_are_64_bit_decimal_strings(dx: DxClient) -> None:
    """(#13, 6) seq and seen travel as decimal strings of uint64: past 2^31 (the API's
    int32) and 2^32 (a 32-bit counter) they are taken as they are."""
    before = await dx.next_frame()
    brightness = dx.point_index("led_brightness")
    for n, seq in enumerate((2**31, 2**32 + 5, 2**40, 2**63, 2**64 - 1), start=1):
        # A value that changes, so the node answers at once with the frame number applied.
        await dx.write([None, None, float(n), None, None], overrides={"seq": str(seq)})
        frame = await dx.next_frame(lambda f, s=seq: f.applied_seq == s)
        assert frame.values[brightness] == float(n)
    assert frame.refused_frames == before.refused_frames
    assert frame.refusal is None
    # seen is compared as 64 bits: a local change reported in frame k is decided by a
    # desired frame with seen >= k. 2^32 would be 0 if cut to 32 bits (change kept).
    setpoint = dx.point_index("setpoint")
    for seen in (2**32, 2**63):
        await dx.call("local_set_setpoint", value=30.0)
        await dx.next_frame(lambda f: f.values[setpoint] == 30.0)
        seq = await dx.write([22.0, None, None, None, None], seen=seen)
        frame = await dx.next_frame(lambda f, s=seq: f.applied_seq == s)
        assert frame.values[setpoint] == 22.0, seen
    # A seq that is no number is refused as malformed (and cannot be numbered: 0).
    await dx.write([23.0, None, None, None, None], overrides={"seq": "2^63"})
    frame = await dx.next_frame(lambda f: f.refusal is not None)
    assert frame.refusal == Refusal(0, None, "format")
    assert frame.values[setpoint] == 22.0


# A node whose points are all read-only sensors (no writable point: the per-cycle check for
# local changes encodes writable points only, so here it encodes nothing).
QUIET_YAML = """\
esphome:
  name: quiet
host:
logger:
  level: WARN
api:
  reboot_timeout: 0s
external_components:
  - source:
      type: local
      path: {components}
    components: [data_exchange]
sensor:
{sensors}
data_exchange:
  cycle: 50ms
  points:
{points}
"""
QUIET_SENSORS = 4

# Counts the node's calls of strtof (LD_PRELOAD) in a shared 8-byte file. The node calls
# it only to format floats (the shortest decimal that reads back the same: at least one
# call per number encoded) and to parse desired numbers; this test sends none.
STRTOF_COUNTER_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

static uint64_t *counter;
static float (*real_strtof)(const char *, char **);

__attribute__((constructor)) static void init(void) {
  real_strtof = (float (*)(const char *, char **))dlsym(RTLD_NEXT, "strtof");
  const char *path = getenv("DX_STRTOF_COUNT");
  if (path == NULL)
    return;
  int fd = open(path, O_RDWR | O_CREAT, 0600);
  if (fd < 0)
    return;
  if (ftruncate(fd, sizeof(uint64_t)) == 0) {
    void *p = mmap(NULL, sizeof(uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p != MAP_FAILED)
      counter = (uint64_t *)p;
  }
  close(fd);
}

float strtof(const char *text, char **end) {
  if (counter != NULL)
    __atomic_add_fetch(counter, 1, __ATOMIC_RELAXED);
  return real_strtof(text, end);
}
"""


def _quiet_node_yaml() -> Path:
    sensors = "\n".join(
        f"  - platform: template\n    id: s{i}\n    name: S{i}\n"
        f"    lambda: return {i + 1}.0f / 3.0f;\n    update_interval: 1s"
        for i in range(QUIET_SENSORS)
    )
    points = "\n".join(f"    - sensor: s{i}" for i in range(QUIET_SENSORS))
    text = QUIET_YAML.format(
        components=FIRMWARE_DIR / "components", sensors=sensors, points=points
    )
    path = work_dir() / "firmware-tests" / "quiet.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def _strtof_counter() -> Path:
    """The counting library, compiled once per source text."""
    # scripts/setup installs gcc (scripts/lib.sh, DX_PACKAGES): a missing compiler is a
    # broken environment, not a reason to skip.
    compiler = shutil.which("gcc") or shutil.which("cc")
    assert compiler is not None, "no C compiler for the strtof counter (scripts/setup)"
    source = STRTOF_COUNTER_C.encode()
    folder = work_dir() / "firmware-tests"
    folder.mkdir(parents=True, exist_ok=True)
    library = folder / f"strtof-count-{hashlib.sha256(source).hexdigest()[:12]}.so"
    if not library.exists():
        c_file = folder / "strtof-count.c"
        c_file.write_bytes(source)
        partial = library.with_suffix(".partial")
        command = [compiler, "-shared", "-fPIC", "-O2", "-o", str(partial)]
        subprocess.run([*command, str(c_file), "-ldl"], check=True, timeout=60)
        partial.rename(library)
    return library


def _strtof_calls(node: Node) -> int:
    path = node.state_dir / "strtof.count"
    return int.from_bytes(path.read_bytes()[:8] or b"\0", "little")


async def test_no_frame_is_encoded_without_a_data_exchange_client(
    node_factory: NodeFactory,
) -> None:
    """(#13, 9) Without a Data Exchange client the node encodes no frame each cycle.

    Nothing goes on the wire either way, so the encoding itself is observed: the node's
    calls of strtof, which it makes for every number it puts in a frame, are counted by a
    preloaded library. Home Assistant's esphome integration (another API client,
    subscribed to events) stays connected throughout. On the firmware before 10be348,
    which encoded every cycle and then found no client, that count is about 360.
    """
    build = node_factory.build(_quiet_node_yaml())
    library = _strtof_counter()
    # The program, started through a script that preloads the counter (exec: same pid).
    wrapper = build.program.with_name("program-counting-strtof")
    wrapper.write_text(
        "#!/bin/sh\n"
        f'LD_PRELOAD="{library}" DX_STRTOF_COUNT="$HOME/strtof.count" '
        f'exec "{build.program}" "$@"\n'
    )
    wrapper.chmod(0o755)
    node = Node(NodeBuild(build.yaml_path, wrapper, build.name))
    node_factory.nodes.append(node)
    node.start()
    other = APIClient(
        node.host, node.port, None, client_info="Home Assistant 2026.10.4"
    )
    await other.connect(login=True)
    other.subscribe_service_calls(lambda call: None)
    try:
        await asyncio.sleep(0.5)  # past start-up and the first samples
        before = _strtof_calls(node)
        await asyncio.sleep(2)  # 40 cycles
        assert _strtof_calls(node) - before == 0, "encoded without a client"

        # The control: with a Data Exchange client, every frame's numbers are encoded.
        dx = APIClient(
            node.host, node.port, None, client_info=f"{CLIENT_INFO_PREFIX} tests"
        )
        frames: list[HomeassistantServiceCall] = []
        twenty = asyncio.Event()

        def on_call(call: HomeassistantServiceCall) -> None:
            frames.append(call)
            if len(frames) >= 20:
                twenty.set()

        await dx.connect(login=True)
        start = _strtof_calls(node)
        dx.subscribe_service_calls(on_call)
        await asyncio.wait_for(twenty.wait(), 10)
        assert _strtof_calls(node) - start >= QUIET_SENSORS * len(frames)
        await dx.disconnect()

        # The client gone: no encoding again.
        await asyncio.sleep(0.5)
        before = _strtof_calls(node)
        await asyncio.sleep(2)
        assert _strtof_calls(node) - before == 0, "encoded after the client left"
    finally:
        await other.disconnect()


async def test_a_change_goes_out_at_once_in_a_change_frame(dx: DxClient) -> None:
    """Protocol 3: a point that changes on the node is sent at once, alone, in a change
    frame (key i: its position), not with the next cycle frame; the cycle frame still
    carries every point.

    A cycle frame due in the very loop pass of the change carries it first (rare at a
    100 ms cycle): of three changes, each must be seen, and at least one first in a change
    frame."""
    assert dx.model is not None
    index = [name for name, _ in SIM_POINTS].index("setpoint")
    firsts = []
    for value in (33.5, 34.0, 34.5):
        await dx.next_frame()
        await dx.call("local_set_setpoint", value=value)
        first = await dx.next_frame(
            lambda f, v=value: f.values[index] == v, changes=True
        )
        firsts.append(first)
        if first.indices is not None:
            assert index in first.indices  # the change, not the full state
    assert any(f.indices is not None for f in firsts)
    full = await dx.next_frame()
    assert full.indices is None
    assert full.values[index] == 34.5
    assert len(full.values) == len(SIM_POINTS)


async def test_points_set_in_one_pass_go_out_in_one_change_frame(
    node_factory: NodeFactory,
) -> None:
    """Protocol 4, change_delay 0 (the default): the points published in one main-loop
    pass (here one interval callback setting four numbers, as a sensor component publishes
    its values in one update) reach the client in one change frame, not one frame each.

    A cycle frame due in that very pass carries them first (1 s cycle, 50 ms tick: rare);
    of three bursts at least one must come as one change frame with all four points."""
    node = node_factory.start(peer_node(4, True, 50, 1000))
    dx = await DxClient(node).connect()
    try:
        together = []
        for base in (100, 200, 300):
            await dx.next_frame()
            await dx.call("local_burst", ticks=1, base=base)
            want = (float(base + 1),) * 4
            first = await dx.next_frame(lambda f, w=want: f.values == w, changes=True)
            together.append(first.indices)
        assert (0, 1, 2, 3) in together, together
    finally:
        await dx.disconnect()
