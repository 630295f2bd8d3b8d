"""Texts: text points."""

from __future__ import annotations

from aioesphomeapi import TextMode as NodeTextMode
from homeassistant.components.text import TextEntity, TextMode
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
        Platform.TEXT, async_add_entities, PointText
    )


class PointText(PointEntity, TextEntity):
    def __init__(self, coordinator: DataExchangeCoordinator, point: NodePoint) -> None:
        super().__init__(coordinator, point)
        info = point.info
        self._attr_native_min = info.min_length  # type: ignore[attr-defined]
        self._attr_native_max = info.max_length  # type: ignore[attr-defined]
        self._attr_pattern = info.pattern or None  # type: ignore[attr-defined]
        self._attr_mode = (
            TextMode.PASSWORD if info.mode == NodeTextMode.PASSWORD else TextMode.TEXT  # type: ignore[attr-defined]
        )

    @property
    def native_value(self) -> str | None:
        value = self.point_value
        return value if isinstance(value, str) else None

    async def async_set_value(self, value: str) -> None:
        await self._async_write(value)
