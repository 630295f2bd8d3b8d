"""How a node exchanges values: one interface, two strategies.

Frame mode (frame_mode.py): the node runs our data_exchange component; values come in node
frames, desired values go out in desired frames. Entity mode (entity_mode.py): a plain
ESPHome node; values come from the state subscription, writes are entity commands.

The manager (manager.py) picks the strategy from what the node offers when it connects (and
from the Store before that) and hands every connection event to it; nothing else asks which
mode a node is in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aioesphomeapi import EntityState

from .protocol import Model, Value

if TYPE_CHECKING:
    from .manager import NodeManager


class ExchangeMode:
    """One node's exchange while it is in this mode."""

    name: str
    # Frame mode sends several writes in one desired frame, all or nothing (the write
    # action's grouped writes); entity mode sends a command per point.
    grouped_writes: bool = False

    def __init__(self, node: NodeManager) -> None:
        self.node = node

    async def async_read_model(self) -> Model | None:
        """The node's model for this connection (None: entity mode has none)."""
        return None

    @property
    def model_event(self) -> dict[str, str] | None:
        """The model event to store with the points (None: none)."""
        return None

    async def async_start_session(self) -> None:
        """The connection is up and the points are set: start exchanging."""
        raise NotImplementedError

    def end_session(self) -> None:
        """The connection is gone (or the node is unloaded)."""
        return

    def on_node_event(self, name: str, data: dict[str, str]) -> None:
        """A frame or model event (frame mode only; entity mode gets none)."""
        return

    def on_entity_state(self, state: EntityState) -> None:
        """An entity state (entity mode only; frame mode gets none)."""
        return

    def write(
        self, writes: list[tuple[int, Value]], changed_by: str, now: float, wall: float
    ) -> None:
        """Writes that go out together (validated by the caller)."""
        raise NotImplementedError

    def write_acquisition(
        self, running: bool, changed_by: str, now: float, wall: float
    ) -> None:
        raise NotImplementedError  # only frame-mode nodes have an acquisition state
