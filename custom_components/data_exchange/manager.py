"""One node's lifecycle: it wires the connection, the engine, the Store, the repair issues,
the listeners and the exchange mode, and owns nothing else.

Connection events come in from connection.py and go to the node's exchange mode
(frame_mode.py or entity_mode.py), which runs them through protocol and engine and tells
the listeners (entities), the Store and the repair issues what changed. Writes come in from
entities and actions, already validated (points.py), and go to the mode.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aioesphomeapi import APIConnectionError, ButtonInfo, EntityState
from homeassistant.config_entries import ConfigEntry
from homeassistant.const import CONF_HOST, CONF_PORT, EVENT_HOMEASSISTANT_STOP
from homeassistant.core import Context, Event, HomeAssistant, callback
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.debounce import Debouncer
from homeassistant.helpers.device_registry import DeviceInfo

from .connection import NodeConnection, NodeSession, async_zeroconf_instance
from .const import (
    CONF_DESIRED_INTERVAL,
    CONF_DEVICE_NAME,
    CONF_KEEP_VALUES,
    CONF_NOISE_PSK,
    CONF_STALE_AFTER,
    CONF_WRITER_PRIORITY_DELAY,
    DEFAULT_DESIRED_INTERVAL,
    DEFAULT_KEEP_VALUES,
    DEFAULT_STALE_AFTER,
    DEFAULT_WRITER_PRIORITY_DELAY,
    MODE_ENTITY,
    MODE_FRAME,
)
from .device import NodeDevice
from .engine import ExchangeEngine
from .entity_mode import EntityMode
from .frame_mode import FrameMode
from .listeners import Listeners, Topic
from .modes import ExchangeMode
from .persistence import engine_as_dict, restore_engine
from .points import EMPTY_TABLE, INFO_BY_NAME, NodePoint, PointTable, unique_id
from .protocol import Model, ProtocolError, ProtocolVersionError, Value
from .repairs import EntryIssues
from .storage import NodeStore
from .values import CHANGED_BY_NODE, NodeStats, StaleReason, Stamped, pending

_LOGGER = logging.getLogger(__name__)

type DataExchangeConfigEntry = ConfigEntry[NodeManager]

# Malformed frames, action requests and foreign events are shown at most once a second.
IGNORED_NOTIFY_INTERVAL = 1.0
_MODES: dict[str, type[ExchangeMode]] = {MODE_FRAME: FrameMode, MODE_ENTITY: EntityMode}


async def _changed_by(hass: HomeAssistant, context: Context | None) -> str:
    """Who wrote a value: a user's name, an automation or script, or Home Assistant."""
    if context is not None and context.user_id:
        user = await hass.auth.async_get_user(context.user_id)
        return f"user:{user.name if user and user.name else context.user_id}"
    return (
        "automation" if context is not None and context.parent_id else "home_assistant"
    )


class NodeManager:
    """One node (one config entry)."""

    def __init__(self, hass: HomeAssistant, entry: DataExchangeConfigEntry) -> None:
        self.hass = hass
        self.entry = entry
        options = entry.options
        self.desired_interval = float(
            options.get(CONF_DESIRED_INTERVAL, DEFAULT_DESIRED_INTERVAL)
        )
        self.keep_values = bool(options.get(CONF_KEEP_VALUES, DEFAULT_KEEP_VALUES))
        self.engine = ExchangeEngine(
            float(
                options.get(CONF_WRITER_PRIORITY_DELAY, DEFAULT_WRITER_PRIORITY_DELAY)
            ),
            stale_after=float(options.get(CONF_STALE_AFTER, DEFAULT_STALE_AFTER)),
        )
        self.mac: str = entry.unique_id or ""
        self.store = NodeStore(hass, entry.entry_id, self._data_to_store)
        self.issues = EntryIssues(hass, entry.entry_id)
        self.listeners = Listeners()
        self.connection = NodeConnection(
            hass=hass,
            host=entry.data[CONF_HOST],
            port=entry.data[CONF_PORT],
            noise_psk=entry.data.get(CONF_NOISE_PSK),
            expected_mac=self.mac or None,
            name=entry.data.get(CONF_DEVICE_NAME) or entry.data[CONF_HOST],
            listener=self,
        )
        self.exchange: ExchangeMode | None = None
        self.device: NodeDevice | None = None
        self.table = EMPTY_TABLE
        self.point_index: dict[int, int] = {}  # entity key -> point index
        self.stale_reason: StaleReason | None = StaleReason.OFFLINE
        self.malformed_frames = 0  # malformed frames or model events from the node
        self._ignored_debouncer = Debouncer(
            hass,
            _LOGGER,
            cooldown=IGNORED_NOTIFY_INTERVAL,
            immediate=True,
            # A callback, or the Debouncer runs it in the executor.
            function=callback(lambda: self.listeners.topic(Topic.IGNORED)),
        )
        self._model_event: dict[str, str] | None = None
        self._saved_mode: str | None = None  # the mode the Store and the entities have
        self._reload_scheduled = False

    # ---- lifecycle ----

    async def async_setup(self) -> None:
        """Restore what was stored: entities exist before the node answers."""
        if stored := await self.store.async_load():
            self._restore(stored)
        if self.device is not None:
            self._update_device_registry()
        self.issues.encryption(
            has_key=bool(self.entry.data.get(CONF_NOISE_PSK)), name=self.name
        )

    async def async_start(self) -> None:
        """Start connecting (in the background); disconnect when Home Assistant stops."""
        self.connection.zeroconf_instance = await async_zeroconf_instance(self.hass)
        # async_listen, not async_listen_once: the unload removes it, also after it fired.
        self.entry.async_on_unload(
            self.hass.bus.async_listen(EVENT_HOMEASSISTANT_STOP, self._async_on_stop)
        )
        await self.connection.async_start()

    async def _async_on_stop(self, _event: Event) -> None:
        """Home Assistant stops: close the connection without writing anything stale."""
        if self.exchange is not None:
            self.exchange.end_session()
        await self.connection.async_stop()

    async def async_shutdown(self) -> None:
        if self.exchange is not None:
            self.exchange.end_session()
        self._ignored_debouncer.async_shutdown()
        await self.connection.async_stop()
        await self.store.async_save()

    def _restore(self, stored: dict[str, Any]) -> None:
        try:
            mode = stored.get("mode")
            device = NodeDevice.from_dict(self.mac, stored.get("device") or {})
            infos = [
                INFO_BY_NAME[item["type"]].from_dict(item["info"])
                for item in stored.get("infos", [])
            ]
            model_event = stored.get("model")
            model = Model.from_event(model_event, stored=True) if model_event else None
            self._set_table(PointTable.build(infos, model), model_event)
            if model is not None or self.points:
                restore_engine(self.engine, stored.get("engine") or {})
            self._set_mode(mode)
            self._saved_mode = self.mode
            self.device = device if stored.get("device") else None
        except (KeyError, TypeError, ValueError) as err:
            _LOGGER.warning(
                "%s: stored state unreadable, starting afresh: %s", self.name, err
            )
            self.table, self.exchange, self.device = EMPTY_TABLE, None, None

    def _data_to_store(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "device": None if self.device is None else self.device.as_dict(),
            "model": self._model_event,
            "infos": [
                {"type": type(info).__name__, "info": info.to_dict()}
                for info in self.table.infos()
            ],
            "engine": engine_as_dict(self.engine) if self.engine.model else None,
        }

    # ---- identity ----

    @property
    def name(self) -> str:
        if self.device is None:
            return self.entry.title
        return self.device.display_name(self.entry.title)

    @property
    def device_info(self) -> DeviceInfo:
        device = self.device or NodeDevice(self.mac)
        return device.device_info(self.entry.title)

    @property
    def connected(self) -> bool:
        return self.connection.connected

    @property
    def mode(self) -> str | None:
        return None if self.exchange is None else self.exchange.name

    @callback
    def _update_device_registry(self) -> None:
        dr.async_get(self.hass).async_get_or_create(
            config_entry_id=self.entry.entry_id, **self.device_info
        )

    # ---- points ----

    @property
    def points(self) -> tuple[NodePoint, ...]:
        return self.table.points

    @property
    def buttons(self) -> tuple[ButtonInfo, ...]:
        return self.table.buttons

    def _set_table(self, table: PointTable, model_event: dict[str, str] | None) -> None:
        self.table = table
        self._model_event = model_event
        self.point_index = {p.info.key: p.index for p in table.points}
        self.engine.set_model(table.model, [p.limits for p in table.points])

    def _set_mode(self, name: str | None) -> None:
        if name == self.mode:
            return
        if self.exchange is not None:
            self.exchange.end_session()
        self.exchange = _MODES[name](self) if name in _MODES else None

    def unique_id(self, kind: str, object_id: str) -> str:
        return unique_id(self.mac, kind, object_id)

    def reported(self, index: int) -> Stamped | None:
        return self.engine.reported[index]

    def reported_value(self, object_id: str) -> Value:
        """The reported value of the point for the node's entity ``object_id``."""
        reported = self.engine.reported[self.table.find(object_id).index]
        return None if reported is None else reported.value

    def changed_by(self, index: int) -> str:
        """Who caused the current value: the writer of the desired value it matches, or the node."""
        reported = self.engine.reported[index]
        desired = self.engine.desired.get(index)
        if (
            reported is not None
            and desired is not None
            and desired.value == reported.value
        ):
            return desired.changed_by
        return CHANGED_BY_NODE

    def pending(self, index: int) -> Stamped | None:
        """The desired value of a point that waits for the node (None: nothing waits)."""
        return pending(self.engine.desired.get(index), self.engine.reported[index])

    def stats(self) -> NodeStats:
        """What the exchange-health entities show, in one snapshot."""
        engine = self.engine
        last = engine.last_refusal
        return NodeStats(
            missed_frames=engine.stats.missed,
            refused_frames=engine.stats.refused_by_node,
            foreign_requests=engine.stats.foreign_requests,
            refused_point=None if last is None else self.table.name_of(last.index),
            refused_reason=None if last is None else last.reason,
            latency_ms=engine.latency.ms,
            malformed_frames=self.malformed_frames,
            ignored_requests=self.connection.stats.ignored_calls,
        )

    @callback
    def set_stale(self, reason: StaleReason | None) -> None:
        """Staleness changes only on transitions, and then every entity is written once."""
        if reason == self.stale_reason:
            return
        self.stale_reason = reason
        if not self.hass.is_stopping:
            self.listeners.everyone()

    @callback
    def on_ignored_call(self) -> None:
        """A malformed frame, an action request or a foreign event: counted, shown."""
        self._ignored_debouncer.async_schedule_call()

    # ---- connection events (connection.ConnectionListener) ----

    async def async_on_connected(self, session: NodeSession) -> None:
        device = NodeDevice.from_node(self.mac, session.device_info)
        self._set_mode(session.mode)
        exchange = self.exchange
        assert exchange is not None
        try:
            model = await exchange.async_read_model()
        except ProtocolVersionError as err:
            # A repair issue says which side to update; the connection stays, idle (asking
            # again on every reconnect changes nothing until the node is flashed).
            log = self.issues.protocol_mismatch(self.name, err.version)
            log("%s: nothing exchanged: %s", self.name, err)
            return
        except (TimeoutError, APIConnectionError, ProtocolError) as err:
            _LOGGER.warning(
                "%s: no model description from the node: %r", self.name, err
            )
            await self.connection.async_drop()
            return
        old_signature = self.table.signature()
        try:
            table = PointTable.build(session.entities, model)
        except ProtocolError as err:
            # E.g. a point names an entity marked internal: the node does not expose it.
            _LOGGER.warning(
                "%s: node model does not match its entities: %s", self.name, err
            )
            self.issues.model_mismatch(self.name, err)
            return
        self._set_table(table, exchange.model_event)
        self.issues.model_matches()
        changed = (
            exchange.name != self._saved_mode
            or device != self.device
            or table.signature() != old_signature
        )
        self.device = device
        if changed:
            self._saved_mode = exchange.name
            await self.store.async_save()
            self._update_device_registry()
            if old_signature != table.signature():
                # The firmware's points changed: entities follow by a reload of the entry.
                _LOGGER.info("%s: points changed, reloading its entities", self.name)
                self._schedule_reload()
                return
        await exchange.async_start_session()
        self.listeners.topic(Topic.NODE)

    async def async_on_disconnected(self) -> None:
        if self.exchange is not None:
            self.exchange.end_session()
        if not self.hass.is_stopping:
            self.set_stale(StaleReason.OFFLINE)
            self.listeners.topic(Topic.NODE)

    async def async_on_auth_error(self, err: Exception) -> None:
        self.entry.async_start_reauth(self.hass)

    @callback
    def on_node_event(self, name: str, data: dict[str, str]) -> None:
        if self.exchange is not None:
            self.exchange.on_node_event(name, data)

    @callback
    def on_entity_state(self, state: EntityState) -> None:
        if self.exchange is not None:
            self.exchange.on_entity_state(state)

    @callback
    def _schedule_reload(self) -> None:
        if not self._reload_scheduled:
            self._reload_scheduled = True
            self.hass.config_entries.async_schedule_reload(self.entry.entry_id)

    # ---- writes (validated by the caller: points.validate_value) ----

    async def async_write(
        self, index: int, value: Value, context: Context | None
    ) -> None:
        """A write from Home Assistant: a user, an automation, an action."""
        await self.async_write_many([(index, value)], context)

    async def async_write_many(
        self, writes: list[tuple[int, Value]], context: Context | None
    ) -> None:
        """Several writes that go out together: in frame mode, in one desired frame."""
        if self.exchange is None:
            raise APIConnectionError("not connected")
        changed_by = await _changed_by(self.hass, context)
        self.exchange.write(writes, changed_by, time.monotonic(), time.time())

    async def async_write_acquisition(
        self, running: bool, context: Context | None
    ) -> None:
        if self.exchange is None:
            raise APIConnectionError("not connected")
        changed_by = await _changed_by(self.hass, context)
        self.exchange.write_acquisition(
            running, changed_by, time.monotonic(), time.time()
        )

    async def async_resync(self) -> None:
        """A full resync now: reconnect, read the node again, re-apply desired values."""
        await self.connection.async_drop()
