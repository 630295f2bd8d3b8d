"""Drives Home Assistant and a real simulated node through the reference model's events, and
checks, once each step has settled, that both agree with the model.

Everything here runs on Home Assistant's event loop (PHACC's ``hass``); the state machine
(test_model.py) runs in its own thread and hands each step over with ``World.run``.

Waiting is on events: node frames (FrameWatch), the observer's state updates and Home
Assistant's state changes wake every wait, which then re-checks its condition (and at least
once a second, as a safety net for conditions no event announces). The only timed waits are
on purpose: a local change waits out the writer-priority window of a write to the same point
(``Exchange.window_left``), and a crash "after the save deadline" waits out that deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
import contextlib
import copy
from datetime import datetime, timedelta
import logging
import math
import os
from pathlib import Path
import signal
import time
from typing import Any, Self

from homeassistant.const import CONF_PORT, EVENT_STATE_CHANGED
from homeassistant.core import Context, Event, HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
import voluptuous as vol

from custom_components.data_exchange import connection as connection_module
from custom_components.data_exchange.const import CONF_WRITER_PRIORITY_DELAY, DOMAIN
from custom_components.data_exchange.listeners import Topic
from custom_components.data_exchange.protocol import FRAME_EVENT
from tests.conftest import FIRMWARE
from tests.harness.node import Node, NodeFactory
from tests.harness.peer import Peer
from tests.harness.proxy import TcpProxy
from tests.integration.conftest import (
    FrameWatch,
    entity_ids,
    entry_for,
    live,
    problems_in_log,
)
from tests.model.reference import MARGIN, SAVE_DEADLINE, SIM_POINTS, Exchange, same

# writer_priority_delay for these tests: short, so that waiting it out is cheap, and still
# long against a local change made right after a write reached the node (about 0.1 s).
DELAY = 1.5
# The node: frames every 100 ms, fail-safe off (its safe values would be device-side changes
# the rules do not cover; see the module docstring of test_model.py).
NODE_SUBSTITUTIONS = {"cycle": "100ms"}
# API keepalive in these tests: a frozen node is dropped after 4.5 intervals (1.35 s).
KEEPALIVE = 0.3
# The simulated node keeps its desired values (data_exchange keep_desired).
KEEP = "keep_desired: true" in (FIRMWARE / "sim-node.yaml").read_text()
# Converged within this many node frames of the connection being up, or of a write ...
MAX_FRAMES = 2
# ... or, when Home Assistant must first judge the node's report (a write made while the node
# was away meets a change made on the node meanwhile, or state lost in a crash), within two
# of Home Assistant's cycles (0.2 s) counted in node frames (0.1 s).
MAX_FRAMES_JUDGED = 4
# How long a settle may take before the step counts as not converging.
CONVERGE_WITHIN = 15.0
DOMAINS = {
    "setpoint": "number",
    "relay": "switch",
    "led_brightness": "number",
    "mode": "select",
    "label": "text",
}
LOGGER = "custom_components.data_exchange"


class RuleViolationError(AssertionError):
    """What the node or Home Assistant did is not what the rules say."""


class Signals:
    """Wakes every waiter when something happened (a frame, a node state, a HA state)."""

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] = []
        self.before_check: Callable[[], None] = lambda: None

    def poke(self) -> None:
        waiters, self._waiters = self._waiters, []
        for future in waiters:
            if not future.done():
                future.set_result(None)

    async def until(
        self,
        predicate: Callable[[], bool],
        within: float,
        what: str,
        tick: float = 1.0,
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            self.before_check()
            if predicate():
                return
            left = deadline - loop.time()
            if left <= 0:
                raise RuleViolationError(f"{what}: not reached within {within:g} s")
            future = loop.create_future()
            self._waiters.append(future)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(left, tick)):
                    await future


class Observer(Peer):
    """The node's own view, through a plain API client that is not ours; also makes the
    changes another API client would make on the node."""

    def __init__(self, node: Node, signals: Signals) -> None:
        # A state the node has none for is None (e.g. a template text restored as "").
        super().__init__(node, "model observer", on_state=self._on_value)
        self.signals = signals
        self.seen: dict[str, list[Any]] = {name: [] for name in SIM_POINTS}

    def _on_value(self, name: str, value: Any) -> None:
        if name in self.seen:
            self.seen[name].append(value)
        self.signals.poke()

    async def start(self) -> Self:
        await super().start()
        await self.signals.until(
            lambda: all(name in self.states for name in SIM_POINTS),
            10,
            "the node sent every point's state (or that it has none) to the observer",
        )
        return self

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.disconnect(force=True)

    async def change(self, name: str, value: Any, via: str) -> None:
        """A change made on the node: a local automation (API action) or another client."""
        if via == "action":
            if name == "setpoint":
                await self.call("local_set_setpoint", value=float(value))
            else:
                await self.call("local_set_relay", state=bool(value))
            return
        key = self.keys[name]
        kind = SIM_POINTS[name].kind
        if kind == "number":
            self.api.number_command(key, float(value))
        elif kind == "switch":
            self.api.switch_command(key, bool(value))
        elif kind == "select":
            self.api.select_command(key, str(value))
        else:
            self.api.text_command(key, str(value))


class FrameProbe(FrameWatch):
    """FrameWatch, plus what the test reads from every node frame: the refused-frame count
    ``r`` (and the refusal ``e``), the applied desired frame ``a``, and a hook per frame."""

    def __init__(self, manager: Any, on_frame: Callable[[dict[str, str]], None]):
        super().__init__(manager)
        inner = manager.on_node_event

        def on_node_event(name: str, data: dict[str, str]) -> None:
            inner(name, data)
            if name == FRAME_EVENT:
                on_frame(data)

        manager.on_node_event = on_node_event


def _entity_value(kind: str, state: Any) -> Any:
    if state is None or state.state in ("unavailable", "unknown"):
        return None
    if kind == "number":
        try:
            return float(state.state)
        except ValueError:
            return None
    if kind == "switch":
        return {"on": True, "off": False}.get(state.state)
    return state.state


class World:
    """Home Assistant (the test's ``hass``), one real sim node, a proxy between them, an
    observer client on the node, the reference model; one per test, reset per sequence."""

    def __init__(
        self,
        hass: HomeAssistant,
        node_factory: NodeFactory,
        hass_storage: dict[str, Any],
        admin_user: Any,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        self.hass = hass
        self.node_factory = node_factory
        self.hass_storage = hass_storage
        self.user = admin_user
        self.monkeypatch = monkeypatch
        self.signals = Signals()
        self.loop = hass.loop
        self.node: Node | None = None
        self.proxy: TcpProxy | None = None
        self.observer: Observer | None = None
        self.entry: MockConfigEntry | None = None
        self.probe: FrameProbe | None = None
        self.model = Exchange(DELAY, keep=KEEP)
        self.entities: dict[str, str] = {}
        self.clock_offset = 0.0
        self.problems: list[logging.LogRecord] = []
        self._handler: logging.Handler | None = None
        # Sessions (connections up) seen, over every manager of this world.
        self.sessions = 0
        self.back_at = 0  # frames handled when the latest session came up
        # Home Assistant's newest desired frame when the latest session came up: until
        # the node has applied one at least as new (the session's first), its frames show
        # what it held before, which after a crash may be newer than the Store.
        self.session_frame = 0
        self._connected = False
        self.outage_sessions = 0  # sessions when the latest outage began
        # Per frame: the first frame since ``arm_at`` whose reported values match the model.
        self.arm_at: int | None = None
        self.arm_sessions = 0
        self.first_ok: int | None = None
        self.max_r = 0
        self.last_e = ""
        self.applied_changes = 0  # node frames whose ``a`` differs from the one before
        self._last_a: str | None = None
        self.watch_stable: Callable[[], str | None] | None = None
        self.flip: str | None = None
        self.last_reported: dict[str, Any] = {}
        self.last_settled = time.monotonic()
        # Statistics of a run.
        self.sequences = 0
        self.checked = 0  # sequences run when the first violation showed
        self.steps = 0
        self.outcomes: dict[str, int] = {}
        self.timings: dict[str, tuple[int, float]] = {}
        self.slow_steps: list[str] = []
        self.recent: list[str] = []
        self.step_started_at = time.monotonic()
        self.unsub_bus: Callable[[], None] | None = None
        self._attached: Any = None
        self.signals.before_check = self._ensure_attached
        self.can_freeze = hasattr(connection_module, "KEEPALIVE")

    # ---- plumbing ----

    def run[T](self, coro: Coroutine[Any, Any, T], timeout: float = 600) -> T:
        """Run ``coro`` on Home Assistant's loop from the state machine's thread."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def _begin(self) -> None:
        self.model.step_started()
        self.step_started_at = time.monotonic()

    def _slow(self, what: str) -> None:
        took = time.monotonic() - self.step_started_at
        self.recent.append(f"{took:.1f} s: {what}")
        del self.recent[:-6]
        if took > 3:
            self.slow_steps.append(" <- ".join(reversed(self.recent)))

    def timing(self, step: str, seconds: float) -> None:
        count, total = self.timings.get(step, (0, 0.0))
        self.timings[step] = (count + 1, total + seconds)

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    @property
    def manager(self) -> Any:
        return None if self.entry is None else getattr(self.entry, "runtime_data", None)

    async def open(self) -> None:
        """Once per test: the node build, the proxy, the clock, the log."""
        if self.can_freeze:
            self.monkeypatch.setattr(connection_module, "KEEPALIVE", KEEPALIVE)
        real_time = time.time
        real_utcnow = dt_util.utcnow
        self.monkeypatch.setattr(time, "time", lambda: real_time() + self.clock_offset)
        self.monkeypatch.setattr(
            dt_util,
            "utcnow",
            lambda: real_utcnow() + timedelta(seconds=self.clock_offset),
        )
        self.node = await self.hass.async_add_executor_job(
            lambda: self.node_factory.start(
                FIRMWARE / "sim-node.yaml", **NODE_SUBSTITUTIONS
            )
        )
        self.proxy = await TcpProxy(self.node.port).start()

        world = self

        class Collect(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                if record.levelno >= logging.ERROR or record.exc_info:
                    world.problems.append(record)

        self._handler = Collect(level=logging.DEBUG)
        logging.getLogger().addHandler(self._handler)

        @callback
        def on_state(_event: Event) -> None:
            self.signals.poke()

        self.unsub_bus = self.hass.bus.async_listen(EVENT_STATE_CHANGED, on_state)

    async def close(self) -> None:
        await self._ha_remove()
        if self.observer is not None:
            await self.observer.stop()
            self.observer = None
        if self.node is not None and self.node.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.node.process.pid, signal.SIGCONT)
        if self.proxy is not None:
            await self.proxy.close()
        if self.unsub_bus is not None:
            self.unsub_bus()
        if self._handler is not None:
            logging.getLogger().removeHandler(self._handler)
        self.clock_offset = 0.0

    # ---- per sequence ----

    async def reset(self) -> None:
        """A fresh start: a new Home Assistant entry without stored state, and the node
        booted from its firmware defaults."""
        assert self.node is not None
        assert self.proxy is not None
        await self._ha_remove()
        for key in [k for k in self.hass_storage if k.startswith(f"{DOMAIN}.")]:
            del self.hass_storage[key]
        if self.observer is not None:
            await self.observer.stop()
            self.observer = None
        await self.hass.async_add_executor_job(self._fresh_node)
        self.proxy.release()
        self.proxy.cut()
        self.clock_offset = 0.0
        self.model = Exchange(DELAY, keep=KEEP)
        self.max_r = 0
        self.last_e = ""
        self.problems.clear()
        self.sequences += 1
        self.observer = await Observer(self.node, self.signals).start()
        self.outage_sessions = self.sessions
        await self._ha_add(new=True)
        await self.settle("start")

    def _fresh_node(self) -> None:
        node = self.node
        assert node is not None
        if node.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(node.process.pid, signal.SIGCONT)
        node.kill()
        node.reset_preferences()
        node.start()

    async def _ha_add(self, *, new: bool) -> None:
        assert self.node is not None
        assert self.proxy is not None
        if new or self.entry is None:
            template = entry_for(self.node, **{CONF_WRITER_PRIORITY_DELAY: DELAY})
            self.entry = MockConfigEntry(
                domain=DOMAIN,
                title=template.title,
                unique_id=template.unique_id,
                data={**template.data, CONF_PORT: self.proxy.port},
                options=dict(template.options),
            )
            self.entry.add_to_hass(self.hass)
        assert await self.hass.config_entries.async_setup(self.entry.entry_id)
        self._ensure_attached()
        if not self.entities:
            await self.signals.until(
                lambda: all(
                    any(
                        e.endswith(f"_{name}")
                        for e in entity_ids(self.hass, self.entry, domain)
                    )
                    for name, domain in DOMAINS.items()
                ),
                30,
                "the point entities exist",
            )
        self.entities = {
            name: next(
                e
                for e in entity_ids(self.hass, self.entry, domain)
                if e.endswith(f"_{name}")
            )
            for name, domain in DOMAINS.items()
        }

    def _ensure_attached(self) -> None:
        """Watch the entry's current manager (the entry reloads itself when the node's
        points change, e.g. on the very first connection: a new manager)."""
        manager = self.manager
        if manager is None or manager is self._attached:
            return
        self._attached = manager
        self._connected = False
        self._last_a = None
        self.probe = FrameProbe(manager, self._on_frame)
        manager.listeners.add_topic(Topic.NODE, self._on_node)
        if manager.connected:
            self._on_node()

    async def _ha_remove(self) -> None:
        if self.entry is None:
            return
        entry_id = self.entry.entry_id
        if self.hass.config_entries.async_get_entry(entry_id) is not None:
            await self.hass.config_entries.async_remove(entry_id)
            await self.hass.async_block_till_done()
        self.entry = None
        self.probe = None
        self._attached = None
        self.entities = {}

    def _on_node(self) -> None:
        manager = self.manager
        connected = bool(manager and manager.connected)
        if connected and not self._connected:
            self.sessions += 1
            self.back_at = self.probe.events if self.probe else 0
            self.session_frame = manager.engine.desired_seq if manager else 0
        self._connected = connected
        self.signals.poke()

    def _applied_reconciliation(self) -> bool:
        """The node has applied the desired frame of the latest session's start."""
        try:
            return int(self._last_a or 0) >= self.session_frame
        except ValueError:
            return False

    def _on_frame(self, data: dict[str, str]) -> None:
        with contextlib.suppress(ValueError):
            r = int(data.get("r") or 0)
            if r > self.max_r:
                self.max_r = r
                self.last_e = str(data.get("e", ""))
        a = data.get("a")
        if a != self._last_a:
            self._last_a = a
            self.applied_changes += 1
        if (
            self.arm_at is not None
            and self.first_ok is None
            and self.sessions > self.arm_sessions
            and self._ha_matches_model()
        ):
            self.first_ok = self.probe.events if self.probe else 0
        if self.watch_stable is not None and self.flip is None:
            self.flip = self.watch_stable()
        self.signals.poke()

    # ---- what is compared ----

    def _reported(self, name: str) -> Any:
        manager = self.manager
        try:
            return manager.reported_value(name) if manager else None
        except KeyError:
            return None

    def _ha_matches_model(self) -> bool:
        return all(
            any(
                same(SIM_POINTS[n], self._reported(n), c)
                for c in self.model.expected(n)
            )
            for n in SIM_POINTS
        )

    def _shown(self, name: str) -> Any:
        state = self.hass.states.get(self.entities.get(name, ""))
        return _entity_value(SIM_POINTS[name].kind, state)

    def _consistent(self) -> bool:
        if self.observer is None:
            return False
        # Not while a write of Home Assistant waits for the node (it is about to change
        # what the node holds; e.g. one restored from disk after a crash, sent on connect).
        manager = self.manager
        if manager is not None and any(
            manager.pending(p.index) is not None for p in manager.points
        ):
            return False
        for name, spec in SIM_POINTS.items():
            held = self.observer.states.get(name)
            if not any(same(spec, held, c) for c in self.model.expected(name)):
                return False
            if not same(spec, self._reported(name), held):
                return False
            if not same(spec, self._shown(name), held):
                return False
        return True

    def describe(self) -> str:
        """Model, node and Home Assistant side by side, for a violation message."""
        lines = []
        for name in SIM_POINTS:
            held = self.observer.states.get(name) if self.observer else None
            lines.append(
                f"  {name}: rules {list(self.model.expected(name))!r}, node {held!r}, "
                f"HA reported {self._reported(name)!r}, HA shows {self._shown(name)!r}"
            )
        lines.append(
            f"  node refused desired frames: r={self.max_r} {self.last_e!r}; "
            f"connected={bool(self.manager and self.manager.connected)}"
        )
        return "\n".join(lines)

    def _check_log(self, what: str) -> None:
        problems = problems_in_log(self.problems)
        self.problems.clear()
        if problems:
            raise RuleViolationError(
                f"{what}: errors in the log:\n  " + "\n  ".join(problems)
            )

    # ---- settling and checking ----

    async def settle(self, what: str, *, frames_from: int | None = None) -> None:
        """Wait until the step has settled, then check it against the model."""
        model = self.model
        self.steps += 1
        if not model.connected:
            await self._settle_offline(what)
            self._check_log(what)
            self.last_settled = time.monotonic()
            self._slow(what)
            return
        reconnect = not model.session_open
        if reconnect:
            model.reconcile(time.monotonic())
            self.arm_sessions = self.outage_sessions
            self.arm_at = 0
            self.first_ok = None
            # Reconnect now, as the node's mDNS announcement would make Home Assistant do
            # (the test has no zeroconf); otherwise ReconnectLogic's back-off may wait
            # seconds. Again at every check: an attempt still failing from the outage may
            # have scheduled a back-off after the first kick.
            await self.signals.until(
                lambda: (
                    self._kick()
                    or (
                        self.sessions > self.outage_sessions
                        and live(self.hass, self.entry)
                        and self._applied_reconciliation()
                    )
                ),
                60,
                f"{what}: Home Assistant connected again with live values",
                tick=0.2,
            )
        elif frames_from is not None:
            self.arm_sessions = self.sessions - 1
            self.arm_at = frames_from
            self.first_ok = None
            if self._ha_matches_model():
                self.first_ok = frames_from
        try:
            await self.signals.until(
                lambda: live(self.hass, self.entry) and self._consistent(),
                CONVERGE_WITHIN,
                f"{what}: converged",
            )
        except RuleViolationError as err:
            raise RuleViolationError(f"{err}\n{self.describe()}") from None
        if self.arm_at is not None:
            start = self.back_at if reconnect else (frames_from or 0)
            frames = (self.first_ok if self.first_ok is not None else 10**9) - start
            self.arm_at = None
            limit = (
                MAX_FRAMES_JUDGED
                if reconnect and model.judged_on_reconnect
                else MAX_FRAMES
            )
            if frames > limit:
                raise RuleViolationError(
                    f"{what}: converged only after {frames} node frames "
                    f"(at most {limit} allowed)\n{self.describe()}"
                )
        await self._stable(what)
        if self.max_r:
            raise RuleViolationError(
                f"{what}: the node refused desired frames (r={self.max_r}, "
                f"e={self.last_e!r}): a point blocks the others\n{self.describe()}"
            )
        self._check_entities(what)
        now = time.monotonic()
        assert self.observer is not None
        for name in SIM_POINTS:
            if message := model.observe(name, self.observer.states[name], now):
                raise RuleViolationError(f"{what}: {message}\n{self.describe()}")
            self.last_reported[name] = self.observer.states[name]
        model.settled(now)
        model.pin_exact()
        self.last_settled = now
        self._check_log(what)
        self._slow(what)

    async def _stable(self, what: str) -> None:
        """Two more desired frames applied, and every frame on the way showed the same."""
        pinned = {name: self._reported(name) for name in SIM_POINTS}

        def moved() -> str | None:
            for name, spec in SIM_POINTS.items():
                if not same(spec, self._reported(name), pinned[name]):
                    return (
                        f"{name} went from {pinned[name]!r} to {self._reported(name)!r}"
                    )
            return None

        self.flip = None
        self.watch_stable = moved
        start = self.applied_changes
        try:
            await self.signals.until(
                lambda: self.flip is not None or self.applied_changes >= start + 2,
                CONVERGE_WITHIN,
                f"{what}: two more desired frames applied by the node",
            )
        except RuleViolationError as err:
            raise RuleViolationError(f"{err}\n{self.describe()}") from None
        finally:
            self.watch_stable = None
        if self.flip is not None:
            raise RuleViolationError(
                f"{what}: did not stay settled: {self.flip}\n{self.describe()}"
            )
        if not self._consistent():
            raise RuleViolationError(
                f"{what}: did not stay consistent\n{self.describe()}"
            )

    def _check_entities(self, what: str) -> None:
        for name in SIM_POINTS:
            state = self.hass.states.get(self.entities[name])
            if state is None or state.attributes.get("stale"):
                raise RuleViolationError(
                    f"{what}: {name} is stale while the node is live"
                )
        for name, changed_by in self.model.changed_by.items():
            if len(self.model.expected(name)) != 1:
                continue
            state = self.hass.states.get(self.entities[name])
            shown = state.attributes.get("changed_by") if state else None
            if shown != changed_by:
                raise RuleViolationError(
                    f"{what}: {name} changed_by is {shown!r}, the rules say {changed_by!r}"
                )

    async def _settle_offline(self, what: str) -> None:
        manager = self.manager
        if not self.model.ha_up or manager is None:
            return
        await self.signals.until(
            lambda: not manager.connected,
            30,
            f"{what}: Home Assistant noticed the node is gone",
        )
        if not self.model.ha_exact or not self.last_reported:
            return
        await self.signals.until(
            lambda: all(
                (s := self.hass.states.get(e)) is not None and s.attributes.get("stale")
                for e in self.entities.values()
            ),
            10,
            f"{what}: values marked stale while the node is away",
        )
        for name, spec in SIM_POINTS.items():
            shown = self._shown(name)
            if not same(spec, shown, self.last_reported[name]):
                raise RuleViolationError(
                    f"{what}: while the node is away, {name} shows {shown!r}, "
                    f"not its last value {self.last_reported[name]!r}"
                )

    def _kick(self) -> bool:
        """Make Home Assistant try to connect now (always False, for use in a predicate)."""
        manager = self.manager
        reconnect = getattr(getattr(manager, "connection", None), "_reconnect", None)
        kick = getattr(reconnect, "_connect_from_zeroconf", None)
        if kick is not None and not manager.connected:
            kick()
        return False

    # ---- events ----

    def _changed_by(self, kind: str) -> tuple[str, Context | None]:
        if kind == "ui":
            return f"user:{self.user.name}", Context(user_id=self.user.id)
        if kind == "automation":
            return "automation", Context(parent_id="01JAUTOMATIONPARENT0000000")
        return "home_assistant", None

    async def _call_write(self, kind: str, values: dict[str, Any]) -> Exception | None:
        _, context = self._changed_by(kind)
        try:
            if kind == "ui":
                ((name, value),) = values.items()
                entity_id = self.entities[name]
                domain = DOMAINS[name]
                if domain == "number":
                    service, data = "set_value", {"value": value}
                elif domain == "switch":
                    service, data = ("turn_on" if value else "turn_off"), {}
                elif domain == "select":
                    service, data = "select_option", {"option": value}
                else:
                    service, data = "set_value", {"value": value}
                await self.hass.services.async_call(
                    domain,
                    service,
                    {"entity_id": entity_id, **data},
                    blocking=True,
                    context=context,
                )
            else:
                await self.hass.services.async_call(
                    DOMAIN,
                    "write",
                    {"values": {self.entities[n]: v for n, v in values.items()}},
                    blocking=True,
                    context=context,
                )
        except (HomeAssistantError, vol.Invalid, ValueError, TypeError) as err:
            return err
        return None

    async def write(self, kind: str, values: dict[str, Any]) -> None:
        model = self.model
        self._begin()
        what = f"write {kind} {values!r}"
        changed_by, _ = self._changed_by(kind)
        valid = all(model.accepts(n, v) for n, v in values.items())
        now = time.monotonic()
        refused = await self._call_write(kind, values)
        if valid and refused is not None:
            raise RuleViolationError(
                f"{what}: a write the rules accept was refused: {refused!r}"
            )
        if not valid and refused is None:
            raise RuleViolationError(f"{what}: a write the rules refuse was accepted")
        self.count(
            f"write {kind} {'refused' if not valid else 'offline' if not model.connected else 'live'}"
        )
        frames = self.probe.events if self.probe else None
        if valid:
            model.write(values, changed_by, now)
        await self.settle(what, frames_from=frames if valid else None)

    async def local(self, name: str, value: Any, via: str) -> None:
        """A change on the node, made after the writer-priority window of the last write to
        the point has surely passed (the wait is on purpose: it is the rule's window)."""
        model = self.model
        self._begin()
        wait = model.window_left(name, time.monotonic())
        if wait > 0:
            await asyncio.sleep(wait)
        assert self.observer is not None
        mark = len(self.observer.seen[name])
        outcome = model.local(name, value, False, time.monotonic())
        self.count(f"local {outcome}")
        await self.observer.change(name, value, via)
        await self._seen_on_node(name, value, mark)
        await self.settle(f"local change of {name} to {value!r} via {via} ({outcome})")

    async def _seen_on_node(self, name: str, value: Any, mark: int) -> None:
        """Wait until the node took a local change (if it takes it at all)."""
        spec = SIM_POINTS[name]
        if not self.model.accepts_locally(name, value):
            return
        assert self.observer is not None
        observer = self.observer
        if same(spec, observer.states.get(name), value) and mark == len(
            observer.seen[name]
        ):
            return  # no change: the node has nothing to report
        await self.signals.until(
            lambda: any(same(spec, v, value) for v in observer.seen[name][mark:]),
            10,
            f"the node took {name} = {value!r}",
        )

    async def write_then_local(
        self, kind: str, name: str, written: Any, local: Any
    ) -> None:
        """A write, and a change on the node right after it reached the node: within the
        writer-priority window, so Home Assistant's write wins."""
        model = self.model
        self._begin()
        assert self.observer is not None
        observer = self.observer
        spec = SIM_POINTS[name]
        changed_by, _ = self._changed_by(kind)
        start = time.monotonic()
        refused = await self._call_write(kind, {name: written})
        if refused is not None:
            raise RuleViolationError(
                f"write {kind} {name}={written!r} refused: {refused!r}"
            )
        model.write({name: written}, changed_by, start)
        await self.signals.until(
            lambda: same(spec, observer.states.get(name), written),
            10,
            f"the node holds the written {name} = {written!r}",
        )
        # The report of the local change arrives within a node cycle (0.1 s) of it: with
        # room to spare it is within the window; if this machine was too slow for that to
        # be sure, the model accepts either outcome.
        elapsed = time.monotonic() - start
        ha_wins: bool | None = True if elapsed + 0.3 < DELAY - MARGIN else None
        mark = len(observer.seen[name])
        outcome = model.local(name, local, ha_wins, time.monotonic())
        self.count(f"write then local: {outcome}")
        await observer.change(name, local, "api")
        await self._seen_on_node(name, local, mark)
        await self.settle(
            f"write {kind} {name}={written!r}, then at once a local change to {local!r} "
            f"({outcome})"
        )

    async def reconnect_then_local(self, name: str, value: Any, via: str) -> None:
        """A network cut, and a change on the node as soon as Home Assistant's new session
        is up (in its first cycle), before anything has settled."""
        assert self.proxy is not None
        assert self.observer is not None
        self._begin()
        wait = self.model.window_left(name, time.monotonic())
        if wait > 0:
            await asyncio.sleep(wait)  # on purpose: the writer-priority window
        self._outage()
        self.proxy.cut()
        self.model.cut()
        await self.signals.until(
            lambda: self._kick() or self.sessions > self.outage_sessions,
            60,
            "reconnected after a network cut",
            tick=0.2,
        )
        self.model.reconcile(time.monotonic())
        self.model.step_started()
        self.arm_at = None
        mark = len(self.observer.seen[name])
        outcome = self.model.local(name, value, False, time.monotonic())
        self.count(f"reconnect then local: {outcome}")
        await self.observer.change(name, value, via)
        await self._seen_on_node(name, value, mark)
        await self.settle(
            f"network cut, and at reconnection a local change of {name} to {value!r} "
            f"via {via} ({outcome})"
        )

    def _outage(self) -> None:
        self.outage_sessions = self.sessions

    async def _gone(self, what: str) -> None:
        manager = self.manager
        if manager is not None and self.model.ha_up:
            await self.signals.until(
                lambda: not manager.connected, 30, f"{what}: connection lost"
            )

    async def net_cut(self) -> None:
        assert self.proxy is not None
        self._begin()
        self._outage()
        self.proxy.cut()
        self.model.cut()
        self.count("network cut")
        await self.settle("network cut (reconnects at once)")

    async def net_down(self) -> None:
        assert self.proxy is not None
        self._begin()
        was_connected = self.model.connected
        if was_connected:
            self._outage()
        self.proxy.hold()
        self.model.net_down()
        if was_connected:
            await self._gone("network down")
        self.count("network down")
        await self.settle("network down")

    async def net_up(self) -> None:
        assert self.proxy is not None
        self._begin()
        self.proxy.release()
        self.model.net_up_again()
        self.count("network up")
        await self.settle("network up again")

    async def freeze(self) -> None:
        """SIGSTOP past the API keepalive: Home Assistant drops the connection."""
        assert self.node is not None
        assert self.node.process is not None
        self._begin()
        self._outage()
        os.kill(self.node.process.pid, signal.SIGSTOP)
        self.model.freeze()
        await self._gone("node frozen past the keepalive")
        self.count("node frozen")
        await self.settle("node frozen past the keepalive")

    async def thaw(self) -> None:
        assert self.node is not None
        assert self.node.process is not None
        self._begin()
        os.kill(self.node.process.pid, signal.SIGCONT)
        self.model.thaw()
        self.count("node thawed")
        await self.settle("node resumed (SIGCONT)")

    async def kill_node(self) -> None:
        assert self.node is not None
        self._begin()
        if self.model.connected:
            self._outage()
        if self.observer is not None:
            await self.observer.stop()
            self.observer = None
        await self.hass.async_add_executor_job(self.node.kill)
        self.model.node_kill()
        await self._gone("node killed")
        self.count("node killed")
        await self.settle("node killed (SIGKILL)")

    async def stop_node(self) -> None:
        """A clean stop (SIGTERM), as a reboot or an update: ESPHome saves its preferences."""
        assert self.node is not None
        self._begin()
        if self.model.connected:
            self._outage()
        if self.observer is not None:
            await self.observer.stop()
            self.observer = None
        await self.hass.async_add_executor_job(self.node.stop)
        self.model.node_kill(clean=True)
        await self._gone("node stopped")
        self.count("node stopped (SIGTERM)")
        await self.settle("node stopped (SIGTERM)")

    async def start_node(self, keep_prefs: bool) -> None:
        assert self.node is not None
        self._begin()
        node = self.node
        if not keep_prefs:
            node.reset_preferences()
        await self.hass.async_add_executor_job(node.start)
        self.max_r = 0  # the refused-frame count is per node boot
        self.last_e = ""
        self.model.node_start(keep_prefs=keep_prefs)
        self.observer = await Observer(node, self.signals).start()
        # The node booted from its preferences (or defaults): the model may pin them now.
        self.count(f"node started {'with' if keep_prefs else 'without'} preferences")
        await self.settle(
            f"node started {'with its saved preferences' if keep_prefs else 'with firmware defaults'}"
        )

    async def start_node_then_local(self, name: str, value: Any, via: str) -> None:
        """The node starts with its preferences (and its kept record) while Home Assistant
        is up, and a change is made on it as soon as Home Assistant's session is up: a
        desired value the kept frame carried opened no new writer-priority window, so the
        change is adopted (``ha_wins`` False where the model knows no window is open)."""
        assert self.node is not None
        self._begin()
        wait = self.model.window_left(name, time.monotonic())
        if 0 < wait < math.inf:
            await asyncio.sleep(
                wait
            )  # on purpose: the window of the last write is over
        node = self.node
        await self.hass.async_add_executor_job(node.start)
        self.max_r = 0  # the refused-frame count is per node boot
        self.last_e = ""
        self.model.node_start(keep_prefs=True)
        self.observer = await Observer(node, self.signals).start()
        await self.signals.until(
            lambda: self._kick() or self.sessions > self.outage_sessions,
            60,
            "a session with the started node",
            tick=0.2,
        )
        self.model.reconcile(time.monotonic())
        self.model.step_started()
        self.arm_at = None
        now = time.monotonic()
        ha_wins = False if self.model.window_left(name, now) == 0 else None
        mark = len(self.observer.seen[name])
        outcome = self.model.local(name, value, ha_wins, now)
        self.count(f"start then local: {outcome}")
        await self.observer.change(name, value, via)
        await self._seen_on_node(name, value, mark)
        await self.settle(
            f"node started with its preferences, and at once a local change of {name} "
            f"to {value!r} via {via} ({outcome})"
        )

    async def ha_stop(self, crash: bool, after_deadline: bool) -> None:
        """Home Assistant stops: cleanly (unload, final save), or crashes (what is on disk
        at that moment is all the next start gets)."""
        assert self.entry is not None
        model = self.model
        self._begin()
        if crash and after_deadline:
            # On purpose: the documented save deadline for desired values.
            wait = self.last_settled + SAVE_DEADLINE + MARGIN - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        if model.connected:
            self._outage()
        now = time.monotonic()
        key = f"{DOMAIN}.{self.entry.entry_id}"
        on_disk = copy.deepcopy(self.hass_storage.get(key))
        assert await self.hass.config_entries.async_unload(self.entry.entry_id)
        await self.hass.async_block_till_done()
        if crash:
            if on_disk is None:
                self.hass_storage.pop(key, None)
            else:
                self.hass_storage[key] = on_disk
        self.probe = None
        self._attached = None
        model.ha_stop(now, crash=crash, saved=not crash or after_deadline)
        if crash:
            model.ha_exact = False
        label = (
            "crashed after the save deadline"
            if crash and after_deadline
            else "crashed at once"
            if crash
            else "stopped"
        )
        self.count(f"Home Assistant {label}")
        await self.settle(f"Home Assistant {label}")

    async def ha_start(self) -> None:
        self._begin()
        self.model.ha_start()
        await self._ha_add(new=False)
        self.count("Home Assistant started")
        await self.settle("Home Assistant started")

    async def clock_step(self, seconds: float) -> None:
        """The wall clock jumps (NTP at boot): no rule may change a decision."""
        self._begin()
        self.clock_offset += seconds
        self.count("wall clock step")
        await self.settle(f"wall clock stepped by {seconds:+g} s")

    async def heal(self) -> None:
        """End of a sequence: every outage ends, and the final state is checked."""
        model = self.model
        if model.node_state == "frozen":
            await self.thaw()
        if model.node_state == "dead":
            await self.start_node(True)
        if not model.net_up:
            await self.net_up()
        if not model.ha_up:
            await self.ha_start()


def report_path() -> Path | None:
    path = os.environ.get("DX_MODEL_REPORT")
    return Path(path) if path else None


def now_iso() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")
