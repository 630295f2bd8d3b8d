"""Kept desired values end to end: Home Assistant away while the node is killed and restarts.

The node (tests/nodes/keep.yaml, no restore_value on its points) keeps the values of the
last desired frame it applied; after a SIGKILL and a restart with Home Assistant's entry
unloaded it runs with them, and Home Assistant, back, counts them as its own writes
(docs/exchange.md, *Reconciliation*): no value re-sent as pending, no state change, and a
write made while the node was down still reaches it. With keep_desired off (today's
behaviour) the node comes back with its YAML defaults and every desired value goes again.
"""

from __future__ import annotations

import os
import signal

from homeassistant.const import EVENT_STATE_CHANGED
from homeassistant.core import Event, HomeAssistant, callback
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.data_exchange.manager import NodeManager
from custom_components.data_exchange.values import CHANGED_BY_NODE
from tests.conftest import NODES
from tests.harness.node import Node, NodeFactory
from tests.harness.peer import Peer
from tests.integration.conftest import FrameWatch, entity_ids, setup_node, until

KEEP = NODES / "keep.yaml"


def find(hass: HomeAssistant, entry: MockConfigEntry, domain: str, suffix: str) -> str:
    return next(e for e in entity_ids(hass, entry, domain) if e.endswith(suffix))


def _prefs(node: Node) -> bytes:
    return b"".join(p.read_bytes() for p in (node.state_dir / "prefs").glob("*.prefs"))


def _index(manager: NodeManager, object_id: str) -> int:
    return next(p.index for p in manager.points if p.info.object_id == object_id)


async def _write(hass: HomeAssistant, entry: MockConfigEntry) -> tuple[str, str]:
    setpoint = find(hass, entry, "number", "setpoint")
    mode = find(hass, entry, "select", "mode")
    await hass.services.async_call(
        "number", "set_value", {"entity_id": setpoint, "value": 27.5}, blocking=True
    )
    await hass.services.async_call(
        "select",
        "select_option",
        {"entity_id": mode, "option": "comfort"},
        blocking=True,
    )
    manager: NodeManager = entry.runtime_data
    await until(
        hass,
        lambda: (
            manager.reported_value("setpoint") == 27.5
            and manager.reported_value("mode") == "comfort"
        ),
        what="the writes reach the node",
    )
    return setpoint, mode


async def test_node_restarted_while_home_assistant_away_keeps_its_desired_values(
    hass: HomeAssistant, node_factory: NodeFactory
) -> None:
    node = node_factory.start(KEEP)
    entry = await setup_node(hass, node)
    manager: NodeManager = entry.runtime_data
    setpoint, mode = await _write(hass, entry)
    i_setpoint, i_mode = _index(manager, "setpoint"), _index(manager, "mode")
    carried = {i: manager.engine.desired[i].seq for i in (i_setpoint, i_mode)}
    await until(
        hass,
        lambda: manager.engine.acked_seq >= max(carried.values()),
        what="acknowledged",
    )
    # The node's record reaches its disk (ESPHome syncs its preferences every 500 ms).
    await FrameWatch(manager).until(lambda: b"comfort" in _prefs(node))
    assert await hass.config_entries.async_unload(entry.entry_id)  # Home Assistant away
    node.kill()
    node.start()
    # Before Home Assistant is back: the node runs with the kept values, not its defaults.
    async with Peer(node, "test observer", states=True) as view:
        await view.until(
            lambda: (
                view.states.get("setpoint") == 27.5
                and view.states.get("mode") == "comfort"
            )
        )
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    manager = entry.runtime_data
    changes: list[tuple[str, str]] = []

    @callback
    def record(event: Event) -> None:
        if event.data["entity_id"] in (setpoint, mode):
            changes.append((event.data["entity_id"], event.data["new_state"].state))

    unsub = hass.bus.async_listen(EVENT_STATE_CHANGED, record)
    watch = FrameWatch(manager)
    try:
        await watch.until(
            lambda: manager.connected and manager.stale_reason is None, 30
        )
        await watch.more(5)  # HA's desired frames went out and were applied meanwhile
    finally:
        unsub()
    engine = manager.engine
    assert engine.stats.restarts == 1
    assert engine.model is not None
    assert engine.model.kept_seq > 0  # the node said it started with a kept frame
    assert engine.acked_seq >= engine.model.kept_seq >= max(carried.values())
    # Acknowledged as they were: the same frame numbers (not re-sent as pending)...
    assert {i: engine.desired[i].seq for i in carried} == carried
    # ... still Home Assistant's writes, and the entities only went from stale to live.
    for entity_id, value in ((setpoint, "27.5"), (mode, "comfort")):
        state = hass.states.get(entity_id)
        assert state.state == value
        assert state.attributes["changed_by"] == "home_assistant"
        assert state.attributes["stale"] is False
    assert all(value in ("27.5", "comfort") for _, value in changes), changes


async def test_a_write_made_while_the_node_was_down_is_not_lost(
    hass: HomeAssistant, node_factory: NodeFactory
) -> None:
    node = node_factory.start(KEEP)
    entry = await setup_node(hass, node)
    manager: NodeManager = entry.runtime_data
    await _write(hass, entry)
    await FrameWatch(manager).until(lambda: b"comfort" in _prefs(node))
    node.kill()
    await until(hass, lambda: not manager.connected)
    label = find(hass, entry, "text", "label")
    await hass.services.async_call(
        "text", "set_value", {"entity_id": label, "value": "while away"}, blocking=True
    )
    node.start()
    await until(
        hass,
        lambda: manager.reported_value("label") == "while away",
        30,
        what="the write made while the node was down",
    )
    assert manager.reported_value("setpoint") == 27.5
    assert manager.reported_value("mode") == "comfort"
    assert hass.states.get(label).attributes["changed_by"] == "home_assistant"


async def test_a_local_change_the_record_missed_is_applied_again(
    hass: HomeAssistant, node_factory: NodeFactory
) -> None:
    """A change made on the node after the desired frame its record was written for, and
    the node killed before the record caught up (keep_interval): it boots with the record's
    older value, which is not a new local change. Home Assistant had adopted the newer one:
    it puts it back (found by the model test; before, the older value was adopted)."""
    node = node_factory.start(KEEP)
    entry = await setup_node(hass, node)
    manager: NodeManager = entry.runtime_data
    setpoint = find(hass, entry, "number", "setpoint")
    # The record of the first desired frame (the node's own values) is written at once.
    await FrameWatch(manager).until(lambda: b"DXK1" in _prefs(node))
    index = _index(manager, "setpoint")
    assert node.process is not None
    pid = node.process.pid
    # The record is written again at most every keep_interval (2 s): the change must be
    # adopted and the node stopped (SIGSTOP: nothing more reaches its disk) before that.
    # Checked on the stopped node's disk; a try that came too late wrote the record, so
    # the next one falls within the interval.
    for value in (31.5, 32.5, 33.5):
        async with Peer(node, "local automation") as peer:
            await peer.call("local_set_setpoint", value=value)
        await until(
            hass,
            lambda v=value: (  # type: ignore[misc]
                (d := manager.engine.desired.get(index)) is not None
                and d.value == v
                and d.changed_by == CHANGED_BY_NODE
            ),
            what="the local change adopted",
        )
        os.kill(pid, signal.SIGSTOP)
        if str(value).encode() not in _prefs(node):
            break
        os.kill(pid, signal.SIGCONT)
    else:
        raise AssertionError("the record caught up with every local change")
    node.kill()
    node.start()
    watch = FrameWatch(manager)
    try:
        await watch.until(
            lambda: (
                manager.connected
                and manager.stale_reason is None
                and manager.reported_value("setpoint") == value
            ),
            30,
        )
    except TimeoutError:
        desired = manager.engine.desired.get(index)
        raise AssertionError(
            f"the node holds {manager.reported_value('setpoint')}, not {value}; "
            f"desired {desired}"
        ) from None
    await watch.more(5)  # and it stays: not adopted back to the record's older value
    engine = manager.engine
    assert engine.model is not None
    assert engine.model.kept_seq > 0  # the node booted with its (older) record
    assert manager.reported_value("setpoint") == value
    assert engine.desired[index].value == value
    assert hass.states.get(setpoint).state == str(value)
    assert hass.states.get(setpoint).attributes["changed_by"] == "node"


async def test_keep_off_restarts_with_defaults_and_reapplies(
    hass: HomeAssistant, node_factory: NodeFactory
) -> None:
    node = node_factory.start(KEEP, keep="false")
    entry = await setup_node(hass, node)
    manager: NodeManager = entry.runtime_data
    await _write(hass, entry)
    i_setpoint = _index(manager, "setpoint")
    before = manager.engine.desired[i_setpoint].seq
    assert await hass.config_entries.async_unload(entry.entry_id)
    node.kill()
    node.start()
    async with Peer(node, "test observer", states=True) as view:
        await view.until(lambda: view.states.get("setpoint") == 21.0)  # YAML default
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    manager = entry.runtime_data
    # Reported values come back from the Store first (stale): wait for the node's own.
    await until(hass, lambda: manager.connected and manager.stale_reason is None, 30)
    await until(hass, lambda: manager.reported_value("setpoint") == 27.5, 30)
    engine = manager.engine
    assert engine.model is not None
    assert engine.model.kept_seq == 0
    assert engine.desired[i_setpoint].seq > before  # re-sent after the restart
