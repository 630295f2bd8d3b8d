"""Benchmark 2 split into stages: where a node change spends its time on the way to a state.

Not part of ``scripts/bench`` (it patches the code it measures); run it on an idle machine:

    python -m pytest -q -s -o python_files=stages.py tests/bench/stages.py

The same two ways as benchmark 2 (frame mode, Home Assistant's esphome integration), each
through a proxy in front of the node. Every stage boundary is a ``time.perf_counter()`` mark
set by a wrapper around one function; per change, the time between consecutive marks. No
profiler: cProfile's per-call cost would weigh our many small calls more than the core
integration's few. It also measures one function (our frame decode) in a tight loop and as
the first call after an idle pause (as in benchmark 2, where every change finds the process
idle): the ratio between the two is the cost of running code that is not in the CPU's caches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import itertools
import os
import random
import statistics
import time
from typing import Any

from homeassistant.components.esphome import entity as core_entity, entry_data
from homeassistant.core import HomeAssistant
import pytest

from custom_components.data_exchange import connection, engine, entity, frame_mode
from custom_components.data_exchange.protocol import PROTOCOL_VERSION, NodeFrame
from tests.bench.bench_peers import (  # noqa: F401  (peer_nodes: a fixture)
    CYCLE_MS,
    POINTS,
    Watch,
    Way,
    core_esphome_entry,
    peer_nodes,
    via,
)
from tests.harness import proxy
from tests.harness.peer import Peer
from tests.harness.proxy import TcpProxy
from tests.integration.conftest import entry_for

CHANGES = int(os.environ.get("DX_BENCH_STAGE_CHANGES", "300"))
STAGES = {
    "frame": (
        "proxy",  # the node's bytes at the proxy
        "call",  # connection._on_call: aioesphomeapi has decoded the event message
        "decoded",  # NodeFrame.from_event returned
        "judged",  # ExchangeEngine.on_frame returned
        "apply",  # FrameMode._apply: measurement times stamped
        "listener",  # the point entity's listener
        "write",  # async_write_ha_state
    ),
    "core_esphome": ("proxy", "update", "write"),
}


class Marks:
    def __init__(self) -> None:
        self.at: dict[str, float] = {}

    def wrap(self, owner: Any, name: str, stage: str, *, after: bool = False) -> None:
        """Mark ``stage`` when ``owner.name`` is called (``after``: when it returns)."""
        original: Callable[..., Any] = getattr(owner, name)
        at = self.at

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not after:
                at[stage] = time.perf_counter()
            result = original(*args, **kwargs)
            if after:
                at[stage] = time.perf_counter()
            return result

        setattr(owner, name, wrapper)


@pytest.fixture
def marks(monkeypatch: pytest.MonkeyPatch) -> Marks:
    marks = Marks()
    forward = proxy.Pipe.data_received

    def data_received(pipe: proxy.Pipe, data: bytes) -> None:
        if pipe.node_side:
            marks.at["proxy"] = time.perf_counter()
        forward(pipe, data)

    monkeypatch.setattr(proxy.Pipe, "data_received", data_received)
    decode = NodeFrame.from_event.__func__  # type: ignore[attr-defined]

    def from_event(cls: type[NodeFrame], *args: Any, **kwargs: Any) -> NodeFrame:
        frame = decode(cls, *args, **kwargs)
        marks.at["decoded"] = time.perf_counter()
        return frame  # type: ignore[no-any-return]

    monkeypatch.setattr(NodeFrame, "from_event", classmethod(from_event))
    for owner, name, stage, after in (
        (connection.NodeConnection, "_on_call", "call", False),
        (engine.ExchangeEngine, "on_frame", "judged", True),
        (frame_mode.FrameMode, "_apply", "apply", False),
        (entity.PointEntity, "_async_point_changed", "listener", False),
        (entity.PointEntity, "async_write_ha_state", "write", False),
        (entry_data.RuntimeEntryData, "async_update_state", "update", False),
        (core_entity.EsphomeEntity, "async_write_ha_state", "write", False),
    ):
        monkeypatch.setattr(owner, name, getattr(owner, name))  # undone after the test
        marks.wrap(owner, name, stage, after=after)
    return marks


async def test_stages(
    hass: HomeAssistant,
    peer_nodes: Any,  # noqa: F811  (the fixture imported above)
    mock_async_zeroconf: Any,
    marks: Marks,
) -> None:
    dx_node, plain_node = peer_nodes
    proxies = [await TcpProxy(n.port).start() for n in (dx_node, plain_node)]
    entries = [
        entry_for(dx_node, cycle=CYCLE_MS / 1000, stale_after=30.0),
        await core_esphome_entry(hass, plain_node),
    ]
    ways = [
        Way(name, node, via(entry, pxy), proxy=pxy)
        for name, node, entry, pxy in zip(
            STAGES, (dx_node, plain_node), entries, proxies, strict=True
        )
    ]
    drivers = {
        n.port: await Peer(n, "bench driver").start() for n in (dx_node, plain_node)
    }
    watch = Watch(hass)
    values = itertools.count(1)
    split: dict[str, dict[str, list[float]]] = {w.name: {} for w in ways}
    incomplete = dict.fromkeys(STAGES, 0)
    sample: tuple[dict[str, str], Any] | None = None
    try:
        for way in ways:
            current = [0.0] * POINTS
            await way.start(hass, current)
            watch.ids = set(way.ids)
            rng = random.Random(0)  # the same phases for both ways
            for k in range(CHANGES):
                index, value = k % POINTS, float(next(values))
                await asyncio.sleep(rng.uniform(0, CYCLE_MS / 1000))
                done = watch.expect({way.ids[index]: value})
                marks.at.clear()
                start = time.perf_counter()
                await drivers[way.node.port].call("local_set", index=index, value=value)
                current[index] = value
                end = await watch.wait(done, 10, f"{way.name}: P{index} = {value}")
                at = {"start": start, **marks.at, "end": end}
                names = ("start", *STAGES[way.name], "end")
                # A cycle frame between the call and the change's frame moves a mark.
                if not all(n in at for n in names) or any(
                    at[a] > at[b] for a, b in itertools.pairwise(names)
                ):
                    incomplete[way.name] += 1
                    continue
                for a, b in itertools.pairwise(names):
                    split[way.name].setdefault(f"{a} -> {b}", []).append(
                        (at[b] - at[a]) * 1e6
                    )
            if way.name == "frame":
                sample = await cold_and_hot(hass, way)
            await way.stop(hass)
    finally:
        watch.unsub()
        for driver in drivers.values():
            await driver.disconnect()
        for pxy in proxies:
            await pxy.close()
    for name, stages in split.items():
        print(f"\n{name} ({incomplete[name]} of {CHANGES} changes left out)")
        for stage, samples in stages.items():
            print(f"  {stage:22} p50 {statistics.median(samples):8.1f} µs")
    assert sample is not None
    print(
        f"\nchange frame decode: {sample[0]:.1f} µs in a tight loop, "
        f"{sample[1]:.1f} µs as the first call after a pause (p50)"
    )
    for name, stages in split.items():
        assert stages, f"{name}: no change with every stage marked"


async def cold_and_hot(hass: HomeAssistant, way: Way) -> tuple[float, float]:
    """µs of our decode of one change frame of this node: in a tight loop, and as the first
    call after 0-100 ms idle."""
    assert way.entry is not None
    node = way.entry.runtime_data
    model = node.engine.model
    data = {
        "v": str(PROTOCOL_VERSION),
        "m": model.model_id,
        "s": "1",
        "u": "1000",
        "x": "1",
        "w": "0",
        "i": str(model.writable[0]),
    }
    loop = 2000
    start = time.perf_counter()
    for _ in range(loop):
        NodeFrame.from_event(data, model)
    hot = (time.perf_counter() - start) / loop * 1e6
    first = []
    for _ in range(100):
        await asyncio.sleep(random.uniform(0, CYCLE_MS / 1000))
        start = time.perf_counter()
        NodeFrame.from_event(data, model)
        first.append((time.perf_counter() - start) * 1e6)
    return hot, statistics.median(first)
