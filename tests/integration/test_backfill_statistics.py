"""The hourly statistics of a backfill through Home Assistant's recorder (real SQLite): an
hour the node's readings cover is imported with ``async_import_statistics`` and replaces a
row compiled from less data. The 5-minute periods and the merge with recorded states are
covered end to end (test_backfill.py); an hour-long real outage is not run."""

from __future__ import annotations

from functools import partial
import time

from homeassistant.components.recorder import Recorder, get_instance
from homeassistant.components.recorder.statistics import (
    async_import_statistics,
    get_metadata,
    statistics_during_period,
)
from homeassistant.core import HomeAssistant
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
)

from custom_components.data_exchange.backfill import HOUR
from custom_components.data_exchange.backlog import aggregate, period_start
from tests.harness.node import Node
from tests.integration.conftest import entity_ids, setup_node


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(
    recorder_mock: Recorder, enable_custom_integrations: None
) -> None:
    """The recorder must be set up before Home Assistant (it is requested first here)."""


async def test_an_hour_of_readings_replaces_a_thinner_row(
    recorder_mock: Recorder, hass: HomeAssistant, sim_node: Node
) -> None:
    entry = await setup_node(hass, sim_node)
    backfill = entry.runtime_data.exchange.backfill
    temperature = next(
        e for e in entity_ids(hass, entry, "sensor") if e.endswith("temperature")
    )
    hour = period_start(time.time(), HOUR) - 3 * HOUR
    start = dt_util.utc_from_timestamp(hour)
    # A row as the recorder compiles it from the states it had: the value held all hour.
    metadata = {
        "has_sum": False,
        "mean_type": 1,
        "name": None,
        "source": "recorder",
        "statistic_id": temperature,
        "unit_of_measurement": "°C",
        "unit_class": "temperature",
    }
    async_import_statistics(
        hass, metadata, [{"start": start, "mean": 20.0, "min": 20.0, "max": 20.0}]
    )
    await async_wait_recording_done(hass)
    # The node's readings of that hour: a minute each, 20 to 24 and back.
    readings = [(hour + 60.0 * i, 20.0 + (i % 5)) for i in range(60)]
    backfill._rows.extend((t, temperature, v) for t, v in readings)
    await backfill._async_merge(temperature, hour, HOUR)
    await async_wait_recording_done(hass)
    stats = await get_instance(hass).async_add_executor_job(
        statistics_during_period,
        hass,
        start,
        dt_util.utc_from_timestamp(hour + HOUR),
        {temperature},
        "hour",
        None,
        {"mean", "min", "max"},
    )
    expected = aggregate(readings, hour, HOUR)
    assert expected is not None
    (row,) = stats[temperature]
    assert row["min"] == pytest.approx(20.0)
    assert row["max"] == pytest.approx(24.0)
    assert row["mean"] == pytest.approx(expected.mean)
    assert row["mean"] != pytest.approx(20.0)
    # The recorder's metadata of the entity is kept (unit, unit class).
    meta = await get_instance(hass).async_add_executor_job(
        partial(get_metadata, hass, statistic_ids={temperature})
    )
    assert meta[temperature][1]["unit_of_measurement"] == "°C"
