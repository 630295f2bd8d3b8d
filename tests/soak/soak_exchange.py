"""Soak (scripts/soak): many cycles at a fast cycle against several real nodes.

Checks what only shows over time: memory that grows (Home Assistant's process and every
node's), frames that go missing, anything rejected or refused, the connection dropping.
Results go to docs/soak.json; docs/reliability.md quotes them. Home Assistant writes a new
setpoint to every node at each of the ten memory samples; the last one must be on every
node. Not part of scripts/test (it takes minutes).

DX_SOAK_CYCLES (default 50,000 frames per node), DX_SOAK_NODES (4), DX_SOAK_CYCLE_MS (10).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
import time

from homeassistant.core import HomeAssistant
import pytest

from custom_components.data_exchange.const import (
    CONF_DESIRED_INTERVAL,
    CONF_STALE_AFTER,
)
from custom_components.data_exchange.manager import NodeManager
from tests.conftest import FIRMWARE
from tests.harness.node import REPO, Node, NodeFactory
from tests.integration.conftest import FrameWatch, setup_node

CYCLES = int(os.environ.get("DX_SOAK_CYCLES", "50000"))
NODES = int(os.environ.get("DX_SOAK_NODES", "4"))
CYCLE_MS = int(os.environ.get("DX_SOAK_CYCLE_MS", "10"))
RESULTS = REPO / "docs" / "soak.json"
# Memory is compared from the end of the warm-up (caches, first allocations) to the end.
WARMUP = CYCLES // 10
SAMPLES = 10


def rss_kib(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def setpoint_index(manager: NodeManager) -> int:
    return next(p.index for p in manager.points if p.info.object_id == "setpoint")


@pytest.fixture
def soak_nodes(node_factory: NodeFactory) -> list[Node]:
    return [
        node_factory.start(
            FIRMWARE / "sim-node.yaml",
            cycle=f"{CYCLE_MS}ms",
            failsafe_timeout="0s",
        )
        for _ in range(NODES)
    ]


async def test_soak(hass: HomeAssistant, soak_nodes: list[Node]) -> None:
    entries = [
        await setup_node(
            hass,
            node,
            **{CONF_DESIRED_INTERVAL: CYCLE_MS / 1000, CONF_STALE_AFTER: 2.0},
        )
        for node in soak_nodes
    ]
    managers = [entry.runtime_data for entry in entries]
    watches = [FrameWatch(c) for c in managers]
    connects = [c.connection.stats.connects for c in managers]
    start = time.monotonic()
    cpu_start = time.process_time()

    async def frames(count: int) -> None:
        # Generous: a slow machine may run the cycle slower; the figures say how fast.
        await asyncio.gather(
            *(w.until(lambda w=w: w.events >= count, CYCLES) for w in watches)
        )

    await frames(WARMUP)
    memory = [
        {
            "frames": WARMUP,
            "ha_kib": rss_kib(),
            "nodes_kib": [rss_kib(n.process.pid) for n in soak_nodes if n.process],
        }
    ]
    step = (CYCLES - WARMUP) // SAMPLES
    for i in range(1, SAMPLES + 1):
        target = WARMUP + i * step
        # Home Assistant writes too: a new setpoint for every node at every step.
        for manager in managers:
            await manager.async_write(setpoint_index(manager), 15.0 + i, None)
        await frames(target)
        memory.append(
            {
                "frames": target,
                "ha_kib": rss_kib(),
                "nodes_kib": [rss_kib(n.process.pid) for n in soak_nodes if n.process],
            }
        )
    elapsed = time.monotonic() - start
    # The last writes were applied everywhere.
    assert all(c.reported_value("setpoint") == 15.0 + SAMPLES for c in managers)
    cpu = time.process_time() - cpu_start
    first, last = memory[0], memory[-1]
    ha_growth = last["ha_kib"] / first["ha_kib"] - 1
    node_growth = [
        b / a - 1 for a, b in zip(first["nodes_kib"], last["nodes_kib"], strict=True)
    ]
    result = {
        "nodes": NODES,
        "cycle_ms": CYCLE_MS,
        "frames_per_node": CYCLES,
        "elapsed_s": round(elapsed, 1),
        "frames_per_s": round(sum(w.events for w in watches) / elapsed, 1),
        "ha_cpu_share": round(cpu / elapsed, 3),
        "missed": sum(c.engine.stats.missed for c in managers),
        "duplicates": sum(c.engine.stats.duplicates for c in managers),
        "out_of_order": sum(c.engine.stats.out_of_order for c in managers),
        "rejected": sum(c.malformed_frames for c in managers),
        # Protocol 2: desired frames the nodes refused (was "rejected_by_nodes").
        "refused_by_nodes": sum(c.engine.stats.refused_by_node for c in managers),
        "reconnects": sum(
            c.connection.stats.connects - n
            for c, n in zip(managers, connects, strict=True)
        ),
        "ha_memory_growth": round(ha_growth, 4),
        "node_memory_growth_max": round(max(node_growth), 4),
        "memory": memory,
        "measured": time.strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "memory"}, indent=2))
    assert result["missed"] == 0
    assert result["rejected"] == 0
    assert result["refused_by_nodes"] == 0
    assert result["reconnects"] == 0
    assert ha_growth < 0.05, memory
    assert max(node_growth) < 0.05, memory
