"""Desired frames are taken only from Data Exchange's own connection (issue 14, item 5).

The node lists its `data_exchange_write` action to every API client, and Home Assistant's
own esphome integration, loaded on the same node, exposes it as a Home Assistant action.
Every desired frame must carry the node's per-boot token, which the node sends only to
Data Exchange clients (model event key "k"); a call without it is counted ("o") and
ignored. The control case (the same action with the token) shows the path is real.
"""

from __future__ import annotations

from typing import Any

from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.data_exchange.manager import NodeManager
from custom_components.data_exchange.protocol import WRITE_ACTION
from tests.bench.bench_peers import core_esphome_entry
from tests.harness.node import Node
from tests.integration.conftest import FrameWatch, problems_in_log, setup_node, until


async def core_esphome(hass: HomeAssistant, node: Node) -> MockConfigEntry:
    """Home Assistant's own esphome integration on the same node (the benchmarks' entry)."""
    entry = await core_esphome_entry(hass, node)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


async def test_other_clients_cannot_send_desired_frames(
    hass: HomeAssistant,
    sim_node: Node,
    mock_bluetooth_adapters: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    entry = await setup_node(hass, sim_node)
    manager: NodeManager = entry.runtime_data
    await core_esphome(hass, sim_node)
    service = f"{sim_node.name.replace('-', '_')}_{WRITE_ACTION}"
    await until(
        hass, lambda: hass.services.has_service("esphome", service), what=service
    )
    model = manager.engine.model
    assert model is not None
    setpoint = next(p for p in manager.points if p.info.object_id == "setpoint")
    position = model.writable.index(setpoint.index)
    values = ",".join("33" if i == position else "" for i in range(len(model.writable)))
    forged = {
        "seq": "999999",
        "seen": "999999",
        "model": model.model_id,
        "values": values,
        "acquisition": -1,
        "backlog": "0",
    }
    watch = FrameWatch(manager)
    for token in ("", "0000000000000000", model.token.upper()):
        await hass.services.async_call(
            "esphome", service, {**forged, "token": token}, blocking=True
        )
    await watch.until(lambda: manager.engine.stats.foreign_requests == 3)
    frames = watch.events
    await watch.until(lambda: watch.events >= frames + 5)
    assert manager.reported_value("setpoint") != 33.0
    assert manager.engine.stats.refused_by_node == 0
    # Control: the same action with the token does reach the node (then Home Assistant's
    # writer priority takes it as a local change of another client, as it should).
    await hass.services.async_call(
        "esphome", service, {**forged, "token": model.token}, blocking=True
    )
    await until(
        hass,
        lambda: manager.reported_value("setpoint") == 33.0,
        what="the control write",
    )
    assert not [p for p in problems_in_log(caplog.records) if "data_exchange" in p]
