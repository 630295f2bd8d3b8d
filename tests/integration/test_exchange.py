"""The cyclic exchange end to end: writes, writer priority, reconciliation, stale values."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
import os
import signal

from homeassistant.core import (
    Context,
    Event,
    EventStateChangedData,
    HomeAssistant,
    State,
    callback,
)
from homeassistant.helpers.event import async_track_state_change_event
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    MockUser,
    async_fire_time_changed,
)

from custom_components.data_exchange.const import (
    CONF_WRITER_PRIORITY_DELAY,
    PENDING_SHOWN_AFTER,
)
from custom_components.data_exchange.manager import NodeManager
from custom_components.data_exchange.protocol import FRAME_EVENT
from tests.harness.node import Node
from tests.harness.peer import Peer
from tests.integration.conftest import entity_ids, setup_node, until


def find(hass: HomeAssistant, entry: MockConfigEntry, domain: str, suffix: str) -> str:
    return next(e for e in entity_ids(hass, entry, domain) if e.endswith(suffix))


@pytest.fixture
async def view(sim_node: Node) -> AsyncIterator[Peer]:
    """What the node itself says, through a second, plain API client (not ours); its
    actions are local changes on the node (as the touch pad would make them)."""
    async with Peer(sim_node, "test observer", states=True) as observer:
        yield observer


async def test_writes_reach_the_node(
    hass: HomeAssistant, sim_node: Node, view: Peer
) -> None:
    entry = await setup_node(hass, sim_node)
    calls = [
        ("number", "set_value", "setpoint", {"value": 25.5}),
        ("switch", "turn_on", "relay", {}),
        ("select", "select_option", "mode", {"option": "comfort"}),
        ("text", "set_value", "label", {"value": "hello, world"}),
    ]
    for domain, service, suffix, data in calls:
        entity_id = find(hass, entry, domain, suffix)
        await hass.services.async_call(
            domain, service, {"entity_id": entity_id, **data}, blocking=True
        )
    # The node's own entities changed (seen by a client that is not ours) ...
    await until(
        hass,
        lambda: (
            view.states.get("setpoint") == 25.5
            and view.states.get("relay") is True
            and view.states.get("mode") == "comfort"
            and view.states.get("label") == "hello, world"
        ),
    )
    # ... and Home Assistant shows the reported values, with who caused them.
    await until(
        hass,
        lambda: (
            hass.states.get(find(hass, entry, "text", "label")).state == "hello, world"
        ),
    )
    state = hass.states.get(find(hass, entry, "number", "setpoint"))
    assert state.state == "25.5"
    assert state.attributes["changed_by"] == "home_assistant"
    assert hass.states.get(find(hass, entry, "switch", "relay")).state == "on"
    assert hass.states.get(find(hass, entry, "select", "mode")).state == "comfort"


async def test_local_change_after_delay_is_adopted(
    hass: HomeAssistant, sim_node: Node, view: Peer
) -> None:
    # Delay 0: any report after Home Assistant's write is a later local change.
    entry = await setup_node(hass, sim_node, **{CONF_WRITER_PRIORITY_DELAY: 0.0})
    setpoint = find(hass, entry, "number", "setpoint")
    await hass.services.async_call(
        "number", "set_value", {"entity_id": setpoint, "value": 25.0}, blocking=True
    )
    await until(hass, lambda: hass.states.get(setpoint).state == "25.0")
    await view.call("local_set_setpoint", value=30.0)
    await until(hass, lambda: hass.states.get(setpoint).state == "30.0")
    assert hass.states.get(setpoint).attributes["changed_by"] == "node"
    manager: NodeManager = entry.runtime_data
    index = next(p.index for p in manager.points if p.info.object_id == "setpoint")
    assert manager.engine.desired[index].value == 30.0
    # It stays: Home Assistant now sends 30 itself.
    received = manager.engine.stats.received
    await until(hass, lambda: manager.engine.stats.received >= received + 10)
    assert view.states["setpoint"] == 30.0


async def test_local_change_within_delay_is_overridden(
    hass: HomeAssistant, sim_node: Node, view: Peer
) -> None:
    entry = await setup_node(hass, sim_node, **{CONF_WRITER_PRIORITY_DELAY: 60.0})
    setpoint = find(hass, entry, "number", "setpoint")
    await hass.services.async_call(
        "number", "set_value", {"entity_id": setpoint, "value": 25.0}, blocking=True
    )
    await until(hass, lambda: view.states.get("setpoint") == 25.0)
    # Someone at the device changes it right after Home Assistant's write.
    await view.call("local_set_setpoint", value=30.0)
    await until(hass, lambda: view.states.get("setpoint") == 30.0)
    # Home Assistant's write wins: the node is set back.
    await until(hass, lambda: view.states.get("setpoint") == 25.0)
    assert hass.states.get(setpoint).state == "25.0"
    assert hass.states.get(setpoint).attributes["changed_by"] == "home_assistant"


async def test_node_restart_with_defaults_gets_desired_values_back(
    hass: HomeAssistant, sim_node: Node, view: Peer
) -> None:
    entry = await setup_node(hass, sim_node)
    manager: NodeManager = entry.runtime_data
    setpoint = find(hass, entry, "number", "setpoint")
    relay = find(hass, entry, "switch", "relay")
    await hass.services.async_call(
        "number", "set_value", {"entity_id": setpoint, "value": 27.5}, blocking=True
    )
    await hass.services.async_call(
        "switch", "turn_on", {"entity_id": relay}, blocking=True
    )
    await until(
        hass, lambda: view.states.get("setpoint") == 27.5 and view.states.get("relay")
    )
    await view.disconnect()
    sim_node.kill()
    await until(hass, lambda: not manager.connected)
    sim_node.reset_preferences()  # the node comes back with its firmware defaults
    sim_node.start()
    await until(hass, lambda: manager.connected and manager.stale_reason is None)
    first = manager.engine.stats.received
    await until(
        hass,
        lambda: (
            manager.reported_value("setpoint") == 27.5
            and manager.reported_value("relay") is True
        ),
    )
    # Re-applied at once on connect: at most one frame shows the defaults.
    assert manager.engine.stats.received - first <= 2
    assert manager.engine.stats.restarts == 1


async def test_restart_with_node_offline_shows_stale_values_then_reapplies(
    hass: HomeAssistant, sim_node: Node
) -> None:
    entry = await setup_node(hass, sim_node)
    setpoint = find(hass, entry, "number", "setpoint")
    temperature = find(hass, entry, "sensor", "temperature")
    await hass.services.async_call(
        "number", "set_value", {"entity_id": setpoint, "value": 23.5}, blocking=True
    )
    await until(hass, lambda: hass.states.get(setpoint).state == "23.5")
    last_temperature = hass.states.get(temperature).state
    # Home Assistant stops (its state is saved), the node goes away meanwhile.
    assert await hass.config_entries.async_unload(entry.entry_id)
    sim_node.kill()
    sim_node.reset_preferences()
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    manager: NodeManager = entry.runtime_data
    state = hass.states.get(setpoint)
    assert state.state == "23.5"
    assert state.attributes["stale"] is True
    assert "reported_at" in state.attributes
    assert hass.states.get(temperature).state == last_temperature
    assert hass.states.get(temperature).attributes["stale"] is True
    # The node returns with defaults: the desired value is applied again.
    sim_node.start()
    await until(hass, lambda: manager.connected and manager.stale_reason is None, 30)
    await until(hass, lambda: manager.reported_value("setpoint") == 23.5)
    assert hass.states.get(setpoint).attributes["stale"] is False


async def test_dropped_frames_are_counted_as_missed(
    hass: HomeAssistant, sim_node: Node
) -> None:
    entry = await setup_node(hass, sim_node)
    manager: NodeManager = entry.runtime_data
    # Lose every third frame between the node and Home Assistant.
    deliver = manager.on_node_event
    seen = 0
    dropped = 0

    def lossy(name: str, data: dict[str, str]) -> None:
        nonlocal seen, dropped
        if name == FRAME_EVENT:
            seen += 1
            if seen % 3 == 0:
                dropped += 1
                return
        deliver(name, data)

    missed = manager.engine.stats.missed
    manager.on_node_event = lossy  # type: ignore[method-assign]
    await until(hass, lambda: dropped >= 5)
    manager.on_node_event = deliver  # type: ignore[method-assign]
    received = manager.engine.stats.received
    await until(hass, lambda: manager.engine.stats.received > received)
    assert manager.engine.stats.missed - missed == dropped


async def test_pause_acquisition_marks_values_stale(
    hass: HomeAssistant, sim_node: Node, view: Peer
) -> None:
    entry = await setup_node(hass, sim_node)
    acquisition = find(hass, entry, "switch", "acquisition")
    stale = find(hass, entry, "binary_sensor", "values_stale")
    temperature = find(hass, entry, "sensor", "temperature")
    # The node's first sample (template sensors sample once a second).
    await until(hass, lambda: hass.states.get(temperature).state != "unknown")
    await hass.services.async_call(
        "switch", "turn_off", {"entity_id": acquisition}, blocking=True
    )
    await until(hass, lambda: hass.states.get(stale).state == "on")
    assert hass.states.get(stale).attributes["reason"] == "paused"
    assert hass.states.get(acquisition).state == "off"
    state = hass.states.get(temperature)
    assert state.attributes["stale"] is True
    assert state.state not in ("unavailable", "unknown")
    await hass.services.async_call(
        "switch", "turn_on", {"entity_id": acquisition}, blocking=True
    )
    await until(hass, lambda: hass.states.get(stale).state == "off")
    assert hass.states.get(temperature).attributes["stale"] is False


async def test_stopping_home_assistant_writes_nothing_stale(
    hass: HomeAssistant, sim_node: Node
) -> None:
    entry = await setup_node(hass, sim_node)
    ours = set(entity_ids(hass, entry, "sensor") + entity_ids(hass, entry, "number"))
    received = entry.runtime_data.engine.stats.received
    await until(hass, lambda: entry.runtime_data.engine.stats.received > received + 2)
    await hass.async_stop()
    # The connection was closed by the stop ...
    assert not entry.runtime_data.connected
    # Sensors may still have changed value in their last frame, but nothing went stale.
    for entity_id in ours:
        state = hass.states.get(entity_id)
        assert state is None or state.attributes.get("stale") is not True, entity_id


async def test_a_write_waiting_for_the_node_is_shown_as_pending(
    hass: HomeAssistant, sim_node: Node, hass_admin_user: MockUser
) -> None:
    """A write accepted while the node is away is visible: the value shown stays the node's
    (marked stale), the attributes say what waits, who wrote it and since when; once the
    node has it, nothing is pending any more."""
    entry = await setup_node(hass, sim_node)
    manager: NodeManager = entry.runtime_data
    setpoint = find(hass, entry, "number", "setpoint")
    temperature = find(hass, entry, "sensor", "temperature")
    before = hass.states.get(setpoint)
    assert before.attributes["pending_value"] is None
    assert "pending_value" not in hass.states.get(temperature).attributes  # read-only
    sim_node.kill()
    await until(hass, lambda: not manager.connected)
    await hass.services.async_call(
        "number",
        "set_value",
        {"entity_id": setpoint, "value": 27.5},
        blocking=True,
        context=Context(user_id=hass_admin_user.id),
    )
    await until(
        hass, lambda: hass.states.get(setpoint).attributes["pending_value"] == 27.5
    )
    state = hass.states.get(setpoint)
    assert state.state == before.state  # what the node holds, not the wish
    assert state.attributes["stale"] is True
    assert state.attributes["pending_changed_by"] == f"user:{hass_admin_user.name}"
    since = datetime.fromisoformat(state.attributes["pending_since"])
    assert abs((dt_util.utcnow() - since).total_seconds()) < 60
    sim_node.start()
    await until(hass, lambda: hass.states.get(setpoint).state == "27.5", 30)
    state = hass.states.get(setpoint)
    assert state.attributes["pending_value"] is None
    assert state.attributes["pending_changed_by"] is None
    assert state.attributes["pending_since"] is None
    assert state.attributes["changed_by"] == f"user:{hass_admin_user.name}"


async def test_a_write_the_node_applies_at_once_is_one_state_write(
    hass: HomeAssistant, sim_node: Node
) -> None:
    """A connected node applies a write within milliseconds: its entity goes from the old
    value to the new one in one state write (and one recorder row), no pending flash. A
    connected node that does not answer (frozen, the connection still up) shows the write
    as pending once PENDING_SHOWN_AFTER has passed."""
    entry = await setup_node(hass, sim_node)
    setpoint = find(hass, entry, "number", "setpoint")
    assert sim_node.process is not None
    seen: list[State] = []

    @callback
    def changed(event: Event[EventStateChangedData]) -> None:
        if (new := event.data["new_state"]) is not None:
            seen.append(new)

    unsub = async_track_state_change_event(hass, [setpoint], changed)
    value = 24.5 if hass.states.get(setpoint).state != "24.5" else 25.0
    await hass.services.async_call(
        "number", "set_value", {"entity_id": setpoint, "value": value}, blocking=True
    )
    await until(hass, lambda: hass.states.get(setpoint).state == str(value))
    # Past the moment a pending state would have been written: still one state.
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=5))
    await hass.async_block_till_done()
    assert [(s.state, s.attributes["pending_value"]) for s in seen] == [
        (str(value), None)
    ]
    seen.clear()
    os.kill(sim_node.process.pid, signal.SIGSTOP)
    try:
        await hass.services.async_call(
            "number", "set_value", {"entity_id": setpoint, "value": 21.0}, blocking=True
        )
        await hass.async_block_till_done()
        assert seen == []  # not yet: the node may apply it at once
        async_fire_time_changed(
            hass, dt_util.utcnow() + timedelta(seconds=PENDING_SHOWN_AFTER + 0.1)
        )
        await hass.async_block_till_done()
        assert [(s.state, s.attributes["pending_value"]) for s in seen] == [
            (str(value), 21.0)
        ]
    finally:
        os.kill(sim_node.process.pid, signal.SIGCONT)
    await until(hass, lambda: hass.states.get(setpoint).state == "21.0", 30)
    unsub()
