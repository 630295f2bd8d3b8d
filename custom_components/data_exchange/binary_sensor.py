"""Binary sensors: binary_sensor points, connectivity and value staleness of each node."""

from __future__ import annotations

from dataclasses import dataclass

from homeassistant.components.binary_sensor import (
    BinarySensorDeviceClass,
    BinarySensorEntity,
    BinarySensorEntityDescription,
)
from homeassistant.const import EntityCategory, Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .entity import (
    NodeEntity,
    NodeEntityDescription,
    PointEntity,
    async_setup_platform,
    stale_attributes,
)
from .manager import DataExchangeConfigEntry, NodeManager
from .points import NodePoint, device_class_of

PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class NodeBinarySensorDescription(NodeEntityDescription, BinarySensorEntityDescription):
    """A node-level binary sensor."""


DESCRIPTIONS = (
    NodeBinarySensorDescription(
        key="connectivity",
        translation_key="connectivity",
        device_class=BinarySensorDeviceClass.CONNECTIVITY,
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=lambda node: node.connected,
    ),
    # On while the node's values are stale (offline, paused, or silent); reason attribute.
    NodeBinarySensorDescription(
        key="stale",
        translation_key="stale",
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=lambda node: node.stale_reason is not None,
        attributes_fn=stale_attributes,
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: DataExchangeConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    async_setup_platform(
        entry,
        Platform.BINARY_SENSOR,
        async_add_entities,
        PointBinarySensor,
        node_entity=NodeBinarySensor,
        descriptions=DESCRIPTIONS,
    )


class PointBinarySensor(PointEntity, BinarySensorEntity):
    def __init__(self, node: NodeManager, point: NodePoint) -> None:
        super().__init__(node, point)
        self._attr_device_class = device_class_of(point.info, BinarySensorDeviceClass)

    @property
    def is_on(self) -> bool | None:
        value = self.point_value
        return None if value is None else bool(value)


class NodeBinarySensor(NodeEntity, BinarySensorEntity):
    entity_description: NodeBinarySensorDescription

    @property
    def is_on(self) -> bool:
        return bool(self.entity_description.value_fn(self.node))
