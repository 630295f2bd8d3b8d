"""Sensors: sensor and text_sensor points, and each node's exchange mode and health."""

from __future__ import annotations

from typing import Any

from aioesphomeapi import SensorStateClass
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

from .const import (
    ATTR_FOREIGN_REQUESTS,
    ATTR_POINT,
    ATTR_REASON,
    MODE_ENTITY,
    MODE_FRAME,
)
from .coordinator import (
    TOPIC_IGNORED,
    TOPIC_STATS,
    DataExchangeConfigEntry,
    DataExchangeCoordinator,
    NodePoint,
)
from .entity import NodeEntity, PointEntity
from .protocol import PointType

PARALLEL_UPDATES = 0

_STATE_CLASSES = {
    SensorStateClass.MEASUREMENT: HASensorStateClass.MEASUREMENT,
    SensorStateClass.TOTAL_INCREASING: HASensorStateClass.TOTAL_INCREASING,
    SensorStateClass.TOTAL: HASensorStateClass.TOTAL,
    SensorStateClass.MEASUREMENT_ANGLE: HASensorStateClass.MEASUREMENT_ANGLE,
}

MODE = SensorEntityDescription(
    key="mode",
    translation_key="mode",
    device_class=SensorDeviceClass.ENUM,
    options=[MODE_FRAME, MODE_ENTITY],
    entity_category=EntityCategory.DIAGNOSTIC,
)
# Changes with every write: disabled by default.
LATENCY = SensorEntityDescription(
    key="latency",
    translation_key="latency",
    native_unit_of_measurement=UnitOfTime.MILLISECONDS,
    device_class=SensorDeviceClass.DURATION,
    state_class=HASensorStateClass.MEASUREMENT,
    suggested_display_precision=2,
    entity_category=EntityCategory.DIAGNOSTIC,
    entity_registry_enabled_default=False,
)
MISSED_FRAMES = SensorEntityDescription(
    key="missed_frames",
    translation_key="missed_frames",
    state_class=HASensorStateClass.TOTAL_INCREASING,
    entity_category=EntityCategory.DIAGNOSTIC,
)

# Input from the node that was not taken: malformed frames (nothing of them applied) and
# action requests or events (never obeyed).
REJECTED_FRAMES = SensorEntityDescription(
    key="rejected_frames",
    translation_key="rejected_frames",
    state_class=HASensorStateClass.TOTAL_INCREASING,
    entity_category=EntityCategory.DIAGNOSTIC,
)
# Desired frames the node refused (a value it does not accept; see docs/exchange.md).
REFUSED_FRAMES = SensorEntityDescription(
    key="refused_frames",
    translation_key="refused_frames",
    state_class=HASensorStateClass.TOTAL_INCREASING,
    entity_category=EntityCategory.DIAGNOSTIC,
)
IGNORED_REQUESTS = SensorEntityDescription(
    key="ignored_requests",
    translation_key="ignored_requests",
    state_class=HASensorStateClass.TOTAL_INCREASING,
    entity_category=EntityCategory.DIAGNOSTIC,
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: DataExchangeConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    def point_entity(coordinator: DataExchangeCoordinator, point: NodePoint) -> Entity:
        if point.type is PointType.TEXT_SENSOR:
            return PointTextSensor(coordinator, point)
        return PointSensor(coordinator, point)

    def node_entities(coordinator: DataExchangeCoordinator) -> list[Entity]:
        entities: list[Entity] = [ModeSensor(coordinator, MODE)]
        if coordinator.mode == MODE_FRAME:
            entities += [
                LatencySensor(coordinator, LATENCY),
                MissedFramesSensor(coordinator, MISSED_FRAMES),
                RejectedFramesSensor(coordinator, REJECTED_FRAMES),
                RefusedFramesSensor(coordinator, REFUSED_FRAMES),
                IgnoredRequestsSensor(coordinator, IGNORED_REQUESTS),
            ]
        return entities

    entry.runtime_data.async_setup_platform(
        Platform.SENSOR, async_add_entities, point_entity, node_entities
    )


class PointSensor(PointEntity, SensorEntity):
    def __init__(self, coordinator: DataExchangeCoordinator, point: NodePoint) -> None:
        super().__init__(coordinator, point)
        info = point.info
        self._attr_native_unit_of_measurement = (
            getattr(info, "unit_of_measurement", "") or None
        )
        self._attr_suggested_display_precision = getattr(
            info, "accuracy_decimals", None
        )
        device_class = getattr(info, "device_class", "")
        if device_class in SensorDeviceClass.__members__.values():
            self._attr_device_class = SensorDeviceClass(device_class)
        self._attr_state_class = _STATE_CLASSES.get(getattr(info, "state_class", None))  # type: ignore[arg-type]

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


class ModeSensor(NodeEntity, SensorEntity):
    """Which mode the node uses: frame (our component) or entity (plain ESPHome)."""

    @property
    def native_value(self) -> str | None:
        return self.coordinator.mode


class LatencySensor(NodeEntity, SensorEntity):
    """A desired frame with writes sent -> the node's acknowledging frame received."""

    topic = TOPIC_STATS

    @property
    def native_value(self) -> float | None:
        return self.coordinator.latency_ms


class MissedFramesSensor(NodeEntity, SensorEntity):
    topic = TOPIC_STATS

    @property
    def native_value(self) -> int:
        return self.coordinator.engine.stats.missed


class RejectedFramesSensor(NodeEntity, SensorEntity):
    topic = TOPIC_IGNORED

    @property
    def native_value(self) -> int:
        return self.coordinator.rejected_frames


class RefusedFramesSensor(NodeEntity, SensorEntity):
    """Desired frames the node refused since it booted, with the last point and reason."""

    topic = TOPIC_STATS

    @property
    def native_value(self) -> int:
        return self.coordinator.engine.stats.refused_by_node

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        engine = self.coordinator.engine
        last = engine.last_refusal
        return {
            ATTR_POINT: None
            if last is None
            else self.coordinator.point_name(last.index),
            ATTR_REASON: None if last is None else last.reason,
            # Desired frames other API clients sent; the node ignored them.
            ATTR_FOREIGN_REQUESTS: engine.stats.foreign_requests,
        }


class IgnoredRequestsSensor(NodeEntity, SensorEntity):
    topic = TOPIC_IGNORED

    @property
    def native_value(self) -> int:
        return self.coordinator.connection.stats.ignored_calls
