"""The entities' common part: the base classes, the platform setup every platform file
calls, and the entity registry cleanup when the firmware's points change.

Point entities are typed from the node's entity info; their state is the point's reported
value, written only when that value (or the node's staleness) changes. Node entities take a
frozen entity description; their value comes from the manager through ``value_fn``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from aioesphomeapi import APIConnectionError, ButtonInfo, EntityCategory as NodeCategory
from homeassistant.const import EntityCategory, Platform
from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.entity import Entity, EntityDescription
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .const import (
    ATTR_CHANGED_BY,
    ATTR_MEASURED_AT,
    ATTR_PENDING_CHANGED_BY,
    ATTR_PENDING_SINCE,
    ATTR_PENDING_VALUE,
    ATTR_REASON,
    ATTR_REPORTED_AT,
    ATTR_STALE,
    DOMAIN,
    MODE_FRAME,
)
from .listeners import Topic
from .manager import DataExchangeConfigEntry, NodeManager
from .plain import plain
from .points import NodePoint, validate_value
from .protocol import Value

_CATEGORIES = {
    NodeCategory.CONFIG: EntityCategory.CONFIG,
    NodeCategory.DIAGNOSTIC: EntityCategory.DIAGNOSTIC,
}


@dataclass(frozen=True, kw_only=True)
class NodeEntityDescription(EntityDescription):
    """A node-level entity: what it shows, which topic it follows, which modes have it."""

    value_fn: Callable[[NodeManager], Any] = lambda _node: None
    attributes_fn: Callable[[NodeManager], dict[str, Any]] | None = None
    topic: Topic = Topic.NODE
    frame_mode_only: bool = False


class DataExchangeEntity(Entity):
    """Common to every entity of a node."""

    _attr_has_entity_name = True
    _attr_should_poll = False

    def __init__(self, node: NodeManager) -> None:
        self.node = node
        self._attr_device_info = node.device_info


class PointEntity(DataExchangeEntity):
    """An entity for one point of the node.

    Attributes: ``stale``, ``changed_by`` (who caused the value: the node, a user, an
    automation), ``measured_at`` (when the node measured the value, node_clock.py), while
    stale ``reported_at`` (when the node reported it) and, for writable
    points, ``pending_value``, ``pending_changed_by``, ``pending_since``: a desired value
    written in Home Assistant that the node does not show yet (None while nothing waits).
    Attribute names are translated (translation key ``point``); the name is the node's.
    """

    _attr_translation_key = "point"

    def __init__(self, node: NodeManager, point: NodePoint) -> None:
        super().__init__(node)
        info = point.info
        self.point = point
        self._attr_unique_id = node.unique_id(point.kind, info.object_id)
        self._attr_name = info.name or None
        self._attr_icon = info.icon or None
        if info.entity_category is not None:
            self._attr_entity_category = _CATEGORIES.get(info.entity_category)
        self._attr_entity_registry_enabled_default = not info.disabled_by_default
        self._shown: tuple[Value, bool, dict[str, Any]] | None = None

    async def async_added_to_hass(self) -> None:
        self.async_on_remove(
            self.node.listeners.add_point(self.point.index, self._async_point_changed)
        )

    @callback
    def _async_point_changed(self) -> None:
        """Write the state if what it shows changed. A frame can change a point's desired
        value and nothing shown (a local change adopted as desired), and Home Assistant's
        state write costs far more than this comparison even when it ends in no change."""
        shown = (self.point_value, self.available, self._attributes())
        if shown != self._shown:
            self._shown = shown
            self.async_write_ha_state()

    @property
    def point_value(self) -> Value:
        reported = self.node.reported(self.point.index)
        return None if reported is None else reported.value

    @property
    def available(self) -> bool:
        node = self.node
        if node.keep_values:
            # Stale values stay visible (marked), also restored ones while offline.
            return node.connected or node.reported(self.point.index) is not None
        return node.stale_reason is None

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        # Every change of what a point entity shows goes through _async_point_changed,
        # which computed these attributes for its comparison just before the write.
        return self._attributes() if self._shown is None else self._shown[2]

    def _attributes(self) -> dict[str, Any]:
        node = self.node
        stale = node.stale_reason is not None
        attrs: dict[str, Any] = {
            ATTR_STALE: stale,
            ATTR_CHANGED_BY: node.changed_by(self.point.index),
        }
        reported = node.reported(self.point.index)
        if stale and reported is not None:
            attrs[ATTR_REPORTED_AT] = _iso(reported.wall)
        if reported is not None and reported.measured:
            # Set when the value changed: an unchanged value writes no state.
            attrs[ATTR_MEASURED_AT] = _iso(reported.measured)
        if self.point.type.writable:
            # What waits for the node: the value, who wrote it, since when.
            waiting = node.pending(self.point.index)
            attrs[ATTR_PENDING_VALUE] = None if waiting is None else waiting.value
            attrs[ATTR_PENDING_CHANGED_BY] = (
                None if waiting is None else waiting.changed_by
            )
            attrs[ATTR_PENDING_SINCE] = None if waiting is None else _iso(waiting.wall)
        return attrs

    async def _async_write(self, value: Value) -> None:
        # The entity actions' own checks let NaN, off-step numbers and texts too long in
        # bytes through; the node would reject every desired frame with such a value.
        value = validate_value(self.point, self.entity_id, value)
        try:
            await self.node.async_write(self.point.index, value, self._context)
        except APIConnectionError as err:
            raise not_connected(self.node) from err


@lru_cache(maxsize=512)  # the points of one frame or write share their time
def _iso(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).isoformat()


class NodeEntity(DataExchangeEntity):
    """A node-level entity (connectivity, staleness, acquisition, exchange health)."""

    entity_description: NodeEntityDescription

    def __init__(self, node: NodeManager, description: NodeEntityDescription) -> None:
        super().__init__(node)
        self.entity_description = description
        self._attr_unique_id = f"{node.mac}-{description.key}"

    async def async_added_to_hass(self) -> None:
        self.async_on_remove(
            self.node.listeners.add_topic(
                self.entity_description.topic, self.async_write_ha_state
            )
        )

    @property
    def extra_state_attributes(self) -> dict[str, Any] | None:
        attributes_fn = self.entity_description.attributes_fn
        return None if attributes_fn is None else attributes_fn(self.node)


def not_connected(node: NodeManager) -> HomeAssistantError:
    """The translated error for a command that needs the node connected."""
    return HomeAssistantError(
        translation_domain=DOMAIN,
        translation_key="not_connected",
        translation_placeholders={"node": plain(node.name)},
    )


def stale_attributes(node: NodeManager) -> dict[str, Any]:
    reason = node.stale_reason
    return {ATTR_REASON: None if reason is None else reason.value}


@callback
def async_setup_platform(
    entry: DataExchangeConfigEntry,
    platform: Platform,
    async_add_entities: AddConfigEntryEntitiesCallback,
    point_entity: Callable[[NodeManager, NodePoint], Entity] | None = None,
    *,
    node_entity: Callable[[NodeManager, NodeEntityDescription], Entity] | None = None,
    descriptions: tuple[NodeEntityDescription, ...] = (),
    button_entity: Callable[[NodeManager, ButtonInfo], Entity] | None = None,
) -> None:
    """Create a platform's entities for the node's current points; platform files call it.

    Before the node was ever read (first setup) there are none: the first connection
    stores what the node has and reloads the entry, so every entity is created with the
    node's real name.
    """
    node = entry.runtime_data
    if node.device is None:
        return
    entities: list[Entity] = []
    if point_entity is not None:
        entities += [
            point_entity(node, p) for p in node.points if p.platform is platform
        ]
    if button_entity is not None:
        entities += [button_entity(node, b) for b in node.buttons]
    if node_entity is not None:
        entities += [
            node_entity(node, d)
            for d in descriptions
            if not d.frame_mode_only or node.mode == MODE_FRAME
        ]
    async_add_entities(entities)


@callback
def async_remove_stale_entities(hass: HomeAssistant, node: NodeManager) -> None:
    """Entities of points the node no longer has leave the entity registry."""
    registry = er.async_get(hass)
    keep = node.table.unique_ids(node.mac)
    prefix = f"{node.mac}-"
    for entry in er.async_entries_for_config_entry(registry, node.entry.entry_id):
        uid = entry.unique_id
        # Node-level entities have no kind segment: "<mac>-<key>".
        if uid.startswith(prefix) and uid.count("-") >= 2 and uid not in keep:
            registry.async_remove(entry.entity_id)
