"""Binary sensors: binary_sensor points, connectivity and value staleness of each node."""

from __future__ import annotations

from typing import Any

from homeassistant.components.binary_sensor import (
    BinarySensorDeviceClass,
    BinarySensorEntity,
    BinarySensorEntityDescription,
)
from homeassistant.const import EntityCategory, Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .coordinator import DataExchangeConfigEntry, DataExchangeCoordinator, NodePoint
from .entity import NodeEntity, PointEntity, stale_attributes

PARALLEL_UPDATES = 0

CONNECTIVITY = BinarySensorEntityDescription(
    key="connectivity",
    translation_key="connectivity",
    device_class=BinarySensorDeviceClass.CONNECTIVITY,
    entity_category=EntityCategory.DIAGNOSTIC,
)
STALE = BinarySensorEntityDescription(
    key="stale",
    translation_key="stale",
    entity_category=EntityCategory.DIAGNOSTIC,
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: DataExchangeConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    entry.runtime_data.async_setup_platform(
        Platform.BINARY_SENSOR,
        async_add_entities,
        PointBinarySensor,
        lambda c: [ConnectivitySensor(c, CONNECTIVITY), StaleSensor(c, STALE)],
    )


class PointBinarySensor(PointEntity, BinarySensorEntity):
    def __init__(self, coordinator: DataExchangeCoordinator, point: NodePoint) -> None:
        super().__init__(coordinator, point)
        device_class = getattr(point.info, "device_class", "")
        if device_class in BinarySensorDeviceClass.__members__.values():
            self._attr_device_class = BinarySensorDeviceClass(device_class)

    @property
    def is_on(self) -> bool | None:
        value = self.point_value
        return None if value is None else bool(value)


class ConnectivitySensor(NodeEntity, BinarySensorEntity):
    @property
    def is_on(self) -> bool:
        return self.coordinator.connected


class StaleSensor(NodeEntity, BinarySensorEntity):
    """On while the node's values are stale (offline, paused, or silent); reason attribute."""

    @property
    def is_on(self) -> bool:
        return self.coordinator.stale_reason is not None

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        return stale_attributes(self.coordinator)
