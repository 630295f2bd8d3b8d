"""scripts/develop: Home Assistant with the integration and a simulated node.

Run inside the project environment (scripts/develop does that). Ctrl-C stops Home
Assistant and every node started here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import signal
import subprocess
import sys

from tests.harness.node import REPO, Node, NodeBuild

SIM_NODE = REPO / "esphome" / "sim-node.yaml"
CONFIG = REPO / "config"
SIM_MAC = "02:44:58:00:00:01"  # the dashboard's entity IDs follow from it


def prepare_entry(node: Node) -> None:
    """Add the simulated node as a config entry, so its values show right after onboarding.

    The entry is written in Home Assistant's own storage format, produced by its ConfigEntry
    class (Home Assistant is not running yet). An existing entry for the node is kept.
    """
    from types import MappingProxyType

    from homeassistant.config_entries import STORAGE_VERSION_MINOR, ConfigEntry

    from custom_components.data_exchange.const import (
        CONF_DEVICE_NAME,
        CONF_NOISE_PSK,
        DOMAIN,
    )

    path = CONFIG / ".storage" / "core.config_entries"
    stored = (
        json.loads(path.read_text())
        if path.exists()
        else {
            "version": 1,
            "minor_version": STORAGE_VERSION_MINOR,
            "key": "core.config_entries",
            "data": {"entries": []},
        }
    )
    entries = stored["data"]["entries"]
    unique_id = node.mac.lower()
    if any(e["domain"] == DOMAIN and e["unique_id"] == unique_id for e in entries):
        return
    entry = ConfigEntry(
        data={
            "host": node.host,
            "port": node.port,
            CONF_NOISE_PSK: None,
            CONF_DEVICE_NAME: node.name,
        },
        discovery_keys=MappingProxyType({}),
        domain=DOMAIN,
        minor_version=1,
        options={},
        source="user",
        title="Simulated node",
        unique_id=unique_id,
        version=1,
        subentries_data=None,
    )
    entries.append(json.loads(json.dumps(entry.as_dict(), default=str)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stored, indent=2))
    print(f"added the simulated node as a config entry ({path})")


def main() -> int:
    nodes: list[Node] = []
    hass: subprocess.Popen[bytes] | None = None
    try:
        if SIM_NODE.exists():
            print(
                f"building the simulated node {SIM_NODE.name} (cached after the first run)"
            )
            build = NodeBuild.compile(SIM_NODE)
            node = Node(
                build,
                port=int(os.environ.get("DX_NODE_PORT", "6053")),
                mac=os.environ.get("DX_NODE_MAC", SIM_MAC),
            )
            nodes.append(node.start())
            prepare_entry(node)
            print(
                f"simulated node {node.name} on {node.host}:{node.port} (log {node.log_path})"
            )
        (CONFIG / "custom_components").unlink(missing_ok=True)
        (CONFIG / "custom_components").symlink_to(Path("..") / "custom_components")
        print(
            "starting Home Assistant on http://localhost:8123 (Ctrl-C stops everything)"
        )
        sys.stdout.flush()
        hass = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "homeassistant",
                "--config",
                str(CONFIG),
                "--skip-pip",
            ],
            stdin=subprocess.DEVNULL,
        )
        return hass.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if hass is not None and hass.poll() is None:
            hass.send_signal(signal.SIGINT)
            try:
                hass.wait(60)
            except subprocess.TimeoutExpired:
                hass.kill()
                hass.wait()
        for node in nodes:
            node.cleanup()


if __name__ == "__main__":
    sys.exit(main())
