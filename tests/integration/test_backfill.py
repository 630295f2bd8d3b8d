"""Store-and-forward end to end: Home Assistant, a real process, is SIGKILLed and stays
down for minutes while the simulated node keeps sampling; after its restart the node's
backlog is in the statistics and the CSV export with the node's times, an event announced
it, the history of states still has the gap, and a second reconnect duplicates nothing.

Wall time. The node samples its three sensors every 500 ms (6 readings a second instead of
3), so that the outage holds thousands of readings without taking longer. The outage lasts
at least 150 s and until 20 s after the end of the 5-minute statistics period it began in:
that period is then complete, Home Assistant compiles it at its start from the states it
has (the minutes before the crash) and the backfill must merge the node's readings into it.
So 150 to 320 s of outage, about 4 to 7 minutes with the two starts. An hourly period is
merged the same way (backfill.py) but an hour-long test is not run; tests/test_backlog.py
covers the aggregation, and the hour's row follows the same code with another period.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
import csv
import itertools
import json
from pathlib import Path
import sqlite3
import time
from typing import Any

import pytest

from custom_components.data_exchange.backlog import aggregate, period_start
from tests.harness.develop import SIM_NODE
from tests.harness.ha_process import (
    HassClient,
    HassProcess,
    hass_for_node,
)
from tests.harness.node import Node, NodeBuild

SAMPLE = 0.5  # s, the node's sensors
PERIOD = 300.0  # the recorder's short-term statistics
MIN_OUTAGE = 150.0
UNUSABLE = ("unavailable", "unknown")


@pytest.fixture(scope="module")
def fast_build() -> NodeBuild:
    return NodeBuild.compile(SIM_NODE, {"sample_interval": f"{int(SAMPLE * 1000)}ms"})


@pytest.fixture
def node(fast_build: NodeBuild, socket_enabled: None) -> Iterator[Node]:
    started = Node(fast_build)
    try:
        yield started.start()
    finally:
        started.cleanup()


@pytest.fixture
async def hass_process(
    tmp_path: Path, node: Node, socket_enabled: None
) -> AsyncIterator[HassProcess]:
    async with hass_for_node(tmp_path / "config", node) as hass:
        yield hass


def _temperature(states: dict[str, dict[str, Any]]) -> str | None:
    found = [
        e for e in states if e.startswith("sensor.") and e.endswith("_temperature")
    ]
    return found[0] if len(found) == 1 else None


async def _live_temperature(hass: HassClient) -> str:
    states = await hass.until(
        lambda s: (
            (e := _temperature(s)) is not None
            and s[e]["state"] not in UNUSABLE
            and s[e]["attributes"].get("stale") is False
        ),
        "the temperature live",
        within=120,
    )
    entity_id = _temperature(states)
    assert entity_id is not None
    return entity_id


def _journal_end(config_dir: Path) -> float:
    """The time of the newest backfilled reading on disk (0: none)."""
    end = 0.0
    for path in (config_dir / ".storage" / "data_exchange_backfill").glob("*.jsonl"):
        for line in path.read_text().splitlines():
            rows = json.loads(line)["rows"]
            end = max([end, *(r[0] for r in rows)])
    return end


async def _backfilled_until(hass: HassProcess, reached: float) -> None:
    deadline = time.monotonic() + 60
    while _journal_end(hass.config_dir) < reached:
        assert hass.alive(), hass.describe()
        assert time.monotonic() < deadline, (_journal_end(hass.config_dir), reached)
        await asyncio.sleep(0.2)


async def _export(
    hass: HassClient, entity_id: str, start: float
) -> list[dict[str, str]]:
    from datetime import UTC, datetime

    response = await hass.request(
        "POST",
        "/api/services/data_exchange/export_history?return_response",
        json={
            "entity_id": entity_id,
            "start": datetime.fromtimestamp(start, UTC).isoformat(),
        },
    )
    path = Path(response["service_response"]["path"])
    text = await asyncio.to_thread(path.read_text)
    return list(csv.DictReader(text.splitlines()))


def _seconds(row: dict[str, str]) -> float:
    from datetime import datetime

    return datetime.fromisoformat(row["time"]).timestamp()


def _db(hass: HassProcess) -> sqlite3.Connection:
    return sqlite3.connect(
        f"file:{hass.config_dir / 'home-assistant_v2.db'}?mode=ro", uri=True
    )


def _short_term(
    hass: HassProcess, entity_id: str, start: float
) -> tuple[float, float, float] | None:
    with _db(hass) as db:
        row = db.execute(
            "SELECT s.mean, s.min, s.max FROM statistics_short_term s JOIN statistics_meta m"
            " ON s.metadata_id = m.id WHERE m.statistic_id = ? AND s.start_ts = ?",
            (entity_id, start),
        ).fetchone()
    return None if row is None else (row[0], row[1], row[2])


def _backfill_events(hass: HassProcess) -> list[dict[str, Any]]:
    with _db(hass) as db:
        rows = db.execute(
            "SELECT d.shared_data FROM events e JOIN event_types t"
            " ON e.event_type_id = t.event_type_id LEFT JOIN event_data d"
            " ON e.data_id = d.data_id WHERE t.event_type = 'data_exchange_backfill'"
        ).fetchall()
    return [json.loads(r[0]) for r in rows]


async def test_outage_backfilled_into_statistics_and_export(
    hass_process: HassProcess, node: Node
) -> None:
    hass = await hass_process.start()
    await hass.onboard()
    temperature = await _live_temperature(hass)
    began = time.time()
    await asyncio.sleep(5)  # some live states before the crash
    killed = time.time()
    hass.kill()
    # The outage: the node samples on and keeps its readings (nothing to await but time).
    boundary = period_start(killed, PERIOD) + PERIOD
    outage = max(MIN_OUTAGE, boundary + 20 - killed)
    await asyncio.sleep(outage)
    await hass.start()
    await _live_temperature(hass)
    back = time.time()
    await _backfilled_until(hass_process, back - 3)
    stored = time.time() - back

    rows = await _export(hass, temperature, began - 300)
    backlog = [r for r in rows if r["changed_by"] == "backlog"]
    live = [r for r in rows if r["changed_by"] != "backlog"]
    every = [_seconds(r) for r in backlog]
    assert every == sorted(every)
    # Also readings from before Home Assistant's first start (the node booted earlier).
    times = [t for t in every if t > killed - 1]
    # The readings of the outage, with the node's times: from the crash to the return.
    assert times[0] < killed + 2, (times[0], killed)
    assert times[-1] > back - 3
    assert len(times) >= (back - killed) / SAMPLE * 0.9, len(times)
    print(
        f"backfill: {len(times)} temperature readings ({3 * len(times)} in all) of a"
        f" {back - killed:.0f} s outage stored {stored:.2f} s after live values"
    )
    gaps = [
        (b - a, a - killed) for a, b in itertools.pairwise(times) if b - a >= 3 * SAMPLE
    ]
    assert not gaps, (gaps, back - killed)
    # The history of states has the gap: no state was recorded while Home Assistant was down.
    assert not [r for r in live if killed + 1 < _seconds(r) < back - 5]
    # The period the crash fell in: Home Assistant compiled it at its start from the
    # states before the crash; the backfill merged the node's readings in.
    start = period_start(killed, PERIOD)
    samples = [
        (_seconds(r), float(r["value"]))
        for r in rows
        if r["value"] not in UNUSABLE and _seconds(r) < start + PERIOD
    ]
    before = [v for t, v in samples if t < start]
    expected = aggregate(samples, start, PERIOD, before[-1] if before else None)
    assert expected is not None
    deadline = time.monotonic() + 60
    while (row := _short_term(hass_process, temperature, start)) is None or not (
        abs(row[1] - expected.min) < 1e-6 and abs(row[2] - expected.max) < 1e-6
    ):
        assert time.monotonic() < deadline, (row, expected)
        await asyncio.sleep(0.5)
    assert abs(row[0] - expected.mean) < 1e-3, (row, expected)
    in_period = [v for t, v in samples if start <= t < start + PERIOD]
    assert row[1] == pytest.approx(min(in_period))
    assert row[2] == pytest.approx(max(in_period))
    events = _backfill_events(hass_process)
    assert events
    # One event per stored batch (a backlog frame of up to 256 readings): a short last
    # batch may hold only another sensor's readings, so the temperature is in the
    # events together, and every event names only this node's sensor entities.
    assert temperature in {e for ev in events for e in ev["entity_ids"]}
    node_sensor = temperature.removesuffix("temperature")  # sensor.<node>_
    assert all(e.startswith(node_sensor) for ev in events for e in ev["entity_ids"])
    assert sum(e["count"] for e in events) >= len(times)
    states = await hass.states()
    dropped = [e for e in states if e.endswith("_backlog_dropped_readings")]
    assert len(dropped) == 1
    assert states[dropped[0]]["state"] == "0"

    # A second crash and reconnect: every reading once, the first outage's unchanged.
    hass.kill()
    await hass.start()
    await _live_temperature(hass)
    await _backfilled_until(hass_process, time.time() - 3)
    again = await _export(hass, temperature, began - 300)
    keys = [(r["time"], r["entity_id"]) for r in again if r["changed_by"] == "backlog"]
    assert len(keys) == len(set(keys))
    first = [
        r for r in again if r["changed_by"] == "backlog" and _seconds(r) <= times[-1]
    ]
    assert first == backlog
