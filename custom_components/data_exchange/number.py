"""Numbers: number points (setpoints)."""

from __future__ import annotations

from aioesphomeapi import NumberInfo, NumberMode as NodeNumberMode
from homeassistant.components.number import NumberDeviceClass, NumberEntity, NumberMode
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .entity import PointEntity, async_setup_platform
from .manager import DataExchangeConfigEntry, NodeManager
from .points import NodePoint, device_class_of

PARALLEL_UPDATES = 0

_MODES = {
    NodeNumberMode.AUTO: NumberMode.AUTO,
    NodeNumberMode.BOX: NumberMode.BOX,
    NodeNumberMode.SLIDER: NumberMode.SLIDER,
}


async def async_setup_entry(
    hass: HomeAssistant,
    entry: DataExchangeConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    async_setup_platform(entry, Platform.NUMBER, async_add_entities, PointNumber)


class PointNumber(PointEntity, NumberEntity):
    def __init__(self, node: NodeManager, point: NodePoint) -> None:
        super().__init__(node, point)
        info = point.info_as(NumberInfo)
        self._attr_native_min_value = info.min_value
        self._attr_native_max_value = info.max_value
        if info.step:
            self._attr_native_step = info.step
        self._attr_native_unit_of_measurement = info.unit_of_measurement or None
        self._attr_mode = (
            NumberMode.AUTO
            if info.mode is None
            else _MODES.get(info.mode, NumberMode.AUTO)
        )
        self._attr_device_class = device_class_of(info, NumberDeviceClass)

    @property
    def native_value(self) -> float | None:
        value = self.point_value
        return value if isinstance(value, float) else None

    async def async_set_native_value(self, value: float) -> None:
        await self._async_write(float(value))
