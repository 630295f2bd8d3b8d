"""Selects: select points (modes)."""

from __future__ import annotations

from aioesphomeapi import SelectInfo
from homeassistant.components.select import SelectEntity
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
    async_setup_platform(entry, Platform.SELECT, async_add_entities, PointSelect)


class PointSelect(PointEntity, SelectEntity):
    def __init__(self, node: NodeManager, point: NodePoint) -> None:
        super().__init__(node, point)
        self._attr_options = list(point.info_as(SelectInfo).options)

    @property
    def current_option(self) -> str | None:
        value = self.point_value
        return value if isinstance(value, str) and value in self.options else None

    async def async_select_option(self, option: str) -> None:
        await self._async_write(option)
