"""First contact: a simulated node through Home Assistant."""

from __future__ import annotations

from homeassistant.core import HomeAssistant

from tests.harness.node import Node
from tests.integration.conftest import entity_ids, setup_node


async def test_sim_node_entities(hass: HomeAssistant, sim_node: Node) -> None:
    entry = await setup_node(hass, sim_node)
    states = {
        e: hass.states.get(e)
        for d in ("sensor", "number", "switch", "select", "text", "binary_sensor")
        for e in entity_ids(hass, entry, d)
    }
    for eid, st in sorted(states.items()):
        print(eid, st.state if st else None, dict(st.attributes) if st else None)
    assert len(states) > 10
