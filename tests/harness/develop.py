"""scripts/develop: Home Assistant with the integration and a simulated node.

Run inside the project environment (scripts/develop does that). Ctrl-C stops Home
Assistant and every node started here.
"""

from __future__ import annotations

import os
from pathlib import Path
import signal
import subprocess
import sys

from tests.harness.node import REPO, Node, NodeBuild

SIM_NODE = REPO / "esphome" / "sim-node.yaml"
CONFIG = REPO / "config"


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
                mac=os.environ.get("DX_NODE_MAC", "02:44:58:00:00:01"),
            )
            nodes.append(node.start())
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
