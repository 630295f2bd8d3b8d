"""Who is told what changed: entities listen to one point, or to one topic of the node.

Only points whose value changed are told (a frame that changes nothing writes no state);
node-level entities listen to a topic, so a statistics change does not rewrite the node's
connectivity and the other way round.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from homeassistant.core import CALLBACK_TYPE, callback


class Topic(StrEnum):
    NODE = "node"  # connectivity, staleness, acquisition, mode
    STATS = "stats"  # write latency, missed frames, desired frames the node refused
    # Input from the node that was not taken (malformed frames, action requests, foreign
    # events): told at most once a second, as a broken node may send nothing else.
    IGNORED = "ignored"


class Listeners:
    def __init__(self) -> None:
        self._points: dict[int, list[CALLBACK_TYPE]] = {}
        self._topics: dict[Topic, list[CALLBACK_TYPE]] = {}

    @callback
    def add_point(self, index: int, update: CALLBACK_TYPE) -> CALLBACK_TYPE:
        listeners = self._points.setdefault(index, [])
        listeners.append(update)
        return lambda: listeners.remove(update)

    @callback
    def add_topic(self, topic: Topic, update: CALLBACK_TYPE) -> CALLBACK_TYPE:
        listeners = self._topics.setdefault(topic, [])
        listeners.append(update)
        return lambda: listeners.remove(update)

    @callback
    def points(self, indices: Iterable[int]) -> None:
        for index in indices:
            for update in self._points.get(index, ()):
                update()

    @callback
    def topic(self, topic: Topic = Topic.NODE) -> None:
        for update in self._topics.get(topic, ()):
            update()

    @callback
    def everyone(self) -> None:
        for group in (*self._topics.values(), *self._points.values()):
            for update in group:
                update()
