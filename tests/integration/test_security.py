"""What a node sends beyond our frames is never acted on."""

from __future__ import annotations

import asyncio

from homeassistant.core import HomeAssistant, ServiceCall, callback

from custom_components.data_exchange.listeners import Topic
from tests.conftest import NODES
from tests.harness.node import NodeFactory
from tests.integration.conftest import setup_node


async def test_node_cannot_make_home_assistant_run_actions(
    hass: HomeAssistant, node_factory: NodeFactory
) -> None:
    calls: list[ServiceCall] = []
    events: list[object] = []

    @callback
    def danger(call: ServiceCall) -> None:
        calls.append(call)

    @callback
    def not_ours(event: object) -> None:
        events.append(event)

    hass.services.async_register("test", "danger", danger)
    hass.bus.async_listen("esphome.not_ours", not_ours)
    node = node_factory.start(NODES / "asks-action.yaml")
    entry = await setup_node(hass, node)
    manager = entry.runtime_data
    stats = manager.connection.stats
    enough = asyncio.Event()

    @callback
    def ignored() -> None:
        if stats.ignored_calls >= 20:
            enough.set()

    unsub = manager.listeners.add_topic(Topic.IGNORED, ignored)
    # The node asked many times (each request counted and dropped) ...
    async with asyncio.timeout(15):
        await enough.wait()
    unsub()
    await hass.async_block_till_done()
    # ... and nothing ran, nothing reached the event bus.
    assert calls == []
    assert events == []
