"""Measurement time on its own (node_clock.py): mapping a node's ages and clock to wall time,
and its independence from every rule (docs/exchange.md, *Measurement time*)."""

from __future__ import annotations

import dataclasses

from hypothesis import given, strategies as st
import pytest

from custom_components.data_exchange.node_clock import NodeClock, stamp_measured
from custom_components.data_exchange.persistence import engine_as_dict, restore_engine
from custom_components.data_exchange.protocol import NodeFrame, ProtocolError
from custom_components.data_exchange.values import (
    CHANGED_BY_NODE,
    Stamped,
    stamped_as_dict,
    stamped_from_dict,
)
from tests.test_engine import DELAY, MODEL, frame, make_engine, seq_of

uptimes = st.integers(0, 2**63)
ages = st.integers(0, 10**9)
walls = st.floats(1e9, 4e9)  # Unix seconds, 2001..2096
node_times = st.integers(0, 2**53)  # any clock, however wrong


@given(uptime=uptimes, age=ages, received=walls)
def test_without_node_time_uptime_maps_to_receive_time(
    uptime: int, age: int, received: float
) -> None:
    clock = NodeClock()
    clock.on_frame(uptime, None, received)
    assert not clock.has_time_source
    assert clock.offset is None
    assert clock.measured_at(age) == received - age / 1000
    assert clock.measured_at(None) == received
    assert clock.wall_time_of_uptime(uptime) == received


@given(uptime=uptimes, age=ages, received=walls, node_time=node_times)
def test_with_node_time_the_nodes_clock_counts(
    uptime: int, age: int, received: float, node_time: int
) -> None:
    clock = NodeClock()
    clock.on_frame(uptime, node_time, received)
    assert clock.has_time_source
    assert clock.measured_at(age) == node_time / 1000 - age / 1000
    offset = clock.offset
    assert offset is not None
    assert abs(offset - (node_time / 1000 - received)) < 1e-6 * max(1.0, abs(offset))


@given(
    uptime=st.integers(10**9, 2**40),
    earlier=st.integers(0, 10**9),
    later=st.integers(0, 10**9),
    received=walls,
    node_time=st.none() | node_times,
)
def test_uptime_mapping_is_monotonic_and_matches_ages(
    uptime: int, earlier: int, later: int, received: float, node_time: int | None
) -> None:
    clock = NodeClock()
    assert clock.wall_time_of_uptime(uptime) is None  # no frame yet
    clock.on_frame(uptime, node_time, received)
    a, b = sorted((earlier, later))
    first = clock.wall_time_of_uptime(uptime - b)
    second = clock.wall_time_of_uptime(uptime - a)
    assert first is not None
    assert second is not None
    assert first <= second
    # An uptime and the age it has in the frame give one wall time.
    assert clock.wall_time_of_uptime(uptime - a) == clock.measured_at(a)
    clock.reset()  # a new session: the uptimes of the old boot mean nothing
    assert clock.wall_time_of_uptime(uptime) is None


def _frame(
    seq: int, values: tuple[object, ...], w: tuple[int | None, ...]
) -> NodeFrame:
    f = frame(seq, 0, values)  # type: ignore[arg-type]
    return dataclasses.replace(f, ages=w)


def test_measured_only_when_the_value_changes() -> None:
    engine, clock = make_engine(), NodeClock()

    def take(f: NodeFrame, wall: float) -> None:
        result = engine.on_frame(f, 0.0, wall)
        clock.on_frame(f.uptime_ms, f.node_time_ms, wall)
        stamp_measured(engine.reported, f, result.changed, clock)

    take(_frame(1, (20.0, 21.0, False), (300, 5000, 5000)), 1000.0)
    measured = [s.measured for s in engine.reported if s is not None]
    assert measured == pytest.approx([999.7, 995.0, 995.0])
    # Unchanged values, growing ages (every full frame): nothing moves.
    take(_frame(2, (20.0, 21.0, False), (1300, 6000, 6000)), 1001.0)
    assert [s.measured for s in engine.reported if s is not None] == measured
    # The sensor changed: only it gets a new time.
    take(_frame(3, (20.5, 21.0, False), (100, 7000, 7000)), 1002.0)
    assert [s.measured for s in engine.reported if s is not None] == pytest.approx(
        [1001.9, 995.0, 995.0]
    )
    # A change frame carries the ages of its points, in its order.
    change = dataclasses.replace(
        frame(4, 0, (22.0,), indices=(1,)), ages=(40,), uptime_ms=4000
    )
    take(change, 1003.0)
    assert engine.reported[1] is not None
    assert engine.reported[1].measured == pytest.approx(1002.96)
    # Survives the Store (and a Store without it reads as unknown).
    data = engine_as_dict(engine)
    restored = make_engine()
    restore_engine(restored, data)
    assert [s.measured for s in restored.reported if s is not None] == pytest.approx(
        [1001.9, 1002.96, 995.0]
    )
    raw = stamped_as_dict(Stamped(1.0, 0.0, CHANGED_BY_NODE, 5.0))
    assert "measured" not in raw
    assert stamped_from_dict(raw, MODEL.points[0].type).measured == 0.0


def test_ages_are_decoded_strictly() -> None:
    model = dataclasses.replace(MODEL, model_id="0a1b2c3d")
    base = {"v": "5", "m": model.model_id, "s": "1", "u": "9000", "x": "20,,1"}
    full = {**base, "a": "0", "q": "1", "f": "0", "r": "0", "e": "", "o": "0"}
    decoded = NodeFrame.from_event({**full, "w": "12,,0", "d": "1700000000123"}, model)
    assert tuple(decoded.ages) == (12, None, 0)
    assert len(decoded.ages) == 3
    assert decoded.ages[0] == 12
    assert decoded.ages[1:] == (None, 0)
    assert decoded.node_time_ms == 1700000000123
    assert NodeFrame.from_event(full, model).ages == ()
    for bad in (
        "12,0",
        "12,,0,1",
        "a,,0",
        "-1,,0",
        "1" * 21 + ",,0",
        "\u0661,,0",
        " 1,,0",
    ):
        try:
            NodeFrame.from_event({**full, "w": bad}, model)
        except ProtocolError:
            continue
        raise AssertionError(bad)
    try:
        NodeFrame.from_event({**full, "w": "1,,1", "d": "x"}, model)
    except ProtocolError:
        pass
    else:
        raise AssertionError("d")


@given(
    report_after=st.floats(0, 2 * DELAY),
    node_time=node_times,
    step=st.integers(-(10**12), 10**12),
    age=ages,
)
def test_writer_priority_ignores_the_node_clock(
    report_after: float, node_time: int, step: int, age: int
) -> None:
    """A node whose clock is wildly off, or steps between frames, gets the same decisions
    as one without a clock: the rules run on Home Assistant's monotonic time only."""

    def run(with_clock: bool) -> tuple[object, ...]:
        engine, clock = make_engine(), NodeClock()

        def take(f: NodeFrame, now: float, n: int) -> list[int]:
            if with_clock:
                f = dataclasses.replace(
                    f,
                    node_time_ms=max(0, node_time + n * step),
                    ages=(age,) * len(f.values),
                )
            result = engine.on_frame(f, now, 1000.0 + now)
            clock.on_frame(f.uptime_ms, f.node_time_ms, 1000.0 + now)
            stamp_measured(engine.reported, f, result.changed, clock)
            return result.adopted

        take(frame(1, 0, (20.0, 21.0, False)), 9.0, 1)
        engine.write(1, 25.0, "user:abc", now=10.0)
        seq = seq_of(engine.next_desired_frame(10.0).args())
        adopted = take(frame(2, seq, (20.0, 30.0, False)), 10.0 + report_after, 2)
        desired = engine.desired[1]
        return (
            adopted,
            desired.value,
            desired.changed_by,
            engine.seen,
            engine.next_desired_frame(20.0).args()["values"],
        )

    assert run(True) == run(False)
