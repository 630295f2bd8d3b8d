"""A node that comes back is connected at once, and one that stays away is not hammered.

The return watch (reachability.py) probes the node's API port while it is away and hands
the first open socket to ReconnectLogic. In the first test ReconnectLogic's own back-off is
made an hour long (patched, and said so): then only the watch can bring the node back, so
the test fails if the watch does not work.
"""

from __future__ import annotations

from typing import Any

from aioesphomeapi import reconnect_logic
from homeassistant.core import HomeAssistant
import pytest

from custom_components.data_exchange import reachability
from custom_components.data_exchange.manager import NodeManager
from tests.harness.node import Node
from tests.harness.peer import Peer
from tests.integration.conftest import setup_node, until


async def test_a_node_that_returns_is_connected_by_the_watch(
    hass: HomeAssistant, sim_node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = reconnect_logic.ReconnectLogic._schedule_connect

    def no_backoff(self: Any, delay: float) -> None:
        # Only ReconnectLogic's own retries are pushed out; an immediate connect stays.
        original(self, 3600.0 if delay else 0.0)

    monkeypatch.setattr(reconnect_logic.ReconnectLogic, "_schedule_connect", no_backoff)
    entry = await setup_node(hass, sim_node)
    manager: NodeManager = entry.runtime_data
    setpoint = next(
        e for e in hass.states.async_entity_ids("number") if e.endswith("setpoint")
    )
    sim_node.kill()
    await until(hass, lambda: not manager.connected)
    sim_node.reset_preferences()
    # A write while it is away: it must be on the node soon after the node is back.
    await hass.services.async_call(
        "number", "set_value", {"entity_id": setpoint, "value": 31.5}, blocking=True
    )
    sim_node.start()
    await until(hass, lambda: manager.connected, 10, "connected by the return watch")
    assert manager.connection.stats.returns_noticed == 1
    async with Peer(sim_node, "test observer", states=True) as observer:
        await observer.until(lambda: observer.states.get("setpoint") == 31.5)
    assert manager.connection.returns is not None
    assert not manager.connection.returns.watching


async def test_a_node_that_stays_away_is_probed_a_bounded_number_of_times(
    hass: HomeAssistant, sim_node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reachability, "PROBE_FAST", 0.02)
    monkeypatch.setattr(reachability, "FAST_WINDOW", 0.2)
    monkeypatch.setattr(reachability, "PROBE_INTERVAL", 0.05)
    monkeypatch.setattr(reachability, "PROBE_WINDOW", 0.5)
    entry = await setup_node(hass, sim_node)
    manager: NodeManager = entry.runtime_data
    watch = manager.connection.returns
    assert watch is not None
    sim_node.kill()
    await until(hass, lambda: not manager.connected)
    task = watch._task
    assert task is not None
    await task
    probes = watch.probes
    assert 1 <= probes <= 0.2 / 0.02 + 0.3 / 0.05 + 1
    assert not watch.watching
    # A failed back-off attempt later in the same outage starts no new watch.
    await manager.connection._on_connect_error(OSError("still away"))
    assert not watch.watching
    assert watch.probes == probes
