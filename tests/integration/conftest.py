"""Fixtures for tests through Home Assistant against real simulated nodes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from homeassistant.const import CONF_HOST, CONF_PORT, EVENT_STATE_CHANGED
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.helpers.device_registry import format_mac
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.data_exchange.const import (
    CONF_DESIRED_INTERVAL,
    CONF_DEVICE_NAME,
    CONF_NOISE_PSK,
    CONF_STALE_AFTER,
    DOMAIN,
)
from custom_components.data_exchange.protocol import FRAME_EVENT
from tests.conftest import FIRMWARE, NODES
from tests.harness.node import Node, NodeFactory

# The same build as the firmware tests: frames every 100 ms, fail-safe after 1.5 s.
SIM = {"cycle": "100ms", "failsafe_timeout": "1500ms"}
# Home Assistant sends desired frames every 200 ms in these tests.
FAST_OPTIONS = {CONF_DESIRED_INTERVAL: 0.2, CONF_STALE_AFTER: 2.0}


@pytest.fixture
def sim_node(node_factory: NodeFactory) -> Node:
    return node_factory.start(FIRMWARE / "sim-node.yaml", **SIM)


@pytest.fixture
def plain_node(node_factory: NodeFactory) -> Node:
    """An ESPHome node without our component (entity mode)."""
    return node_factory.start(NODES / "minimal.yaml")


def entry_for(node: Node, **options: Any) -> MockConfigEntry:
    return MockConfigEntry(
        domain=DOMAIN,
        title=node.name,
        unique_id=format_mac(node.mac),
        data={
            CONF_HOST: node.host,
            CONF_PORT: node.port,
            CONF_NOISE_PSK: None,
            CONF_DEVICE_NAME: node.name,
        },
        options={**FAST_OPTIONS, **options},
    )


async def until(
    hass: HomeAssistant,
    predicate: Callable[[], bool],
    within: float = 15.0,
    what: str | None = None,
) -> None:
    """Wait until ``predicate`` holds, re-checked on every state change (no fixed sleeps).

    With ``what``, a timeout fails as an AssertionError that says what was awaited.
    """
    if predicate():
        return
    done = hass.loop.create_future()

    @callback
    def check(_event: Event) -> None:
        if not done.done() and predicate():
            done.set_result(None)

    unsub = hass.bus.async_listen(EVENT_STATE_CHANGED, check)
    try:
        async with asyncio.timeout(within):
            await done
    except TimeoutError:
        if what is None:
            raise
        raise AssertionError(f"{what}: not reached within {within} s") from None
    finally:
        unsub()


async def setup_node(
    hass: HomeAssistant, node: Node, **options: Any
) -> MockConfigEntry:
    """Add the node and wait until its point entities exist and show live values."""
    entry = entry_for(node, **options)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    await until(
        hass, lambda: bool(entity_ids(hass, entry, "sensor")) and live(hass, entry)
    )
    return entry


def entity_ids(hass: HomeAssistant, entry: MockConfigEntry, domain: str) -> list[str]:
    from homeassistant.helpers import entity_registry as er

    return [
        e.entity_id
        for e in er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
        if e.domain == domain
    ]


def live(hass: HomeAssistant, entry: MockConfigEntry) -> bool:
    """The node is connected and its values are not stale."""
    manager = getattr(entry, "runtime_data", None)
    return bool(manager and manager.connected and manager.stale_reason is None)


class FrameWatch:
    """Counts the full frames (cycles) the manager receives from its node; a test can
    await them.

    Instrumentation only: it wraps the manager's event entry point, so a test can wait
    for "n more frames" when no state changes (a node whose values stand still), or for a
    condition checked right after each frame, change frames (protocol 3) included; only
    full frames count, so "converged within two frames" means within two of the node's
    cycles, however many changes went out in between.
    """

    def __init__(self, manager: Any) -> None:
        self.manager = manager
        self.events = 0
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[int]]] = []
        original = manager.on_node_event

        def on_node_event(name: str, data: dict[str, str]) -> None:
            original(name, data)
            if name != FRAME_EVENT:
                return
            if "i" not in data and "h" not in data:  # not a change or backlog frame
                self.events += 1
            for predicate, future in list(self._waiters):
                if not future.done() and predicate():
                    future.set_result(self.events)

        manager.on_node_event = on_node_event

    async def until(self, predicate: Callable[[], bool], within: float = 15.0) -> int:
        """Wait for a frame after which ``predicate`` holds; the frame count then."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        waiter = (predicate, future)
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(within):
                return await future
        finally:
            self._waiters.remove(waiter)

    async def more(self, count: int, within: float = 15.0) -> None:
        """Wait until ``count`` more frames have been handled."""
        target = self.events + count
        await self.until(lambda: self.events >= target, within)


def problems_in_log(records: list[Any]) -> list[str]:
    """Log records that must never appear: errors, and anything with a traceback."""
    return [
        f"{r.name}: {r.getMessage()}" for r in records if r.levelno >= 40 or r.exc_info
    ]
