"""data_exchange.export_history: CSV from the recorder (real SQLite), streamed."""

from __future__ import annotations

import csv
from pathlib import Path
import tracemalloc

from homeassistant.components.recorder import Recorder, get_instance
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.exceptions import ServiceValidationError
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
)

from custom_components.data_exchange.const import DOMAIN
from custom_components.data_exchange.services import EXPORT_PAGE, _write_csv
from tests.harness.node import Node
from tests.integration.conftest import entity_ids, setup_node, until


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(
    recorder_mock: Recorder, enable_custom_integrations: None
) -> None:
    """The recorder must be set up before Home Assistant (it is requested first here)."""


@pytest.fixture
def config_dir(hass: HomeAssistant, tmp_path: Path) -> Path:
    """A configuration folder of this test's own (exports are written under it)."""
    hass.config.config_dir = str(tmp_path)
    return tmp_path


async def test_export_gives_exactly_the_recorded_rows(
    hass: HomeAssistant, sim_node: Node, config_dir: Path
) -> None:
    entry = await setup_node(hass, sim_node)
    setpoint = next(
        e for e in entity_ids(hass, entry, "number") if e.endswith("setpoint")
    )
    relay = next(e for e in entity_ids(hass, entry, "switch") if e.endswith("relay"))
    start = dt_util.utcnow()
    expected: list[list[str]] = []

    @callback
    def record(event: Event) -> None:
        new = event.data["new_state"]
        old = event.data["old_state"]
        if (
            event.data["entity_id"] in (setpoint, relay)
            and new is not None
            and (old is None or old.state != new.state)
        ):
            expected.append(
                [
                    new.last_changed.isoformat(),
                    new.entity_id,
                    new.state,
                    new.attributes.get("changed_by", ""),
                ]
            )

    hass.bus.async_listen("state_changed", record)
    for value in (22.0, 23.5, 25.0):
        await hass.services.async_call(
            "number",
            "set_value",
            {"entity_id": setpoint, "value": value},
            blocking=True,
        )
        await until(hass, lambda v=value: hass.states.get(setpoint).state == str(v))
    await hass.services.async_call(
        "switch", "toggle", {"entity_id": relay}, blocking=True
    )
    await until(hass, lambda: hass.states.get(relay).state == "on")
    await async_wait_recording_done(hass)
    response = await hass.services.async_call(
        DOMAIN,
        "export_history",
        {"entity_id": [setpoint, relay], "start": start, "end": dt_util.utcnow()},
        blocking=True,
        return_response=True,
    )
    assert response["rows"] == len(expected) == 4
    assert response["url"].startswith("/local/data_exchange/export-")
    path = Path(response["path"])
    assert path.parent == config_dir / "www" / "data_exchange"
    text = await hass.async_add_executor_job(path.read_text)
    rows = list(csv.reader(text.splitlines()))
    assert rows[0] == ["time", "entity_id", "value", "sender"]
    assert rows[1:] == expected
    assert [r[2] for r in rows[1:] if r[1] == setpoint] == ["22.0", "23.5", "25.0"]
    assert {r[3] for r in rows[1:]} == {"home_assistant"}


async def test_export_rejects_bad_arguments(
    hass: HomeAssistant, sim_node: Node, config_dir: Path
) -> None:
    entry = await setup_node(hass, sim_node)
    setpoint = next(
        e for e in entity_ids(hass, entry, "number") if e.endswith("setpoint")
    )
    now = dt_util.utcnow()
    for data, key in (
        ({"entity_id": [setpoint], "start": now, "end": now}, "bad_range"),
        ({"entity_id": ["sensor.somebody_else"], "start": now}, "unknown_point"),
    ):
        with pytest.raises(ServiceValidationError) as err:
            await hass.services.async_call(
                DOMAIN, "export_history", data, blocking=True, return_response=True
            )
        assert err.value.translation_key == key
    assert not (config_dir / "www").exists()


async def _peak_export(
    hass: HomeAssistant, entity_id: str, tmp: Path, rows: int
) -> int:
    """Record ``rows`` changes of ``entity_id``, export them, return the export's peak memory."""
    start = dt_util.utcnow()
    for i in range(rows):
        hass.states.async_set(entity_id, str(i), {"changed_by": "node"})
        if i % 500 == 0:
            await hass.async_block_till_done()
    await async_wait_recording_done(hass)
    end = dt_util.utcnow()

    def run() -> tuple[int, int]:
        tracemalloc.start()
        count = _write_csv(hass, tmp / f"{rows}.csv", [entity_id], start, end)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return count, peak

    count, peak = await get_instance(hass).async_add_executor_job(run)
    assert count == rows
    return peak


async def test_large_range_stays_in_bounded_memory(
    hass: HomeAssistant, sim_node: Node, tmp_path: Path
) -> None:
    entry = await setup_node(hass, sim_node)
    label = next(e for e in entity_ids(hass, entry, "text") if e.endswith("label"))
    sim_node.kill()  # keep the node from writing the entity meanwhile
    await until(hass, lambda: not entry.runtime_data.connected)
    small = await _peak_export(hass, label, tmp_path, 2 * EXPORT_PAGE)
    large = await _peak_export(hass, label, tmp_path, 20 * EXPORT_PAGE)
    # Ten times the rows, not ten times the memory: one page per point at a time.
    print(
        f"export peak memory: {small} bytes for {2 * EXPORT_PAGE} rows, {large} for {20 * EXPORT_PAGE}"
    )
    assert large < 2 * small, (small, large)
