"""Buttons of plain ESPHome nodes (entity mode)."""

from __future__ import annotations

from aioesphomeapi import APIConnectionError, ButtonInfo
from homeassistant.components.button import ButtonEntity
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .entity import DataExchangeEntity, async_setup_platform, not_connected
from .listeners import Topic
from .manager import DataExchangeConfigEntry, NodeManager

PARALLEL_UPDATES = 0


async def async_setup_entry(
    hass: HomeAssistant,
    entry: DataExchangeConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    async_setup_platform(
        entry, Platform.BUTTON, async_add_entities, button_entity=NodeButton
    )


class NodeButton(DataExchangeEntity, ButtonEntity):
    def __init__(self, node: NodeManager, info: ButtonInfo) -> None:
        super().__init__(node)
        self.info = info
        self._attr_unique_id = node.unique_id("button", info.object_id)
        self._attr_name = info.name or None
        self._attr_icon = info.icon or None
        self._attr_entity_registry_enabled_default = not info.disabled_by_default

    async def async_added_to_hass(self) -> None:
        # Available while connected: follow the node's connection state.
        self.async_on_remove(
            self.node.listeners.add_topic(Topic.NODE, self.async_write_ha_state)
        )

    @property
    def available(self) -> bool:
        return self.node.connected

    async def async_press(self) -> None:
        try:
            self.node.connection.command("button_command", self.info.key)
        except APIConnectionError as err:
            raise not_connected(self.node) from err
