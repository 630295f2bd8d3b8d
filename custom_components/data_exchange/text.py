"""Texts: text points."""

from __future__ import annotations

from aioesphomeapi import TextInfo, TextMode as NodeTextMode
from homeassistant.components.text import TextEntity, TextMode
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .entity import PointEntity, async_setup_platform
from .manager import DataExchangeConfigEntry, NodeManager
from .points import NodePoint

PARALLEL_UPDATES = 0


async def async_setup_entry(
    hass: HomeAssistant,
    entry: DataExchangeConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    async_setup_platform(entry, Platform.TEXT, async_add_entities, PointText)


class PointText(PointEntity, TextEntity):
    def __init__(self, node: NodeManager, point: NodePoint) -> None:
        super().__init__(node, point)
        info = point.info_as(TextInfo)
        self._attr_native_min = info.min_length
        self._attr_native_max = info.max_length
        self._attr_pattern = info.pattern or None
        self._attr_mode = (
            TextMode.PASSWORD if info.mode == NodeTextMode.PASSWORD else TextMode.TEXT
        )

    @property
    def native_value(self) -> str | None:
        value = self.point_value
        return value if isinstance(value, str) else None

    async def async_set_value(self, value: str) -> None:
        await self._async_write(value)
