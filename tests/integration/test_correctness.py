"""Exchange correctness (issue 13): sequences that broke "nothing lost, nothing partial".

Each test drives Home Assistant and a real node (a host build of our firmware) through one
of the sequences that failed before the rules in docs/exchange.md were implemented; each
fails on the code before them (named in its docstring). Local changes are made as a person
or a local automation on the node makes them: through the node's own API actions, by a
second API client (which is not a Data Exchange client and never sees a frame).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import copy
import logging
import os
import signal
import time
from types import SimpleNamespace
from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.data_exchange import (
    connection as connection_module,
    desired as desired_module,
    frame_mode as frame_mode_module,
    manager as manager_module,
    points as points_module,
)
from custom_components.data_exchange.const import DOMAIN
from custom_components.data_exchange.manager import NodeManager
from custom_components.data_exchange.values import CHANGED_BY_NODE
from tests.conftest import FIRMWARE, NODES
from tests.harness.node import Node, NodeFactory, firmware_variant
from tests.harness.peer import Peer
from tests.integration.conftest import (
    SIM,
    FrameWatch,
    entity_ids,
    problems_in_log,
    setup_node,
    until,
)

# Short writer-priority delay: a local change made after it is the device's decision.
DELAY = 0.5
OPTIONS = {"writer_priority_delay": DELAY}


def person_at(node: Node) -> Peer:
    """A person at the device: the node's own actions and states, over a plain API client."""
    return Peer(node, "person at device", states=True)


@pytest.fixture
def edge_node(node_factory: NodeFactory) -> Node:
    return node_factory.start(NODES / "edge.yaml")


@pytest.fixture
async def device(edge_node: Node) -> AsyncIterator[Peer]:
    async with person_at(edge_node) as hand:
        yield hand


def find(hass: HomeAssistant, entry: MockConfigEntry, domain: str, suffix: str) -> str:
    return next(e for e in entity_ids(hass, entry, domain) if e.endswith(suffix))


async def set_number(hass: HomeAssistant, entity_id: str, value: float) -> None:
    await hass.services.async_call(
        "number", "set_value", {"entity_id": entity_id, "value": value}, blocking=True
    )


async def turn(hass: HomeAssistant, entity_id: str, on: bool) -> None:
    await hass.services.async_call(
        "switch",
        "turn_on" if on else "turn_off",
        {"entity_id": entity_id},
        blocking=True,
    )


def desired(manager: NodeManager, object_id: str) -> Any:
    point = next(p for p in manager.points if p.info.object_id == object_id)
    stamped = manager.engine.desired.get(point.index)
    return None if stamped is None else stamped


async def test_value_on_a_fine_step_is_accepted_by_the_node(
    hass: HomeAssistant,
    edge_node: Node,
    device: Peer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """163.85 on 0..1000 step 0.01: Home Assistant accepted it, the node's float check
    refused the whole frame (before: every later write blocked too)."""
    entry = await setup_node(hass, edge_node, **OPTIONS)
    manager: NodeManager = entry.runtime_data
    await set_number(hass, find(hass, entry, "number", "fine"), 163.85)
    await turn(hass, find(hass, entry, "switch", "relay"), True)
    await until(
        hass,
        lambda: (
            device.states.get("fine") == pytest.approx(163.85, abs=1e-4)
            and device.states.get("relay") is True
        ),
        what="163.85 and the relay on the node",
    )
    assert manager.engine.stats.refused_by_node == 0
    assert hass.states.get(find(hass, entry, "number", "fine")).state == "163.85"
    assert not problems_in_log(caplog.records)


async def test_off_step_value_set_on_the_device_blocks_no_write(
    hass: HomeAssistant,
    edge_node: Node,
    device: Peer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A local automation sets 'fine' off its step. Before: Home Assistant adopted it as
    the desired value after the writer-priority delay, the node refused every desired frame
    for it, a relay write from Home Assistant never arrived."""
    entry = await setup_node(hass, edge_node, **OPTIONS)
    manager: NodeManager = entry.runtime_data
    watch = FrameWatch(manager)
    fine = find(hass, entry, "number", "fine")
    await device.call("local_set_fine", value=163.855)
    await until(hass, lambda: hass.states.get(fine).state == "163.855")
    # Well past the writer-priority delay: the value is the device's decision.
    await asyncio.sleep(DELAY * 3)
    await watch.until(lambda: True)
    assert desired(manager, "fine") is None  # never a desired value the node refuses
    await turn(hass, find(hass, entry, "switch", "relay"), True)
    await until(hass, lambda: device.states.get("relay") is True, what="relay on")
    # A few more cycles: nothing refused, the device keeps its own value.
    frames = watch.events
    await watch.until(lambda: watch.events >= frames + 5)
    assert manager.engine.stats.refused_by_node == 0
    assert device.states["fine"] == pytest.approx(163.855, abs=1e-4)
    assert hass.states.get(fine).attributes["changed_by"] == CHANGED_BY_NODE
    assert not problems_in_log(caplog.records)


async def test_refusal_is_named_shown_dropped_and_unblocks(
    hass: HomeAssistant,
    edge_node: Node,
    device: Peer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The safety net: Home Assistant's rule drifted from the node's (simulated by
    accepting everything here; the node is real). The node refuses, names the point and
    reason; Home Assistant shows it (entity, repair issue, one warning), drops that value
    and the rest of its grouped write, and every other point flows again."""
    monkeypatch.setattr(points_module, "refusal", lambda limits, value: None)
    monkeypatch.setattr(desired_module, "refusal", lambda limits, value: None)
    entry = await setup_node(hass, edge_node, **OPTIONS)
    manager: NodeManager = entry.runtime_data
    relay = find(hass, entry, "switch", "relay")
    refused = find(hass, entry, "sensor", "refused_desired_frames")
    caplog.clear()
    # A grouped write with the bad value: all-or-nothing, so the relay stays off.
    await hass.services.async_call(
        DOMAIN,
        "write",
        {"values": {find(hass, entry, "number", "fine"): 163.855, relay: True}},
        blocking=True,
    )
    await until(
        hass,
        lambda: hass.states.get(refused).state not in ("0", "unknown"),
        what="refusal shown",
    )
    state = hass.states.get(refused)
    assert state.attributes["point"] == "Fine"
    assert state.attributes["reason"] == "step"
    issue = ir.async_get(hass).async_get_issue(DOMAIN, f"refused_{entry.entry_id}")
    assert issue is not None
    assert issue.translation_placeholders["point"] == "Fine"
    assert desired(manager, "fine") is None or desired(
        manager, "fine"
    ).value == pytest.approx(100.0)
    assert device.states["relay"] is False  # the group's other value went with it
    # A later, separate write goes through.
    await turn(hass, relay, True)
    await until(hass, lambda: device.states.get("relay") is True, what="relay on")
    warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and "refused" in r.msg
    ]
    assert len(warnings) == 1
    assert device.states["fine"] == pytest.approx(100.0)


async def test_write_while_offline_after_an_earlier_local_change_is_applied(
    hass: HomeAssistant,
    sim_node: Node,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before: the first desired frame of a session carried seen=0, the node skipped the
    point it had changed locally earlier in its uptime, and Home Assistant then adopted the
    node's old value: the write made while the node was offline was lost."""
    monkeypatch.setattr(connection_module, "KEEPALIVE", 0.5)
    entry = await setup_node(hass, sim_node, **OPTIONS)
    manager: NodeManager = entry.runtime_data
    setpoint = find(hass, entry, "number", "setpoint")
    device = await person_at(sim_node).start()
    await device.call("local_set_setpoint", value=30.0)
    await until(
        hass,
        lambda: (d := desired(manager, "setpoint")) is not None and d.value == 30.0,
        what="local change adopted",
    )
    await device.disconnect()
    assert sim_node.process is not None
    os.kill(sim_node.process.pid, signal.SIGSTOP)
    try:
        await until(hass, lambda: not manager.connected, within=20, what="offline")
        await set_number(hass, setpoint, 27.5)  # accepted while the node is away
    finally:
        os.kill(sim_node.process.pid, signal.SIGCONT)
    await until(hass, lambda: manager.connected, within=30, what="back")
    back = await person_at(sim_node).start()
    try:
        await until(
            hass,
            lambda: (
                back.states.get("setpoint") == 27.5
                and hass.states.get(setpoint).state == "27.5"
            ),
            what="offline write on the node",
        )
        # And it stays: no later frame takes the old value back.
        watch = FrameWatch(manager)
        await watch.until(lambda: watch.events >= 10)
        assert back.states["setpoint"] == 27.5
        assert desired(manager, "setpoint").changed_by != CHANGED_BY_NODE
    finally:
        await back.disconnect()
    assert not problems_in_log(caplog.records)


async def test_clock_step_does_not_overrule_a_local_change(
    hass: HomeAssistant,
    sim_node: Node,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before: writer priority compared wall-clock times; a clock stepped back an hour
    (NTP at boot) made Home Assistant's write win against a later local change for that
    hour. Now rules use monotonic time; the wall clock is for display only."""
    wall = SimpleNamespace(offset=0.0)
    fake_time = SimpleNamespace(
        time=lambda: time.time() + wall.offset, monotonic=time.monotonic
    )
    for module in (
        manager_module,
        frame_mode_module,
    ):  # every clock of a write or frame
        monkeypatch.setattr(module, "time", fake_time)
    entry = await setup_node(hass, sim_node, **OPTIONS)
    manager: NodeManager = entry.runtime_data
    setpoint = find(hass, entry, "number", "setpoint")
    device = await person_at(sim_node).start()
    try:
        await set_number(hass, setpoint, 22.0)
        await until(
            hass, lambda: device.states.get("setpoint") == 22.0, what="write applied"
        )
        wall.offset = -3600.0  # the clock steps back an hour
        await asyncio.sleep(DELAY * 3)  # past the writer-priority delay, on purpose
        await device.call("local_set_setpoint", value=31.0)
        await until(
            hass,
            lambda: (d := desired(manager, "setpoint")) is not None and d.value == 31.0,
            what="local change adopted",
        )
        watch = FrameWatch(manager)
        await watch.until(lambda: watch.events >= 10)
        assert device.states["setpoint"] == 31.0
        assert hass.states.get(setpoint).attributes["changed_by"] == CHANGED_BY_NODE
    finally:
        await device.disconnect()
    assert not problems_in_log(caplog.records)


async def test_large_number_is_kept_as_the_node_holds_it(
    hass: HomeAssistant,
    edge_node: Node,
    device: Peer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Before: 123456789 was kept as a double; the node held 123456792 (32-bit float), so
    after the writer-priority delay the value was re-attributed to the node."""
    entry = await setup_node(hass, edge_node, **OPTIONS)
    manager: NodeManager = entry.runtime_data
    big = find(hass, entry, "number", "big")
    await set_number(hass, big, 123456789)
    # aioesphomeapi shows a float state to 7 digits (123456800); the node holds 123456792.
    await until(
        hass,
        lambda: device.states.get("big") == pytest.approx(123456792.0, rel=1e-7),
        what="the float on the node",
    )
    await asyncio.sleep(DELAY * 3)  # past the writer-priority delay, on purpose
    watch = FrameWatch(manager)
    await watch.until(lambda: watch.events >= 5)
    state = hass.states.get(big)
    assert float(state.state) == 123456790.0
    assert state.attributes["changed_by"] != CHANGED_BY_NODE
    assert desired(manager, "big").changed_by != CHANGED_BY_NODE
    assert not problems_in_log(caplog.records)


@pytest.mark.parametrize(
    ("node_seq", "desired_seq"),
    [
        (2**31 - 15, 2**31 - 15),  # the old int32 action argument
        (2**32 - 15, 2**32 - 15),  # the old 32-bit frame counter
    ],
)
async def test_counters_pass_their_old_limits(
    hass: HomeAssistant,
    node_factory: NodeFactory,
    caplog: pytest.LogCaptureFixture,
    node_seq: int,
    desired_seq: int,
) -> None:
    """Before: the frame counter (uint32) wrapped after 497 days at a 10 ms cycle and every
    frame was then discarded as out of order; the desired frame number (int32 argument)
    raised ValueError past 2^31 and no desired frame was sent again. The node starts its
    counter near the limit (test-only hook DX_FRAME_SEQ), Home Assistant its own."""
    node = Node(
        node_factory.build(NODES / "edge.yaml"), env={"DX_FRAME_SEQ": str(node_seq)}
    )
    node_factory.nodes.append(node)
    node.start()
    entry = await setup_node(hass, node, **OPTIONS)
    manager: NodeManager = entry.runtime_data
    manager.engine.desired_seq = desired_seq
    watch = FrameWatch(manager)
    relay = find(hass, entry, "switch", "relay")
    hand = await person_at(node).start()
    try:
        # Both counters across their old limits, with writes on each side. The node's
        # frames (one per cycle) get there by themselves; Home Assistant's desired frames
        # go out for writes (a node that holds every desired value gets only heartbeats),
        # so writes take them across.
        for n in range(60):
            state = n % 2 == 0
            await turn(hass, relay, state)
            await until(
                hass,
                lambda state=state: hand.states.get("relay") is state,
                what=f"relay {state}",
            )
            if manager.engine.desired_seq > desired_seq + 30 and n % 2:
                break
        await watch.until(lambda: manager.engine.stats.last_seq > node_seq + 30)
        assert manager.engine.desired_seq > desired_seq + 30
    finally:
        await hand.disconnect()
    stats = manager.engine.stats
    assert stats.last_seq > 2**31
    assert (stats.duplicates, stats.out_of_order, stats.refused_by_node) == (0, 0, 0)
    assert manager.engine.acked_seq > desired_seq + 15
    assert not problems_in_log(caplog.records)


async def test_entity_mode_keeps_no_entry_per_write(
    hass: HomeAssistant, plain_node: Node
) -> None:
    """Before: every entity-mode write stayed in the engine's list of values not yet sent
    until a reconnect (100,000 writes, 100,000 entries)."""
    entry = await setup_node(hass, plain_node)
    manager: NodeManager = entry.runtime_data
    relay = find(hass, entry, "switch", "relay")
    for i in range(200):
        await turn(hass, relay, i % 2 == 0)
    assert len(manager.engine._unsent) == 0


async def test_firmware_update_is_not_malformed_input(
    hass: HomeAssistant,
    node_factory: NodeFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Before: after a firmware update, the node's frames of the new model arrived while
    Home Assistant read the model again, and were counted and logged as malformed."""
    sim = node_factory.start(FIRMWARE / "sim-node.yaml", **SIM)
    reduced_build = node_factory.build(
        firmware_variant(
            "sim-node-reduced",
            "sim-node.yaml",
            ["    - sensor: pressure", "    - text: label"],
        ),
        **SIM,
    )
    entry = await setup_node(hass, sim)
    caplog.clear()
    sim.stop()
    reduced = Node(reduced_build, port=sim.port, mac=sim.mac)
    node_factory.nodes.append(reduced)
    reduced.start()
    await until(
        hass,
        lambda: (
            (c := getattr(entry, "runtime_data", None)) is not None
            and c.connected
            and len(c.points) == 8
            and c.stale_reason is None
        ),
        within=30,
        what="the new firmware's points live",
    )
    assert entry.runtime_data.malformed_frames == 0
    # Our log lines only: asyncio's slow-callback warnings on a loaded machine name the
    # task, which is named after this test.
    ours = [r for r in caplog.records if r.name.startswith("custom_components.")]
    assert not [r for r in ours if "malformed" in r.getMessage()]
    assert not problems_in_log(caplog.records)


async def test_a_pending_save_is_never_postponed(
    hass: HomeAssistant, sim_node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: every changed frame called Store.async_delay_save(..., 30), which moves a
    pending save 30 s on; with a sensor changing every second the Store was written only at
    stop. Now a save is scheduled for the earliest deadline and only ever brought forward:
    reported values within 10 minutes, desired values within 1 s."""
    entry = await setup_node(hass, sim_node)
    manager: NodeManager = entry.runtime_data
    calls: list[tuple[float, float | None]] = []  # (deadline, pending deadline then)
    pending: list[float | None] = [None]
    original = manager.store.store.async_delay_save
    data_to_store = manager.store._data

    def delay_save(data_func: Any, delay: float = 0) -> None:
        deadline = hass.loop.time() + delay
        calls.append((deadline, pending[0]))
        pending[0] = deadline
        original(data_func, delay)

    def written() -> dict[str, Any]:
        pending[0] = None  # the Store writes now
        return data_to_store()

    monkeypatch.setattr(manager.store.store, "async_delay_save", delay_save)
    monkeypatch.setattr(manager.store, "_data", written)
    watch = FrameWatch(manager)
    # Thirty frames with changing sensor values (the sim node's random walk).
    await watch.until(lambda: watch.events >= 30)
    assert calls, "changed values schedule a save"
    assert all(then is None or deadline <= then + 0.01 for deadline, then in calls)
    assert all(deadline - hass.loop.time() <= 600 for deadline, _ in calls)
    # A write brings the save forward to within a second.
    await set_number(hass, find(hass, entry, "number", "setpoint"), 27.5)
    assert calls[-1][0] - hass.loop.time() <= 1.0


async def test_a_write_the_store_lost_in_a_crash_is_kept_from_the_node(
    hass: HomeAssistant, sim_node: Node, hass_storage: dict[str, Any]
) -> None:
    """Home Assistant crashes right after a write, before its Store saved it: the node
    holds the newer value (it applied the write), the Store the older one. Back, Home
    Assistant judges the node's first frame before it sends anything (nothing of its own
    is pending), so the node's value is adopted, not overwritten by the Store's."""
    entry = await setup_node(hass, sim_node)
    manager: NodeManager = entry.runtime_data
    setpoint = next(e for e in entity_ids(hass, entry, "number") if "setpoint" in e)
    index = next(p.index for p in manager.points if p.info.object_id == "setpoint")
    key = f"{DOMAIN}.{entry.entry_id}"

    def stored() -> Any:
        raw = (hass_storage.get(key) or {}).get("data", {}).get("engine", {})
        value = raw.get("desired", {}).get(str(index))
        return None if value is None else value.get("value")

    await hass.services.async_call(
        "number", "set_value", {"entity_id": setpoint, "value": 22.0}, blocking=True
    )
    await FrameWatch(manager).until(lambda: stored() == 22.0)
    on_disk = copy.deepcopy(hass_storage[key])  # what a crash from now on leaves
    await hass.services.async_call(
        "number", "set_value", {"entity_id": setpoint, "value": 22.5}, blocking=True
    )
    await until(hass, lambda: hass.states.get(setpoint).state == "22.5")
    # The crash: everything in memory is gone, the Store holds 22.0.
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    hass_storage[key] = on_disk
    assert stored() == 22.0
    moved: list[Any] = []

    def seen(name: str, value: Any) -> None:
        if name == "setpoint" and value != 22.5:
            moved.append(value)

    async with Peer(sim_node, "test observer", on_state=seen) as view:
        assert await view.state("setpoint") == 22.5
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        manager = entry.runtime_data
        watch = FrameWatch(manager)
        await watch.until(manager.engine.holds_desired)
        await watch.more(5)
    assert moved == []  # the node never went back to 22.0
    assert hass.states.get(setpoint).state == "22.5"
    assert manager.engine.desired[index].value == 22.5
