"""Switches: switch points, and each node's acquisition (sampling on/paused)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeassistant.components.switch import (
    SwitchDeviceClass,
    SwitchEntity,
    SwitchEntityDescription,
)
from homeassistant.const import EntityCategory, Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .entity import NodeEntity, NodeEntityDescription, PointEntity, async_setup_platform
from .manager import DataExchangeConfigEntry, NodeManager
from .points import NodePoint, device_class_of

PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class NodeSwitchDescription(NodeEntityDescription, SwitchEntityDescription):
    """A node-level switch."""


# On while the node samples its sensors; off pauses acquisition (frames keep flowing).
DESCRIPTIONS = (
    NodeSwitchDescription(
        key="acquisition",
        translation_key="acquisition",
        entity_category=EntityCategory.CONFIG,
        frame_mode_only=True,
        value_fn=lambda node: node.engine.acquisition_running,
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: DataExchangeConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    async_setup_platform(
        entry,
        Platform.SWITCH,
        async_add_entities,
        PointSwitch,
        node_entity=AcquisitionSwitch,
        descriptions=DESCRIPTIONS,
    )


class PointSwitch(PointEntity, SwitchEntity):
    def __init__(self, node: NodeManager, point: NodePoint) -> None:
        super().__init__(node, point)
        self._attr_device_class = device_class_of(point.info, SwitchDeviceClass)

    @property
    def is_on(self) -> bool | None:
        value = self.point_value
        return None if value is None else bool(value)

    async def async_turn_on(self, **kwargs: Any) -> None:
        await self._async_write(True)

    async def async_turn_off(self, **kwargs: Any) -> None:
        await self._async_write(False)


class AcquisitionSwitch(NodeEntity, SwitchEntity):
    entity_description: NodeSwitchDescription

    @property
    def is_on(self) -> bool:
        return bool(self.entity_description.value_fn(self.node))

    async def async_turn_on(self, **kwargs: Any) -> None:
        await self.node.async_write_acquisition(True, self._context)

    async def async_turn_off(self, **kwargs: Any) -> None:
        await self.node.async_write_acquisition(False, self._context)
