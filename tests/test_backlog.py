"""Store-and-forward, the plain rules (backlog.py): backlog frames decoded strictly, the
node's uptimes mapped to wall time, resent readings recognised, statistics periods
aggregated and merged. Property-based where a rule holds for every input."""

from __future__ import annotations

import math
import struct

from hypothesis import given, strategies as st
import pytest

from custom_components.data_exchange.backlog import (
    MAX_READINGS,
    BacklogFrame,
    Ledger,
    aggregate,
    merge_samples,
    period_start,
    periods,
)
from custom_components.data_exchange.node_clock import NodeClock
from custom_components.data_exchange.protocol import (
    PROTOCOL_VERSION,
    Model,
    ProtocolError,
)

MODEL = Model.from_event(
    {
        "v": str(PROTOCOL_VERSION),
        "m": "0a1b2c3d",
        "c": "1000",
        "t": "0",
        # sensor, binary sensor, text sensor, number, switch, select
        "p": "S00000001,B00000002,T00000003,N00000004,W00000005,L00000006",
        "b": "0011223344556677",
        "k": "8899aabbccddeeff",
        "u": "1000",
        "s": "0",
    }
)


def _event(
    h: str, *, y: str = "1", j: str = "1000", u: str = "5000", **more: str
) -> dict[str, str]:
    data = {"v": str(PROTOCOL_VERSION), "m": "0a1b2c3d", "u": u, "y": y, "j": j, "h": h}
    data.update(more)
    return data


def test_decode_readings_with_times_and_sequence() -> None:
    frame = BacklogFrame.from_event(
        _event("0:0:21.5,1:250:1,3:0:-3,4:1000:0", y="7"), MODEL
    )
    assert [(r.seq, r.point, r.uptime_ms, r.value) for r in frame.readings] == [
        (7, 0, 1000, 21.5),
        (8, 1, 1250, 1.0),
        (9, 3, 1250, -3.0),
        (10, 4, 2250, 0.0),
    ]
    assert frame.last_seq == 10
    assert frame.uptime_ms == 5000


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"h": ""}, "no reading"),
        ({"h": "2:0:1"}, "a text sensor keeps no backlog"),
        ({"h": "5:0:1"}, "a select keeps no backlog"),
        ({"h": "9:0:1"}, "no such point"),
        ({"h": "1:0:0.5"}, "a boolean is 0 or 1"),
        ({"h": "0:0:"}, "an unknown value is never kept"),
        ({"h": "0:0:nan"}, "NaN"),
        ({"h": "0:-1:1"}, "negative time step"),
        ({"h": "0:0"}, "two parts"),
        ({"h": "0:0:1:2"}, "four parts"),
        ({"h": "0:9000:1"}, "a reading after the frame"),
        ({"y": "0"}, "readings are numbered from 1"),
        ({"y": "x"}, "sequence not a number"),
        ({"m": "ffffffff"}, "another model"),
        ({"v": "4"}, "another protocol"),
        ({"x": "1"}, "a key of another frame"),
        ({"h": ",".join(["0:0:1"] * (MAX_READINGS + 1))}, "too many readings"),
    ],
)
def test_malformed_backlog_frames_rejected(change: dict[str, str], why: str) -> None:
    data = _event("0:0:1")
    data.update(change)
    with pytest.raises(ProtocolError):
        BacklogFrame.from_event(data, MODEL)


def test_full_and_change_frames_do_not_take_a_backlog_frame() -> None:
    from custom_components.data_exchange.protocol import NodeFrame

    with pytest.raises(ProtocolError):
        NodeFrame.from_event(_event("0:0:1", s="1", x="", i="0"), MODEL)


@given(
    st.lists(
        st.tuples(
            st.sampled_from([0, 1, 3, 4]),
            st.integers(0, 10**6),
            st.floats(allow_nan=False, allow_infinity=False, width=32),
        ),
        min_size=1,
        max_size=MAX_READINGS,
    ),
    st.integers(1, 2**63),
)
def test_any_node_encoding_decodes_to_its_readings(
    readings: list[tuple[int, int, float]], first: int
) -> None:
    """What the node writes (backlog.cpp: point:dt:value, shortest float) decodes back."""
    from custom_components.data_exchange.codec import PointType, encode_value

    parts = []
    for point, dt, value in readings:
        boolean = MODEL.points[point].type in (
            PointType.BINARY_SENSOR,
            PointType.SWITCH,
        )
        number = float(value > 0) if boolean else value
        parts.append(f"{point}:{dt}:{encode_value(PointType.SENSOR, number)}")
    end = 1000 + sum(dt for _, dt, _ in readings)
    frame = BacklogFrame.from_event(
        _event(",".join(parts), y=str(first), u=str(end)), MODEL
    )
    assert [r.seq for r in frame.readings] == list(range(first, first + len(readings)))
    assert frame.readings[-1].uptime_ms == end
    for reading, (point, _, value) in zip(frame.readings, readings, strict=True):
        assert reading.point == point
        boolean = MODEL.points[point].type.encoding == "bool"
        # Numbers travel as the shortest decimal of the node's 32-bit float.
        as_float32 = struct.unpack("f", struct.pack("f", reading.value))[0]
        assert as_float32 == (float(value > 0) if boolean else value)


def test_a_reading_time_comes_from_the_node_clock() -> None:
    """Readings are placed with node_clock.py: a reading at 2,000 ms of a node whose latest
    frame (5,000 ms) arrived at 1,000,000 s was taken 3 s before; with a time source, by
    the node's own clock."""
    clock = NodeClock()
    clock.on_frame(5000, None, 1_000_000.0)
    assert clock.wall_time_of_uptime(2000) == 999_997.0
    clock.on_frame(5000, 2_000_000_000, 1_000_000.0)
    assert clock.wall_time_of_uptime(2000) == 1_999_997.0


def test_ledger_drops_what_is_stored_and_restarts_with_a_boot() -> None:
    ledger = Ledger()
    frame = BacklogFrame.from_event(_event("0:0:1,0:1:2,0:1:3", y="5"), MODEL)
    assert [r.seq for r in ledger.fresh("boot-a", frame)] == [5, 6, 7]
    ledger.stored("boot-a", 6)
    assert [r.seq for r in ledger.fresh("boot-a", frame)] == [7]
    assert ledger.acknowledgement("boot-a") == 6
    # Another boot numbers its readings from 1 again: none of them is stored.
    assert ledger.acknowledgement("boot-b") == 0
    assert len(ledger.fresh("boot-b", frame)) == 3
    ledger.stored("boot-b", 3)
    assert ledger.acknowledgement("boot-a") == 0


@given(st.lists(st.integers(1, 300), min_size=1, max_size=20), st.data())
def test_replays_in_any_order_store_each_reading_once(
    chunks: list[int], data: st.DataObject
) -> None:
    """However often and in whatever overlap the node resends, each reading is stored
    once (the node resends from the first reading not acknowledged)."""
    ledger = Ledger()
    stored: list[int] = []
    total = sum(chunks)
    for _ in range(len(chunks) * 2):
        start = ledger.acknowledgement("b") + 1 - data.draw(st.integers(0, 5))
        start = max(start, 1)
        if start > total:
            break
        count = min(data.draw(st.sampled_from(chunks)), total - start + 1, MAX_READINGS)
        h = ",".join("0:0:1" for _ in range(count))
        frame = BacklogFrame.from_event(_event(h, y=str(start)), MODEL)
        fresh = ledger.fresh("b", frame)
        stored.extend(r.seq for r in fresh)
        ledger.stored("b", frame.last_seq)
    assert stored == list(range(1, len(stored) + 1))


def test_aggregate_weights_by_time() -> None:
    # 10 for the first 45 minutes, 30 for the last 15: mean 15.
    figures = aggregate([(0.0, 10.0), (2700.0, 30.0)], 0.0, 3600.0)
    assert figures is not None
    assert (figures.mean, figures.min, figures.max) == (15.0, 10.0, 30.0)
    # The value held when the period began counts from its start.
    held = aggregate([(1800.0, 30.0)], 0.0, 3600.0, before=10.0)
    assert held is not None
    assert (held.mean, held.min, held.max) == (20.0, 10.0, 30.0)
    # Without it, only the time from the first sample on.
    alone = aggregate([(1800.0, 30.0)], 0.0, 3600.0)
    assert alone is not None
    assert alone.mean == 30.0
    assert aggregate([(3600.0, 1.0)], 0.0, 3600.0) is None  # the end is exclusive


def test_merge_keeps_both_sources_and_one_of_a_time() -> None:
    live = [(0.0, 1.0), (10.0, 2.0)]
    backlog = [(5.0, 9.0), (10.0, 2.0)]
    assert merge_samples(backlog, live) == [(0.0, 1.0), (5.0, 9.0), (10.0, 2.0)]


def test_a_partial_hour_merged_has_more_data_not_less() -> None:
    """The hour Home Assistant saw half of: its row from the states alone, and the row
    merged with the backlog, which covers the other half."""
    live = [(float(t), 20.0) for t in range(0, 1800, 60)]
    backlog = [(float(t), 30.0) for t in range(1800, 3600, 60)]
    alone = aggregate(live, 0.0, 3600.0)
    merged = aggregate(merge_samples(backlog, live), 0.0, 3600.0)
    assert alone is not None
    assert merged is not None
    assert alone.max == 20.0  # what the states alone say (the last value held)
    assert (merged.mean, merged.min, merged.max) == (25.0, 20.0, 30.0)


@given(
    st.lists(
        st.tuples(st.floats(0, 3599.999), st.floats(-1e6, 1e6)), min_size=1, max_size=50
    ),
    st.one_of(st.none(), st.floats(-1e6, 1e6)),
)
def test_aggregate_mean_between_min_and_max(
    samples: list[tuple[float, float]], before: float | None
) -> None:
    figures = aggregate(samples, 0.0, 3600.0, before)
    assert figures is not None
    assert figures.min <= figures.max
    tolerance = 1e-9 * max(1.0, abs(figures.min), abs(figures.max))
    assert figures.min - tolerance <= figures.mean <= figures.max + tolerance
    values = [v for _, v in samples] + ([before] if before is not None else [])
    assert figures.min == min(values)
    assert figures.max == max(values)


@given(
    st.lists(st.floats(0, 1e10), min_size=1, max_size=30),
    st.sampled_from([300.0, 3600.0]),
)
def test_periods_cover_every_time(times: list[float], period: float) -> None:
    starts = periods(times, period)
    assert starts == sorted(set(starts))
    for t in times:
        start = period_start(t, period)
        assert start in starts
        assert start <= t < start + period
        assert math.isclose(start % period, 0.0, abs_tol=1e-6)
