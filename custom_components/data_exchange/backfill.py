"""Store-and-forward, the Home Assistant part: a node's backlog recorded with its times.

A backlog frame (backlog.py decodes it) carries readings the node took while Home Assistant
was away. They are never current states. Each new batch is

1. appended to the node's **journal** (``<config>/.storage/data_exchange_backfill/
   <entry_id>.jsonl``, one line per batch, flushed to disk), which the CSV export reads
   (export.py) and which holds the last stored reading (boot id + reading sequence number):
   a resent batch is recognised and dropped, across restarts too;
2. acknowledged to the node (desired frame argument ``backlog``), which frees it;
3. announced on the event bus (``data_exchange_backfill``: node, entity ids, count, time
   range) for automations;
4. merged into the recorder's **statistics** of the sensors with state class
   *measurement*: every hourly (and 5-minute) period that the readings touch and that Home
   Assistant has compiled already is computed again from the recorded states and the
   journal's readings together, and imported over the compiled row. The import replaces a
   row (the recorder updates a row of the same start), so the row is never computed from
   less data than it had. A period not compiled yet is merged once it is (its end + 30 s):
   importing it earlier would make the recorder's own compile collide with the row.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
import json
import logging
import os
from pathlib import Path
import time
from typing import TYPE_CHECKING, Any, Final

from homeassistant.const import ATTR_UNIT_OF_MEASUREMENT
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.event import async_track_point_in_utc_time

from .backlog import BacklogFrame, Ledger, aggregate, merge_samples, periods
from .const import DOMAIN
from .protocol import Model

if TYPE_CHECKING:
    from .manager import NodeManager
    from .node_clock import NodeClock

_LOGGER = logging.getLogger(__name__)

EVENT_BACKFILL: Final = f"{DOMAIN}_backfill"
CHANGED_BY_BACKLOG: Final = "backlog"  # the export's changed_by of a backfilled row
JOURNAL_FOLDER: Final = (".storage", f"{DOMAIN}_backfill")
JOURNAL_RETENTION: Final = timedelta(days=10)  # the recorder's default purge_keep_days
HOUR: Final = 3600.0
FIVE_MINUTES: Final = 300.0
# A period is merged this long after its end: the recorder compiles it 10 s after.
COMPILED_AFTER: Final = 30.0
# Periods merged again at startup (an import the last run did not finish).
REMERGE_WITHIN: Final = 3 * HOUR


def journal_folder(hass: HomeAssistant) -> Path:
    return Path(hass.config.path(*JOURNAL_FOLDER))


def read_journal(path: Path) -> list[dict[str, Any]]:
    """The batches of a journal; a line cut short by a crash is no batch."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    batches = []
    for line in text.splitlines():
        try:
            batch = json.loads(line)
        except ValueError:
            continue
        if isinstance(batch, dict) and isinstance(batch.get("rows"), list):
            batches.append(batch)
    return batches


def _append(path: Path, batch: dict[str, Any]) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with open(descriptor, "a", encoding="utf-8") as file:
        file.write(json.dumps(batch, separators=(",", ":")) + "\n")
        file.flush()
        os.fsync(file.fileno())


def _load(path: Path, now: float) -> list[dict[str, Any]]:
    """The journal without batches older than the retention (rewritten if any went)."""
    batches = read_journal(path)
    keep = [
        b
        for b in batches
        if b["rows"] and b["rows"][-1][0] >= now - JOURNAL_RETENTION.total_seconds()
    ]
    if len(keep) != len(batches):
        part = path.with_name(path.name + ".part")
        part.write_text(
            "".join(json.dumps(b, separators=(",", ":")) + "\n" for b in keep)
        )
        part.replace(path)
    return keep


def journal_rows(
    hass: HomeAssistant, entity_ids: set[str], start: datetime, end: datetime
) -> Iterator[tuple[datetime, str, float]]:
    """Backfilled rows of these entities in [start, end), of every node (for the export)."""
    lo, hi = start.timestamp(), end.timestamp()
    try:
        paths = sorted(journal_folder(hass).glob("*.jsonl"))
    except OSError:
        return
    rows: list[tuple[float, str, float]] = []
    for path in paths:
        for batch in read_journal(path):
            rows.extend(
                (t, e, v)
                for t, e, v in batch["rows"]
                if e in entity_ids and lo <= t < hi
            )
    for t, e, v in sorted(rows):
        yield datetime.fromtimestamp(t, UTC), e, v


def dropped_readings(node: NodeManager) -> int | None:
    """The node entity *Backlog dropped readings* (None: the node keeps no backlog)."""
    backfill: Backfill | None = getattr(node.exchange, "backfill", None)
    return None if backfill is None or not backfill.has_backlog else backfill.dropped


class Backfill:
    """One node's backlog: what is stored, acknowledged, announced and merged."""

    def __init__(self, node: NodeManager, send_soon: Callable[[], None]) -> None:
        self.node = node
        self._send_soon = send_soon  # a desired frame, carrying the acknowledgement
        self.ledger = Ledger()
        self.dropped = 0  # readings the node dropped by overflow since boot (key l)
        self.waiting = 0  # readings it holds (key n)
        self.has_backlog = False  # its full frames carry l and n
        self._rows: list[tuple[float, str, float]] = []  # recent journal rows
        self._queue: list[dict[str, Any]] = []  # batches waiting for the disk
        self._writing = False
        self._queued_boot = ""
        self._queued_seq = 0  # last reading queued for the disk
        self._loaded = False
        self._pending: set[tuple[str, float, float]] = set()  # entity, start, period
        self._unsub_timer: CALLBACK_TYPE | None = None
        self.path = journal_folder(node.hass) / f"{node.entry.entry_id}.jsonl"

    @property
    def hass(self) -> HomeAssistant:
        return self.node.hass

    def acknowledgement(self, boot_id: str) -> int:
        return self.ledger.acknowledgement(boot_id)

    async def async_load(self) -> None:
        """The journal: the last stored reading, and periods to merge again."""
        if self._loaded:
            return
        batches = await self.hass.async_add_executor_job(_load, self.path, time.time())
        self._loaded = True
        for batch in batches:
            self.ledger.stored(str(batch.get("boot", "")), int(batch.get("last", 0)))
            self._rows.extend((float(t), str(e), float(v)) for t, e, v in batch["rows"])
        recent = time.time() - REMERGE_WITHIN
        self._plan([(t, e) for t, e, _ in self._rows if t >= recent])
        if self._pending and "recorder" in self.hass.config.components:
            self.node.entry.async_create_background_task(
                self.hass, self._async_merge_due(), f"{DOMAIN} backfill merge"
            )

    @callback
    def on_full_frame(self, dropped: int | None, waiting: int | None) -> bool:
        """A full frame's backlog counters; True if the dropped count changed."""
        changed = (dropped is not None) != self.has_backlog or (
            dropped is not None and dropped != self.dropped
        )
        self.has_backlog = dropped is not None
        self.dropped = dropped or 0
        self.waiting = waiting or 0
        return changed

    @callback
    def on_frame(self, data: dict[str, str], model: Model, clock: NodeClock) -> None:
        """A backlog frame: decoded here (ProtocolError: malformed), its new readings
        queued for the journal. Batches are written one after the other, each
        acknowledged once it is on disk, so a crash never frees a reading not stored."""
        frame = BacklogFrame.from_event(data, model)
        received = time.time()
        boot_id = model.boot_id
        # Not stored, nor waiting for the disk (a frame sent again meanwhile).
        queued = self._queued_seq if boot_id == self._queued_boot else 0
        fresh = [r for r in self.ledger.fresh(boot_id, frame) if r.seq > queued]
        if not fresh:
            self._send_soon()  # stored already: acknowledged again
            return
        rows = []
        for reading in fresh:
            entity_id = self._entity_id(reading.point)
            if entity_id is not None:
                # The node's clock (node_clock.py) of its latest frame, same boot; before
                # one arrived, the backlog frame's own uptime against its receive time.
                at = clock.wall_time_of_uptime(reading.uptime_ms)
                if at is None:
                    at = received - (frame.uptime_ms - reading.uptime_ms) / 1000
                rows.append((round(at, 3), entity_id, reading.value))
        self._queued_boot, self._queued_seq = boot_id, frame.last_seq
        self._queue.append({"boot": boot_id, "last": frame.last_seq, "rows": rows})
        self._write_next()

    @callback
    def _write_next(self) -> None:
        # An executor job with a done callback, not a task: nothing lingers meanwhile.
        if self._writing or not self._queue:
            return
        self._writing = True
        batch = self._queue.pop(0)
        future = self.hass.async_add_executor_job(_append, self.path, batch)
        future.add_done_callback(lambda done: self._stored(batch, done))

    @callback
    def _stored(self, batch: dict[str, Any], done: asyncio.Future[None]) -> None:
        self._writing = False
        if done.cancelled() or done.exception() is not None:
            _LOGGER.warning(
                "%s: backlog readings not stored (the node sends them again): %s",
                self.node.name,
                None if done.cancelled() else done.exception(),
            )
            self._queue.clear()
            self._queued_seq = 0
            return
        rows: list[tuple[float, str, float]] = batch["rows"]
        self.ledger.stored(batch["boot"], batch["last"])
        # In memory: what a merge may still need (the journal keeps the rest).
        keep = time.time() - REMERGE_WITHIN - HOUR
        self._rows = [r for r in self._rows if r[0] >= keep]
        self._rows.extend(rows)
        self._send_soon()  # the acknowledgement frees the node's ring
        self._write_next()
        if not rows:
            return
        self.hass.bus.async_fire(
            EVENT_BACKFILL,
            {
                "node": self.node.name,
                "entity_ids": sorted({e for _, e, _ in rows}),
                "count": len(rows),
                "start": datetime.fromtimestamp(rows[0][0], UTC).isoformat(),
                "end": datetime.fromtimestamp(rows[-1][0], UTC).isoformat(),
            },
        )
        self._plan([(t, e) for t, e, _ in rows])
        if "recorder" in self.hass.config.components:
            self.node.entry.async_create_background_task(
                self.hass, self._async_merge_due(), f"{DOMAIN} backfill merge"
            )

    def _entity_id(self, index: int) -> str | None:
        point = self.node.points[index]
        return er.async_get(self.hass).async_get_entity_id(
            point.platform,
            DOMAIN,
            self.node.unique_id(point.kind, point.info.object_id),
        )

    # ---- statistics ----

    def _plan(self, samples: list[tuple[float, str]]) -> None:
        for entity_id in {e for _, e in samples}:
            times = [t for t, e in samples if e == entity_id]
            for period in (FIVE_MINUTES, HOUR):
                for start in periods(times, period):
                    self._pending.add((entity_id, start, period))

    async def _async_merge_due(self, _now: Any = None) -> None:
        from homeassistant.components.recorder import get_instance

        if self._unsub_timer is not None:
            self._unsub_timer()
            self._unsub_timer = None
        if "recorder" not in self.hass.config.components:
            return  # no statistics to merge into
        now = time.time()
        due = sorted(p for p in self._pending if p[1] + p[2] + COMPILED_AFTER <= now)
        if due:
            recorder = get_instance(self.hass)
            await recorder.async_block_till_done()  # the periods' own compile is done
            for entity_id, start, period in due:
                self._pending.discard((entity_id, start, period))
                try:
                    await self._async_merge(entity_id, start, period)
                except Exception:
                    _LOGGER.exception(
                        "%s: backfill of %s's statistics failed",
                        self.node.name,
                        entity_id,
                    )
        if self._pending and not self.hass.is_stopping:
            first = min(p[1] + p[2] for p in self._pending) + COMPILED_AFTER
            self._unsub_timer = async_track_point_in_utc_time(
                self.hass, self._async_merge_due, datetime.fromtimestamp(first, UTC)
            )

    async def _async_merge(self, entity_id: str, start: float, period: float) -> None:
        from homeassistant.components.recorder import get_instance
        from homeassistant.components.recorder.db_schema import StatisticsShortTerm
        from homeassistant.components.recorder.history import (
            state_changes_during_period,
        )
        from homeassistant.components.recorder.models import StatisticMeanType
        from homeassistant.components.recorder.statistics import (
            STATISTIC_UNIT_TO_UNIT_CONVERTER,
            async_import_statistics,
            get_metadata,
        )
        from homeassistant.components.sensor import SensorStateClass

        state = self.hass.states.get(entity_id)
        if (
            state is None
            or state.attributes.get("state_class") != SensorStateClass.MEASUREMENT
        ):
            return
        recorder = get_instance(self.hass)
        begin = datetime.fromtimestamp(start - HOUR, UTC)
        end = datetime.fromtimestamp(start + period, UTC)
        history = await recorder.async_add_executor_job(
            state_changes_during_period, self.hass, begin, end, entity_id
        )
        recorded = []
        for s in history.get(entity_id, []):
            try:
                recorded.append((s.last_updated.timestamp(), float(s.state)))
            except ValueError:
                continue  # unavailable, unknown
        backlog = [(t, v) for t, e, v in self._rows if e == entity_id]
        samples = merge_samples(backlog, recorded)
        before = [v for t, v in samples if t < start]
        figures = aggregate(samples, start, period, before[-1] if before else None)
        if figures is None:
            return
        # The recorder's own metadata of the entity (its unit, unit class), as compiled;
        # the same kind of metadata for an entity not compiled yet.
        known = await recorder.async_add_executor_job(
            partial(get_metadata, self.hass, statistic_ids={entity_id})
        )
        metadata: Any
        if entity_id in known:
            metadata = dict(known[entity_id][1])
        else:
            unit = state.attributes.get(ATTR_UNIT_OF_MEASUREMENT)
            converter = STATISTIC_UNIT_TO_UNIT_CONVERTER.get(unit)
            metadata = {
                "has_sum": False,
                "mean_type": StatisticMeanType.ARITHMETIC,
                "name": None,
                "source": "recorder",
                "statistic_id": entity_id,
                "unit_of_measurement": unit,
                "unit_class": converter.UNIT_CLASS if converter else None,
            }
        row: Any = {
            "start": datetime.fromtimestamp(start, UTC),
            "mean": figures.mean,
            "min": figures.min,
            "max": figures.max,
        }
        if period == HOUR:
            async_import_statistics(self.hass, metadata, [row])
        else:
            # The 5-minute table through the recorder's own import job (the public helper
            # takes hourly rows only); a statistics graph of a short range reads these.
            recorder.async_import_statistics(metadata, [row], StatisticsShortTerm)

    @callback
    def shutdown(self) -> None:
        if self._unsub_timer is not None:
            self._unsub_timer()
            self._unsub_timer = None
