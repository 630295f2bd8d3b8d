"""No recorder rows for values that did not change, over many cycles (real SQLite)."""

from __future__ import annotations

from homeassistant.components.recorder import Recorder, get_instance
from homeassistant.components.recorder.db_schema import States, StatesMeta
from homeassistant.components.recorder.util import session_scope
from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
)

from tests.harness.node import Node
from tests.integration.conftest import entity_ids, setup_node, until


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(
    recorder_mock: Recorder, enable_custom_integrations: None
) -> None:
    """The recorder must be set up before Home Assistant (it is requested first here)."""


def _rows(hass: HomeAssistant, entity_id: str) -> int:
    with session_scope(hass=hass, read_only=True) as session:
        return (
            session.query(States)
            .join(StatesMeta, States.metadata_id == StatesMeta.metadata_id)
            .filter(StatesMeta.entity_id == entity_id)
            .count()
        )


async def test_no_rows_for_unchanged_values(
    recorder_mock: Recorder, hass: HomeAssistant, sim_node: Node
) -> None:
    entry = await setup_node(hass, sim_node)
    manager = entry.runtime_data
    unchanged = [
        e
        for domain in ("number", "switch", "select", "text", "binary_sensor")
        for e in entity_ids(hass, entry, domain)
        if not e.endswith("occupancy")
    ]
    temperature = next(
        e for e in entity_ids(hass, entry, "sensor") if e.endswith("temperature")
    )
    await async_wait_recording_done(hass)
    count = get_instance(hass).async_add_executor_job
    before = {e: await count(_rows, hass, e) for e in [*unchanged, temperature]}
    # 30 node frames and about 15 desired frames later ...
    received = manager.engine.stats.received
    await until(hass, lambda: manager.engine.stats.received >= received + 30)
    await async_wait_recording_done(hass)
    after = {e: await count(_rows, hass, e) for e in [*unchanged, temperature]}
    # ... not one row for a point whose value did not change,
    assert {e: after[e] - before[e] for e in unchanged} == dict.fromkeys(unchanged, 0)
    # while the random walk of the temperature was recorded.
    assert after[temperature] > before[temperature]


async def test_long_term_statistics_for_numeric_points(
    recorder_mock: Recorder, hass: HomeAssistant, sim_node: Node
) -> None:
    from homeassistant.util import dt as dt_util
    from pytest_homeassistant_custom_component.components.recorder.common import (
        do_adhoc_statistics,
        get_start_time,
        statistics_during_period,
    )

    entry = await setup_node(hass, sim_node)
    temperature = next(
        e for e in entity_ids(hass, entry, "sensor") if e.endswith("temperature")
    )
    assert hass.states.get(temperature).attributes["state_class"] == "measurement"
    states: list[str] = []
    # A few values of the random walk (the node samples once a second).
    await until(
        hass,
        lambda: (
            states.append(hass.states.get(temperature).state) is None
            and len(set(states)) >= 3
        ),
    )
    await async_wait_recording_done(hass)
    start = get_start_time(dt_util.utcnow())
    do_adhoc_statistics(hass, start=start)
    await async_wait_recording_done(hass)
    stats = await get_instance(hass).async_add_executor_job(
        statistics_during_period, hass, start, None, {temperature}, "5minute"
    )
    (row,) = stats[temperature]
    assert 15.0 <= row["min"] <= row["mean"] <= row["max"] <= 30.0
