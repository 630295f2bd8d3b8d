"""Frame mode: the node runs our data_exchange component.

The data path of a node frame goes one way: connection -> ``on_node_event`` -> protocol
(decode, strictly) -> engine (rules) -> ``_apply`` (entity states of changed points, the
Store, repair issues). A write goes one way too: ``write`` -> engine -> the next desired
frame (built by the engine, encoded by protocol) -> connection.

One desired frame interval after the last one, the full desired frame goes out again while
the node does not hold all of it, else as a heartbeat (heartbeat.py); writes go out at once,
several of one event loop iteration in one frame. One timer per node wakes up only when
something is due: that frame, or the moment a silent node's values turn stale.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Any

from aioesphomeapi import APIConnectionError
from homeassistant.core import CALLBACK_TYPE, callback
from homeassistant.helpers.event import async_call_later

from .backfill import Backfill
from .const import DOMAIN, MODE_FRAME, PENDING_SHOWN_AFTER, STORE_DESIRED_WITHIN
from .describe import Describe
from .heartbeat import DesiredSchedule
from .listeners import Topic
from .modes import ExchangeMode
from .node_clock import NodeClock, all_measured, stamp_measured
from .protocol import (
    FRAME_EVENT,
    MODEL_EVENT,
    WRITE_ACTION,
    Model,
    NodeFrame,
    ProtocolError,
    Value,
)
from .values import CHANGED_BY_NODE, FrameResult, PointRefusal, changed_indices

if TYPE_CHECKING:
    from .manager import NodeManager

_LOGGER = logging.getLogger(__name__)


class FrameMode(ExchangeMode):
    name = MODE_FRAME
    grouped_writes = True

    def __init__(self, node: NodeManager) -> None:
        super().__init__(node)
        self.describe = Describe(node.connection)
        self._ready = False  # frames count only once the session is set up
        self._wake: asyncio.TimerHandle | None = None
        self._wake_at = 0.0  # monotonic time the armed wake-up is for
        self.wakes = 0  # wake-ups so far (diagnostics, tests)
        self._send_scheduled = False
        self._malformed_logged = False
        self._refusal_logged = False
        self._previous: NodeFrame | None = None  # the last full frame taken
        self._first_frame_pending = False  # the session's first desired frame waits
        self._all_measured = False
        self.schedule = DesiredSchedule(node.desired_interval)
        self.clock = NodeClock()  # measurement times (display and export only)
        self.backfill = Backfill(node, self._send_soon)  # store-and-forward
        node.entry.async_on_unload(self.backfill.shutdown)
        self._pending_later: set[int] = set()  # writes whose pending state waits
        self._unsub_pending: CALLBACK_TYPE | None = None
        node.entry.async_on_unload(self._cancel_pending)
        node.entry.async_on_unload(self._cancel_wake)

    # ---- session ----

    async def async_read_model(self) -> Model:
        self._ready = False
        self._previous = None
        # Every value of this session has its measurement time (stamp_measured then
        # looks at the changed points only).
        self._all_measured = False
        self.clock.reset()
        return await self.describe.async_request()

    @property
    def model_event(self) -> dict[str, str] | None:
        return self.describe.event

    async def async_start_session(self) -> None:
        node, engine = self.node, self.node.engine
        self._malformed_logged = self._refusal_logged = False
        model = engine.model
        assert model is not None
        engine.start_session(model.boot_id, model.node_seq, model.kept_seq)
        node.store.schedule_save(
            STORE_DESIRED_WITHIN
        )  # the node's boot, restart or not
        await self.backfill.async_load()  # the acknowledgement of the first frame
        self._ready = True
        # Values stay stale (offline) until the first frame arrives.
        # Reconciliation: desired values the node does not hold yet go out at once. With
        # none, the first desired frame waits for the node's first full frame and is built
        # after judging it: Home Assistant's record may be older than the node's values
        # (a Store that lost its last second in a crash; docs/exchange.md).
        self._first_frame_pending = not engine.has_unsent
        if not self._first_frame_pending:
            await self._async_send()

    def end_session(self) -> None:
        self._ready = False
        self._first_frame_pending = False
        self._cancel_wake()
        self.describe.cancel()

    # ---- node frames ----

    @callback
    def on_node_event(self, name: str, data: dict[str, str]) -> None:
        if name == MODEL_EVENT:
            try:
                self.describe.on_model_event(data)
            except ProtocolError as err:
                self._malformed(err)
            return
        engine = self.node.engine
        if name != FRAME_EVENT or not self._ready or engine.model is None:
            # Before the session is set up (the model being read, maybe a new firmware's)
            # frames are not judged, nor counted as malformed.
            return
        try:
            if "h" in data:  # a backlog frame: readings of the time nobody listened
                self.backfill.on_frame(data, engine.model, self.clock)
                return
            frame = NodeFrame.from_event(data, engine.model, self._previous)
        except ProtocolError as err:
            # A model mismatch included: new firmware means a reboot and a new connection,
            # which reads the model again; within one connection it is a malformed frame.
            self._malformed(err)
            return
        now, wall, node = time.monotonic(), time.time(), self.node
        stale = node.stale_reason
        result = engine.on_frame(frame, now, wall)
        if result.accepted:
            self.clock.on_frame(frame.uptime_ms, frame.node_time_ms, wall)
            # A value that got its first measurement time unchanged (e.g. restored from
            # the Store) is written once, so its entity shows it.
            if result.changed or frame.indices is not None or not self._all_measured:
                result.changed += stamp_measured(
                    engine.reported,
                    frame,
                    result.changed,
                    self.clock,
                    only_changed=self._all_measured,
                )
            if not self._all_measured and frame.indices is None:
                self._all_measured = all_measured(engine.reported)
            if frame.indices is None:
                self._previous = frame
                if self._first_frame_pending:
                    self._first_frame_pending = False
                    self._send_soon()
                if self.backfill.on_full_frame(
                    frame.backlog_dropped, frame.backlog_waiting
                ):
                    node.listeners.topic(Topic.STATS)
            self._apply(result, now)
        # What is due next changes only with what the frame changed (the stale deadline
        # moving later is seen when the armed wake-up fires).
        if self._wake is None or stale != node.stale_reason or _changed_any(result):
            self._arm()

    @callback
    def _apply(self, result: FrameResult, now: float) -> None:
        node, engine = self.node, self.node.engine
        node.set_stale(engine.stale_reason(connected=node.connected, now=now))
        if result.refused is not None:
            self._on_refusal(result.refused)
        if changed := changed_indices(result):
            node.listeners.points(changed)
        if result.desired_changed:
            node.store.schedule_save(STORE_DESIRED_WITHIN)
            if result.refused is None and result.acknowledged is not None:
                self._clear_refusal()
        elif result.changed or result.node_state_changed:
            node.store.schedule_save()
        if result.node_state_changed:
            node.listeners.topic(Topic.NODE)
        if result.stats_changed:
            node.listeners.topic(Topic.STATS)

    @callback
    def _malformed(self, err: ProtocolError) -> None:
        """A malformed frame: nothing of it is applied; counted, logged once a connection.

        A broken node may send nothing else, so later ones go to the debug log only; the
        malformed frames entity counts every one.
        """
        node = self.node
        node.malformed_frames += 1
        if self._malformed_logged:
            _LOGGER.debug("%s: rejected a malformed frame: %s", node.name, err)
        else:
            self._malformed_logged = True
            _LOGGER.warning(
                "%s: rejected a malformed frame, nothing of it applied: %s "
                "(further ones on this connection are only counted)",
                node.name,
                err,
            )
        node.on_ignored_call()

    @callback
    def _on_refusal(self, refused: PointRefusal) -> None:
        """The node refused a desired frame: a repair issue names the point and reason.

        The engine has already dropped what was refused, so every other point flows again.
        Logged once per connection; the refused-frames entity counts every one.
        """
        node = self.node
        point = node.table.name_of(refused.index)
        log = _LOGGER.debug if self._refusal_logged else _LOGGER.warning
        self._refusal_logged = True
        log(
            "%s: the node refused desired frame %s (%s, %s); its desired value is "
            "dropped, the other points go on",
            node.name,
            refused.seq,
            point,
            refused.reason,
        )
        node.issues.refused(node.name, point, refused.reason)

    @callback
    def _clear_refusal(self) -> None:
        """The issue goes once the node applied a frame carrying a newer write."""
        engine = self.node.engine
        last = engine.last_refusal
        if last is None:
            return
        if any(
            s.seq > last.seq and s.changed_by != CHANGED_BY_NODE
            for s in engine.desired.values()
        ) and (engine.acked_seq > last.seq):
            engine.last_refusal = None
            self.node.issues.refusal_resolved()

    # ---- desired frames ----

    @callback
    def _arm(self) -> None:
        """Arm the wake-up for the next moment something is due: the desired frame (heartbeat.py)
        or the stale deadline of a node that falls silent. A wake-up armed earlier stays: it
        arms the next one when it fires."""
        node, engine, now = self.node, self.node.engine, time.monotonic()
        due = engine.stale_at(connected=node.connected, now=now)
        model = engine.model
        if model is not None and not (
            self._first_frame_pending or self._send_scheduled
        ):
            send_at = self.schedule.next_send(
                holds_desired=engine.holds_desired(), failsafe_ms=model.failsafe_ms
            )
            due = send_at if due is None else min(due, send_at)
        if due is None or (self._wake is not None and self._wake_at <= due):
            return
        self._cancel_wake()
        self._wake_at = due
        self._wake = node.hass.loop.call_later(max(0.0, due - now), self._on_wake)

    @callback
    def _cancel_wake(self) -> None:
        if self._wake is not None:
            self._wake.cancel()
            self._wake = None

    @callback
    def _on_wake(self) -> None:
        """A callback, not a task: it sends only what is due, then arms the next one."""
        self._wake = None
        self.wakes += 1
        node, engine, now = self.node, self.node.engine, time.monotonic()
        # Silence is noticed here; values stay offline-stale until the first frame.
        if engine.last_frame is not None:
            node.set_stale(engine.stale_reason(connected=node.connected, now=now))
        model = engine.model
        if (
            self._ready
            and model is not None
            and not self._first_frame_pending  # built once the first frame is judged
            and self.schedule.due(
                holds_desired=engine.holds_desired(),
                failsafe_ms=model.failsafe_ms,
                now=now,
            )
        ):
            self._send_soon()
        if self._ready:
            self._arm()

    async def _async_send(self) -> None:
        node = self.node
        if not self._ready or not node.connected or node.engine.model is None:
            return
        now = time.monotonic()
        frame = node.engine.next_desired_frame(now)
        self.schedule.sent(now)
        self._arm()
        boot_id = node.engine.model.boot_id
        frame = dataclasses.replace(
            frame, backlog=self.backfill.acknowledgement(boot_id)
        )
        # The frame counter is saved lazily (a restart continues well ahead of it).
        node.store.schedule_save()
        try:
            await node.connection.async_execute(WRITE_ACTION, frame.args())
        except APIConnectionError as err:
            _LOGGER.debug("%s: desired frame not sent: %s", node.name, err)

    @callback
    def _send_soon(self) -> None:
        """Send a desired frame at the end of this event loop iteration.

        Several writes in one iteration (one action call setting several points) go out in
        one frame.
        """
        if self._send_scheduled:
            return
        self._send_scheduled = True

        async def send() -> None:
            self._send_scheduled = False
            await self._async_send()

        node = self.node
        node.entry.async_create_background_task(node.hass, send(), f"{DOMAIN} send")

    # ---- writes ----

    def write(
        self, writes: list[tuple[int, Value]], changed_by: str, now: float, wall: float
    ) -> None:
        """Kept (and saved) while the node is offline; applied when it returns."""
        engine = self.node.engine
        group = engine.new_group() if len(writes) > 1 else 0
        for index, value in writes:
            engine.write(index, value, changed_by, now, wall=wall, group=group)
        self.node.store.schedule_save(STORE_DESIRED_WITHIN)
        self._send_soon()
        # Their entities show the value as pending until the node reports it: at once while
        # the node is away, else only if it has not applied the write meanwhile.
        indices = [index for index, _ in writes]
        if not self.node.connected:
            self.node.listeners.points(indices)
            return
        self._pending_later.update(indices)
        if self._unsub_pending is None:
            self._unsub_pending = async_call_later(
                self.node.hass, PENDING_SHOWN_AFTER, self._show_pending
            )

    @callback
    def _show_pending(self, _now: Any) -> None:
        self._unsub_pending = None
        indices, self._pending_later = sorted(self._pending_later), set()
        self.node.listeners.points(indices)  # no state write for what shows no change

    @callback
    def _cancel_pending(self) -> None:
        if self._unsub_pending is not None:
            self._unsub_pending()
            self._unsub_pending = None

    def write_acquisition(
        self, running: bool, changed_by: str, now: float, wall: float
    ) -> None:
        self.node.engine.write_acquisition(running, changed_by, now, wall)
        self.node.store.schedule_save(STORE_DESIRED_WITHIN)
        self._send_soon()


def _changed_any(result: FrameResult) -> bool:
    """The frame changed something "the node holds everything" depends on."""
    return bool(
        result.changed
        or result.desired_changed
        or result.node_state_changed
        or result.acknowledged is not None
        or result.refused is not None
    )
