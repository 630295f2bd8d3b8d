"""The dashboard loads in Home Assistant, and every entity it shows exists for the sim node."""

from __future__ import annotations

from pathlib import Path
import shutil
from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component

from custom_components.data_exchange.const import DOMAIN
from tests.conftest import FIRMWARE
from tests.harness.develop import CONFIG, SIM_MAC
from tests.harness.node import Node, NodeFactory
from tests.integration.conftest import SIM, setup_node


def _entities(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        if isinstance(node.get("entity"), str):
            found.add(node["entity"])
        for value in node.values():
            found |= _entities(value)
    elif isinstance(node, list):
        for value in node:
            found |= _entities(value)
    return found


async def test_dashboard(
    hass: HomeAssistant, hass_ws_client: Any, node_factory: NodeFactory, tmp_path: Path
) -> None:
    hass.config.config_dir = str(tmp_path)
    shutil.copytree(CONFIG / "dashboards", tmp_path / "dashboards")
    assert await async_setup_component(
        hass,
        "lovelace",
        {
            "lovelace": {
                "dashboards": {
                    "data-exchange": {
                        "mode": "yaml",
                        "filename": "dashboards/data_exchange.yaml",
                        "title": "Data Exchange",
                    }
                }
            }
        },
    )
    # The integration registers its export download view at setup. Home Assistant's own
    # server never freezes its router (components load after start); the test client's
    # server does, so the integration is set up before the client starts it.
    assert await async_setup_component(hass, DOMAIN, {})
    client = await hass_ws_client(hass)
    await client.send_json(
        {"id": 1, "type": "lovelace/config", "url_path": "data-exchange"}
    )
    message = await client.receive_json()
    assert message["success"], message
    config = message["result"]
    assert [v["path"] for v in config["views"]] == ["nodes", "history"]
    shown = _entities(config)
    assert len(shown) >= 15
    # The simulated node scripts/develop starts (same MAC, so the same entity IDs).
    node = Node(node_factory.build(FIRMWARE / "sim-node.yaml", **SIM), mac=SIM_MAC)
    node_factory.nodes.append(node)
    node.start()
    await setup_node(hass, node)
    missing = {e for e in shown if hass.states.get(e) is None}
    # Every entity the dashboard shows exists.
    assert missing == set()
