"""Benchmark 6 (scripts/bench): a node comes back -> Home Assistant has it again.

The node is killed (SIGKILL: a crash or power cut) and started again on the same port,
coming up with its firmware defaults (its preferences removed). Measured from the moment
its API port accepts connections (a probe connecting every 5 ms from the test, the node's
"up") to:

* ``connected``: the integration has an API session again (ours: the manager says so;
  Home Assistant's esphome integration: its entities are available again);
* ``desired`` (ours only): every desired value is on the node again, as a plain API client
  subscribed to the node's states sees it. The core integration has no desired values: a
  restarted node keeps its firmware defaults until someone sets them again.

Both ways follow the same kind of node (tests/harness/yaml_gen.peer_node), one at a time,
without zeroconf (none on loopback): what brings the node back is each integration's own
reconnect logic (ours: the return watch, reachability.py, then ReconnectLogic).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from homeassistant.setup import async_setup_component
import pytest

from custom_components.data_exchange.listeners import Topic
from custom_components.data_exchange.manager import NodeManager
from tests.bench.bench_exchange import ROUNDS, summary
from tests.bench.bench_peers import (
    CYCLE_MS,
    PERIOD_MS,
    POINTS,
    core_esphome_entry,
    point_ids,
    record,
)
from tests.harness.node import Node, NodeFactory
from tests.harness.peer import Peer
from tests.harness.yaml_gen import peer_node
from tests.integration.conftest import entry_for, live, until

TIMEOUT = 60.0  # generous: ReconnectLogic's back-off alone can take tens of seconds


async def connected_at(manager: NodeManager, within: float) -> float:
    """When ``manager`` has its session again: told by its NODE topic (connectivity), so
    no Home Assistant state needs to change (the node may come up already showing the
    desired values, when the first desired frame beats its first frame)."""
    done: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    def check() -> None:
        if manager.connected and not done.done():
            done.set_result(time.perf_counter())

    unsub = manager.listeners.add_topic(Topic.NODE, check)
    try:
        check()
        async with asyncio.timeout(within):
            return await done
    finally:
        unsub()


async def node_up(node: Node) -> float:
    """Start ``node`` (in a thread: its own readiness wait blocks) and return when its
    API port first accepts a connection, probed every 5 ms from here."""
    starting = asyncio.get_running_loop().run_in_executor(None, node.start)
    try:
        while True:
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection(node.host, node.port)
                up = time.perf_counter()
                writer.close()
                return up
            await asyncio.sleep(
                0.005
            )  # the probe's own period, not a wait for a result
    finally:
        await starting


async def test_node_return(
    hass: HomeAssistant, node_factory: NodeFactory, mock_async_zeroconf: Any
) -> None:
    dx_node = node_factory.start(peer_node(POINTS, True, PERIOD_MS, CYCLE_MS))
    plain_node = node_factory.start(peer_node(POINTS, False, PERIOD_MS, CYCLE_MS))
    results: dict[str, list[dict[str, float]]] = {"frame": [], "core_esphome": []}

    # Zeroconf first, as in every Home Assistant (default_config): both integrations use its
    # shared (here mocked) instance. Without it ReconnectLogic makes an instance of its own,
    # which the test plugin's zeroconf mock cannot close.
    assert await async_setup_component(hass, "zeroconf", {})
    # Ours: desired values set once, then the node restarted with its defaults, ROUNDS times.
    entry = entry_for(dx_node, stale_after=30.0)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await until(hass, lambda: live(hass, entry), 30, "frame mode live")
    manager: NodeManager = entry.runtime_data  # after the first connection's reload
    ids = point_ids(hass, entry)
    for index, entity_id in enumerate(ids):
        await hass.services.async_call(
            "number",
            "set_value",
            {"entity_id": entity_id, "value": float(index + 1)},
            blocking=True,
        )
    want = {f"p{i}": float(i + 1) for i in range(POINTS)}
    for _ in range(ROUNDS):
        async with Peer(dx_node, "bench observer", states=True) as observer:
            await observer.until(lambda: observer.states == observer.states | want)
        dx_node.kill()
        await until(hass, lambda: not manager.connected, TIMEOUT, "ours: disconnected")
        dx_node.reset_preferences()  # back with its firmware defaults
        waiter = asyncio.ensure_future(connected_at(manager, TIMEOUT))
        up = await node_up(dx_node)
        connected = await waiter
        async with Peer(dx_node, "bench observer", states=True) as observer:
            await observer.until(
                lambda: all(observer.states.get(k) == v for k, v in want.items()),
                TIMEOUT,
            )
            desired = time.perf_counter()
        results["frame"].append(
            {"connected_s": connected - up, "desired_s": desired - up}
        )
    assert await hass.config_entries.async_unload(entry.entry_id)

    # Home Assistant's esphome integration on the plain node.
    core = await core_esphome_entry(hass, plain_node)
    core.add_to_hass(hass)
    assert await hass.config_entries.async_setup(core.entry_id)
    registry = er.async_get(hass)

    def core_available() -> bool:
        entities = er.async_entries_for_config_entry(registry, core.entry_id)
        states = [hass.states.get(e.entity_id) for e in entities]
        return bool(states) and all(
            s is not None and s.state != "unavailable" for s in states
        )

    await until(hass, core_available, 30, "core esphome available")
    for _ in range(ROUNDS):
        plain_node.kill()
        await until(hass, lambda: not core_available(), TIMEOUT, "core: unavailable")
        plain_node.reset_preferences()  # back with its firmware defaults
        up = await node_up(plain_node)
        await until(hass, core_available, TIMEOUT, "core: available again")
        results["core_esphome"].append({"connected_s": time.perf_counter() - up})
    assert await hass.config_entries.async_unload(core.entry_id)

    record(
        "return",
        str(POINTS),
        {
            "rounds": ROUNDS,
            "frame": {
                "connected_s": summary([r["connected_s"] for r in results["frame"]]),
                "desired_s": summary([r["desired_s"] for r in results["frame"]]),
            },
            "core_esphome": {
                "connected_s": summary(
                    [r["connected_s"] for r in results["core_esphome"]]
                ),
            },
        },
    )


pytestmark = pytest.mark.usefixtures("socket_enabled")
