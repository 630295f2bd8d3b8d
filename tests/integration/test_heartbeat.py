"""A settled node gets heartbeats, not a desired frame per interval (heartbeat.py), against
a real node: nothing a frame per interval did is lost (writes, Home Assistant winning over
a local change, the node's fail-safe)."""

from __future__ import annotations

import os
import signal

from homeassistant.core import HomeAssistant

from custom_components.data_exchange.frame_mode import FrameMode
from custom_components.data_exchange.heartbeat import heartbeat_period
from custom_components.data_exchange.manager import NodeManager
from custom_components.data_exchange.values import StaleReason
from tests.conftest import FIRMWARE
from tests.harness.node import NodeFactory
from tests.harness.peer import Peer
from tests.harness.yaml_gen import points_node
from tests.integration.conftest import FAST_OPTIONS, FrameWatch, setup_node, until
from tests.integration.test_exchange import find

INTERVAL = FAST_OPTIONS["desired_interval"]


async def test_a_settled_node_without_failsafe_gets_no_frame_per_interval(
    hass: HomeAssistant, node_factory: NodeFactory
) -> None:
    node = node_factory.start(
        FIRMWARE / "sim-node.yaml", cycle="100ms", failsafe_timeout="0s"
    )
    entry = await setup_node(hass, node, writer_priority_delay=60.0)
    manager: NodeManager = entry.runtime_data
    watch = FrameWatch(manager)
    await watch.until(manager.engine.holds_desired)
    assert isinstance(manager.exchange, FrameMode)
    before, wakes = manager.engine.desired_seq, manager.exchange.wakes
    await watch.more(20)  # 2 s: 10 intervals, a fifth of a heartbeat
    assert heartbeat_period(INTERVAL, 0) >= 10 * INTERVAL
    assert manager.engine.desired_seq - before <= 1
    # Home Assistant woke up for this node only at its stale deadline (2 s after each
    # frame, re-armed when it passes) and the heartbeat, not at every interval.
    assert manager.exchange.wakes - wakes <= 3
    # A write goes out at once all the same, and Home Assistant still wins over a local
    # change made right after it (the node no longer holds the desired value: frames go
    # out every interval again until it does).
    async with Peer(node, "test observer", states=True) as view:
        setpoint = find(hass, entry, "number", "setpoint")
        await hass.services.async_call(
            "number", "set_value", {"entity_id": setpoint, "value": 25.0}, blocking=True
        )
        await until(hass, lambda: view.states.get("setpoint") == 25.0)
        await watch.until(manager.engine.holds_desired)
        await view.call("local_set_setpoint", value=30.0)
        await until(hass, lambda: view.states.get("setpoint") == 30.0)
        await until(hass, lambda: view.states.get("setpoint") == 25.0)
    assert hass.states.get(setpoint).state == "25.0"


async def test_a_node_with_a_failsafe_never_falls_into_it_between_heartbeats(
    hass: HomeAssistant, node_factory: NodeFactory
) -> None:
    node = node_factory.start(
        FIRMWARE / "sim-node.yaml", cycle="100ms", failsafe_timeout="1500ms"
    )
    entry = await setup_node(hass, node)
    manager: NodeManager = entry.runtime_data
    watch = FrameWatch(manager)
    await watch.until(manager.engine.holds_desired)
    failsafe_seen: list[bool] = []

    def frame_checked() -> bool:
        failsafe_seen.append(manager.engine.failsafe_active)
        return False

    before = manager.engine.desired_seq
    waiter = hass.async_create_task(watch.until(frame_checked, within=60))
    await watch.more(40)  # 4 s: more than twice the fail-safe timeout
    waiter.cancel()
    sent = manager.engine.desired_seq - before
    period = heartbeat_period(INTERVAL, 1500)  # 0.5 s
    assert period > INTERVAL
    # About 4 s / 0.5 s = 8 heartbeats instead of 20 frames; never fail-safe.
    assert 4 <= sent <= 12
    assert len(failsafe_seen) >= 40
    assert not any(failsafe_seen)
    assert manager.engine.stats.restarts == 0


async def test_silence_is_noticed_each_time_the_node_falls_silent(
    hass: HomeAssistant, node_factory: NodeFactory
) -> None:
    """The wake-up for the stale deadline is armed again when a silent node's frames come
    back: the second silence of one connection is noticed as soon as the first (within
    stale_after, 2 s here, not at the next heartbeat). A node whose values never change
    (template numbers): its frames after the silence change nothing else."""
    node = node_factory.start(points_node(3, cycle="100ms"))
    entry = await setup_node(hass, node)
    manager: NodeManager = entry.runtime_data
    assert node.process is not None
    stale_after = FAST_OPTIONS["stale_after"]
    assert heartbeat_period(INTERVAL, 0) > 2 * stale_after
    for _ in range(2):
        await FrameWatch(manager).until(manager.engine.holds_desired)
        os.kill(node.process.pid, signal.SIGSTOP)  # silent, well within the keepalive
        try:
            await until(
                hass,
                lambda: manager.stale_reason is StaleReason.SILENT,
                within=stale_after + 2,
                what="values stale by silence",
            )
        finally:
            os.kill(node.process.pid, signal.SIGCONT)
        await until(hass, lambda: manager.stale_reason is None, what="live again")
    assert manager.connected
