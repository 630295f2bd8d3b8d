"""Points as Home Assistant sees them: the table of a node's points and the one value check.

A point is one entity of the node that takes part in the exchange, at a fixed position in
every frame. Its entity info (aioesphomeapi) says how Home Assistant shows it and what it
accepts. ``validate_value`` is the check every write goes through, from an entity or an
action; its rule is the node's own (rules.py, the twin of the node's rules.h), so nothing
accepted here can be refused by the node.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from enum import StrEnum
import re
from typing import Any, cast

from aioesphomeapi import (
    BinarySensorInfo,
    ButtonInfo,
    EntityInfo,
    NumberInfo,
    SelectInfo,
    SensorInfo,
    SwitchInfo,
    TextInfo,
    TextSensorInfo,
)
from homeassistant.const import Platform
from homeassistant.exceptions import ServiceValidationError

from .const import DOMAIN
from .float32 import canonical_number
from .protocol import Model, ModelPoint, PointType, ProtocolError, Value
from .rules import Limits, Refusal, limits_of, refusal

# Entity info class -> (point type, platform). Buttons are commands, not points.
INFO_TYPES: dict[type[EntityInfo], tuple[PointType, Platform]] = {
    SensorInfo: (PointType.SENSOR, Platform.SENSOR),
    BinarySensorInfo: (PointType.BINARY_SENSOR, Platform.BINARY_SENSOR),
    TextSensorInfo: (PointType.TEXT_SENSOR, Platform.SENSOR),
    NumberInfo: (PointType.NUMBER, Platform.NUMBER),
    SwitchInfo: (PointType.SWITCH, Platform.SWITCH),
    SelectInfo: (PointType.SELECT, Platform.SELECT),
    TextInfo: (PointType.TEXT, Platform.TEXT),
}
INFO_BY_NAME: dict[str, type[EntityInfo]] = {
    cls.__name__: cls for cls in (*INFO_TYPES, ButtonInfo)
}


@dataclass(frozen=True, slots=True)
class NodePoint:
    """A point: its frame position, its type and the node's entity info for it."""

    index: int
    info: EntityInfo
    type: PointType

    @property
    def platform(self) -> Platform:
        return INFO_TYPES[type(self.info)][1]

    @property
    def kind(self) -> str:
        """The entity kind, the middle segment of unique ids: sensor, text_sensor, ..."""
        return (
            "text_sensor" if self.type is PointType.TEXT_SENSOR else self.platform.value
        )

    @property
    def name(self) -> str:
        """The point's name for messages."""
        return self.info.name or self.info.object_id

    def info_as[T: EntityInfo](self, cls: builtins.type[T]) -> T:
        """The entity info as the class its platform knows (checked, not assumed)."""
        if not isinstance(self.info, cls):
            raise TypeError(f"point {self.index} is no {cls.__name__}")
        return self.info

    @property
    def limits(self) -> Limits:
        return limits_of(self.type, self.info)


def device_class_of[E: StrEnum](info: EntityInfo, classes: type[E]) -> E | None:
    """The node's device class of an entity, if Home Assistant knows it for the platform."""
    value = getattr(info, "device_class", "") or ""
    return classes(value) if value in classes.__members__.values() else None


@dataclass(frozen=True, slots=True)
class PointTable:
    """A node's points in frame order, its buttons, and the model they make."""

    points: tuple[NodePoint, ...]
    buttons: tuple[ButtonInfo, ...]
    model: Model

    @classmethod
    def build(cls, infos: list[EntityInfo], model: Model | None) -> PointTable:
        """Frame mode: the node's model orders the points. Entity mode (``model`` None):
        every entity that can be a point is one, in the node's order; buttons are kept.

        Raises ProtocolError when the model names an entity the node does not list.
        """
        if model is not None:
            by_key = {info.key: info for info in infos}
            points = []
            for i, mp in enumerate(model.points):
                info = by_key.get(mp.key)
                if (
                    info is None
                    or INFO_TYPES.get(type(info), (None,))[0] is not mp.type
                ):
                    raise ProtocolError(f"point {i} names no {mp.type.name} entity")
                points.append(NodePoint(i, info, mp.type))
            return cls(tuple(points), (), model)
        points = []
        for info in infos:
            if type(info) in INFO_TYPES:
                points.append(NodePoint(len(points), info, INFO_TYPES[type(info)][0]))
        entity_model = Model(
            "entity", 0, 0, tuple(ModelPoint(p.type, p.info.key) for p in points)
        )
        buttons = tuple(i for i in infos if isinstance(i, ButtonInfo))
        return cls(tuple(points), buttons, entity_model)

    def signature(self) -> list[tuple[str, int, dict[str, Any]]]:
        """What changes when the firmware's points change (then the entry reloads)."""
        return [
            (type(p.info).__name__, p.index, p.info.to_dict()) for p in self.points
        ] + [("ButtonInfo", -1, b.to_dict()) for b in self.buttons]

    def infos(self) -> list[EntityInfo]:
        return [p.info for p in self.points] + list(self.buttons)

    def find(self, object_id: str) -> NodePoint:
        """The point of the node's entity ``object_id``; KeyError if none."""
        for point in self.points:
            if point.info.object_id == object_id:
                return point
        raise KeyError(object_id)

    def name_of(self, index: int | None) -> str:
        """A point's name for messages (the frame itself for a frame-level refusal)."""
        if index is None or not 0 <= index < len(self.points):
            return "-"
        return self.points[index].name

    def unique_ids(self, mac: str) -> set[str]:
        """The unique ids of the entities of these points and buttons."""
        ids = {unique_id(mac, p.kind, p.info.object_id) for p in self.points}
        return ids | {unique_id(mac, "button", b.object_id) for b in self.buttons}


def unique_id(mac: str, kind: str, object_id: str) -> str:
    """An entity's unique id: the node's MAC, the entity kind, the node's object id."""
    return f"{mac}-{kind}-{object_id}"


EMPTY_TABLE = PointTable((), (), Model("entity", 0, 0, ()))


def validation_error(key: str, **placeholders: Any) -> ServiceValidationError:
    """A translated error for a bad argument (an action's or an entity action's)."""
    return ServiceValidationError(
        translation_domain=DOMAIN,
        translation_key=key,
        translation_placeholders={k: str(v) for k, v in placeholders.items()},
    )


def validate_value(point: NodePoint, entity_id: str, value: Any) -> Value:
    """A value the point accepts, or a translated error; nothing is sent here.

    Numbers come back as the node will hold them (32-bit floats: 123456789 is 123456790).
    """
    if not point.type.writable:
        raise validation_error("read_only", entity_id=entity_id)
    info: Any = point.info
    shown = str(value)[:100]
    reason = refusal(point.limits, value)
    if reason is Refusal.FORMAT:
        if point.type is PointType.NUMBER and isinstance(value, float):
            reason = Refusal.RANGE  # NaN: no number in the range
        elif point.type is PointType.TEXT and isinstance(value, str):
            reason = Refusal.LENGTH  # not encodable as UTF-8
        else:
            expected = {
                PointType.NUMBER: "number",
                PointType.SWITCH: "true/false",
            }.get(point.type, "text")
            raise validation_error(
                "wrong_type", entity_id=entity_id, expected=expected, value=shown
            )
    if reason is Refusal.RANGE:
        raise validation_error(
            "out_of_range",
            entity_id=entity_id,
            value=shown,
            min=info.min_value,
            max=info.max_value,
        )
    if reason is Refusal.STEP:
        raise validation_error(
            "off_step", entity_id=entity_id, value=shown, step=info.step
        )
    if reason is Refusal.OPTION:
        raise validation_error(
            "invalid_option",
            entity_id=entity_id,
            value=shown,
            options=", ".join(info.options),
        )
    if reason is Refusal.LENGTH or (
        point.type is PointType.TEXT
        and info.pattern
        and not re.fullmatch(info.pattern, value)
    ):
        # The pattern is Home Assistant's own check (the node does not know it).
        raise validation_error(
            "invalid_text",
            entity_id=entity_id,
            value=shown,
            min=info.min_length,
            max=info.max_length,
        )
    if point.type is PointType.NUMBER:
        return canonical_number(float(value))
    return cast(Value, value)
