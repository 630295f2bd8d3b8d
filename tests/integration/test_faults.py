"""Faults with real nodes: after each, no desired value is lost, the node converges within
two frames of coming back, each outage is logged once, nothing is logged as an error, and
no task or socket is left behind.

Outages are made the way they happen: the node killed (-9), frozen (SIGSTOP) past the API
keepalive, restarted with firmware defaults, Home Assistant restarted, and the network
between them cut (a proxy that resets every connection).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import contextlib
import gc
import logging
import os
from pathlib import Path
import signal
from typing import Any

from homeassistant.const import CONF_PORT
from homeassistant.core import Context, HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.data_exchange import connection as connection_module
from custom_components.data_exchange.const import DOMAIN
from custom_components.data_exchange.listeners import Topic
from custom_components.data_exchange.manager import NodeManager
from tests.harness.node import Node
from tests.harness.proxy import TcpProxy
from tests.integration.conftest import (
    FrameWatch,
    entity_ids,
    live,
    problems_in_log,
    setup_node,
    until,
)

LOGGER = "custom_components.data_exchange"


def find(hass: HomeAssistant, entry: MockConfigEntry, domain: str, suffix: str) -> str:
    return next(e for e in entity_ids(hass, entry, domain) if e.endswith(suffix))


def converged(manager: NodeManager) -> bool:
    """Every desired value is what the node reports."""
    engine = manager.engine
    return manager.connected and all(
        (reported := engine.reported[index]) is not None
        and reported.value == desired.value
        for index, desired in engine.desired.items()
    )


class Outages:
    """What a test checks after each fault: frames to converge, log lines, leaks."""

    def __init__(
        self,
        hass: HomeAssistant,
        manager: NodeManager,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        self.hass = hass
        self.manager = manager
        self.caplog = caplog
        self.watch = FrameWatch(manager)
        self.back_at: int | None = None
        manager.listeners.add_topic(Topic.NODE, self._on_node)
        self.tasks = len(asyncio.all_tasks())
        self.sockets = _sockets()

    def _on_node(self) -> None:
        # Notified when the connection comes up, after the desired frame went out.
        if self.manager.connected:
            if self.back_at is None:
                self.back_at = self.watch.events
        else:
            self.back_at = None

    async def gone(self) -> None:
        await until(self.hass, lambda: not self.manager.connected, 30)

    async def recovered(self) -> int:
        """Wait until the node is back and converged; the frames that took since it was
        back (the frame that shows it included)."""
        await until(self.hass, lambda: live(self.hass, self.manager.entry), 60)
        if converged(self.manager) and self.back_at is not None:
            return self.watch.events - self.back_at
        at = await self.watch.until(lambda: converged(self.manager), 30)
        assert self.back_at is not None
        return at - self.back_at

    def lines(self, words: str) -> int:
        return len(
            [
                r
                for r in self.caplog.records
                if r.name.startswith(LOGGER) and words in r.getMessage()
            ]
        )

    def check(self, outages: int) -> None:
        """One line when the node goes, one when it is back; no errors; nothing leaked."""
        assert self.lines("is unavailable") == outages
        assert self.lines("is available again") == outages
        assert problems_in_log(self.caplog.records) == []
        assert len(asyncio.all_tasks()) <= self.tasks
        sockets = _sockets()
        assert sockets["tcp"] <= self.sockets["tcp"]
        assert sockets["unix"] <= self.sockets["unix"]
        # aioesphomeapi opens one mDNS listener (UDP 5353) after a first disconnect when
        # Home Assistant's zeroconf is not loaded (as here); one, never one per outage.
        assert sockets["udp"] <= self.sockets["udp"] + 1


def _sockets() -> dict[str, int]:
    """This process's sockets by kind (tcp, udp, unix), read from /proc."""
    gc.collect()  # what only waits for the garbage collector is not a leak
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    kinds: dict[str, int] = {}
    for kind in ("tcp", "tcp6", "udp", "udp6", "unix"):
        rows = Path(f"/proc/net/{kind}").read_text().splitlines()[1:]
        found = sum(1 for row in rows if set(row.split()) & inodes)
        kinds[kind.removesuffix("6")] = kinds.get(kind.removesuffix("6"), 0) + found
    return kinds


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger=LOGGER)
    return caplog


async def write_some(
    hass: HomeAssistant, entry: MockConfigEntry, setpoint: float, relay: bool
) -> None:
    await hass.services.async_call(
        DOMAIN,
        "write",
        {
            "values": {
                find(hass, entry, "number", "setpoint"): setpoint,
                find(hass, entry, "switch", "relay"): relay,
                find(hass, entry, "select", "mode"): "comfort",
            }
        },
        blocking=True,
    )


@pytest.mark.parametrize("defaults", [False, True], ids=["kill", "kill_and_defaults"])
async def test_node_killed_mid_cycle(
    hass: HomeAssistant,
    sim_node: Node,
    logs: pytest.LogCaptureFixture,
    defaults: bool,
) -> None:
    entry = await setup_node(hass, sim_node)
    manager: NodeManager = entry.runtime_data
    outages = Outages(hass, manager, logs)
    # The write goes out and the node dies before (or while) it applies it.
    await write_some(hass, entry, 26.5, True)
    sim_node.kill()
    await outages.gone()
    if defaults:
        sim_node.reset_preferences()  # the node comes back with its firmware defaults
    sim_node.start()
    assert await outages.recovered() <= 2
    assert manager.reported_value("setpoint") == 26.5
    assert manager.reported_value("relay") is True
    assert manager.reported_value("mode") == "comfort"
    outages.check(1)


async def test_node_frozen_past_the_keepalive(
    hass: HomeAssistant,
    sim_node: Node,
    logs: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A short keepalive, so "past the keepalive" is 2.25 s (4.5 intervals), not 90 s.
    monkeypatch.setattr(connection_module, "KEEPALIVE", 0.5)
    entry = await setup_node(hass, sim_node)
    manager: NodeManager = entry.runtime_data
    outages = Outages(hass, manager, logs)
    assert sim_node.process is not None
    os.kill(sim_node.process.pid, signal.SIGSTOP)
    try:
        # Silent first (stale), then the keepalive ends the connection.
        await outages.gone()
        # Written while the node is away: kept and applied when it returns.
        await write_some(hass, entry, 24.0, True)
    finally:
        os.kill(sim_node.process.pid, signal.SIGCONT)
    assert await outages.recovered() <= 2
    assert manager.reported_value("setpoint") == 24.0
    assert manager.reported_value("relay") is True
    outages.check(1)


async def test_home_assistant_restart_right_after_a_write(
    hass: HomeAssistant, sim_node: Node, logs: pytest.LogCaptureFixture
) -> None:
    entry = await setup_node(hass, sim_node)
    sockets = _sockets()
    await write_some(hass, entry, 23.5, True)
    # Stopped before the node acknowledged anything: the write is in the Store only.
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    assert await hass.config_entries.async_setup(entry.entry_id)
    manager: NodeManager = entry.runtime_data
    outages = Outages(hass, manager, logs)
    outages.sockets = sockets  # as many as before the restart, not more
    assert await outages.recovered() <= 2
    assert manager.reported_value("setpoint") == 23.5
    assert manager.reported_value("relay") is True
    assert manager.reported_value("mode") == "comfort"
    # An unload is not an outage: nothing logged.
    outages.check(0)


@pytest.fixture
async def proxy(sim_node: Node) -> AsyncIterator[TcpProxy]:
    server = await TcpProxy(sim_node.port).start()
    yield server
    await server.close()


async def test_hundred_network_cuts(
    hass: HomeAssistant,
    sim_node: Node,
    proxy: TcpProxy,
    logs: pytest.LogCaptureFixture,
) -> None:
    entry = await setup_node(hass, sim_node)
    # Through the proxy from now on.
    hass.config_entries.async_update_entry(
        entry, data={**entry.data, CONF_PORT: proxy.port}
    )
    await hass.config_entries.async_reload(entry.entry_id)
    manager: NodeManager = entry.runtime_data
    await until(hass, lambda: live(hass, entry), 30)
    outages = Outages(hass, manager, logs)
    slowest = 0
    for cut in range(1, 101):
        proxy.cut()
        await outages.gone()
        if cut % 10 == 0:
            # Writes land in the middle of the outages: the last one must win.
            await write_some(hass, entry, 15.0 + cut / 10, cut % 20 == 0)
        slowest = max(slowest, await outages.recovered())
    assert slowest <= 2
    assert manager.reported_value("setpoint") == 25.0
    assert manager.reported_value("relay") is True
    assert proxy.open_connections == 1
    assert manager.connection.stats.connects == 101
    outages.check(100)
    assert await hass.config_entries.async_unload(entry.entry_id)
    await proxy.closed()
    assert proxy.open_connections == 0


async def test_service_write_racing_a_ui_write(
    hass: HomeAssistant,
    sim_node: Node,
    logs: pytest.LogCaptureFixture,
    hass_admin_user: Any,
) -> None:
    entry = await setup_node(hass, sim_node)
    manager: NodeManager = entry.runtime_data
    outages = Outages(hass, manager, logs)
    setpoint = find(hass, entry, "number", "setpoint")
    relay = find(hass, entry, "switch", "relay")
    brightness = find(hass, entry, "number", "led_brightness")
    ui = Context(user_id=hass_admin_user.id)

    def service(values: dict[str, Any]) -> Any:
        return hass.services.async_call(
            DOMAIN, "write", {"values": values}, blocking=True
        )

    def ui_set(entity_id: str, value: float) -> Any:
        return hass.services.async_call(
            "number",
            "set_value",
            {"entity_id": entity_id, "value": value},
            blocking=True,
            context=ui,
        )

    # The same point from both sides at once, and different points from both sides.
    await asyncio.gather(
        service({setpoint: 30.0, relay: True}),
        ui_set(setpoint, 19.0),
        ui_set(brightness, 40.0),
    )
    index = next(p.index for p in manager.points if p.info.object_id == "setpoint")
    winner = manager.engine.desired[index]
    assert winner.value in (30.0, 19.0)
    await outages.watch.until(lambda: converged(manager))
    # Whichever came last wins everywhere: desired value, node, Home Assistant, and it
    # says who; the writes to other points are not lost.
    assert manager.reported_value("setpoint") == winner.value
    assert manager.reported_value("relay") is True
    assert manager.reported_value("led_brightness") == 40.0
    await until(hass, lambda: float(hass.states.get(setpoint).state) == winner.value)
    changed_by = hass.states.get(setpoint).attributes["changed_by"]
    assert changed_by == (
        "home_assistant" if winner.value == 30.0 else winner.changed_by
    )
    # It stays so: no flip-flop over the next frames.
    await outages.watch.more(10)
    assert manager.reported_value("setpoint") == winner.value
    outages.check(0)


def test_every_fault_of_the_issue_is_here() -> None:
    """docs/reliability.md lists these tests; keep both in step."""
    names = {n for n in globals() if n.startswith("test_")}
    doc = (Path(__file__).parents[2] / "docs" / "reliability.md").read_text()
    for name in names - {"test_every_fault_of_the_issue_is_here"}:
        assert name in doc, name
