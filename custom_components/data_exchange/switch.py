"""Switches: switch points, and each node's acquisition (sampling on/paused)."""

from __future__ import annotations

from typing import Any

from homeassistant.components.switch import (
    SwitchDeviceClass,
    SwitchEntity,
    SwitchEntityDescription,
)
from homeassistant.const import EntityCategory, Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity import Entity
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .const import MODE_FRAME
from .coordinator import DataExchangeConfigEntry, DataExchangeCoordinator, NodePoint
from .entity import NodeEntity, PointEntity

PARALLEL_UPDATES = 0

ACQUISITION = SwitchEntityDescription(
    key="acquisition",
    translation_key="acquisition",
    entity_category=EntityCategory.CONFIG,
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: DataExchangeConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    def node_entities(coordinator: DataExchangeCoordinator) -> list[Entity]:
        if coordinator.mode != MODE_FRAME:
            return []
        return [AcquisitionSwitch(coordinator, ACQUISITION)]

    entry.runtime_data.async_setup_platform(
        Platform.SWITCH, async_add_entities, PointSwitch, node_entities
    )


class PointSwitch(PointEntity, SwitchEntity):
    def __init__(self, coordinator: DataExchangeCoordinator, point: NodePoint) -> None:
        super().__init__(coordinator, point)
        device_class = getattr(point.info, "device_class", "")
        if device_class in SwitchDeviceClass.__members__.values():
            self._attr_device_class = SwitchDeviceClass(device_class)

    @property
    def is_on(self) -> bool | None:
        value = self.point_value
        return None if value is None else bool(value)

    async def async_turn_on(self, **kwargs: Any) -> None:
        await self._async_write(True)

    async def async_turn_off(self, **kwargs: Any) -> None:
        await self._async_write(False)


class AcquisitionSwitch(NodeEntity, SwitchEntity):
    """On while the node samples its sensors; off pauses acquisition (frames keep flowing)."""

    @property
    def is_on(self) -> bool:
        return self.coordinator.engine.acquisition_running

    async def async_turn_on(self, **kwargs: Any) -> None:
        await self.coordinator.async_write_acquisition(True, self._context)

    async def async_turn_off(self, **kwargs: Any) -> None:
        await self.coordinator.async_write_acquisition(False, self._context)
