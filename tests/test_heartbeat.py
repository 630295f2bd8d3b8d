"""The heartbeat of a settled node (heartbeat.py) and the engine's "the node holds it".

Plain Python. While anything is not held by the node, every tick of the desired frame
interval sends; once it holds everything, only every heartbeat period. The engine side is
driven with hand-written frames (tests/test_engine.py's helpers).
"""

from __future__ import annotations

from hypothesis import given, strategies as st

from custom_components.data_exchange.heartbeat import (
    HEARTBEAT,
    DesiredSchedule,
    heartbeat_period,
)
from tests.test_engine import DELAY, frame, make_engine, seq_of, synced


def test_the_period_is_the_heartbeat_or_a_third_of_the_failsafe() -> None:
    assert heartbeat_period(1.0, 0) == HEARTBEAT
    assert heartbeat_period(1.0, 6000) == 2.0
    assert heartbeat_period(1.0, 1500) == 1.0  # never more often than the interval
    assert heartbeat_period(20.0, 0) == 20.0


@given(
    interval=st.sampled_from([0.1, 0.3, 1.0, 2.0]),
    failsafe_ms=st.sampled_from([0, 500, 3000, 9000, 60000]),
    ticks=st.lists(st.booleans(), min_size=1, max_size=200),
)
def test_a_tick_sends_whenever_the_node_does_not_hold_everything(
    interval: float, failsafe_ms: int, ticks: list[bool]
) -> None:
    """Ticks every interval with random "holds everything": a tick where the node does not
    hold everything always sends; no two frames are further apart than the period (plus
    one tick), and while it holds everything no two are closer than the period less one
    tick. The node's fail-safe (if any) therefore never runs out while ticks come."""
    schedule = DesiredSchedule(interval)
    schedule.sent(0.0)
    period = heartbeat_period(interval, failsafe_ms)
    last = 0.0
    for n, holds in enumerate(ticks, start=1):
        now = n * interval
        due = schedule.due(holds_desired=holds, failsafe_ms=failsafe_ms, now=now)
        if not holds:
            assert due
        if due:
            if holds:
                assert now - last >= period - interval
            schedule.sent(now)
            last = now
        assert now - last <= period + interval / 2
        if failsafe_ms:
            assert now - last < failsafe_ms / 1000 or interval >= failsafe_ms / 3000


def test_the_node_holds_everything_only_once_it_acknowledged_and_reports_it() -> None:
    engine = make_engine()
    assert (
        not engine.holds_desired()
    )  # nothing reported yet: the first values are unsent
    engine.on_frame(frame(1, 0, (20.0, 21.0, False)), 0.0)
    assert not engine.holds_desired()  # they become desired, not yet sent
    seq = seq_of(engine.next_desired_frame(0.0).args())
    assert not engine.holds_desired()  # sent, not acknowledged
    engine.on_frame(frame(2, seq, (20.0, 21.0, False)), 0.1)
    assert engine.holds_desired()
    # A heartbeat frame is again unacknowledged until the next full frame.
    seq = seq_of(engine.next_desired_frame(10.0).args())
    assert not engine.holds_desired()
    engine.on_frame(frame(3, seq, (20.5, 21.0, False)), 10.1)  # a sensor changed: fine
    assert engine.holds_desired()


def test_a_write_a_differing_report_and_the_failsafe_each_break_it() -> None:
    engine = make_engine()
    node_seq = synced(engine)
    assert engine.holds_desired()
    engine.write(1, 25.0, "user:abc", now=10.0)
    assert not engine.holds_desired()  # unsent
    seq = seq_of(engine.next_desired_frame(10.0).args())
    node_seq += 1
    engine.on_frame(frame(node_seq, seq, (20.0, 21.0, False)), 10.0 + DELAY / 2)
    # Acknowledged, but the node reports another value within the writer priority delay:
    # Home Assistant wins and must keep sending.
    assert engine.acked_seq == seq
    assert not engine.holds_desired()
    node_seq += 1
    engine.on_frame(frame(node_seq, seq, (20.0, 25.0, False)), 10.0 + DELAY)
    assert engine.holds_desired()
    node_seq += 1
    engine.on_frame(frame(node_seq, seq, (20.0, 25.0, False), failsafe=True), 30.0)
    assert not engine.holds_desired()  # safe values applied: the next frame ends it


def test_a_local_change_that_is_adopted_goes_out_once_then_it_is_held() -> None:
    engine = make_engine()
    node_seq = synced(engine)
    node_seq += 1
    # Long after any write: the node's own change becomes the desired value (rule 6). It is
    # carried by one desired frame (which gives it its frame number: until the node has
    # applied a frame carrying it, it counts as pending), then the node holds it.
    engine.on_frame(frame(node_seq, engine.acked_seq, (20.0, 30.0, False)), 100.0)
    assert engine.desired[1].value == 30.0
    assert not engine.holds_desired()
    seq = seq_of(engine.next_desired_frame(100.0).args())
    node_seq += 1
    engine.on_frame(frame(node_seq, seq, (20.0, 30.0, False)), 100.1)
    assert engine.holds_desired()


def test_a_paused_node_holds_the_desired_acquisition_only_when_it_reports_it() -> None:
    engine = make_engine()
    node_seq = synced(engine)
    engine.write_acquisition(False, "user:abc", 10.0)
    seq = seq_of(engine.next_desired_frame(10.0).args())
    node_seq += 1
    engine.on_frame(frame(node_seq, seq, (20.0, 21.0, False), running=True), 10.1)
    assert (
        not engine.holds_desired()
    )  # acknowledged, but not yet paused (deferred/wins)
    node_seq += 1
    engine.on_frame(frame(node_seq, seq, (20.0, 21.0, False), running=False), 10.2)
    assert engine.holds_desired()
