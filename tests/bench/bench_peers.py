"""Benchmarks 2 and 5 (scripts/bench): node change -> Home Assistant state, ours and core's.

Four ways to follow the same kind of node, measured in the same run, one at a time (only
one of them connected while it is measured), interleaved round by round:

* ``frame``: our integration, node with the data_exchange component (frame mode);
* ``entity``: our integration, the same node without the component (entity mode);
* ``core_esphome``: Home Assistant's own esphome integration on that plain node;
* ``raw_async_set``: the bare aioesphomeapi client, ``subscribe_states`` ->
  ``hass.states.async_set`` (the floor: what any integration has to do at least).

Node changes are made on the node itself (API actions of a generated node, called through a
second, plain aioesphomeapi client: the "person at the device"), so Home Assistant's process
does nothing but follow them:

* benchmark 2 (latency): ``local_set`` one point -> the ``state_changed`` event of that
  entity with the new value;
* benchmark 5 (CPU): ``local_burst``: the node changes every point every ``PERIOD_MS`` for
  ``BURST_TICKS`` ticks; process CPU (``time.process_time``) from the call until every
  entity shows the final value, divided by the state updates of the point entities written
  meanwhile (the same method as bench_exchange's CPU figures). Frame mode writes fewer
  updates (a frame carries the latest value once per cycle), so CPU per second of the
  same workload is reported as well.
"""

from __future__ import annotations

import asyncio
import cProfile
from dataclasses import dataclass, field
import io
import itertools
import os
from pathlib import Path
import pstats
import random
import re
import time
from typing import Any

from aioesphomeapi import EntityState
from homeassistant.const import (
    CONF_HOST,
    CONF_PASSWORD,
    CONF_PORT,
    EVENT_STATE_CHANGED,
)
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.device_registry import format_mac
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from tests.bench import bench_exchange
from tests.bench.bench_exchange import ROUNDS, summary
from tests.bench.conftest import ASYNCIO_DEBUG
from tests.harness.node import Node, NodeFactory
from tests.harness.peer import Peer
from tests.harness.proxy import TcpProxy
from tests.harness.yaml_gen import peer_node
from tests.integration.conftest import entry_for, live, until

POINTS = int(os.environ.get("DX_BENCH_PEER_POINTS", "10"))
CHANGES = int(os.environ.get("DX_BENCH_PEER_CHANGES", "100"))  # per round and way
BURST_TICKS = int(os.environ.get("DX_BENCH_PEER_BURST", "60"))
PERIOD_MS = int(os.environ.get("DX_BENCH_PEER_PERIOD_MS", "50"))
# The node's frame cycle and Home Assistant's desired-frame cycle in frame mode.
CYCLE_MS = int(os.environ.get("DX_BENCH_PEER_CYCLE_MS", "100"))
WAYS = ("frame", "entity", "core_esphome", "raw_async_set")
# DX_BENCH_PROFILE=frame,core_esphome: cProfile those ways' bursts into DX_BENCH_PROFILE_DIR;
# latency: every way's single changes (benchmark 2).
PROFILE = set(filter(None, os.environ.get("DX_BENCH_PROFILE", "").split(",")))
PROFILE_DIR = os.environ.get("DX_BENCH_PROFILE_DIR", "/tmp")

TIMEOUT = 10.0  # for one change to become visible; generous, a miss is a failure
WIRE_KEYS = (
    "idle_bytes_per_s_from_node",
    "idle_bytes_per_s_to_node",
    "bytes_per_update_from_node",
    "bytes_per_update_to_node",
)


@pytest.fixture
def peer_nodes(node_factory: NodeFactory) -> tuple[Node, Node]:
    """(data_exchange node, plain node): same numbers, same actions."""
    return (
        node_factory.start(peer_node(POINTS, True, PERIOD_MS, CYCLE_MS)),
        node_factory.start(peer_node(POINTS, False, PERIOD_MS, CYCLE_MS)),
    )


class Watch:
    """One ``state_changed`` listener for the whole test: waits and counts, no polling."""

    def __init__(self, hass: HomeAssistant) -> None:
        self.hass = hass
        self.ids: set[str] = set()
        self.updates = 0
        self.last: Any = None  # the last update seen, for failure messages
        self._want: dict[str, float] = {}
        self._done: asyncio.Future[float] | None = None
        self.unsub = hass.bus.async_listen(EVENT_STATE_CHANGED, self._on_event)

    @callback
    def _on_event(self, event: Event) -> None:
        entity_id = event.data["entity_id"]
        if entity_id not in self.ids:
            return
        self.updates += 1
        self.last = event.data
        done = self._done
        if done is None or done.done() or entity_id not in self._want:
            return
        new = event.data["new_state"]
        if new is not None and number(new.state) == self._want[entity_id]:
            del self._want[entity_id]
            if not self._want:
                done.set_result(time.perf_counter())

    def expect(self, want: dict[str, float]) -> asyncio.Future[float]:
        """A future for the time at which every entity in ``want`` shows its value."""
        self._want = dict(want)
        self._done = self.hass.loop.create_future()
        return self._done

    async def wait(
        self, done: asyncio.Future[float], within: float, what: str
    ) -> float:
        try:
            async with asyncio.timeout(within):
                return await done
        except TimeoutError:
            missing = {
                e: (self.hass.states.get(e).state if self.hass.states.get(e) else None)
                for e in self._want
            }
            raise AssertionError(
                f"{what}: not visible within {within} s; still waiting for "
                f"{ {e: self._want[e] for e in missing} }, states now {missing}"
            ) from None


def number(state: str) -> float | None:
    try:
        return float(state)
    except ValueError:
        return None


def point_ids(hass: HomeAssistant, entry: MockConfigEntry) -> list[str]:
    """The number entities P0..P(n-1) of ``entry``, by their registry entries."""
    found: dict[int, str] = {}
    entries = er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
    for e in entries:
        if e.domain != "number":
            continue
        name = e.original_name or ""
        match = re.fullmatch(r"P(\d+)", name) or re.search(r"_p(\d+)$", e.entity_id)
        if match:
            found[int(match.group(1))] = e.entity_id
    return [found[i] for i in range(POINTS)] if len(found) == POINTS else []


@dataclass
class Way:
    """One way of following a node: set up, measure, tear down, once per round."""

    name: str
    node: Node
    entry: MockConfigEntry | None = None
    ids: list[str] = field(default_factory=list)
    raw: Peer | None = None
    # Counts the bytes on the wire (the entry connects through it; the bare client, the
    # floor of CPU, connects directly and is not counted).
    proxy: TcpProxy | None = None

    async def start(self, hass: HomeAssistant, current: list[float]) -> None:
        """Connect; return once every point shows the node's ``current`` value."""
        if self.name == "raw_async_set":
            await self._start_raw(hass, current)
            return
        assert self.entry is not None
        if hass.config_entries.async_get_entry(self.entry.entry_id) is None:
            # Added only now: setting up a domain sets up all its entries there are.
            self.entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(self.entry.entry_id), self.name
        await hass.async_block_till_done()
        entry = self.entry

        def ready() -> bool:
            self.ids = point_ids(hass, entry)
            if self.name in ("frame", "entity") and not live(hass, entry):
                return False
            # The node's values, not ones kept from before: those can show first.
            return bool(self.ids) and all(
                (s := hass.states.get(e)) is not None and number(s.state) == value
                for e, value in zip(self.ids, current, strict=True)
            )

        await until(
            hass, ready, 30, f"{self.name}: points P0..P{POINTS - 1} live at {current}"
        )

    async def _start_raw(self, hass: HomeAssistant, current: list[float]) -> None:
        # The bare client: its own callback straight into the state machine, no peer's
        # bookkeeping in between (the floor), so subscribed through ``api`` itself.
        peer = await Peer(self.node, "bench raw").start()
        by_key = {
            e.key: f"number.raw_{e.object_id}"
            for e in peer.entities.values()
            if re.fullmatch(r"p\d+", e.object_id)
        }
        self.ids = [f"number.raw_p{i}" for i in range(POINTS)]
        assert sorted(by_key.values()) == sorted(self.ids), by_key
        async_set = hass.states.async_set

        def on_state(state: EntityState) -> None:
            if (entity_id := by_key.get(state.key)) is not None:
                async_set(entity_id, str(state.state))

        peer.api.subscribe_states(on_state)
        self.raw = peer
        await until(
            hass,
            lambda: all(
                (s := hass.states.get(e)) is not None and number(s.state) == value
                for e, value in zip(self.ids, current, strict=True)
            ),
            30,
            f"raw_async_set: first states at {current}",
        )

    async def stop(self, hass: HomeAssistant) -> None:
        if self.raw is not None:
            await self.raw.disconnect()
            self.raw = None
            for e in self.ids:
                hass.states.async_remove(e)
        elif self.entry is not None:
            assert await hass.config_entries.async_unload(self.entry.entry_id)
        await hass.async_block_till_done()


async def core_esphome_entry(hass: HomeAssistant, node: Node) -> MockConfigEntry:
    """A config entry of Home Assistant's own esphome integration for ``node``."""
    assert await async_setup_component(hass, "homeassistant", {})
    return MockConfigEntry(
        domain="esphome",
        title=node.name,
        unique_id=format_mac(node.mac),
        data={
            CONF_HOST: node.host,
            CONF_PORT: node.port,
            CONF_PASSWORD: "",
            "noise_psk": None,
            "device_name": node.name,
        },
    )


async def measure_latency(
    watch: Watch,
    way: Way,
    driver: Peer,
    values: itertools.count[int],
    current: list[float],
    seed: int,
) -> list[float]:
    """``CHANGES`` single-point changes; ms from the action call to the state change."""
    # Changes come at a random phase against the frame cycle: started right after the frame
    # that showed the previous one, every change would wait a full cycle. Same seed, same
    # pauses for every way.
    rng = random.Random(seed)
    samples = []
    # DX_BENCH_PROFILE=latency: cProfile each way's changes (the pauses between them too).
    profiler = cProfile.Profile() if "latency" in PROFILE else None
    if profiler is not None:
        profiler.enable()
    for k in range(CHANGES):
        index = k % POINTS
        value = float(next(values))
        await asyncio.sleep(rng.uniform(0, CYCLE_MS / 1000))  # the phase, not a wait
        done = watch.expect({way.ids[index]: value})
        start = time.perf_counter()
        await driver.call("local_set", index=index, value=value)
        current[index] = value
        end = await watch.wait(done, TIMEOUT, f"{way.name}: P{index} = {value}")
        samples.append((end - start) * 1000)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(Path(PROFILE_DIR) / f"latency-{way.name}-{seed}.prof")
    return samples


async def measure_cpu(
    watch: Watch,
    way: Way,
    driver: Peer,
    values: itertools.count[int],
    current: list[float],
) -> dict[str, float]:
    """One burst: CPU per state update written and CPU share while following it.

    ``net``: minus what the process spends meanwhile anyway (the share measured idle, same
    way connected, over as long a window): the cost of the updates themselves. Frame mode's
    idle share includes its cycle (frames and desired frames with nothing changed).
    """
    window = BURST_TICKS * PERIOD_MS / 1000
    updates = watch.updates
    wire0 = wire(way)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(window)  # the idle measurement window itself
    idle_wall = time.perf_counter() - wall0
    idle = (time.process_time() - cpu0) / idle_wall
    wire1 = wire(way)
    assert watch.updates == updates, (
        f"{way.name}: {watch.updates - updates} point updates while idle, the last "
        f"{watch.last['old_state']} -> {watch.last['new_state']}"
    )
    base = next(values)
    for _ in range(BURST_TICKS):
        next(values)
    final = float(base + BURST_TICKS)
    done = watch.expect(dict.fromkeys(way.ids, final))
    profiler = cProfile.Profile() if way.name in PROFILE else None
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if profiler is not None:
        profiler.enable()
    await driver.call("local_burst", ticks=BURST_TICKS, base=base)
    current[:] = [final] * POINTS
    within = window * 3 + TIMEOUT
    await watch.wait(done, within, f"{way.name}: burst to {final}")
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    if profiler is not None:
        # The profile of the burst (its CPU figures are then inflated by the profiler;
        # profile runs are for finding where the time goes, not for the tables).
        profiler.disable()
        target = Path(PROFILE_DIR) / f"{way.name}.prof"
        profiler.dump_stats(target)
        stream = io.StringIO()
        pstats.Stats(profiler, stream=stream).sort_stats("cumulative").print_stats(60)
        target.with_suffix(".txt").write_text(stream.getvalue())
    written = watch.updates - updates
    wire2 = wire(way)
    result = {
        "cpu_us_per_update": cpu / written * 1e6,
        "net_cpu_us_per_update": (cpu - idle * wall) / written * 1e6,
        "cpu_share": cpu / wall,
        "idle_share": idle,
        "updates": written,
    }
    if way.proxy is not None:
        # Bytes on the socket (protobuf framing and TCP payload, no IP/TCP headers):
        # idle per second, and per state update while following the burst (the idle
        # traffic of the same time taken off: what the updates themselves cost).
        idle_rate = [(b - a) / idle_wall for a, b in zip(wire0, wire1, strict=True)]
        burst = [
            (b - a - rate * wall) / written
            for a, b, rate in zip(wire1, wire2, idle_rate, strict=True)
        ]
        result |= {
            "idle_bytes_per_s_from_node": idle_rate[0],
            "idle_bytes_per_s_to_node": idle_rate[1],
            "bytes_per_update_from_node": burst[0],
            "bytes_per_update_to_node": burst[1],
        }
    return result


def wire(way: Way) -> tuple[int, int]:
    """Bytes forwarded so far: (from the node, to the node)."""
    if way.proxy is None:
        return (0, 0)
    return (way.proxy.bytes_from_node, way.proxy.bytes_to_node)


def via(entry: MockConfigEntry, proxy: TcpProxy) -> MockConfigEntry:
    """``entry``, connecting through ``proxy``."""
    return MockConfigEntry(
        domain=entry.domain,
        title=entry.title,
        unique_id=entry.unique_id,
        data={**entry.data, CONF_PORT: proxy.port},
        options=dict(entry.options),
    )


async def test_node_change_to_state(
    hass: HomeAssistant,
    peer_nodes: tuple[Node, Node],
    mock_async_zeroconf: Any,
) -> None:
    dx_node, plain_node = peer_nodes
    cycle = CYCLE_MS / 1000
    proxies = [
        await TcpProxy(n.port).start() for n in (dx_node, plain_node, plain_node)
    ]
    entries = [
        entry_for(dx_node, cycle=cycle, stale_after=30.0),
        entry_for(plain_node, stale_after=30.0),
        await core_esphome_entry(hass, plain_node),
    ]
    ways = [
        Way(name, node, via(entry, proxy), proxy=proxy)
        for name, node, entry, proxy in zip(
            ("frame", "entity", "core_esphome"),
            (dx_node, plain_node, plain_node),
            entries,
            proxies,
            strict=True,
        )
    ]
    ways.append(Way("raw_async_set", plain_node))
    drivers = {
        # The person at the device: a second, plain API client calling the node's actions.
        dx_node.port: await Peer(dx_node, "bench driver").start(),
        plain_node.port: await Peer(plain_node, "bench driver").start(),
    }
    watch = Watch(hass)
    values = itertools.count(1)
    # What each node's points are set to (initial_value 0): a way is ready once it shows it.
    current = {node.port: [0.0] * POINTS for node in peer_nodes}
    unavailable: str | None = None
    latency: dict[str, list[dict[str, float]]] = {w.name: [] for w in ways}
    cpu: dict[str, list[dict[str, float]]] = {w.name: [] for w in ways}
    try:
        for rnd in range(ROUNDS):
            for way in list(ways):
                now = current[way.node.port]
                try:
                    await way.start(hass, now)
                except Exception as err:
                    if way.name != "core_esphome" or rnd > 0:
                        raise
                    # Say exactly why; the bare client stays as the closest thing.
                    assert way.entry is not None
                    unavailable = (
                        f"{type(err).__name__}: {err} (config entry state "
                        f"{way.entry.state}, reason {way.entry.reason})"
                    )
                    ways.remove(way)
                    del latency[way.name], cpu[way.name]
                    continue
                watch.ids = set(way.ids)
                driver = drivers[way.node.port]
                cpu[way.name].append(await measure_cpu(watch, way, driver, values, now))
                samples = await measure_latency(
                    watch, way, driver, values, now, seed=rnd
                )
                latency[way.name].append(summary(samples))
                await way.stop(hass)
    finally:
        watch.unsub()
        for driver in drivers.values():
            await driver.disconnect()
        for proxy in proxies:
            await proxy.close()
    record_results(latency, cpu, unavailable)


def record_results(
    latency: dict[str, list[dict[str, float]]],
    cpu: dict[str, list[dict[str, float]]],
    core_unavailable: str | None,
) -> None:
    def over_rounds(rounds: list[dict[str, float]], key: str) -> dict[str, float]:
        return summary([r[key] for r in rounds])

    def ratio(
        a: str, b: str, table: dict[str, list[dict[str, float]]], key: str
    ) -> dict[str, float]:
        # Per round (measured back to back), then the median and spread of the ratios.
        return summary(
            [x[key] / y[key] for x, y in zip(table[a], table[b], strict=True)]
        )

    result: dict[str, Any] = {
        "setup": {
            "points": POINTS,
            "changes_per_round": CHANGES,
            "rounds": ROUNDS,
            "burst_ticks": BURST_TICKS,
            "burst_period_ms": PERIOD_MS,
            "frame_cycle_ms": CYCLE_MS,
            "asyncio_debug": ASYNCIO_DEBUG,
        },
        "latency_ms": {
            w: {"p50": over_rounds(r, "median"), "p99": over_rounds(r, "p99")}
            for w, r in latency.items()
        },
        "cpu": {
            w: {
                "us_per_update": over_rounds(r, "cpu_us_per_update"),
                "net_us_per_update": over_rounds(r, "net_cpu_us_per_update"),
                "share_of_one_core": over_rounds(r, "cpu_share"),
                "idle_share_of_one_core": over_rounds(r, "idle_share"),
                "updates": over_rounds(r, "updates"),
            }
            | {
                key: over_rounds(r, key)
                for key in WIRE_KEYS
                if all(key in one for one in r)
            }
            for w, r in cpu.items()
        },
        "ratios": {},
        "core_esphome_unavailable": core_unavailable,
    }
    pairs = [(w, "core_esphome") for w in ("frame", "entity", "raw_async_set")]
    pairs += [(w, "raw_async_set") for w in ("frame", "entity")]
    for ours, base in pairs:
        if ours not in latency or base not in latency:
            continue
        result["ratios"][f"{ours}/{base}"] = {
            "latency_p50": ratio(ours, base, latency, "median"),
            "latency_p99": ratio(ours, base, latency, "p99"),
            "cpu_per_update": ratio(ours, base, cpu, "cpu_us_per_update"),
            "net_cpu_per_update": ratio(ours, base, cpu, "net_cpu_us_per_update"),
            "cpu_share": ratio(ours, base, cpu, "cpu_share"),
        }
    record("peers", str(POINTS), result)


def record(section: str, key: str, value: Any) -> None:
    """bench_exchange.record, into DX_BENCH_RESULTS if set (trial runs leave docs alone)."""
    if path := os.environ.get("DX_BENCH_RESULTS"):
        bench_exchange.RESULTS = Path(path)
    bench_exchange.record(section, key, value)
