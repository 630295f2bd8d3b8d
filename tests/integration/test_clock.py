"""Measurement time through Home Assistant and a real simulated node (docs/exchange.md,
*Measurement time*): the ``measured_at`` attribute is the node's time of the value, does not
move for an unchanged value, and is restored from the Store after a restart."""

from __future__ import annotations

import time
from typing import Any

from homeassistant.const import EVENT_STATE_CHANGED
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.util import dt as dt_util

from custom_components.data_exchange.frame_mode import FrameMode
from tests.harness.node import Node
from tests.integration.conftest import (
    FAST_OPTIONS,
    FrameWatch,
    entity_ids,
    setup_node,
    until,
)


def _measured(hass: HomeAssistant, entity_id: str) -> float | None:
    state = hass.states.get(entity_id)
    if state is None or "measured_at" not in state.attributes:
        return None
    parsed = dt_util.parse_datetime(state.attributes["measured_at"])
    assert parsed is not None
    return parsed.timestamp()


async def test_measured_at_is_the_nodes_time_and_kept(
    hass: HomeAssistant, sim_node: Node, hass_storage: dict[str, Any]
) -> None:
    entry = await setup_node(hass, sim_node, **FAST_OPTIONS)
    manager = entry.runtime_data
    setpoint = next(
        e for e in entity_ids(hass, entry, "number") if e.endswith("setpoint")
    )
    temperature = next(
        e for e in entity_ids(hass, entry, "sensor") if e.endswith("temperature")
    )
    # The sim node has a time source (host): frames carry its clock.
    exchange = manager.exchange
    assert isinstance(exchange, FrameMode)
    clock = exchange.clock
    assert clock.has_time_source
    assert clock.offset is not None
    assert abs(clock.offset) < 1.0  # the same machine's clock

    before = time.time()
    await hass.services.async_call(
        "number", "set_value", {"entity_id": setpoint, "value": 27.5}, blocking=True
    )
    await until(hass, lambda: hass.states.get(setpoint).state == "27.5")
    after = time.time()
    measured = _measured(hass, setpoint)
    assert measured is not None
    # The node applied the write between the call and its report: measured then, by its clock.
    assert before - 0.05 <= measured <= after + 0.05
    # A sensor's value was measured before Home Assistant got it, never after. The node
    # samples once a second from its boot: wait for the first sample, not for a moment.
    await until(
        hass,
        lambda: hass.states.get(temperature).state not in ("unknown", "unavailable"),
    )
    sampled = _measured(hass, temperature)
    assert sampled is not None
    assert sampled <= time.time()

    # Unchanged value, growing age in every full frame: no state write, same time.
    writes: list[str] = []

    @callback
    def record(event: Event) -> None:
        if event.data["entity_id"] == setpoint:
            writes.append(str(event.data["new_state"]))

    unsub = hass.bus.async_listen(EVENT_STATE_CHANGED, record)
    await FrameWatch(manager).more(10)
    unsub()
    assert writes == []
    assert _measured(hass, setpoint) == measured

    # Home Assistant restarts while the node is away: restored from the Store.
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    sim_node.stop()
    stored = hass_storage[f"data_exchange.{entry.entry_id}"]["data"]["engine"]
    assert any(r is not None and "measured" in r for r in stored["reported"])
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    state = hass.states.get(setpoint)
    assert state is not None
    assert state.attributes["stale"] is True
    assert _measured(hass, setpoint) == measured
