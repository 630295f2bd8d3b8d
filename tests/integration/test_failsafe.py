"""The node's fail-safe against Home Assistant and a real node: what it set is not a local
change, what the device changed meanwhile is (docs/exchange.md, rule 6).

A sequence users meet: Home Assistant is away longer than the node's fail-safe timeout
(a restart, an update), the node goes to its safe values, and someone sets the setpoint on
the device meanwhile. When Home Assistant is back, the relay gets Home Assistant's desired
value again (not the safe value), and the setpoint keeps what was set on the device.
"""

from __future__ import annotations

from homeassistant.core import HomeAssistant

from custom_components.data_exchange.manager import NodeManager
from tests.conftest import FIRMWARE
from tests.harness.node import NodeFactory
from tests.harness.peer import Peer
from tests.integration.conftest import FrameWatch, setup_node, until
from tests.integration.test_exchange import find


async def test_a_local_change_during_the_fail_safe_is_kept_and_safe_values_are_not(
    hass: HomeAssistant, node_factory: NodeFactory
) -> None:
    node = node_factory.start(
        FIRMWARE / "sim-node.yaml", cycle="100ms", failsafe_timeout="1500ms"
    )
    entry = await setup_node(hass, node)
    manager: NodeManager = entry.runtime_data
    relay = find(hass, entry, "switch", "relay")
    setpoint = find(hass, entry, "number", "setpoint")
    await hass.services.async_call(
        "switch", "turn_on", {"entity_id": relay}, blocking=True
    )
    await FrameWatch(manager).until(manager.engine.holds_desired)
    before = float(hass.states.get(setpoint).state)
    assert before not in (18.0, 24.5)  # 18 is the setpoint's safe value
    assert await hass.config_entries.async_unload(entry.entry_id)  # Home Assistant away
    async with Peer(node, "test observer", states=True) as view:
        # The fail-safe: relay off, setpoint 18 (the sim node's safe values).
        await view.until(
            lambda: (
                view.states.get("relay") is False
                and view.states.get("setpoint") == 18.0
            ),
            timeout=10,
        )
        await view.call("local_set_setpoint", value=24.5)  # on the device, meanwhile
        await view.until(lambda: view.states.get("setpoint") == 24.5)
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        manager = entry.runtime_data
        watch = FrameWatch(manager)
        await watch.until(
            lambda: (
                manager.connected
                and not manager.engine.failsafe_active
                and manager.engine.holds_desired()
            ),
            30,
        )
        await watch.more(3)  # nothing flips back
        assert view.states.get("relay") is True
        assert view.states.get("setpoint") == 24.5
    await until(hass, lambda: hass.states.get(setpoint).state == "24.5")
    assert hass.states.get(relay).state == "on"
    assert hass.states.get(setpoint).attributes["changed_by"] == "node"
    assert hass.states.get(relay).attributes["changed_by"] != "node"
