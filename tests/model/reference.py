"""A reference model of the exchange rules (docs/exchange.md), in plain Python.

An independent restatement for the model-based test: it imports nothing from Home Assistant
and nothing from the integration. Per writable point of the simulated node
(esphome/sim-node.yaml with esphome/packages/controls.yaml) it says which values the node may
hold once a sequence of events has settled, and so what Home Assistant must show.

What the model follows from docs/exchange.md:

- *One rule for values*: `rule_accepts` (32-bit float rounding, range, step with its
  tolerance; options; text length in UTF-8 bytes). Home Assistant refuses a write that breaks
  it, whole for a grouped write.
- *Writer priority*: a change made on the device is adopted as the desired value (changed_by
  `node`), or leaves the point without a desired value if the rule refuses it; a change
  reported within `writer_priority_delay` of a Home Assistant write reaching the node loses
  and is undone.
- *Reconciliation*: on a reconnect to the same node boot, a write Home Assistant holds that
  the node has not applied wins over a change made on the node meanwhile, and a change made
  on the node to a point Home Assistant did not write is adopted; after a node restart every
  desired value is applied again (a point without one keeps what the node booted with).
  With *kept desired values* (the node option keep_desired, on in the simulated node) the
  node boots with its record and Home Assistant counts the desired values of the kept frame
  as applied: a point then holds its desired value, or a value set on the node since Home
  Assistant last wrote it, which the record kept and Home Assistant adopts (rule 6); a write
  the node had not kept (pending, or newer than the record) is applied again.
- *What survives a restart*: a clean Home Assistant restart keeps everything; a crash keeps
  every desired value accepted more than 1 s before it (`SAVE_DEADLINE`).
- *Counters and clocks*: a wall-clock step changes nothing (the model has no wall clock).

And from ESPHome itself (not our rules): a device-side change is accepted by the node if a
number is within min..max (ESPHome does not check the step: setpoint 21.3 is held), a select
option exists, a text is within its length; the node restores every point from its saved
preferences after a restart, or boots with the YAML's initial values when they are gone.
The kept record lives in the same preferences (written at most every
keep_desired_interval, synced like them): what it holds is one of the values the node held.

**Nondeterminism.** Some facts are invisible to the test: when ESPHome last synced its
preferences to disk (every 60 s and at a clean shutdown; a kill -9 keeps the last sync), and
what a crashed Home Assistant had saved within its last second. There the model keeps a set
of **candidates**; the checker verifies that the node holds one of them and then pins the
model to it (`observe`).

**Timing.** Whether a local change loses to a write depends on when its report arrives. The
test does not generate interleavings whose outcome hinges on timing it cannot control: a
local change is made either right after a write reached the node (`ha_wins=True`, well
inside the window) or once the window has passed for sure (the driver waits `window_left`
on purpose, then `ha_wins=False`). Should a driver not be able to tell (`ha_wins=None`), the
model accepts both outcomes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
import math
import struct
from typing import Any

type Value = float | bool | str

# A desired value is saved within this many seconds (docs: "on disk within 1 s").
SAVE_DEADLINE = 1.0
# Slack for the test's own clock reading versus Home Assistant's (scheduling on a busy
# machine): times the model compares with a deadline are widened by this much.
MARGIN = 0.5


class _NoDesired:
    """Home Assistant holds no desired value for the point (the node's value stands)."""

    def __repr__(self) -> str:
        return "NO_DESIRED"


NO_DESIRED = _NoDesired()


def f32(value: float) -> float:
    """``value`` rounded to a 32-bit float, as the node holds it (inf when it overflows)."""
    if math.isnan(value) or math.isinf(value):
        return value
    try:
        return float(struct.unpack("<f", struct.pack("<f", value))[0])
    except OverflowError:
        return math.copysign(math.inf, value)


@dataclass(frozen=True)
class NumberSpec:
    minimum: float
    maximum: float
    step: float
    initial: float
    kind: str = "number"


@dataclass(frozen=True)
class SwitchSpec:
    initial: bool
    kind: str = "switch"


@dataclass(frozen=True)
class SelectSpec:
    options: tuple[str, ...]
    initial: str
    kind: str = "select"


@dataclass(frozen=True)
class TextSpec:
    min_length: int
    max_length: int
    initial: str
    kind: str = "text"


type Spec = NumberSpec | SwitchSpec | SelectSpec | TextSpec

# The writable points of the simulated node, as its YAML declares them. Every one restores
# its value from the node's preferences (restore_value / RESTORE_DEFAULT_OFF).
SIM_POINTS: dict[str, Spec] = {
    "setpoint": NumberSpec(5.0, 35.0, 0.5, 21.0),
    "relay": SwitchSpec(False),
    "led_brightness": NumberSpec(0.0, 100.0, 1.0, 0.0),
    "mode": SelectSpec(("off", "eco", "comfort", "auto"), "auto"),
    "label": TextSpec(0, 32, "sim"),
}


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def canonical(spec: Spec, value: Value) -> Value:
    """A value as the node holds it (numbers as 32-bit floats)."""
    if spec.kind == "number":
        number = _as_number(value)
        assert number is not None
        return f32(number)
    return value


def rule_accepts(spec: Spec, value: Any) -> bool:
    """docs/exchange.md, *One rule for values*: what Home Assistant and the node accept."""
    if isinstance(spec, NumberSpec):
        number = _as_number(value)
        if number is None:
            return False
        v, lo, hi, step = f32(number), f32(spec.minimum), f32(spec.maximum), spec.step
        if not math.isfinite(v) or v < lo or v > hi:
            return False
        if step:
            step = f32(step)
            k = math.floor((v - lo) / step + 0.5)
            return abs(v - (lo + k * step)) <= step * 1e-3 + (abs(v) + abs(lo)) * 2**-21
        return True
    if isinstance(spec, SwitchSpec):
        return isinstance(value, bool)
    if isinstance(spec, SelectSpec):
        return isinstance(value, str) and value in spec.options
    if not isinstance(value, str):
        return False
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return False
    return spec.min_length <= size <= spec.max_length


def node_accepts_locally(spec: Spec, value: Any) -> bool:
    """What ESPHome lets a local change set (an automation, another API client).

    Numbers: only min..max is checked, not the step. The rest as the rule.
    """
    if isinstance(spec, NumberSpec):
        number = _as_number(value)
        if number is None or math.isnan(number):
            return False
        v = f32(number)
        return f32(spec.minimum) <= v <= f32(spec.maximum)
    return rule_accepts(spec, value)


def same(spec: Spec, a: Any, b: Any) -> bool:
    """Equal as the node holds them."""
    if a is NO_DESIRED or b is NO_DESIRED:
        return a is b
    if spec.kind == "number":
        x, y = _as_number(a), _as_number(b)
        return x is not None and y is not None and f32(x) == f32(y)
    return type(a) is type(b) and a == b


def _union(spec: Spec, *groups: Iterable[Any]) -> tuple[Any, ...]:
    out: list[Any] = []
    for group in groups:
        for value in group:
            if not any(same(spec, value, seen) for seen in out):
                out.append(value)
    return tuple(out)


def _derived(spec: Spec, value: Value) -> Any:
    """The desired value Home Assistant keeps for a node value it has judged (rules 2, 6)."""
    return value if rule_accepts(spec, value) else NO_DESIRED


@dataclass
class PointModel:
    """One writable point. Value sets are candidates (see the module docstring)."""

    spec: Spec
    node: tuple[Value, ...]  # what the node holds
    desired: tuple[Any, ...]  # Home Assistant's desired value (NO_DESIRED: none)
    prefs: tuple[Value, ...]  # what the node's saved preferences may hold
    changed_by_ha: bool = False  # the desired value was written in Home Assistant
    pending: bool = False  # a write Home Assistant holds, made while not connected
    unseen_local: bool = False  # changed on the node while Home Assistant was away
    crashed: bool = False  # Home Assistant lost up to SAVE_DEADLINE of changes
    # Upper bound of when the desired value was last (re)sent to the connected node, for
    # the writer-priority window; None: no window (no Home Assistant write), inf: not yet
    # known (set when the step settles).
    sent_at: float | None = None
    pending_changed_by: str = ""  # who made the pending write
    # Values set on the node (local changes) since Home Assistant last wrote the point: what
    # a kept record may hold instead of the desired value.
    locals: tuple[Value, ...] = ()
    # The node was seen applying Home Assistant's current write (its value changed to it
    # while connected), so a record written at a clean stop covers it.
    applied_seen: bool = False
    # (time, desired candidates) after every change, for what a crash may lose.
    history: list[tuple[float, tuple[Any, ...]]] = field(default_factory=list)

    def set_desired(self, desired: tuple[Any, ...], now: float) -> None:
        self.desired = desired
        self.history.append((now, desired))
        del self.history[:-20]

    def set_node(self, values: tuple[Value, ...]) -> None:
        self.node = values
        # ESPHome may sync any value the node held to its preferences file.
        self.prefs = _union(self.spec, self.prefs, values)


class Exchange:
    """Home Assistant and one simulated node, as docs/exchange.md says they behave.

    ``now`` arguments are the test's monotonic clock (seconds); the model compares them only
    with each other.
    """

    def __init__(
        self,
        writer_priority_delay: float,
        points: dict[str, Spec] | None = None,
        *,
        keep: bool = False,
    ) -> None:
        self.delay = writer_priority_delay
        self.keep = keep  # the node keeps its desired values (keep_desired)
        # The node's record holds exactly what it held when it stopped, and the frame
        # number of the last desired frame it applied: a clean stop (it writes and commits
        # at shutdown) of a boot that had a session (so it had applied a desired frame).
        self.kept_current = False
        self.specs = dict(points or SIM_POINTS)
        self.points: dict[str, PointModel] = {}
        for name, spec in self.specs.items():
            initial = canonical(spec, spec.initial)
            self.points[name] = PointModel(
                spec, node=(initial,), desired=(NO_DESIRED,), prefs=(initial,)
            )
            self.points[name].history.append((-math.inf, (NO_DESIRED,)))
        self.ha_up = True
        self.node_state = "running"  # running, frozen, dead
        self.net_up = True
        self.rebooted = True  # the node booted since Home Assistant's last session
        self.boot_seen = False  # Home Assistant had a session with this node boot
        self.session_open = False  # the model has reconciled the current connection
        self.ha_exact = True  # Home Assistant's state is what the model says (no crash)
        # Who the entity's changed_by must name after this step, per point whose value
        # changed while connected (cleared when a step starts).
        self.changed_by: dict[str, str] = {}
        # The last reconciliation needed a judgement round trip: Home Assistant must see
        # the node's first frame (a change made on the node while it was away, or a crash's
        # lost state) before its next desired frame can settle the point.
        self.judged_on_reconnect = False

    # ---- state ----

    @property
    def connected(self) -> bool:
        """Home Assistant can reach the node (the connection may still be coming up)."""
        return self.ha_up and self.node_state == "running" and self.net_up

    def step_started(self) -> None:
        self.changed_by = {}

    def expected(self, name: str) -> tuple[Value, ...]:
        """What the node may hold once this step has settled."""
        return self.points[name].node

    def window_left(self, name: str, now: float) -> float:
        """Seconds until a local change to ``name`` surely comes after the writer-priority
        window of Home Assistant's last write to it (0: none open)."""
        point = self.points[name]
        if point.sent_at is None or point.pending:
            return 0.0
        return max(0.0, point.sent_at + self.delay + MARGIN - now)

    def last_sent(self, name: str) -> float | None:
        return self.points[name].sent_at

    def accepts(self, name: str, value: Any) -> bool:
        return rule_accepts(self.specs[name], value)

    def accepts_locally(self, name: str, value: Any) -> bool:
        return node_accepts_locally(self.specs[name], value)

    # ---- Home Assistant ----

    def write(self, values: dict[str, Any], changed_by: str, now: float) -> bool:
        """A write (UI, action, grouped action); False if the rule refuses it (all of it)."""
        assert self.ha_up
        if not all(rule_accepts(self.specs[n], v) for n, v in values.items()):
            return False
        for name, raw in values.items():
            point = self.points[name]
            value = canonical(point.spec, raw)
            before = point.node
            point.set_desired((value,), now)
            point.changed_by_ha = True
            point.crashed = False
            point.locals = ()
            point.applied_seen = False
            if self.connected and self.session_open:
                point.set_node((value,))
                point.pending = False
                point.sent_at = math.inf
                if not (len(before) == 1 and same(point.spec, before[0], value)):
                    self.changed_by[name] = changed_by
                    point.applied_seen = True
            else:
                point.pending = True
                point.sent_at = None
                point.pending_changed_by = changed_by
        return True

    def ha_stop(self, now: float, *, crash: bool, saved: bool) -> None:
        """Home Assistant stops; a crash (``saved`` False) may lose the last second."""
        assert self.ha_up
        self.ha_up = False
        self.session_open = False
        if crash and not saved:
            self.ha_exact = False
            since = now - SAVE_DEADLINE - MARGIN
            for point in self.points.values():
                older = [d for t, d in point.history if t <= since]
                recent = [d for t, d in point.history if t > since]
                candidates = _union(point.spec, *(older[-1:] + recent))
                if len(candidates) > 1:
                    point.desired = candidates
                    point.crashed = True

    def ha_start(self) -> None:
        assert not self.ha_up
        self.ha_up = True

    # ---- the node ----

    def local(self, name: str, raw: Any, ha_wins: bool | None, now: float) -> str:
        """A change made on the node (a local automation, another API client)."""
        assert self.node_state == "running"
        assert self.boot_seen
        point = self.points[name]
        spec = point.spec
        if not node_accepts_locally(spec, raw):
            return "refused by the node itself"
        value = canonical(spec, raw)
        if len(point.node) == 1 and same(spec, point.node[0], value):
            return "no change"
        point.locals = _union(spec, point.locals, (value,))
        if not (self.connected and self.session_open):
            point.set_node((value,))
            point.unseen_local = True
            return "made while Home Assistant is away"
        home_wins = point.changed_by_ha and ha_wins is not False
        local_wins = not point.changed_by_ha or ha_wins is not True
        held = point.node
        if home_wins and local_wins:
            # Timing unknown: either outcome.
            point.set_node(_union(spec, held, (value,)))
            point.set_desired(
                _union(spec, point.desired, (_derived(spec, value),)), now
            )
            return "either"
        if home_wins:
            point.prefs = _union(spec, point.prefs, (value,))
            return "Home Assistant's write wins (within the window)"
        point.set_node((value,))
        point.set_desired((_derived(spec, value),), now)
        point.changed_by_ha = False
        point.sent_at = None
        self.changed_by[name] = "node"
        return (
            "adopted"
            if rule_accepts(spec, value)
            else "kept on the node, no desired value"
        )

    def node_kill(self, *, clean: bool = False) -> None:
        """SIGKILL (the preferences keep what ESPHome last synced), or a clean stop
        (SIGTERM: ESPHome syncs its preferences at shutdown, so they hold what the node held)."""
        assert self.node_state != "dead"
        if clean:
            assert self.node_state == "running"
            for point in self.points.values():
                point.prefs = point.node
        self.kept_current = clean and self.keep and self.boot_seen
        self.node_state = "dead"
        self.session_open = False

    def node_start(self, *, keep_prefs: bool) -> None:
        assert self.node_state == "dead"
        self.kept_current = self.kept_current and keep_prefs
        for point in self.points.values():
            if not keep_prefs:
                point.prefs = (canonical(point.spec, point.spec.initial),)
                point.locals = ()  # the kept record is gone with the preferences
            point.node = point.prefs
            point.unseen_local = False
        self.node_state = "running"
        self.rebooted = True
        self.boot_seen = False

    def freeze(self) -> None:
        assert self.node_state == "running"
        self.node_state = "frozen"
        self.session_open = False

    def thaw(self) -> None:
        assert self.node_state == "frozen"
        self.node_state = "running"

    # ---- the network ----

    def net_down(self) -> None:
        self.net_up = False
        self.session_open = False

    def net_up_again(self) -> None:
        self.net_up = True

    def cut(self) -> None:
        """A connection reset; Home Assistant reconnects at once."""
        self.session_open = False

    # ---- reconciliation ----

    def reconcile(self, now: float) -> None:
        """A new session (docs: *Reconciliation*); called once it is up."""
        assert self.connected
        if self.session_open:
            return
        kept = self.rebooted and self.keep
        self.judged_on_reconnect = any(
            (p.unseen_local and p.pending) or p.crashed or (kept and bool(p.locals))
            for p in self.points.values()
        )
        for name, point in self.points.items():
            spec = point.spec
            before = point.node
            if kept and not point.pending:
                # Booted with the kept record: the desired value (applied again if the record
                # was older), or a local value the record kept, adopted; the boot value
                # stands without a desired value (or one lost in a crash).
                out = ()
                for desired in point.desired:
                    out = _union(
                        spec, out, before if desired is NO_DESIRED else (desired,)
                    )
                out = _union(spec, out, point.locals, before if point.crashed else ())
            elif self.rebooted:
                # Every desired value is applied again; without one the boot value stands.
                out: tuple[Value, ...] = ()
                for desired in point.desired:
                    out = _union(
                        spec, out, before if desired is NO_DESIRED else (desired,)
                    )
            elif point.crashed:
                # Either Home Assistant's restored value or the node's (judged as a change).
                out = _union(
                    spec, before, [d for d in point.desired if d is not NO_DESIRED]
                )
            elif point.pending:
                out = tuple(d for d in point.desired if d is not NO_DESIRED)
            else:
                # A change made on the node while Home Assistant was away is adopted;
                # otherwise nothing changed.
                out = before
            point.set_node(out)
            point.set_desired(
                _union(spec, [_derived(spec, v) for v in out])
                if (self.rebooted or point.unseen_local or point.crashed)
                and not point.pending
                else point.desired,
                now,
            )
            if kept and len(out) > 1:
                point.sent_at = math.inf  # which one wins is only known once observed
            if point.unseen_local and not point.pending:
                point.changed_by_ha = False
                point.sent_at = None
            covered = (
                kept
                and self.kept_current
                and not (point.pending or point.crashed)
                and point.applied_seen
                and len(out) == 1
                and len(before) == 1
                and same(spec, before[0], out[0])
            )
            if covered:
                # The node holds the desired value its kept frame carried: Home Assistant
                # counts it as applied, so its writer-priority window is not reopened
                # (a local change right after the reconnect is adopted).
                pass
            elif point.changed_by_ha and (
                self.rebooted or point.pending or point.crashed
            ):
                point.sent_at = math.inf  # a new window, known when the step settles
            if point.pending:
                point.applied_seen = len(out) == 1 and not (
                    len(before) == 1 and same(spec, before[0], out[0])
                )
            if len(out) == 1 and not (
                len(before) == 1 and same(spec, before[0], out[0])
            ):
                if point.pending and not point.crashed:
                    self.changed_by[name] = point.pending_changed_by
                elif point.unseen_local and not point.crashed:
                    self.changed_by[name] = "node"
            point.pending = False
            point.unseen_local = False
            point.crashed = False
        self.rebooted = False
        self.boot_seen = True
        self.session_open = True

    def settled(self, now: float) -> None:
        """The step has settled: windows opened in it get their (upper-bound) start."""
        for point in self.points.values():
            if point.sent_at == math.inf:
                point.sent_at = now

    def observe(self, name: str, value: Value, now: float) -> str | None:
        """The node holds ``value``: a violation message if the model forbids it; else the
        model is pinned to it."""
        point = self.points[name]
        if not any(same(point.spec, value, c) for c in point.node):
            return (
                f"{name}: the node holds {value!r}, the rules allow only "
                f"{' or '.join(repr(c) for c in point.node)}"
            )
        held = canonical(point.spec, value)
        if len(point.node) > 1 or len(point.desired) > 1:
            point.node = (held,)
            derived = _derived(point.spec, held)
            if len(point.desired) > 1:
                point.set_desired((derived,), now)
                if derived is NO_DESIRED:
                    point.changed_by_ha = False
                    point.sent_at = None
                elif point.changed_by_ha and point.sent_at is None:
                    point.sent_at = now
        return None

    def pin_exact(self) -> None:
        """Called when everything is settled and checked: Home Assistant's state is known."""
        self.ha_exact = True
