"""Sensors: sensor and text_sensor points, and each node's exchange mode and health."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aioesphomeapi import SensorInfo, SensorStateClass
from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass as HASensorStateClass,
)
from homeassistant.const import (
    MAX_LENGTH_STATE_STATE,
    EntityCategory,
    Platform,
    UnitOfTime,
)
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity import Entity
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .backfill import dropped_readings
from .const import (
    ATTR_FOREIGN_REQUESTS,
    ATTR_POINT,
    ATTR_REASON,
    MODE_ENTITY,
    MODE_FRAME,
)
from .entity import NodeEntity, NodeEntityDescription, PointEntity, async_setup_platform
from .listeners import Topic
from .manager import DataExchangeConfigEntry, NodeManager
from .points import NodePoint, device_class_of
from .protocol import PointType

PARALLEL_UPDATES = 0

_STATE_CLASSES = {
    SensorStateClass.MEASUREMENT: HASensorStateClass.MEASUREMENT,
    SensorStateClass.TOTAL_INCREASING: HASensorStateClass.TOTAL_INCREASING,
    SensorStateClass.TOTAL: HASensorStateClass.TOTAL,
    SensorStateClass.MEASUREMENT_ANGLE: HASensorStateClass.MEASUREMENT_ANGLE,
}


@dataclass(frozen=True, kw_only=True)
class NodeSensorDescription(NodeEntityDescription, SensorEntityDescription):
    """A node-level sensor."""


def _refusal(node: NodeManager) -> dict[str, Any]:
    stats = node.stats()
    return {
        ATTR_POINT: stats.refused_point,
        ATTR_REASON: stats.refused_reason,
        # Desired frames other API clients sent; the node ignored them.
        ATTR_FOREIGN_REQUESTS: stats.foreign_requests,
    }


DESCRIPTIONS: tuple[NodeSensorDescription, ...] = (
    # Which mode the node uses: frame (our component) or entity (plain ESPHome).
    NodeSensorDescription(
        key="mode",
        translation_key="mode",
        device_class=SensorDeviceClass.ENUM,
        options=[MODE_FRAME, MODE_ENTITY],
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=lambda node: node.mode,
    ),
    # A desired frame with writes sent -> the node's acknowledging frame received. Changes
    # with every write: disabled by default.
    NodeSensorDescription(
        key="latency",
        translation_key="latency",
        native_unit_of_measurement=UnitOfTime.MILLISECONDS,
        device_class=SensorDeviceClass.DURATION,
        state_class=HASensorStateClass.MEASUREMENT,
        suggested_display_precision=2,
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        topic=Topic.STATS,
        frame_mode_only=True,
        value_fn=lambda node: node.stats().latency_ms,
    ),
    NodeSensorDescription(
        key="missed_frames",
        translation_key="missed_frames",
        state_class=HASensorStateClass.TOTAL_INCREASING,
        entity_category=EntityCategory.DIAGNOSTIC,
        topic=Topic.STATS,
        frame_mode_only=True,
        value_fn=lambda node: node.stats().missed_frames,
    ),
    # Readings the node's backlog dropped by overflow since it booted (store-and-forward).
    NodeSensorDescription(
        key="backlog_dropped",
        translation_key="backlog_dropped",
        state_class=HASensorStateClass.TOTAL_INCREASING,
        entity_category=EntityCategory.DIAGNOSTIC,
        topic=Topic.STATS,
        frame_mode_only=True,
        value_fn=dropped_readings,
    ),
    # Node frames Home Assistant could not take (nothing of them applied).
    NodeSensorDescription(
        key="malformed_frames",
        translation_key="malformed_frames",
        state_class=HASensorStateClass.TOTAL_INCREASING,
        entity_category=EntityCategory.DIAGNOSTIC,
        topic=Topic.IGNORED,
        frame_mode_only=True,
        value_fn=lambda node: node.stats().malformed_frames,
    ),
    # Desired frames the node refused since it booted (a value it does not accept; see
    # docs/exchange.md), with the last point and reason.
    NodeSensorDescription(
        key="refused_frames",
        translation_key="refused_frames",
        state_class=HASensorStateClass.TOTAL_INCREASING,
        entity_category=EntityCategory.DIAGNOSTIC,
        topic=Topic.STATS,
        frame_mode_only=True,
        value_fn=lambda node: node.stats().refused_frames,
        attributes_fn=_refusal,
    ),
    # Action requests and events the node sent (never obeyed).
    NodeSensorDescription(
        key="ignored_requests",
        translation_key="ignored_requests",
        state_class=HASensorStateClass.TOTAL_INCREASING,
        entity_category=EntityCategory.DIAGNOSTIC,
        topic=Topic.IGNORED,
        frame_mode_only=True,
        value_fn=lambda node: node.stats().ignored_requests,
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: DataExchangeConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    def point_entity(node: NodeManager, point: NodePoint) -> Entity:
        if point.type is PointType.TEXT_SENSOR:
            return PointTextSensor(node, point)
        return PointSensor(node, point)

    async_setup_platform(
        entry,
        Platform.SENSOR,
        async_add_entities,
        point_entity,
        node_entity=NodeSensor,
        descriptions=DESCRIPTIONS,
    )


class PointSensor(PointEntity, SensorEntity):
    def __init__(self, node: NodeManager, point: NodePoint) -> None:
        super().__init__(node, point)
        info = point.info_as(SensorInfo)
        self._attr_native_unit_of_measurement = info.unit_of_measurement or None
        self._attr_suggested_display_precision = info.accuracy_decimals
        self._attr_device_class = device_class_of(info, SensorDeviceClass)
        self._attr_state_class = (
            None if info.state_class is None else _STATE_CLASSES.get(info.state_class)
        )

    @property
    def native_value(self) -> float | None:
        value = self.point_value
        return value if isinstance(value, float) else None


class PointTextSensor(PointEntity, SensorEntity):
    @property
    def native_value(self) -> str | None:
        value = self.point_value
        # A node's text may be longer than a state can be (Home Assistant would log an
        # error and show "unknown"): the state shows its beginning.
        return value[:MAX_LENGTH_STATE_STATE] if isinstance(value, str) else None


class NodeSensor(NodeEntity, SensorEntity):
    entity_description: NodeSensorDescription

    @property
    def native_value(self) -> Any:
        return self.entity_description.value_fn(self.node)
