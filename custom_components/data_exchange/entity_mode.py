"""Entity mode: a plain ESPHome node (without our component).

Values come from the state subscription, one entity state at a time; each write is an
entity command, sent at once, so writes need the node connected. After a (re)connect the
values stay stale until the node sent the state of every point (it sends all of them on
subscribe): stored values never pass for current.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, cast

from aioesphomeapi import APIConnectionError, EntityState

from .const import MODE_ENTITY
from .modes import ExchangeMode
from .protocol import PointType, Value

if TYPE_CHECKING:
    from .manager import NodeManager

# The entity command per writable point type.
_COMMANDS = {
    PointType.NUMBER: "number_command",
    PointType.SWITCH: "switch_command",
    PointType.SELECT: "select_command",
    PointType.TEXT: "text_command",
}


class EntityMode(ExchangeMode):
    name = MODE_ENTITY

    def __init__(self, node: NodeManager) -> None:
        super().__init__(node)
        self._awaiting: set[int] = set()  # points whose first state has not come yet

    async def async_start_session(self) -> None:
        self._awaiting = {p.index for p in self.node.points}
        if not self._awaiting:
            self.node.set_stale(None)

    def on_entity_state(self, state: EntityState) -> None:
        node = self.node
        index = node.point_index.get(state.key)
        if index is None:
            return
        value: Value = (
            None if getattr(state, "missing_state", False) else cast(Any, state).state
        )
        changed = node.engine.report(index, value, time.monotonic(), time.time())
        if changed:
            node.store.schedule_save()
        if self._awaiting:
            self._awaiting.discard(index)
            if not self._awaiting:
                node.set_stale(None)  # writes every entity once
                return
        if changed:
            node.listeners.points([index])

    def write(
        self, writes: list[tuple[int, Value]], changed_by: str, now: float, wall: float
    ) -> None:
        node = self.node
        if not node.connected:
            raise APIConnectionError("not connected")
        for index, value in writes:
            point = node.points[index]
            node.connection.command(_COMMANDS[point.type], point.info.key, value)
            node.engine.write(index, value, changed_by, now, wall=wall)
        node.engine.sent_entity_mode()
        node.listeners.points([index for index, _ in writes])
