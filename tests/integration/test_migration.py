"""Upgrading from the previous format: config entry 1.1 and Store 1.1 (before the words of
docs/architecture.md's glossary were made one meaning each).

What a user who updates the integration has on disk: an entry whose option is called
``cycle``, a *Rejected frames* entity, and a Store whose values name their ``sender`` and
whose device names its ``model``. The state is made by a real node and Home Assistant (the
current code), written back in the old format, and read again with the node stopped, so
everything shown comes from the migrated Store.
"""

from __future__ import annotations

import copy
from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
import pytest

from custom_components.data_exchange.const import (
    CONF_DESIRED_INTERVAL,
    CONF_STALE_AFTER,
    DOMAIN,
)
from custom_components.data_exchange.manager import NodeManager
from custom_components.data_exchange.storage import storage_key
from tests.harness.node import Node
from tests.integration.conftest import entity_ids, setup_node, until


def _stamped_1_1(raw: Any) -> Any:
    if isinstance(raw, dict) and "changed_by" in raw:
        raw = dict(raw)
        raw["sender"] = raw.pop("changed_by")
    return raw


def _store_1_1(data: dict[str, Any]) -> dict[str, Any]:
    """The Store as version 1.1 wrote it."""
    old = copy.deepcopy(data)
    old["device"]["model"] = old["device"].pop("hardware_model")
    engine = old["engine"]
    engine["reported"] = [_stamped_1_1(r) for r in engine["reported"]]
    engine["desired"] = {k: _stamped_1_1(v) for k, v in engine["desired"].items()}
    engine["desired_acquisition"] = _stamped_1_1(engine["desired_acquisition"])
    return old


async def test_entry_and_store_of_the_previous_format_are_migrated(
    hass: HomeAssistant, sim_node: Node, hass_storage: dict[str, Any]
) -> None:
    entry = await setup_node(hass, sim_node)
    manager: NodeManager = entry.runtime_data
    mac = manager.mac
    setpoint = next(
        e for e in entity_ids(hass, entry, "number") if e.endswith("setpoint")
    )
    await hass.services.async_call(
        "number", "set_value", {"entity_id": setpoint, "value": 27.5}, blocking=True
    )
    await until(hass, lambda: manager.reported_value("setpoint") == 27.5)
    registry = er.async_get(hass)
    counter = registry.async_get_entity_id("sensor", DOMAIN, f"{mac}-malformed_frames")
    assert counter is not None
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    sim_node.stop()

    # What 1.1 left on disk: the old Store, the old option, the old entity.
    key = storage_key(entry.entry_id)
    current = hass_storage[key]
    assert current["minor_version"] == 2
    hass_storage[key] = {
        **current,
        "minor_version": 1,
        "data": _store_1_1(current["data"]),
    }
    assert '"sender"' in str(hass_storage[key]).replace("'", '"')
    hass.config_entries.async_update_entry(
        entry,
        options={"cycle": 0.3, CONF_STALE_AFTER: 2.0},
        minor_version=1,
    )
    registry.async_update_entity(counter, new_unique_id=f"{mac}-rejected_frames")

    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()

    assert (entry.version, entry.minor_version) == (1, 2)
    assert entry.options == {CONF_DESIRED_INTERVAL: 0.3, CONF_STALE_AFTER: 2.0}
    migrated = registry.async_get(counter)
    assert migrated is not None  # same entity id, so its history stays
    assert migrated.unique_id == f"{mac}-malformed_frames"
    manager = entry.runtime_data
    assert manager.desired_interval == pytest.approx(0.3)
    # Restored from the migrated Store (the node is stopped): the write and its writer.
    state = hass.states.get(setpoint)
    assert state is not None
    assert float(state.state) == 27.5
    assert state.attributes["stale"] is True
    assert state.attributes["changed_by"] == "home_assistant"
    assert manager.device is not None
    assert manager.device.hardware_model == "host"
    # The Store was written back in the current format.
    assert hass_storage[key]["minor_version"] == 2
    assert "sender" not in str(hass_storage[key]["data"])
