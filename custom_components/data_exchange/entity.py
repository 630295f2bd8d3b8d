"""Base entities: one per point, and node-level entities."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aioesphomeapi import APIConnectionError, EntityCategory as NodeEntityCategory
from homeassistant.const import EntityCategory
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.entity import Entity, EntityDescription

from .const import ATTR_CHANGED_BY, ATTR_REASON, ATTR_REPORTED_AT, ATTR_STALE, DOMAIN
from .coordinator import TOPIC_NODE, DataExchangeCoordinator, NodePoint
from .plain import plain
from .protocol import Value
from .services import validate_value

_CATEGORIES = {
    NodeEntityCategory.CONFIG: EntityCategory.CONFIG,
    NodeEntityCategory.DIAGNOSTIC: EntityCategory.DIAGNOSTIC,
}


class DataExchangeEntity(Entity):
    """Common to every entity of a node."""

    _attr_has_entity_name = True
    _attr_should_poll = False

    def __init__(self, coordinator: DataExchangeCoordinator) -> None:
        self.coordinator = coordinator
        self._attr_device_info = coordinator.device_info


class PointEntity(DataExchangeEntity):
    """An entity for one point of the node, typed from the node's entity info.

    Its state is the point's reported value, written only when that value (or the node's
    staleness) changes. Attributes: ``stale``, ``changed_by`` (who caused the value: the node,
    a user, an automation) and, while stale, ``reported_at`` (when the node reported it).
    """

    def __init__(self, coordinator: DataExchangeCoordinator, point: NodePoint) -> None:
        super().__init__(coordinator)
        info = point.info
        self.point = point
        self._attr_unique_id = coordinator.unique_id(point.kind, info.object_id)
        self._attr_name = info.name or None
        self._attr_icon = info.icon or None
        if info.entity_category is not None:
            self._attr_entity_category = _CATEGORIES.get(info.entity_category)
        self._attr_entity_registry_enabled_default = not info.disabled_by_default

    async def async_added_to_hass(self) -> None:
        self.async_on_remove(
            self.coordinator.async_add_point_listener(
                self.point.index, self.async_write_ha_state
            )
        )

    @property
    def point_value(self) -> Value:
        reported = self.coordinator.reported(self.point.index)
        return None if reported is None else reported.value

    @property
    def available(self) -> bool:
        coordinator = self.coordinator
        if coordinator.keep_values:
            # Stale values stay visible (marked), also restored ones while offline.
            return (
                coordinator.connected
                or coordinator.reported(self.point.index) is not None
            )
        return coordinator.stale_reason is None

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        coordinator = self.coordinator
        stale = coordinator.stale_reason is not None
        attrs: dict[str, Any] = {
            ATTR_STALE: stale,
            ATTR_CHANGED_BY: coordinator.changed_by(self.point.index),
        }
        reported = coordinator.reported(self.point.index)
        if stale and reported is not None:
            attrs[ATTR_REPORTED_AT] = datetime.fromtimestamp(
                reported.wall, UTC
            ).isoformat()
        return attrs

    async def _async_write(self, value: Value) -> None:
        # The entity actions' own checks let NaN, off-step numbers and texts too long in
        # bytes through; the node would reject every desired frame with such a value.
        value = validate_value(self.point, self.entity_id, value)
        try:
            await self.coordinator.async_write(self.point.index, value, self._context)
        except APIConnectionError as err:
            raise not_connected(self.coordinator) from err


class NodeEntity(DataExchangeEntity):
    """A node-level entity (connectivity, staleness, acquisition, exchange health)."""

    topic = TOPIC_NODE

    def __init__(
        self, coordinator: DataExchangeCoordinator, description: EntityDescription
    ) -> None:
        super().__init__(coordinator)
        self.entity_description = description
        self._attr_unique_id = f"{coordinator.mac}-{description.key}"

    async def async_added_to_hass(self) -> None:
        self.async_on_remove(
            self.coordinator.async_add_node_listener(
                self.async_write_ha_state, self.topic
            )
        )


def not_connected(coordinator: DataExchangeCoordinator) -> HomeAssistantError:
    """The translated error for a command that needs the node connected."""
    return HomeAssistantError(
        translation_domain=DOMAIN,
        translation_key="not_connected",
        translation_placeholders={"node": plain(coordinator.name)},
    )


def stale_attributes(coordinator: DataExchangeCoordinator) -> dict[str, Any]:
    reason = coordinator.stale_reason
    return {ATTR_REASON: None if reason is None else reason.value}
