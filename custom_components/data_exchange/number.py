"""Numbers: number points (setpoints)."""

from __future__ import annotations

from aioesphomeapi import NumberMode as NodeNumberMode
from homeassistant.components.number import NumberDeviceClass, NumberEntity, NumberMode
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .coordinator import DataExchangeConfigEntry, DataExchangeCoordinator, NodePoint
from .entity import PointEntity

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
    entry.runtime_data.async_setup_platform(
        Platform.NUMBER, async_add_entities, PointNumber
    )


class PointNumber(PointEntity, NumberEntity):
    def __init__(self, coordinator: DataExchangeCoordinator, point: NodePoint) -> None:
        super().__init__(coordinator, point)
        info = point.info
        self._attr_native_min_value = info.min_value  # type: ignore[attr-defined]
        self._attr_native_max_value = info.max_value  # type: ignore[attr-defined]
        if info.step:  # type: ignore[attr-defined]
            self._attr_native_step = info.step  # type: ignore[attr-defined]
        self._attr_native_unit_of_measurement = info.unit_of_measurement or None  # type: ignore[attr-defined]
        self._attr_mode = _MODES.get(info.mode, NumberMode.AUTO)  # type: ignore[attr-defined]
        device_class = getattr(info, "device_class", "")
        if device_class in NumberDeviceClass.__members__.values():
            self._attr_device_class = NumberDeviceClass(device_class)

    @property
    def native_value(self) -> float | None:
        value = self.point_value
        return value if isinstance(value, float) else None

    async def async_set_native_value(self, value: float) -> None:
        await self._async_write(float(value))
