"""Each blueprint, loaded into Home Assistant: triggered, and not triggered when it must not be.

The blueprints act on entities through actions, so the node entities are plain states here
and the actions they call are captured.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
import shutil
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.core import HomeAssistant, ServiceCall
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import (
    async_fire_time_changed,
    async_mock_service,
)

from tests.harness.node import REPO

BLUEPRINTS = REPO / "blueprints" / "automation" / "data_exchange"


@pytest.fixture
def config_dir(hass: HomeAssistant, tmp_path: Path) -> Path:
    """The blueprints installed in a configuration folder of this test's own."""
    hass.config.config_dir = str(tmp_path)
    shutil.copytree(
        BLUEPRINTS, tmp_path / "blueprints" / "automation" / "data_exchange"
    )
    return tmp_path


@pytest.fixture(autouse=True)
async def automations_off(hass: HomeAssistant) -> AsyncIterator[None]:
    """Detach every trigger (sun triggers keep a timer) before Home Assistant stops."""
    yield
    if hass.services.has_service("automation", "turn_off"):
        await hass.services.async_call(
            "automation", "turn_off", {"entity_id": "all"}, blocking=True
        )


async def automation(hass: HomeAssistant, name: str, inputs: dict[str, Any]) -> None:
    assert await async_setup_component(
        hass,
        "automation",
        {
            "automation": {
                "alias": name,
                "use_blueprint": {
                    "path": f"data_exchange/{name}.yaml",
                    "input": inputs,
                },
            }
        },
    )
    await hass.async_block_till_done()
    assert hass.states.get(f"automation.{name}") is not None, (
        "the blueprint did not load"
    )


async def advance(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, **delta: float
) -> None:
    freezer.tick(timedelta(**delta))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()


async def advance_while_waiting(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, **delta: float
) -> None:
    """Move time on while an automation run waits (wait_for_trigger).

    async_block_till_done would wait for that run itself; the timers fire synchronously
    and the runs they start are eager, so yielding to the loop a few times lets them reach
    their actions. No timed sleep.
    """
    freezer.tick(timedelta(**delta))
    async_fire_time_changed(hass)
    for _ in range(20):
        await asyncio.sleep(0)


def test_every_blueprint_is_tested() -> None:
    tested = {"night_pause", "threshold_alert", "node_offline", "follow", "stale_alert"}
    assert {p.stem for p in BLUEPRINTS.glob("*.yaml")} == tested


async def test_night_pause_fixed_times(
    hass: HomeAssistant, config_dir: Path, freezer: FrozenDateTimeFactory
) -> None:
    freezer.move_to(
        dt_util.as_utc(
            datetime(2026, 11, 23, 21, 59, 0, tzinfo=dt_util.get_default_time_zone())
        )
    )
    off = async_mock_service(hass, "switch", "turn_off")
    on = async_mock_service(hass, "switch", "turn_on")
    await automation(
        hass,
        "night_pause",
        {
            "acquisition": ["switch.node_a_acquisition", "switch.node_b_acquisition"],
            "pause_at": "22:00:00",
            "resume_at": "06:00:00",
        },
    )
    await advance(hass, freezer, minutes=1, seconds=1)
    assert len(off) == 1
    assert off[0].data["entity_id"] == [
        "switch.node_a_acquisition",
        "switch.node_b_acquisition",
    ]
    assert on == []
    await advance(hass, freezer, hours=8)
    assert len(on) == 1
    assert len(off) == 1


async def test_night_pause_follows_the_sun(
    hass: HomeAssistant, config_dir: Path, freezer: FrozenDateTimeFactory
) -> None:
    from homeassistant.helpers.sun import get_astral_event_next

    freezer.move_to(
        dt_util.as_utc(
            datetime(2026, 6, 21, 12, 0, tzinfo=dt_util.get_default_time_zone())
        )
    )
    off = async_mock_service(hass, "switch", "turn_off")
    on = async_mock_service(hass, "switch", "turn_on")
    await automation(
        hass,
        "night_pause",
        {
            "acquisition": ["switch.node_a_acquisition"],
            "use_sun": True,
            "pause_at": "22:00:00",
            "resume_at": "06:00:00",
        },
    )
    sunset = get_astral_event_next(hass, "sunset")
    sunrise = get_astral_event_next(hass, "sunrise", sunset)
    local_22 = dt_util.as_local(sunset).replace(hour=22, minute=0, second=0)
    events = sorted(
        [(sunset, "sunset"), (sunrise, "sunrise"), (dt_util.as_utc(local_22), "22:00")]
    )
    seen = []
    for when, name in events:
        freezer.move_to(when + timedelta(seconds=1))
        async_fire_time_changed(hass)
        await hass.async_block_till_done()
        seen.append((name, len(off), len(on)))
    # Sunset pauses, sunrise resumes; the fixed times are ignored in sun mode.
    assert {n: (o, i) for n, o, i in seen}["sunset"] == (1, 0)
    assert len(off) == 1
    assert len(on) == 1


async def test_threshold_alert_with_hysteresis(
    hass: HomeAssistant, config_dir: Path, freezer: FrozenDateTimeFactory
) -> None:
    alerts = async_mock_service(hass, "test", "alert")
    clears = async_mock_service(hass, "test", "clear")
    point = "sensor.node_temperature"
    hass.states.async_set(point, "20")
    await automation(
        hass,
        "threshold_alert",
        {
            "point": point,
            "threshold": 25,
            "hysteresis": 2,
            "duration": {"minutes": 1},
            "alert_actions": [{"action": "test.alert"}],
            "clear_actions": [{"action": "test.clear"}],
        },
    )
    # Above the threshold, but shorter than the minimum duration: nothing.
    hass.states.async_set(point, "26")
    await advance_while_waiting(hass, freezer, seconds=30)
    hass.states.async_set(point, "24")
    await advance_while_waiting(hass, freezer, minutes=2)
    assert alerts == []
    # Above for long enough: one alert.
    hass.states.async_set(point, "26")
    await advance_while_waiting(hass, freezer, minutes=1, seconds=1)
    assert len(alerts) == 1
    # Wobbling around the threshold (not below 25 - 2): no second alert, no clear.
    hass.states.async_set(point, "24.5")
    await advance_while_waiting(hass, freezer, minutes=2)
    hass.states.async_set(point, "27")
    await advance_while_waiting(hass, freezer, minutes=2)
    assert len(alerts) == 1
    assert clears == []
    # Below the hysteresis band for long enough: cleared; a new crossing alerts again.
    hass.states.async_set(point, "22")
    await advance_while_waiting(hass, freezer, minutes=1, seconds=1)
    assert len(clears) == 1
    hass.states.async_set(point, "30")
    await advance_while_waiting(hass, freezer, minutes=1, seconds=1)
    assert len(alerts) == 2


async def test_node_offline_notifies_and_runs_last_will(
    hass: HomeAssistant, config_dir: Path, freezer: FrozenDateTimeFactory
) -> None:
    notes = async_mock_service(hass, "persistent_notification", "create")
    will = async_mock_service(hass, "test", "safe_state")
    connection = "binary_sensor.node_connection"
    hass.states.async_set(connection, "on")
    await automation(
        hass,
        "node_offline",
        {
            "connection": connection,
            "minutes": 5,
            "last_will": [{"action": "test.safe_state"}],
        },
    )
    # A short outage: nothing.
    hass.states.async_set(connection, "off")
    await advance(hass, freezer, minutes=2)
    hass.states.async_set(connection, "on")
    await advance(hass, freezer, minutes=10)
    assert notes == []
    assert will == []
    # Offline for five minutes: notification and last will.
    hass.states.async_set(connection, "off")
    await advance(hass, freezer, minutes=5, seconds=1)
    assert len(notes) == 1
    assert "5 minutes" in notes[0].data["message"]
    assert len(will) == 1


async def test_follow_is_rate_limited_and_keeps_the_latest(
    hass: HomeAssistant, config_dir: Path, freezer: FrozenDateTimeFactory
) -> None:
    calls: list[ServiceCall] = async_mock_service(hass, "number", "set_value")
    source = "sensor.outside_temperature"
    setpoint = "number.node_setpoint"
    hass.states.async_set(setpoint, "21", {"min": 5, "max": 35})
    hass.states.async_set(source, "10")
    await automation(
        hass,
        "follow",
        {"source": source, "setpoint": setpoint, "interval": {"seconds": 30}},
    )
    hass.states.async_set(source, "12")
    await advance_while_waiting(hass, freezer, seconds=0)
    hass.states.async_set(source, "13")
    hass.states.async_set(source, "40")  # above the setpoint's range: clamped
    await advance_while_waiting(hass, freezer, seconds=0)
    assert [c.data["value"] for c in calls] == [12.0]
    await advance_while_waiting(hass, freezer, seconds=31)
    assert [c.data["value"] for c in calls] == [12.0, 35.0]
    hass.states.async_set(source, "unavailable")
    await advance_while_waiting(hass, freezer, seconds=31)
    assert len(calls) == 2


async def test_stale_alert_says_why_and_ignores_pause(
    hass: HomeAssistant, config_dir: Path, freezer: FrozenDateTimeFactory
) -> None:
    notes = async_mock_service(hass, "persistent_notification", "create")
    stale = "binary_sensor.node_values_stale"
    hass.states.async_set(stale, "off", {"reason": None})
    await automation(hass, "stale_alert", {"stale": stale, "duration": {"minutes": 10}})
    hass.states.async_set(stale, "on", {"reason": "paused"})
    await advance(hass, freezer, minutes=11)
    assert notes == []
    hass.states.async_set(stale, "off", {"reason": None})
    await hass.async_block_till_done()
    hass.states.async_set(stale, "on", {"reason": "silent"})
    await advance(hass, freezer, minutes=11)
    assert len(notes) == 1
    assert "silent" in notes[0].data["message"]
