"""The exchange coordinator: binds a node's connection, the exchange engine and the entities.

Frame mode (the node runs our data_exchange component): every cycle the full desired frame
goes out, every node frame updates the reported values; only points whose value changed
are written to Home Assistant's state machine. Entity mode (a plain ESPHome node): values
come from the state subscription and writes are entity commands.

What the node looks like (device info, entity infos, model) and the last values are kept in
a Store, so entities exist and show their last values, marked stale, while the node is
offline, also right after a Home Assistant restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
import logging
import time
from typing import Any

from aioesphomeapi import (
    APIConnectionError,
    BinarySensorInfo,
    ButtonInfo,
    EntityInfo,
    EntityState,
    NumberInfo,
    SelectInfo,
    SensorInfo,
    SwitchInfo,
    TextInfo,
    TextSensorInfo,
)
from homeassistant.config_entries import ConfigEntry
from homeassistant.const import CONF_HOST, CONF_PORT, EVENT_HOMEASSISTANT_STOP, Platform
from homeassistant.core import CALLBACK_TYPE, Context, Event, HomeAssistant, callback
from homeassistant.helpers import (
    device_registry as dr,
    entity_registry as er,
    issue_registry as ir,
)
from homeassistant.helpers.debounce import Debouncer
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.entity import Entity
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.event import async_track_time_interval
from homeassistant.helpers.storage import Store

from .connection import NodeConnection, NodeSession
from .const import (
    CONF_CYCLE,
    CONF_DEVICE_NAME,
    CONF_KEEP_VALUES,
    CONF_NOISE_PSK,
    CONF_STALE_AFTER,
    CONF_WRITER_PRIORITY_DELAY,
    DEFAULT_CYCLE,
    DEFAULT_KEEP_VALUES,
    DEFAULT_STALE_AFTER,
    DEFAULT_WRITER_PRIORITY_DELAY,
    DOMAIN,
    MODE_ENTITY,
    MODE_FRAME,
    STORAGE_VERSION,
    STORE_DESIRED_WITHIN,
    STORE_REPORTED_WITHIN,
)
from .engine import ExchangeEngine
from .plain import plain
from .protocol import (
    DESCRIBE_ACTION,
    FRAME_EVENT,
    MODEL_EVENT,
    WRITE_ACTION,
    Model,
    ModelPoint,
    NodeFrame,
    PointType,
    ProtocolError,
    Value,
)
from .rules import limits_of
from .values import (
    SENDER_NODE,
    PointRefusal,
    StaleReason,
    Stamped,
    changed_indices,
    stale_reason,
)

_LOGGER = logging.getLogger(__name__)

type DataExchangeConfigEntry = ConfigEntry[DataExchangeCoordinator]

# Entity info class -> (point type, platform). Buttons are commands, not points.
INFO_TYPES: dict[type[EntityInfo], tuple[PointType, Platform]] = {
    SensorInfo: (PointType.SENSOR, Platform.SENSOR),
    BinarySensorInfo: (PointType.BINARY_SENSOR, Platform.BINARY_SENSOR),
    TextSensorInfo: (PointType.TEXT_SENSOR, Platform.SENSOR),
    NumberInfo: (PointType.NUMBER, Platform.NUMBER),
    SwitchInfo: (PointType.SWITCH, Platform.SWITCH),
    SelectInfo: (PointType.SELECT, Platform.SELECT),
    TextInfo: (PointType.TEXT, Platform.TEXT),
}
_INFO_BY_NAME: dict[str, type[EntityInfo]] = {
    cls.__name__: cls for cls in (*INFO_TYPES, ButtonInfo)
}
_TYPE_TO_INFO = {ptype: cls for cls, (ptype, _) in INFO_TYPES.items()}

PLATFORMS = [
    Platform.BINARY_SENSOR,
    Platform.BUTTON,
    Platform.NUMBER,
    Platform.SELECT,
    Platform.SENSOR,
    Platform.SWITCH,
    Platform.TEXT,
]

# Entity-mode commands per writable point type.
_COMMANDS = {
    PointType.NUMBER: "number_command",
    PointType.SWITCH: "switch_command",
    PointType.SELECT: "select_command",
    PointType.TEXT: "text_command",
}

DESCRIBE_TIMEOUT = 10.0
TOPIC_NODE = "node"  # connectivity, staleness, acquisition, mode
TOPIC_STATS = "stats"  # latency, missed frames
# The node sent a malformed frame, an action request or a foreign event. Those counters are
# shown at most once a second: a broken node may send nothing else, and its every message
# must not become a state write.
TOPIC_IGNORED = "ignored"
IGNORED_NOTIFY_INTERVAL = 1.0


@dataclass(frozen=True, slots=True)
class NodePoint:
    """A point as Home Assistant sees it: its frame position and its entity info."""

    index: int
    info: EntityInfo
    type: PointType

    @property
    def platform(self) -> Platform:
        return INFO_TYPES[type(self.info)][1]

    @property
    def kind(self) -> str:
        """The entity kind in unique ids: sensor, text_sensor, number, ..."""
        return (
            "text_sensor" if self.type is PointType.TEXT_SENSOR else self.platform.value
        )


async def _sender(hass: HomeAssistant, context: Context | None) -> str:
    """Who wrote a value: a user's name, an automation or script, or Home Assistant."""
    if context is not None and context.user_id:
        user = await hass.auth.async_get_user(context.user_id)
        return f"user:{user.name if user and user.name else context.user_id}"
    if context is not None and context.parent_id:
        return "automation"
    return "home_assistant"


class DataExchangeCoordinator:
    """One node: connection, exchange engine, stored state, entities."""

    def __init__(self, hass: HomeAssistant, entry: DataExchangeConfigEntry) -> None:
        self.hass = hass
        self.entry = entry
        options = entry.options
        self.cycle = float(options.get(CONF_CYCLE, DEFAULT_CYCLE))
        self.stale_after = float(options.get(CONF_STALE_AFTER, DEFAULT_STALE_AFTER))
        self.keep_values = bool(options.get(CONF_KEEP_VALUES, DEFAULT_KEEP_VALUES))
        self.engine = ExchangeEngine(
            float(
                options.get(CONF_WRITER_PRIORITY_DELAY, DEFAULT_WRITER_PRIORITY_DELAY)
            )
        )
        self.mac: str = entry.unique_id or ""
        self.store: Store[dict[str, Any]] = Store(
            hass, STORAGE_VERSION, f"{DOMAIN}.{entry.entry_id}"
        )
        self.connection = NodeConnection(
            hass=hass,
            host=entry.data[CONF_HOST],
            port=entry.data[CONF_PORT],
            noise_psk=entry.data.get(CONF_NOISE_PSK),
            expected_mac=self.mac or None,
            name=entry.data.get(CONF_DEVICE_NAME) or entry.data[CONF_HOST],
            listener=self,
        )
        self.mode: str | None = None
        self.device: dict[str, Any] = {}
        self.points: list[NodePoint] = []
        self.buttons: list[ButtonInfo] = []
        self.stale_reason: StaleReason | None = StaleReason.OFFLINE
        self.last_frame_time: float | None = None
        self.latency_ms: float | None = None
        self.rejected_frames = 0  # malformed frames or model events from the node
        self._rejection_logged = False
        self._ignored_debouncer = Debouncer(
            hass,
            _LOGGER,
            cooldown=IGNORED_NOTIFY_INTERVAL,
            immediate=True,
            # A callback, or the Debouncer runs it in the executor.
            function=callback(lambda: self._notify_node(TOPIC_IGNORED)),
        )
        self._model_event: dict[str, str] | None = None
        self._keys: dict[int, int] = {}  # entity key -> point index (entity mode)
        self._awaiting_states: set[int] = set()  # entity mode, until first states came
        self._point_listeners: dict[int, list[CALLBACK_TYPE]] = {}
        self._node_listeners: dict[str, list[CALLBACK_TYPE]] = {}
        self._unsub_cycle: CALLBACK_TYPE | None = None
        self._describe: asyncio.Future[Model] | None = None
        self._send_scheduled = False
        self._sent_at: tuple[int, float] | None = None
        self._reload_scheduled = False
        self._session_ready = False  # frames count only once the session is set up
        self._save_deadline: float | None = None  # monotonic; a save is scheduled
        self._refusal_logged = False

    # ---- lifecycle ----

    async def async_setup(self) -> None:
        """Restore what was stored: entities exist before the node answers."""
        stored = await self.store.async_load()
        if stored:
            self._restore(stored)
        if self.device:
            self._update_device_registry()
        self._update_encryption_issue()

    async def async_start(self) -> None:
        """Start connecting (in the background); disconnect when Home Assistant stops."""
        self.connection.zeroconf_instance = await _zeroconf(self.hass)
        # async_listen, not async_listen_once: the unload removes it, also after it fired.
        self.entry.async_on_unload(
            self.hass.bus.async_listen(EVENT_HOMEASSISTANT_STOP, self._async_on_stop)
        )
        await self.connection.async_start()

    async def _async_on_stop(self, _event: Event) -> None:
        """Home Assistant stops: close the connection without writing anything stale."""
        self._stop_cycle()
        await self.connection.async_stop()

    async def async_shutdown(self) -> None:
        self._stop_cycle()
        self._ignored_debouncer.async_shutdown()
        await self.connection.async_stop()
        if self._describe is not None and not self._describe.done():
            self._describe.cancel()
        await self.store.async_save(self._data_to_store())

    def _restore(self, stored: dict[str, Any]) -> None:
        try:
            self.mode = stored.get("mode")
            self.device = dict(stored.get("device") or {})
            infos = [
                _INFO_BY_NAME[item["type"]].from_dict(item["info"])
                for item in stored.get("infos", [])
            ]
            model_event = stored.get("model")
            model = Model.from_event(model_event, stored=True) if model_event else None
            self._set_points(infos, model, model_event)
            if model is not None or self.points:
                self.engine.restore(stored.get("engine") or {})
        except (KeyError, TypeError, ValueError) as err:
            _LOGGER.warning(
                "%s: stored state unreadable, starting afresh: %s", self.name, err
            )
            self.points, self.buttons, self.mode = [], [], None

    def _data_to_store(self) -> dict[str, Any]:
        self._save_deadline = None  # called by the Store when it writes
        return {
            "mode": self.mode,
            "device": self.device,
            "model": self._model_event,
            "infos": [
                {"type": type(info).__name__, "info": info.to_dict()}
                for info in [p.info for p in self.points] + list(self.buttons)
            ],
            "engine": self.engine.as_dict() if self.engine.model else None,
        }

    @callback
    def _schedule_save(self, within: float = STORE_REPORTED_WITHIN) -> None:
        """Have the Store written at most ``within`` seconds from now.

        Store.async_delay_save postpones a pending save on every call; here a pending save
        is only ever brought forward, so values that keep changing cannot hold it off.
        """
        deadline = time.monotonic() + within
        if self._save_deadline is not None and self._save_deadline <= deadline:
            return
        self._save_deadline = deadline
        self.store.async_delay_save(self._data_to_store, within)

    # ---- identity ----

    @property
    def name(self) -> str:
        return str(
            self.device.get("friendly_name")
            or self.device.get("name")
            or self.entry.title
        )

    @property
    def device_info(self) -> DeviceInfo:
        project = self.device.get("project_name") or ""
        return DeviceInfo(
            connections={(dr.CONNECTION_NETWORK_MAC, self.mac)},
            identifiers={(DOMAIN, self.mac)},
            name=self.name,
            manufacturer=project.split(".")[0] if "." in project else "ESPHome",
            model=(project.split(".", 1)[1] if "." in project else None)
            or self.device.get("model"),
            sw_version=self.device.get("project_version")
            or self.device.get("esphome_version"),
            hw_version=self.device.get("esphome_version") if project else None,
        )

    @property
    def connected(self) -> bool:
        return self.connection.connected

    # ---- points ----

    def _set_points(
        self,
        infos: list[EntityInfo],
        model: Model | None,
        model_event: dict[str, str] | None,
    ) -> None:
        by_key = {info.key: info for info in infos}
        points: list[NodePoint] = []
        if model is not None:
            for i, mp in enumerate(model.points):
                info = by_key.get(mp.key)
                if (
                    info is None
                    or INFO_TYPES.get(type(info), (None,))[0] is not mp.type
                ):
                    raise ProtocolError(f"point {i} names no {mp.type.name} entity")
                points.append(NodePoint(i, info, mp.type))
            self.buttons = []
        else:
            for info in infos:
                if type(info) in INFO_TYPES:
                    points.append(
                        NodePoint(len(points), info, INFO_TYPES[type(info)][0])
                    )
            self.buttons = [i for i in infos if isinstance(i, ButtonInfo)]
            model = Model(
                "entity",
                0,
                0,
                tuple(ModelPoint(p.type, p.info.key) for p in points),
            )
        self.points = points
        self._model_event = model_event
        self._keys = {p.info.key: p.index for p in points}
        self.engine.set_model(model, [limits_of(p.type, p.info) for p in points])

    def unique_id(self, kind: str, object_id: str) -> str:
        return f"{self.mac}-{kind}-{object_id}"

    def expected_unique_ids(self) -> set[str]:
        ids = {self.unique_id(p.kind, p.info.object_id) for p in self.points}
        ids |= {self.unique_id("button", b.object_id) for b in self.buttons}
        return ids

    def reported(self, index: int) -> Stamped | None:
        return self.engine.reported[index]

    def reported_value(self, object_id: str) -> Value:
        """The reported value of the point for the node's entity ``object_id``."""
        for point in self.points:
            if point.info.object_id == object_id:
                reported = self.engine.reported[point.index]
                return None if reported is None else reported.value
        raise KeyError(object_id)

    def changed_by(self, index: int) -> str:
        """Who caused the current value: the writer of the desired value it matches, or the node."""
        reported = self.engine.reported[index]
        desired = self.engine.desired.get(index)
        if (
            reported is not None
            and desired is not None
            and desired.value == reported.value
        ):
            return desired.sender
        return SENDER_NODE

    # ---- listeners ----

    @callback
    def async_add_point_listener(
        self, index: int, update: CALLBACK_TYPE
    ) -> CALLBACK_TYPE:
        self._point_listeners.setdefault(index, []).append(update)

        def remove() -> None:
            self._point_listeners[index].remove(update)

        return remove

    @callback
    def async_add_node_listener(
        self, update: CALLBACK_TYPE, topic: str = TOPIC_NODE
    ) -> CALLBACK_TYPE:
        """Node-level entities listen to a topic: the node's state, or exchange statistics."""
        listeners = self._node_listeners.setdefault(topic, [])
        listeners.append(update)
        return lambda: listeners.remove(update)

    @callback
    def _notify_points(self, indices: list[int]) -> None:
        for index in indices:
            for update in self._point_listeners.get(index, ()):
                update()

    @callback
    def _notify_node(self, topic: str = TOPIC_NODE) -> None:
        for update in self._node_listeners.get(topic, ()):
            update()

    @callback
    def _notify_all(self) -> None:
        for listeners in self._node_listeners.values():
            for update in listeners:
                update()
        for listeners in self._point_listeners.values():
            for update in listeners:
                update()

    @callback
    def _set_stale(self, reason: StaleReason | None) -> None:
        """Staleness changes only on transitions, and then every entity is written once."""
        if reason == self.stale_reason:
            return
        self.stale_reason = reason
        if not self.hass.is_stopping:
            self._notify_all()

    # ---- platforms ----

    @callback
    def async_setup_platform(
        self,
        platform: Platform,
        async_add_entities: AddConfigEntryEntitiesCallback,
        point_entity: Callable[[DataExchangeCoordinator, NodePoint], Entity] | None,
        node_entities: Callable[[DataExchangeCoordinator], list[Entity]] | None = None,
        button_entity: Callable[[DataExchangeCoordinator, ButtonInfo], Entity]
        | None = None,
    ) -> None:
        """Create a platform's entities for the current points; thin platform files call this.

        Before the node was ever read (first setup) there are none: the first connection
        stores what the node has and reloads the entry, so every entity is created with
        the node's real name.
        """
        if not self.device:
            return
        entities: list[Entity] = []
        if point_entity is not None:
            entities += [
                point_entity(self, p) for p in self.points if p.platform is platform
            ]
        if button_entity is not None:
            entities += [button_entity(self, b) for b in self.buttons]
        if node_entities is not None:
            entities += node_entities(self)
        async_add_entities(entities)

    @callback
    def async_remove_stale_entities(self) -> None:
        """Entities of points the node no longer has leave the entity registry."""
        registry = er.async_get(self.hass)
        keep = self.expected_unique_ids()
        prefix = f"{self.mac}-"
        for entry in er.async_entries_for_config_entry(registry, self.entry.entry_id):
            uid = entry.unique_id
            # Node-level entities have no kind segment: "<mac>-<key>".
            if uid.startswith(prefix) and uid.count("-") >= 2 and uid not in keep:
                registry.async_remove(entry.entity_id)

    # ---- connection events ----

    async def async_on_connected(self, session: NodeSession) -> None:
        info = session.device_info
        device = {
            "name": info.name,
            "friendly_name": info.friendly_name,
            "model": info.model,
            "esphome_version": info.esphome_version,
            "project_name": info.project_name,
            "project_version": info.project_version,
            "mac": self.mac,
        }
        mode = session.mode
        model: Model | None = None
        if mode == MODE_FRAME:
            try:
                model = await self._async_describe()
            except (TimeoutError, APIConnectionError, ProtocolError) as err:
                _LOGGER.warning(
                    "%s: no model description from the node: %s", self.name, err
                )
                await self.connection.async_drop()
                return
        self._session_ready = False
        old_signature = self._signature()
        try:
            self._set_points(
                session.entities, model, self._model_event if model else None
            )
        except ProtocolError as err:
            # E.g. a point names an entity marked internal: the node does not expose it.
            _LOGGER.warning(
                "%s: node model does not match its entities: %s", self.name, err
            )
            ir.async_create_issue(
                self.hass,
                DOMAIN,
                self._issue_id("model_mismatch"),
                is_fixable=False,
                severity=ir.IssueSeverity.ERROR,
                translation_key="model_mismatch",
                translation_placeholders={
                    "name": plain(self.name),
                    "error": plain(err),
                },
            )
            return
        ir.async_delete_issue(self.hass, DOMAIN, self._issue_id("model_mismatch"))
        changed = (
            mode != self.mode
            or device != self.device
            or self._signature() != old_signature
        )
        self.mode = mode
        self.device = device
        if changed:
            await self.store.async_save(self._data_to_store())
            self._update_device_registry()
            if old_signature != self._signature():
                # The firmware's points changed: entities follow by a reload of the entry.
                _LOGGER.info("%s: points changed, reloading its entities", self.name)
                self._schedule_reload()
                return
        self.last_frame_time = None
        self._rejection_logged = False
        self._refusal_logged = False
        if model is not None:
            self.engine.start_session(model.boot_id, model.node_seq)
            self._schedule_save(
                STORE_DESIRED_WITHIN
            )  # the node's uptime, restart or not
        self._session_ready = True
        if mode == MODE_FRAME:
            # Values stay stale (offline) until the first frame arrives.
            self._start_cycle()
            # Reconciliation: desired values go out at once, not a cycle later.
            await self._async_send_desired()
        else:
            # Entity mode: values stay stale until the node sent the state of every point
            # (it sends all of them on subscribe): stored values never pass for current.
            self._awaiting_states = {p.index for p in self.points}
            if not self._awaiting_states:
                self._set_stale(None)
        self._notify_node()

    async def async_on_disconnected(self) -> None:
        self._session_ready = False
        self._stop_cycle()
        if self._describe is not None and not self._describe.done():
            self._describe.cancel()
        if not self.hass.is_stopping:
            self._set_stale(StaleReason.OFFLINE)
            self._notify_node()

    async def async_on_auth_error(self, err: Exception) -> None:
        self.entry.async_start_reauth(self.hass)

    def _issue_id(self, kind: str) -> str:
        return f"{kind}_{self.entry.entry_id}"

    @callback
    def _update_encryption_issue(self) -> None:
        """A node without API encryption gets a repair issue that says how to add a key."""
        issue_id = self._issue_id("no_encryption")
        if self.entry.data.get(CONF_NOISE_PSK):
            ir.async_delete_issue(self.hass, DOMAIN, issue_id)
            return
        ir.async_create_issue(
            self.hass,
            DOMAIN,
            issue_id,
            is_fixable=False,
            severity=ir.IssueSeverity.WARNING,
            translation_key="no_encryption",
            translation_placeholders={"name": plain(self.name)},
            learn_more_url="https://esphome.io/components/api.html#configuration-variables",
        )

    def _signature(self) -> list[tuple[str, int, dict[str, Any]]]:
        return [
            (type(p.info).__name__, p.index, p.info.to_dict()) for p in self.points
        ] + [("ButtonInfo", -1, b.to_dict()) for b in self.buttons]

    @callback
    def _schedule_reload(self) -> None:
        if not self._reload_scheduled:
            self._reload_scheduled = True
            self.hass.config_entries.async_schedule_reload(self.entry.entry_id)

    @callback
    def _update_device_registry(self) -> None:
        dr.async_get(self.hass).async_get_or_create(
            config_entry_id=self.entry.entry_id, **self.device_info
        )

    async def _async_describe(self) -> Model:
        loop = asyncio.get_running_loop()
        self._describe = loop.create_future()
        await self.connection.async_execute(DESCRIBE_ACTION, {})
        async with asyncio.timeout(DESCRIBE_TIMEOUT):
            return await self._describe

    # ---- frames ----

    @callback
    def on_node_event(self, name: str, data: dict[str, str]) -> None:
        if name == MODEL_EVENT:
            if self._describe is None or self._describe.done():
                # Only the answer to our describe request is taken.
                self._reject(ProtocolError("model description nobody asked for"))
                return
            try:
                model = Model.from_event(data)
            except ProtocolError as err:
                self._reject(err)
                return
            # The per-boot secret is not kept: the node gives it on every connection.
            self._model_event = {k: v for k, v in data.items() if k != "k"}
            self._describe.set_result(model)
            return
        if (
            name != FRAME_EVENT
            or not self._session_ready
            or self.engine.model is None
            or self.mode != MODE_FRAME
        ):
            # Before the session is set up (the model being read, maybe a new firmware's)
            # frames are not judged, nor counted as malformed.
            return
        try:
            frame = NodeFrame.from_event(data, self.engine.model)
        except ProtocolError as err:
            # A model mismatch included: new firmware means a reboot and a new connection,
            # which reads the model again; within one connection it is a malformed frame.
            self._reject(err)
            return
        now = time.monotonic()
        stats = self.engine.stats
        counters = (stats.missed, stats.refused_by_node, stats.foreign_requests)
        result = self.engine.on_frame(frame, now, time.time())
        if not result.accepted:
            return
        self.last_frame_time = now
        stats_changed = counters != (
            stats.missed,
            stats.refused_by_node,
            stats.foreign_requests,
        )
        if result.acknowledged is not None and self._sent_at is not None:
            seq, sent = self._sent_at
            if result.acknowledged >= seq:
                self.latency_ms = round((time.monotonic() - sent) * 1000, 2)
                self._sent_at = None
                stats_changed = True
        self._set_stale(self._stale_reason(now))
        if result.refused is not None:
            self._on_refusal(result.refused)
        if changed := changed_indices(result):
            self._notify_points(list(changed))
        if result.desired_changed:
            self._schedule_save(STORE_DESIRED_WITHIN)
            if result.refused is None and result.acknowledged is not None:
                self._clear_refusal_issue()
        elif result.changed or result.node_state_changed:
            self._schedule_save()
        if result.node_state_changed:
            self._notify_node()
        if stats_changed:
            self._notify_node(TOPIC_STATS)

    @callback
    def _reject(self, err: ProtocolError) -> None:
        """A malformed frame: nothing of it is applied; counted, logged once a connection.

        A broken node may send nothing else, so later ones go to the debug log only; the
        rejected frames entity counts every one.
        """
        self.rejected_frames += 1
        if self._rejection_logged:
            _LOGGER.debug("%s: rejected a malformed frame: %s", self.name, err)
        else:
            self._rejection_logged = True
            _LOGGER.warning(
                "%s: rejected a malformed frame, nothing of it applied: %s "
                "(further ones on this connection are only counted)",
                self.name,
                err,
            )
        self._ignored_debouncer.async_schedule_call()

    @callback
    def on_ignored_call(self) -> None:
        self._ignored_debouncer.async_schedule_call()

    @callback
    def on_entity_state(self, state: EntityState) -> None:
        index = self._keys.get(state.key)
        if index is None:
            return
        value: Value = None if getattr(state, "missing_state", False) else state.state  # type: ignore[attr-defined]
        changed = self.engine.report(index, value, time.monotonic(), time.time())
        if changed:
            self._schedule_save()
        if self._awaiting_states:
            self._awaiting_states.discard(index)
            if not self._awaiting_states:
                self._set_stale(None)  # writes every entity once
                return
        if changed:
            self._notify_points([index])

    @callback
    def _on_refusal(self, refused: PointRefusal) -> None:
        """The node refused a desired frame: a repair issue names the point and reason.

        The engine has already dropped what was refused, so every other point flows again.
        Logged once per connection; the refused-frames entity counts every one.
        """
        point = self.point_name(refused.index)
        log = _LOGGER.debug if self._refusal_logged else _LOGGER.warning
        self._refusal_logged = True
        log(
            "%s: the node refused desired frame %s (%s, %s); its desired value is "
            "dropped, the other points go on",
            self.name,
            refused.seq,
            point,
            refused.reason,
        )
        ir.async_create_issue(
            self.hass,
            DOMAIN,
            self._issue_id("refused"),
            is_fixable=False,
            severity=ir.IssueSeverity.WARNING,
            translation_key="refused",
            translation_placeholders={
                "name": plain(self.name),
                "point": plain(point),
                "reason": plain(refused.reason),
            },
        )

    @callback
    def _clear_refusal_issue(self) -> None:
        """The node applied a frame carrying a new write after the refusal."""
        last = self.engine.last_refusal
        if last is None:
            return
        if any(
            s.seq > last.seq and s.sender != SENDER_NODE
            for s in self.engine.desired.values()
        ) and (self.engine.acked_seq > last.seq):
            self.engine.last_refusal = None
            ir.async_delete_issue(self.hass, DOMAIN, self._issue_id("refused"))

    def point_name(self, index: int | None) -> str:
        """A point's name for messages (the frame itself for a frame-level refusal)."""
        if index is None or not 0 <= index < len(self.points):
            return "-"
        info = self.points[index].info
        return info.name or info.object_id

    # ---- cycle ----

    @callback
    def _start_cycle(self) -> None:
        self._stop_cycle()
        self._unsub_cycle = async_track_time_interval(
            self.hass,
            self._async_cycle,
            timedelta(seconds=self.cycle),
            name=f"{DOMAIN} cycle {self.mac}",
            cancel_on_shutdown=True,
        )

    @callback
    def _stop_cycle(self) -> None:
        if self._unsub_cycle is not None:
            self._unsub_cycle()
            self._unsub_cycle = None

    async def _async_cycle(self, _now: Any) -> None:
        # Silence is noticed here; values stay offline-stale until the first frame.
        if self.last_frame_time is not None:
            self._set_stale(self._stale_reason(time.monotonic()))
        await self._async_send_desired()

    def _stale_reason(self, now: float) -> StaleReason | None:
        """The engine's staleness rule applied to this node's connection and frames."""
        return stale_reason(
            connected=self.connected,
            acquisition_running=self.engine.acquisition_running,
            last_frame=self.last_frame_time,
            now=now,
            stale_after=self.stale_after,
        )

    async def _async_send_desired(self) -> None:
        if not self.connected or self.engine.model is None or self.mode != MODE_FRAME:
            return
        if not self._session_ready:
            return
        args = self.engine.next_desired_frame(time.monotonic())
        # The frame counter is saved lazily (a restart continues well ahead of it).
        self._schedule_save()
        if self.engine.frame_carries_writes:
            # Latency is measured for writes: the node answers a frame that changes
            # something at once, the cyclic full state only with its next cycle frame.
            self._sent_at = (int(args["seq"]), time.monotonic())
        try:
            await self.connection.async_execute(WRITE_ACTION, args)
        except APIConnectionError as err:
            _LOGGER.debug("%s: desired frame not sent: %s", self.name, err)

    @callback
    def _send_soon(self) -> None:
        """Send a desired frame at the end of this event loop iteration.

        Several writes in one iteration (one action call setting several points) go out in
        one frame.
        """
        if self._send_scheduled:
            return
        self._send_scheduled = True

        async def send() -> None:
            self._send_scheduled = False
            await self._async_send_desired()

        self.entry.async_create_background_task(self.hass, send(), f"{DOMAIN} send")

    # ---- writes ----

    async def async_write(
        self, index: int, value: Value, context: Context | None
    ) -> None:
        """A write from Home Assistant: a user, an automation, an action."""
        await self.async_write_many([(index, value)], context)

    async def async_write_many(
        self, writes: list[tuple[int, Value]], context: Context | None
    ) -> None:
        """Several writes that go out together: in frame mode, in one desired frame.

        Frame mode accepts writes while the node is offline: they are kept (and saved) and
        applied when it returns. Entity mode sends one command per point, so it needs the
        node connected.
        """
        sender = await _sender(self.hass, context)
        now, wall = time.monotonic(), time.time()
        if self.mode == MODE_ENTITY:
            if not self.connected:
                raise APIConnectionError("not connected")
            for index, value in writes:
                point = self.points[index]
                self.connection.command(_COMMANDS[point.type], point.info.key, value)
                self.engine.write(index, value, sender, now, wall=wall)
            self.engine.sent_entity_mode()
            return
        group = self.engine.new_group() if len(writes) > 1 else 0
        for index, value in writes:
            self.engine.write(index, value, sender, now, wall=wall, group=group)
        self._schedule_save(STORE_DESIRED_WITHIN)
        self._send_soon()

    async def async_resync(self) -> None:
        """A full resync now: reconnect, read the node again, re-apply desired values."""
        await self.connection.async_drop()

    async def async_write_acquisition(
        self, running: bool, context: Context | None
    ) -> None:
        self.engine.write_acquisition(
            running, await _sender(self.hass, context), time.monotonic(), time.time()
        )
        self._schedule_save(STORE_DESIRED_WITHIN)
        self._send_soon()

    async def async_press(self, info: ButtonInfo) -> None:
        if not self.connected:
            raise APIConnectionError("not connected")
        self.connection.command("button_command", info.key)


async def _zeroconf(hass: HomeAssistant) -> Any:
    """Home Assistant's shared zeroconf instance (reconnect at once when the node announces
    itself again), if the zeroconf integration runs; ReconnectLogic's back-off otherwise."""
    if "zeroconf" not in hass.config.components:
        return None
    from homeassistant.components import zeroconf

    return await zeroconf.async_get_instance(hass)
