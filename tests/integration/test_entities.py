"""Entities for every point, in frame mode and in entity mode, and how they follow the node."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from homeassistant.const import EVENT_STATE_CHANGED, STATE_ON, STATE_UNAVAILABLE
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.helpers import (
    device_registry as dr,
    entity_registry as er,
    issue_registry as ir,
)
import pytest
from syrupy.assertion import SnapshotAssertion

from custom_components.data_exchange.const import DOMAIN
from tests.harness.node import Node, NodeBuild, NodeFactory, firmware_variant
from tests.integration.conftest import (
    SIM,
    entity_ids,
    entry_for,
    live,
    setup_node,
    until,
)

# Sensors of the simulated node are random walks: their values are not snapshotted.
RANDOM = {"temperature", "humidity", "pressure", "occupancy", "status", "latency"}


def describe(hass: HomeAssistant, entry_id: str, mac: str) -> list[dict[str, Any]]:
    """Registry entries and states, without what differs between runs (MAC, ids, values)."""
    registry = er.async_get(hass)
    out = []
    for e in sorted(
        er.async_entries_for_config_entry(registry, entry_id), key=lambda e: e.unique_id
    ):
        key = e.unique_id.removeprefix(f"{mac}-")
        state = hass.states.get(e.entity_id)
        # measured_at is a time, and whether a random sensor has one yet when the snapshot
        # is taken depends on the run: tests/integration/test_clock.py covers it.
        attributes = {
            k: v
            for k, v in (state.attributes.items() if state else ())
            if k not in ("friendly_name", "measured_at")
        }
        out.append(
            {
                "unique_id": key,
                "domain": e.domain,
                "original_name": e.original_name,
                "translation_key": e.translation_key,
                "original_device_class": e.original_device_class,
                "unit": e.unit_of_measurement,
                "entity_category": e.entity_category,
                "disabled_by": e.disabled_by,
                "capabilities": e.capabilities,
                "state": None
                if state is None or key.split("-")[-1] in RANDOM
                else state.state,
                "attributes": attributes,
            }
        )
    return out


async def test_frame_mode_entities(
    hass: HomeAssistant, sim_node: Node, snapshot: SnapshotAssertion
) -> None:
    entry = await setup_node(hass, sim_node)
    assert describe(hass, entry.entry_id, entry.unique_id) == snapshot
    (device,) = dr.async_entries_for_config_entry(dr.async_get(hass), entry.entry_id)
    assert (DOMAIN, entry.unique_id) in device.identifiers
    assert device.name.startswith("Simulated node")
    assert device.manufacturer == "data_exchange"
    assert device.model == "sim_node"
    assert device.sw_version == "0.1.0"
    assert (dr.CONNECTION_NETWORK_MAC, entry.unique_id) in device.connections


async def test_entity_mode_for_plain_node(
    hass: HomeAssistant, plain_node: Node, snapshot: SnapshotAssertion
) -> None:
    entry = await setup_node(hass, plain_node)
    answer = next(e for e in entity_ids(hass, entry, "sensor") if e.endswith("answer"))
    relay = next(e for e in entity_ids(hass, entry, "switch") if e.endswith("relay"))
    # Values come from the state subscription: the node's first burst.
    await until(hass, lambda: hass.states.get(answer).state == "42.0")
    await until(hass, lambda: hass.states.get(relay).state == "off")
    assert describe(hass, entry.entry_id, entry.unique_id) == snapshot
    mode = [e for e in entity_ids(hass, entry, "sensor") if e.endswith("exchange_mode")]
    assert hass.states.get(mode[0]).state == "entity"


async def test_kill_and_restart_recovers_with_one_log_line_each(
    hass: HomeAssistant, sim_node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="custom_components.data_exchange")
    entry = await setup_node(hass, sim_node)
    manager = entry.runtime_data
    setpoint = next(
        e for e in entity_ids(hass, entry, "number") if e.endswith("setpoint")
    )
    connection = next(
        e for e in entity_ids(hass, entry, "binary_sensor") if e.endswith("connection")
    )
    sim_node.kill()
    await until(hass, lambda: hass.states.get(connection).state == "off")
    # Stale, not unavailable (default option): the last value stays visible, marked.
    state = hass.states.get(setpoint)
    assert state.state == "21.0"
    assert state.attributes["stale"] is True
    sim_node.start()
    await until(hass, lambda: manager.connected and manager.stale_reason is None, 30)
    assert hass.states.get(connection).state == STATE_ON
    assert hass.states.get(setpoint).attributes["stale"] is False
    messages = [r.getMessage() for r in caplog.records if r.name.endswith("connection")]
    assert len([m for m in messages if "is unavailable" in m]) == 1, messages
    assert len([m for m in messages if "is available again" in m]) == 1, messages


async def test_values_unavailable_when_option_off(
    hass: HomeAssistant, sim_node: Node
) -> None:
    entry = await setup_node(hass, sim_node, keep_values=False)
    setpoint = next(
        e for e in entity_ids(hass, entry, "number") if e.endswith("setpoint")
    )
    sim_node.kill()
    await until(hass, lambda: hass.states.get(setpoint).state == STATE_UNAVAILABLE)


@pytest.fixture
def reduced_build(node_factory: NodeFactory) -> NodeBuild:
    """The simulated node's firmware without its pressure and label points."""
    yaml = firmware_variant(
        "sim-node-reduced",
        "sim-node.yaml",
        ["    - sensor: pressure", "    - text: label"],
    )
    return node_factory.build(yaml, **SIM)


async def test_firmware_change_removes_and_adds_entities(
    hass: HomeAssistant,
    sim_node: Node,
    reduced_build: NodeBuild,
    node_factory: NodeFactory,
) -> None:
    entry = await setup_node(hass, sim_node)
    registry = er.async_get(hass)

    def has(kind: str, object_id: str) -> bool:
        uid = f"{entry.unique_id}-{kind}-{object_id}"
        return (
            registry.async_get_entity_id(
                kind if kind != "text_sensor" else "sensor", DOMAIN, uid
            )
            is not None
        )

    assert has("sensor", "pressure")
    assert has("text", "label")
    # Flash the new firmware: same device (MAC), same address.
    sim_node.stop()
    reduced = Node(reduced_build, port=sim_node.port, mac=sim_node.mac)
    node_factory.nodes.append(reduced)
    reduced.start()
    await until(
        hass, lambda: not has("sensor", "pressure") and not has("text", "label"), 30
    )
    assert has("sensor", "temperature")
    # And back: the points appear again, without reloading by hand.
    reduced.stop()
    sim_node.start()
    await until(hass, lambda: has("sensor", "pressure") and has("text", "label"), 30)


def _established(port: int) -> int:
    """TCP connections to ``port`` on this machine (both ends, from /proc/net/tcp)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, remote, st = line.split()[1:4]
        if st == "01" and (
            int(local.split(":")[1], 16) == port
            or int(remote.split(":")[1], 16) == port
        ):
            count += 1
    return count


async def test_unload_and_reload_leave_nothing_behind(
    hass: HomeAssistant, sim_node: Node
) -> None:
    entry = await setup_node(hass, sim_node)
    assert _established(sim_node.port) == 2  # our one connection, seen from both ends
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    assert _established(sim_node.port) == 0
    assert await hass.config_entries.async_setup(entry.entry_id)
    await until(
        hass,
        lambda: (
            entry.runtime_data.connected and entry.runtime_data.stale_reason is None
        ),
    )
    assert _established(sim_node.port) == 2
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    assert _established(sim_node.port) == 0
    # Lingering tasks and timers are checked by the test plugin's cleanup fixture.


async def test_entity_mode_commands(hass: HomeAssistant, plain_node: Node) -> None:
    entry = await setup_node(hass, plain_node)
    relay = next(e for e in entity_ids(hass, entry, "switch") if e.endswith("relay"))
    await until(hass, lambda: hass.states.get(relay).state == "off")
    await hass.services.async_call(
        "switch", "turn_on", {"entity_id": relay}, blocking=True
    )
    # The node's own state echo, not an optimistic write.
    await until(hass, lambda: hass.states.get(relay).state == STATE_ON)
    assert hass.states.get(relay).attributes["changed_by"] == "home_assistant"


async def test_entity_mode_stored_values_never_pass_for_current(
    hass: HomeAssistant, plain_node: Node
) -> None:
    """After a node restart, a stored value stays marked stale until the node's own state
    arrives: the relay was on, the node comes back with it off."""
    entry = await setup_node(hass, plain_node)
    manager = entry.runtime_data
    relay = next(e for e in entity_ids(hass, entry, "switch") if e.endswith("relay"))
    await hass.services.async_call(
        "switch", "turn_on", {"entity_id": relay}, blocking=True
    )
    await until(hass, lambda: hass.states.get(relay).state == STATE_ON)
    plain_node.kill()
    await until(hass, lambda: not manager.connected)
    seen: list[tuple[str, bool]] = []

    @callback
    def record(event: Event) -> None:
        if event.data["entity_id"] == relay:
            state = event.data["new_state"]
            seen.append((state.state, state.attributes["stale"]))

    hass.bus.async_listen(EVENT_STATE_CHANGED, record)
    plain_node.start()
    await until(
        hass, lambda: live(hass, entry) and hass.states.get(relay).state == "off"
    )
    assert (STATE_ON, False) not in seen, seen
    assert seen[-1] == ("off", False)


async def test_entity_mode_button(hass: HomeAssistant, plain_node: Node) -> None:
    entry = await setup_node(hass, plain_node)
    relay = next(e for e in entity_ids(hass, entry, "switch") if e.endswith("relay"))
    button = next(
        e for e in entity_ids(hass, entry, "button") if e.endswith("toggle_relay")
    )
    await until(hass, lambda: hass.states.get(relay).state == "off")
    await hass.services.async_call(
        "button", "press", {"entity_id": button}, blocking=True
    )
    await until(hass, lambda: hass.states.get(relay).state == STATE_ON)
    plain_node.kill()
    await until(hass, lambda: hass.states.get(button).state == STATE_UNAVAILABLE)


async def test_removing_a_node_forgets_its_state(
    hass: HomeAssistant, sim_node: Node, hass_storage: dict[str, Any]
) -> None:
    from homeassistant.helpers import issue_registry as ir

    entry = await setup_node(hass, sim_node)
    assert await hass.config_entries.async_unload(entry.entry_id)
    key = f"{DOMAIN}.{entry.entry_id}"
    assert key in hass_storage
    assert ir.async_get(hass).async_get_issue(DOMAIN, f"no_encryption_{entry.entry_id}")
    await hass.config_entries.async_remove(entry.entry_id)
    await hass.async_block_till_done()
    assert key not in hass_storage
    assert (
        ir.async_get(hass).async_get_issue(DOMAIN, f"no_encryption_{entry.entry_id}")
        is None
    )


async def test_entity_mode_write_while_offline_is_a_clear_error(
    hass: HomeAssistant, plain_node: Node
) -> None:
    from homeassistant.exceptions import HomeAssistantError

    entry = await setup_node(hass, plain_node)
    relay = next(e for e in entity_ids(hass, entry, "switch") if e.endswith("relay"))
    plain_node.kill()
    await until(hass, lambda: not entry.runtime_data.connected)
    with pytest.raises(HomeAssistantError) as err:
        await hass.services.async_call(
            "switch", "turn_on", {"entity_id": relay}, blocking=True
        )
    assert err.value.translation_domain == DOMAIN
    assert err.value.translation_key == "not_connected"


async def test_a_node_of_another_protocol_version_is_refused_with_a_repair_issue(
    hass: HomeAssistant, node_factory: NodeFactory
) -> None:
    """A node flashed with an older component (protocol 4) and a current Home Assistant
    (protocol 5): nothing is exchanged, a translated repair issue names both versions and
    says what to update."""
    yaml = firmware_variant(
        "sim-node-protocol-4",
        "sim-node.yaml",
        sources={
            "components/data_exchange/data_exchange.h": {
                "#define DX_PROTOCOL_VERSION 5": "#define DX_PROTOCOL_VERSION 4"
            }
        },
    )
    node = node_factory.start(yaml, **SIM)
    entry = entry_for(node)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    issues = ir.async_get(hass)
    issue_id = f"protocol_mismatch_{entry.entry_id}"
    raised = hass.loop.create_future()

    @callback
    def check(_event: Event | None = None) -> None:
        if not raised.done() and issues.async_get_issue(DOMAIN, issue_id) is not None:
            raised.set_result(None)

    unsub = hass.bus.async_listen(ir.EVENT_REPAIRS_ISSUE_REGISTRY_UPDATED, check)
    check()
    async with asyncio.timeout(20):
        await raised
    unsub()
    issue = issues.async_get_issue(DOMAIN, issue_id)
    assert issue is not None
    assert issue.translation_placeholders is not None
    assert issue.translation_placeholders["node"] == "4"
    assert issue.translation_placeholders["ours"] == "5"
    assert not entity_ids(hass, entry, "number")  # nothing read, nothing exchanged
    assert await hass.config_entries.async_unload(entry.entry_id)
