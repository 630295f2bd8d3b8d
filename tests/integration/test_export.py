"""data_exchange.export_history: CSV from the recorder (real SQLite), streamed, private.

Downloads go through real HTTP requests against Home Assistant's own web application (its
auth middleware, security filter and our view); values come from real nodes.
"""

from __future__ import annotations

from collections.abc import Callable
import csv
from datetime import datetime, timedelta
import io
import os
from pathlib import Path
import secrets
import tracemalloc
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.recorder import Recorder, get_instance
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
import jwt
import pytest
from pytest_homeassistant_custom_component.common import async_fire_time_changed
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.data_exchange.const import DOMAIN
from custom_components.data_exchange.export import (
    CLEANUP_INTERVAL,
    EXPORT_PAGE,
    FORMULA_START,
    RETENTION,
    URL_VALID,
    ExportColumn,
    write_csv,
)
from tests.conftest import NODES
from tests.harness.node import Node, NodeFactory
from tests.harness.peer import Peer
from tests.integration.conftest import entity_ids, setup_node, until

DOWNLOAD = "/api/data_exchange/exports/"
SECRET = "api_password: do-not-leak-0b1c"  # in secrets.yaml, next to the exports


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(
    recorder_mock: Recorder, enable_custom_integrations: None
) -> None:
    """The recorder must be set up before Home Assistant (it is requested first here)."""


@pytest.fixture
def config_dir(hass: HomeAssistant, tmp_path: Path) -> Path:
    """A configuration folder of this test's own (exports are written under it)."""
    hass.config.config_dir = str(tmp_path)
    (tmp_path / "secrets.yaml").write_text(SECRET + "\n")
    return tmp_path


def folder(config_dir: Path) -> Path:
    return config_dir / ".storage" / "data_exchange_exports"


def files(config_dir: Path) -> list[str]:
    where = folder(config_dir)
    return sorted(p.name for p in where.iterdir()) if where.exists() else []


def name_at(when: datetime, suffix: str = ".csv") -> str:
    return f"export-{when:%Y%m%dT%H%M%SZ}-{secrets.token_hex(16)}{suffix}"


async def export(
    hass: HomeAssistant, entity_ids: list[str], start: datetime
) -> dict[str, Any]:
    response = await hass.services.async_call(
        DOMAIN,
        "export_history",
        {"entity_id": entity_ids, "start": start, "end": dt_util.utcnow()},
        blocking=True,
        return_response=True,
    )
    assert response is not None
    return dict(response)


async def setpoint_export(
    hass: HomeAssistant, entry: Any, start: datetime
) -> dict[str, Any]:
    """Change the sim node's setpoint once and export it."""
    setpoint = next(
        e for e in entity_ids(hass, entry, "number") if e.endswith("setpoint")
    )
    value = float(hass.states.get(setpoint).state) + 0.5
    await hass.services.async_call(
        "number", "set_value", {"entity_id": setpoint, "value": value}, blocking=True
    )
    await until(hass, lambda: hass.states.get(setpoint).state == str(value))
    await async_wait_recording_done(hass)
    return await export(hass, [setpoint], start)


async def test_export_gives_exactly_the_recorded_rows(
    hass: HomeAssistant,
    sim_node: Node,
    config_dir: Path,
    hass_client_no_auth: ClientSessionGenerator,
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
                    new.attributes.get("measured_at", ""),
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
    before = dt_util.utcnow()
    response = await export(hass, [setpoint, relay], start)
    assert response["rows"] == len(expected) == 4
    # A private folder Home Assistant does not serve; nothing under www/.
    path = Path(response["path"])
    assert path.parent == folder(config_dir)
    assert not (config_dir / "www").exists()
    assert files(config_dir) == [path.name]
    modes = await hass.async_add_executor_job(
        lambda: [p.stat().st_mode & 0o777 for p in (path, folder(config_dir))]
    )
    assert modes == [0o600, 0o700]  # Home Assistant's user only
    # Signed, with the documented lifetimes.
    assert response["url"].startswith(f"{DOWNLOAD}{path.name}?authSig=")
    expires = dt_util.parse_datetime(response["url_expires"])
    kept = dt_util.parse_datetime(response["kept_until"])
    assert expires is not None
    assert kept is not None
    assert before + URL_VALID - timedelta(seconds=2) <= expires
    assert expires <= dt_util.utcnow() + URL_VALID
    assert before + RETENTION - timedelta(seconds=2) <= kept
    assert kept <= dt_util.utcnow() + RETENTION
    raw = await hass.async_add_executor_job(path.read_bytes)
    rows = list(csv.reader(io.StringIO(raw.decode(), newline="")))
    assert rows[0] == ["time", "entity_id", "value", "changed_by", "measured_at"]
    assert rows[1:] == expected
    # The node's measurement time of each value (node_clock.py), from its attribute.
    assert all(dt_util.parse_datetime(r[4]) is not None for r in rows[1:]), rows
    assert [r[2] for r in rows[1:] if r[1] == setpoint] == ["22.0", "23.5", "25.0"]
    assert {r[3] for r in rows[1:]} == {"home_assistant"}
    # The link works at once (before: /local/ gave 404 until a restart, when www/ was new).
    anonymous = await hass_client_no_auth()
    download = await anonymous.get(response["url"])
    assert download.status == 200
    assert await download.read() == raw


async def test_download_needs_authentication(
    hass: HomeAssistant,
    sim_node: Node,
    config_dir: Path,
    hass_client: ClientSessionGenerator,
    hass_client_no_auth: ClientSessionGenerator,
    hass_access_token: str,
) -> None:
    entry = await setup_node(hass, sim_node)
    assert await async_setup_component(hass, "api", {})  # before the router freezes
    start = dt_util.utcnow()
    first = await setpoint_export(hass, entry, start)
    second = await setpoint_export(hass, entry, start)
    path = Path(first["path"])
    plain = f"{DOWNLOAD}{path.name}"
    content = await hass.async_add_executor_job(path.read_bytes)
    anonymous = await hass_client_no_auth()
    user = await hass_client()

    # Without a token or a valid signature: refused.
    for url in (
        plain,
        f"{plain}?authSig=forged",
        # A valid signature of another export does not open this one.
        f"{plain}?{second['url'].split('?')[1]}",
    ):
        response = await anonymous.get(url)
        assert response.status == 401, url
        assert content not in await response.read()

    # With the user's token: the CSV, as an attachment nobody caches.
    response = await user.get(plain)
    assert response.status == 200
    assert await response.read() == content
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="{path.name}"'
    )
    assert response.headers["Cache-Control"] == "no-store"

    # The signed URL, without a token (a browser): the CSV.
    response = await anonymous.get(first["url"])
    assert response.status == 200
    assert await response.read() == content

    # Only names the integration makes, only in its folder; a link planted there is not
    # followed. Home Assistant's security filter refuses some with 400, our view with 404.
    link = folder(config_dir) / name_at(start)
    await hass.async_add_executor_job(os.symlink, config_dir / "secrets.yaml", link)
    part = folder(config_dir) / name_at(start, ".csv.part")
    await hass.async_add_executor_job(part.write_text, SECRET)
    for target in (
        "..%2F..%2Fsecrets.yaml",
        "..%2F..%2F..%2Fsecrets.yaml",
        "%2e%2e%2f%2e%2e%2fsecrets.yaml",
        "..%5C..%5Csecrets.yaml",
        "secrets.yaml",
        "%2Fetc%2Fpasswd",
        "..",
        ".",
        f"{path.name}%00",
        f"{path.name}%2F..%2F..%2Fsecrets.yaml",
        path.name.upper(),
        part.name,
        link.name,
    ):
        response = await user.get(f"{DOWNLOAD}{target}")
        assert response.status in (400, 404), target
        assert SECRET.encode() not in await response.read(), target

    # A user who calls the action over HTTP gets a link signed for their own session: it
    # works without a token, and dies with the session.
    setpoint = next(
        e for e in entity_ids(hass, entry, "number") if e.endswith("setpoint")
    )
    response = await user.post(
        "/api/services/data_exchange/export_history?return_response",
        json={"entity_id": setpoint, "start": start.isoformat()},
    )
    assert response.status == 200, await response.text()
    url = (await response.json())["service_response"]["url"]
    refresh_token = hass.auth.async_validate_access_token(hass_access_token)
    assert refresh_token is not None
    signature = url.split("authSig=")[1]
    assert jwt.decode(signature, options={"verify_signature": False})["iss"] == (
        refresh_token.id
    )
    assert (await anonymous.get(url)).status == 200
    hass.auth.async_remove_refresh_token(refresh_token)
    assert (await anonymous.get(url)).status == 401


@pytest.mark.freeze_time(tick=True)
async def test_signature_expires_and_files_go_after_retention(
    hass: HomeAssistant,
    sim_node: Node,
    config_dir: Path,
    freezer: FrozenDateTimeFactory,
    hass_client: ClientSessionGenerator,
    hass_client_no_auth: ClientSessionGenerator,
    hass_access_token: str,
) -> None:
    """Time moves on (tick) and jumps forward only: the node and the recorder keep going."""
    entry = await setup_node(hass, sim_node)
    start = dt_util.utcnow()
    old = await setpoint_export(hass, entry, start)
    plain = f"{DOWNLOAD}{Path(old['path']).name}"
    anonymous = await hass_client_no_auth()
    refresh_token = hass.auth.async_validate_access_token(hass_access_token)
    assert refresh_token is not None

    async def user() -> Any:
        """A client with a fresh access token (they expire after 30 minutes)."""
        token = hass.auth.async_create_access_token(refresh_token)
        return await hass_client(token)

    assert (await anonymous.get(old["url"])).status == 200
    await hass.async_add_executor_job((folder(config_dir) / "notes.txt").write_text, "")

    freezer.tick(URL_VALID - timedelta(seconds=5))
    assert (await anonymous.get(old["url"])).status == 200
    freezer.tick(timedelta(seconds=10))
    # Expired: the signed link is refused; the file is still there for a token.
    assert (await anonymous.get(old["url"])).status == 401
    assert (await (await user()).get(plain)).status == 200

    freezer.tick(RETENTION - URL_VALID - CLEANUP_INTERVAL)
    new = await setpoint_export(hass, entry, start)
    assert len(files(config_dir)) == 3
    freezer.tick(2 * CLEANUP_INTERVAL)
    # A time-interval job runs as a background task: wait for those too (without it the
    # assert below raced the cleanup's executor job and failed now and then in CI).
    async_fire_time_changed(hass)
    await hass.async_block_till_done(wait_background_tasks=True)
    # A cleanup that the jumps above made run late is rescheduled from its late run: its
    # next run is at most one interval on.
    async_fire_time_changed(hass, dt_util.utcnow() + CLEANUP_INTERVAL)
    await hass.async_block_till_done(wait_background_tasks=True)
    # The periodic cleanup took the export older than the retention, nothing else.
    assert files(config_dir) == sorted([Path(new["path"]).name, "notes.txt"])
    client = await user()
    assert (await client.get(plain)).status == 404
    assert (await client.get(f"{DOWNLOAD}{Path(new['path']).name}")).status == 200


async def test_old_exports_are_deleted_at_setup(
    hass: HomeAssistant, config_dir: Path
) -> None:
    now = dt_util.utcnow()
    where = folder(config_dir)
    where.mkdir(parents=True)
    old = [
        name_at(now - RETENTION - timedelta(minutes=1)),
        name_at(now - 2 * RETENTION),
    ]
    old_part = name_at(now - RETENTION - timedelta(minutes=1), ".csv.part")
    fresh = name_at(now - RETENTION + timedelta(minutes=5))
    foreign = ["keep.txt", f"{old[0]}.bak", "export-old.csv"]
    for name in [*old, old_part, fresh, *foreign]:
        (where / name).write_text("x")
    assert await async_setup_component(hass, DOMAIN, {})
    await hass.async_block_till_done()
    assert files(config_dir) == sorted([fresh, *foreign])


async def test_exports_are_deleted_with_the_node(
    hass: HomeAssistant,
    sim_node: Node,
    config_dir: Path,
    hass_client: ClientSessionGenerator,
) -> None:
    entry = await setup_node(hass, sim_node)
    response = await setpoint_export(hass, entry, dt_util.utcnow())
    user = await hass_client()
    plain = f"{DOWNLOAD}{Path(response['path']).name}"
    assert (await user.get(plain)).status == 200
    assert await hass.config_entries.async_remove(entry.entry_id)
    await hass.async_block_till_done()
    assert not folder(config_dir).exists()
    assert (await user.get(plain)).status == 404


# What a node's text sensor publishes: formulas as spreadsheets would run them (DDE too),
# a number as text, and one harmless text.
PAYLOADS = (
    '=HYPERLINK("http://evil","x")',
    "+1",
    "@SUM(A1)",
    "-2+3",
    "\t=1+1",
    "\r=1+1",
    "=cmd|' /C calc'!A0",
    "-3.5",
    'plain, "quoted" text',
)
LEVELS = (-3.5, 2.0, -0.5)


async def test_formulas_from_a_node_are_neutralised(
    hass: HomeAssistant, node_factory: NodeFactory, config_dir: Path
) -> None:
    node = node_factory.start(NODES / "formulas.yaml")
    entry = await setup_node(hass, node)
    sensors = entity_ids(hass, entry, "sensor")
    note = next(e for e in sensors if e.endswith("_note"))
    level = next(e for e in sensors if e.endswith("_level"))
    start = dt_util.utcnow()

    def state_is(entity_id: str, value: str) -> Callable[[], bool]:
        return lambda: hass.states.get(entity_id).state == value

    # A plain API client (not ours) that makes the node publish values.
    async with Peer(node, "publisher") as publisher:
        for payload, value in zip(PAYLOADS, LEVELS * 3, strict=True):
            await publisher.call("publish_note", payload=payload)
            await until(hass, state_is(note, payload), what=repr(payload))
            if hass.states.get(level).state != str(value):
                await publisher.call("publish_level", reading=value)
                await until(hass, state_is(level, str(value)), what=str(value))
    await async_wait_recording_done(hass)
    response = await export(hass, [note, level], start)
    raw = await hass.async_add_executor_job(Path(response["path"]).read_bytes)
    text = raw.decode()
    # Unquoted cells must be numbers: reading with QUOTE_NONNUMERIC turns them into floats
    # and fails on any unquoted text.
    rows = list(csv.reader(io.StringIO(text, newline=""), quoting=csv.QUOTE_NONNUMERIC))
    assert rows[0] == ["time", "entity_id", "value", "changed_by", "measured_at"]
    notes = [r[2] for r in rows[1:] if r[1] == note]
    levels = [r[2] for r in rows[1:] if r[1] == level]
    assert notes == [f"'{p}" if p[0] in "=+-@\t\r" else p for p in PAYLOADS], notes
    assert levels == list(LEVELS * 3), levels
    for row in rows[1:]:
        for cell in (
            row[0],
            row[1],
            row[3],
            row[4],
            *([row[2]] if row[1] == note else []),
        ):
            assert isinstance(cell, str), row
            assert not cell.startswith(FORMULA_START), row
    # As a spreadsheet reads it: the formula stays quoted text, the number is bare.
    assert '"\'=HYPERLINK(""http://evil"",""x"")"' in text
    assert f'"{level}",-3.5,"' in text
    assert f'"{note}","\'-3.5","' in text


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
    assert not folder(config_dir).exists()
    # The file cannot be written (here: a file where the folder belongs): a translated
    # error, nothing left behind.
    folder(config_dir).parent.mkdir(exist_ok=True)  # the backfill journal may be there
    folder(config_dir).write_text("")
    with pytest.raises(HomeAssistantError) as err:
        await export(hass, [setpoint], now - timedelta(minutes=1))
    assert err.value.translation_key == "export_failed"
    left = await hass.async_add_executor_job(lambda: [*config_dir.rglob("*.csv*")])
    assert left == []


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
        count = write_csv(
            hass, tmp / f"{rows}.csv", [ExportColumn(entity_id, False)], start, end
        )
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
