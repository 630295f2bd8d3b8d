"""CSV exports of recorded history: the rows, the file, its lifetime and its download.

Files live in a private folder that Home Assistant does not serve
(``<config>/.storage/data_exchange_exports/``). They are downloaded through this
integration's own view, which requires authentication: a bearer token, or the signed URL
the action returns (Home Assistant's ``async_sign_path``, valid for ``URL_VALID``). Only
names this module creates are ever served or deleted. Files are deleted ``RETENTION`` after
they were made (checked at setup and every ``CLEANUP_INTERVAL``), and all of them when a
node is deleted.

Spreadsheets run cells that begin with ``=``, ``+``, ``-``, ``@``, tab or CR as formulas,
so every text cell that does gets a leading ``'`` (OWASP's rule for CSV injection) and
every text cell is quoted. Values of numeric points (sensor, number) that are plain
decimal numbers are written bare, exactly as recorded: -3.5 stays -3.5.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import suppress
import csv
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
import heapq
from http import HTTPStatus
import logging
import os
from pathlib import Path
import re
import secrets
from typing import Any

from aiohttp import hdrs, web
from homeassistant.components.http import KEY_HASS, HomeAssistantView
from homeassistant.components.http.auth import async_sign_path
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.event import async_track_time_interval
from homeassistant.util import dt as dt_util

from .const import ATTR_CHANGED_BY, ATTR_MEASURED_AT, DOMAIN

_LOGGER = logging.getLogger(__name__)

EXPORT_FOLDER = (".storage", f"{DOMAIN}_exports")  # not served by Home Assistant
EXPORT_PAGE = 1000  # rows read from the recorder at a time, per point
# A signed URL works without a token for an hour: time to click it in a notification or
# after a long export, short enough that a leaked link (history, logs, screenshots) dies soon.
URL_VALID = timedelta(hours=1)
RETENTION = timedelta(hours=24)  # exports are download files, not an archive
CLEANUP_INTERVAL = timedelta(hours=1)
DOWNLOAD_URL = f"/api/{DOMAIN}/exports/{{name}}"

_STAMP = "%Y%m%dT%H%M%SZ"
# Exactly the names export files get; the view serves nothing else.
_NAME = re.compile(r"export-(\d{8}T\d{6}Z)-[0-9a-f]{32}\.csv")
# What cleanup may delete: export files and the partial files they are written to first.
_OWN = re.compile(r"export-(\d{8}T\d{6}Z)-[0-9a-f]{32}\.csv(?:\.part)?")
_PART = ".part"

# OWASP, CSV injection: cells beginning with these are formulas in spreadsheets.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# How Home Assistant writes a number in a state; such values of numeric points stay bare.
_DECIMAL = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")

# ``time``: when Home Assistant recorded the value; ``measured_at``: when the node measured
# it (its attribute; empty when unknown, e.g. history from before protocol 5). A reading
# backfilled from a node's backlog (changed_by ``backlog``) has its measurement time in both.
HEADER = ("time", "entity_id", "value", "changed_by", "measured_at")


@dataclass(frozen=True, slots=True)
class ExportColumn:
    """One point to export: its entity, and whether its values are numbers."""

    entity_id: str
    numeric: bool


class _Bare:
    """A cell the csv writer puts out unquoted and exactly as given (QUOTE_STRINGS)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text


def neutralise(text: str) -> str:
    """A text cell that no spreadsheet runs as a formula (OWASP: a leading quote)."""
    return f"'{text}" if text.startswith(FORMULA_START) else text


def value_cell(value: str, numeric: bool) -> str | _Bare:
    """A numeric point's plain number bare; anything else as neutralised, quoted text."""
    if numeric and _DECIMAL.fullmatch(value):
        return _Bare(value)
    return neutralise(value)


def export_folder(hass: HomeAssistant) -> Path:
    return Path(hass.config.path(*EXPORT_FOLDER))


def _error(key: str, **placeholders: Any) -> HomeAssistantError:
    return HomeAssistantError(
        translation_domain=DOMAIN,
        translation_key=key,
        translation_placeholders={k: str(v) for k, v in placeholders.items()},
    )


async def async_export(
    hass: HomeAssistant,
    columns: Sequence[ExportColumn],
    start: datetime,
    end: datetime,
) -> dict[str, Any]:
    """Write the CSV of the validated ``columns`` in [start, end); the action's response."""
    from homeassistant.components.recorder import get_instance

    created = dt_util.utcnow().replace(microsecond=0)
    name = f"export-{created.strftime(_STAMP)}-{secrets.token_hex(16)}.csv"
    path = export_folder(hass) / name
    try:
        # The recorder's own executor: database reads belong there.
        rows = await get_instance(hass).async_add_executor_job(
            write_csv, hass, path, columns, start, end
        )
    except OSError as err:
        raise _error("export_failed", error=err.strerror or err) from err
    url = async_sign_path(hass, DOWNLOAD_URL.format(name=name), URL_VALID)
    return {
        "url": url,
        "url_expires": (dt_util.utcnow() + URL_VALID).isoformat(),
        "kept_until": (created + RETENTION).isoformat(),
        "path": str(path),
        "rows": rows,
    }


def _point_rows(
    hass: HomeAssistant, column: ExportColumn, start: datetime, end: datetime
) -> Iterator[tuple[datetime, str, str | _Bare, str, str]]:
    """One point's recorded changes in [start, end), read EXPORT_PAGE rows at a time."""
    from homeassistant.components.recorder.history import state_changes_during_period

    entity_id = column.entity_id
    cursor = start
    last: datetime | None = None
    while True:
        page = state_changes_during_period(
            hass,
            cursor,
            end,
            entity_id,
            limit=EXPORT_PAGE,
            include_start_time_state=False,
        ).get(entity_id, [])
        for state in page:
            changed = state.last_changed
            if (last is not None and changed <= last) or changed >= end:
                continue  # the page boundary is read twice; the end is exclusive
            last = changed
            yield (
                changed,
                entity_id,
                value_cell(state.state, column.numeric),
                neutralise(str(state.attributes.get(ATTR_CHANGED_BY, ""))),
                neutralise(str(state.attributes.get(ATTR_MEASURED_AT, ""))),
            )
        if len(page) < EXPORT_PAGE or last is None:
            return
        cursor = last


def _backfilled_rows(
    hass: HomeAssistant, columns: Sequence[ExportColumn], start: datetime, end: datetime
) -> Iterator[tuple[datetime, str, str | _Bare, str, str]]:
    """Readings a node kept while Home Assistant was away, with the node's times
    (backfill.py); changed_by ``backlog``. They are in no recorded state: their ``time``
    is the node's measurement time, the same as their ``measured_at``."""
    from .backfill import CHANGED_BY_BACKLOG, journal_rows

    numeric = {c.entity_id: c.numeric for c in columns}
    for at, entity_id, value in journal_rows(hass, set(numeric), start, end):
        text = format(value, ".9g")
        cell = value_cell(text, numeric[entity_id])
        yield at, entity_id, cell, CHANGED_BY_BACKLOG, at.isoformat()


def write_csv(
    hass: HomeAssistant,
    path: Path,
    columns: Sequence[ExportColumn],
    start: datetime,
    end: datetime,
) -> int:
    """Stream the recorder's rows into a CSV file, in time order across points.

    Memory is bounded by EXPORT_PAGE rows per point, however long the range. The file is
    written under a partial name (never served) and renamed when complete; it is created
    readable by Home Assistant's user only, and never over an existing file or link.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    part = path.with_name(path.name + _PART)
    rows = 0
    descriptor = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with open(descriptor, "w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file, quoting=csv.QUOTE_STRINGS)
            writer.writerow(HEADER)
            merged = heapq.merge(
                *(_point_rows(hass, c, start, end) for c in columns),
                _backfilled_rows(hass, columns, start, end),
                key=lambda r: (r[0], r[1]),
            )
            for changed, entity_id, value, changed_by, measured in merged:
                # Our own ISO time and a valid entity id never begin with a formula sign.
                writer.writerow(
                    (changed.isoformat(), entity_id, value, changed_by, measured)
                )
                rows += 1
        part.replace(path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return rows


def remove_exports(folder: Path, older_than: timedelta | None, now: datetime) -> int:
    """Delete our files made ``older_than`` before ``now`` (all with None); how many.

    Files of other names in the folder are left alone.
    """
    try:
        paths = list(folder.iterdir())
    except FileNotFoundError:
        return 0
    removed = 0
    for path in paths:
        if (match := _OWN.fullmatch(path.name)) is None:
            continue
        if older_than is not None:
            try:
                created = datetime.strptime(match[1], _STAMP).replace(tzinfo=UTC)
            except ValueError:
                pass  # digits, but no date: not a name we made; old by definition
            else:
                if now - created < older_than:
                    continue
        path.unlink(missing_ok=True)
        removed += 1
    if older_than is None:
        with suppress(OSError):  # something else lives there: not ours to delete
            folder.rmdir()
    return removed


async def async_remove_old_exports(hass: HomeAssistant, _now: Any = None) -> None:
    removed = await hass.async_add_executor_job(
        remove_exports, export_folder(hass), RETENTION, dt_util.utcnow()
    )
    if removed:
        _LOGGER.debug("Deleted %s exports older than %s", removed, RETENTION)


async def async_remove_all_exports(hass: HomeAssistant) -> None:
    await hass.async_add_executor_job(
        remove_exports, export_folder(hass), None, dt_util.utcnow()
    )


async def async_setup_exports(hass: HomeAssistant) -> None:
    """The download view, the first cleanup and the periodic one (once, for every node)."""
    hass.http.register_view(ExportView())
    await async_remove_old_exports(hass)
    async_track_time_interval(
        hass,
        partial(async_remove_old_exports, hass),
        CLEANUP_INTERVAL,
        name=f"{DOMAIN} export cleanup",
        cancel_on_shutdown=True,
    )


def _is_plain_file(path: Path) -> bool:
    """A regular file, not a link to one elsewhere."""
    return not path.is_symlink() and path.is_file()


class ExportView(HomeAssistantView):
    """Serves export files to authenticated requests (bearer token or signed URL)."""

    url = DOWNLOAD_URL
    name = f"api:{DOMAIN}:export"
    requires_auth = True

    async def get(self, request: web.Request, name: str) -> web.StreamResponse:
        # Only names we make: no separators, no dots but the one before "csv", no ".part".
        if _NAME.fullmatch(name) is None:
            return web.Response(status=HTTPStatus.NOT_FOUND)
        hass = request.app[KEY_HASS]
        path = export_folder(hass) / name
        if not await hass.async_add_executor_job(_is_plain_file, path):
            return web.Response(status=HTTPStatus.NOT_FOUND)
        return web.FileResponse(
            path,
            headers={
                hdrs.CONTENT_TYPE: "text/csv; charset=utf-8",
                hdrs.CONTENT_DISPOSITION: f'attachment; filename="{name}"',
                hdrs.CACHE_CONTROL: "no-store",  # private data: no copies on the way
            },
        )
