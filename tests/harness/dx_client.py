"""A bare aioesphomeapi client that speaks the Data Exchange protocol, for firmware tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import dataclasses
from typing import Any, Self

from aioesphomeapi import HomeassistantServiceCall

from custom_components.data_exchange.backlog import BacklogFrame
from custom_components.data_exchange.protocol import (
    CLIENT_INFO_PREFIX,
    DESCRIBE_ACTION,
    FRAME_EVENT,
    MODEL_EVENT,
    WRITE_ACTION,
    DesiredFrame,
    Model,
    NodeFrame,
    Value,
)
from tests.harness.node import Node
from tests.harness.peer import Peer


class DxClient(Peer):
    """Connects to a node as the integration would: frames, model, desired frames.

    A peer (peer.py) whose client_info marks it as a Data Exchange client, so the node
    sends it frames; ``call`` and ``api`` are the peer's.
    """

    def __init__(
        self, node: Node, client_info: str = f"{CLIENT_INFO_PREFIX} tests"
    ) -> None:
        super().__init__(node, client_info)
        self.node = node
        self.events: asyncio.Queue[HomeassistantServiceCall] = asyncio.Queue()
        self.model: Model | None = None
        self._frames: list[NodeFrame] = []
        self._new_frame = asyncio.Event()
        self._desired_seq = 0
        # Backlog frames (store-and-forward), in order of arrival.
        self.backlog: list[BacklogFrame] = []
        self._new_backlog = asyncio.Event()
        self._backlog_taken = 0

    async def start(self) -> Self:
        """Connect, subscribe to the node's events and ask for its model."""
        await super().start()
        self.api.subscribe_service_calls(self._on_call)
        self.model = await self.describe()
        return self

    async def connect(self) -> Self:
        return await self.start()

    def _on_call(self, call: HomeassistantServiceCall) -> None:
        if (
            call.is_event
            and call.service == FRAME_EVENT
            and self.model is not None
            and "h" in call.data
        ):
            self.backlog.append(BacklogFrame.from_event(call.data, self.model))
            self._new_backlog.set()
            return
        if call.is_event and call.service == FRAME_EVENT and self.model is not None:
            frame = NodeFrame.from_event(call.data, self.model)
            if frame.indices is not None and not self._frames:
                return  # a change before the first full frame: nothing to merge it into
            if frame.indices is not None:
                # A change frame: shown with every point, the others as last reported
                # (frame.indices says which points it carried), and with the node's
                # state of the last full frame (a change frame carries values only).
                # Ages (key "w") count from the frame's uptime: those of the points it
                # did not carry grow by the time since the last frame.
                last = self._frames[-1]
                merged = list(last.values)
                grown = frame.uptime_ms - last.uptime_ms
                ages = [None if a is None else a + grown for a in last.ages]
                for n, index in enumerate(frame.indices):
                    merged[index] = frame.values[n]
                    if index < len(ages) and n < len(frame.ages):
                        ages[index] = frame.ages[n]
                frame = dataclasses.replace(
                    last,
                    seq=frame.seq,
                    uptime_ms=frame.uptime_ms,
                    values=tuple(merged),
                    indices=frame.indices,
                    text="",
                    ages=tuple(ages),
                    node_time_ms=frame.node_time_ms,
                )
            self._frames.append(frame)
            self._new_frame.set()
        else:
            self.events.put_nowait(call)

    async def describe(self) -> Model:
        await self.api.execute_service(self.services[DESCRIBE_ACTION], {})
        while True:
            call = await asyncio.wait_for(self.events.get(), 10)
            if call.is_event and call.service == MODEL_EVENT:
                return Model.from_event(call.data)

    async def next_frame(
        self,
        predicate: Callable[[NodeFrame], bool] = lambda f: True,
        timeout: float = 10,  # noqa: ASYNC109 - a test helper's deadline, not a cancellation API
        *,
        changes: bool = False,
    ) -> NodeFrame:
        """The first full frame (with ``changes``: or change frame, merged) received from
        now on that satisfies ``predicate``."""
        start = len(self._frames)

        async def wait() -> NodeFrame:
            index = start
            while True:
                while index < len(self._frames):
                    frame = self._frames[index]
                    index += 1
                    if (changes or frame.indices is None) and predicate(frame):
                        return frame
                self._new_frame.clear()
                await self._new_frame.wait()

        return await asyncio.wait_for(wait(), timeout)

    async def next_backlog(self, timeout: float = 10) -> BacklogFrame:  # noqa: ASYNC109
        """The next backlog frame not taken yet, in order of arrival: two frames that
        arrive while the caller awaits something else are both returned, one per call."""

        async def wait() -> BacklogFrame:
            while len(self.backlog) <= self._backlog_taken:
                self._new_backlog.clear()
                await self._new_backlog.wait()
            self._backlog_taken += 1
            return self.backlog[self._backlog_taken - 1]

        return await asyncio.wait_for(wait(), timeout)

    @property
    def frames(self) -> list[NodeFrame]:
        """Every frame received on this connection, in order (change frames merged into
        the state before them: ``indices`` says which points they carried)."""
        return self._frames

    @property
    def last_seen(self) -> int:
        return self._frames[-1].seq if self._frames else 0

    async def write(
        self,
        values: list[Value],
        acquisition: bool | None = None,
        *,
        seen: int | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> int:
        """Send one desired frame; returns its sequence number.

        Protocol 2: ``seq`` and ``seen`` go out as decimal strings (uint64).
        ``overrides`` replaces encoded arguments, to send what a faulty peer would (or a
        sequence number far from this client's own count).
        """
        assert self.model is not None
        self._desired_seq += 1
        args: dict[str, Any] = DesiredFrame.of(
            self.model,
            self._desired_seq,
            self.last_seen if seen is None else seen,
            values,
            acquisition,
        ).args()
        args.update(overrides or {})
        await self.api.execute_service(self.services[WRITE_ACTION], args)
        return self._desired_seq

    def point_index(self, object_id: str) -> int:
        """Position in the frame of the point for the entity ``object_id``."""
        assert self.model is not None
        for i, point in enumerate(self.model.points):
            if self.entities[point.key].object_id == object_id:
                return i
        raise KeyError(object_id)
