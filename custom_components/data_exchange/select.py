"""Selects: select points (modes)."""

from __future__ import annotations

from homeassistant.components.select import SelectEntity
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .coordinator import DataExchangeConfigEntry, DataExchangeCoordinator, NodePoint
from .entity import PointEntity

PARALLEL_UPDATES = 0


async def async_setup_entry(
    hass: HomeAssistant,
    entry: DataExchangeConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    entry.runtime_data.async_setup_platform(
        Platform.SELECT, async_add_entities, PointSelect
    )


class PointSelect(PointEntity, SelectEntity):
    def __init__(self, coordinator: DataExchangeCoordinator, point: NodePoint) -> None:
        super().__init__(coordinator, point)
        self._attr_options = list(point.info.options)  # type: ignore[attr-defined]

    @property
    def current_option(self) -> str | None:
        value = self.point_value
        return value if isinstance(value, str) and value in self.options else None

    async def async_select_option(self, option: str) -> None:
        await self._async_write(option)
