"""The heartbeat of a settled node (heartbeat.py) and the engine's "the node holds it".

Plain Python. While anything is not held by the node, a frame goes out one desired frame
interval after the last; once it holds everything, one heartbeat period after it. The
engine side is driven with hand-written frames (tests/test_engine.py's helpers).
"""

from __future__ import annotations

import itertools

from hypothesis import given, strategies as st
import pytest

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
    changes=st.lists(
        st.tuples(st.floats(0.0, 30.0), st.booleans()), min_size=1, max_size=60
    ),
)
def test_frames_go_out_when_due_and_only_then(
    interval: float, failsafe_ms: int, changes: list[tuple[float, bool]]
) -> None:
    """Driven as frame mode drives it: a wake-up at ``next_send`` (re-armed whenever
    "holds everything" changes, at random times). While the node does not hold everything
    a frame goes out one interval after the last; while it does, one heartbeat period after
    it; never two closer than the interval, never two further apart than the period. The
    node's fail-safe (if any) therefore never runs out while Home Assistant is there."""
    schedule = DesiredSchedule(interval)
    period = heartbeat_period(interval, failsafe_ms)
    assert schedule.due(holds_desired=True, failsafe_ms=failsafe_ms, now=0.0)
    schedule.sent(0.0)
    sends, holds, now = [0.0], False, 0.0
    for at, new_holds in sorted((now + dt, h) for dt, h in changes):
        while (
            send_at := schedule.next_send(holds_desired=holds, failsafe_ms=failsafe_ms)
        ) <= at:
            now = send_at
            assert schedule.due(holds_desired=holds, failsafe_ms=failsafe_ms, now=now)
            schedule.sent(now)
            sends.append(now)
            assert now - sends[-2] == pytest.approx(period if holds else interval)
        # A wake-up before its time sends nothing.
        early = (send_at - 0.01) if send_at - 0.01 > sends[-1] else None
        if early is not None:
            assert not schedule.due(
                holds_desired=holds, failsafe_ms=failsafe_ms, now=early
            )
        now, holds = at, new_holds
    gaps = [b - a for a, b in itertools.pairwise(sends)]
    assert all(interval - 1e-9 <= gap <= period + 1e-9 for gap in gaps)
    if failsafe_ms:
        assert all(
            gap < failsafe_ms / 1000 or interval >= failsafe_ms / 3000 for gap in gaps
        )


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


def test_a_local_change_that_is_adopted_needs_no_frame() -> None:
    """Long after any write the node's own change becomes the desired value (rule 6). The
    node holds it and has applied a frame of this boot, so it is held, not pending: nothing
    has to go out (it used to cost a frame per cycle while a node changed its writable
    points itself). Its frame number is the next frame's, the first to carry it (a kept
    record of the frame before cannot hold it: test_keep.py)."""
    engine = make_engine()
    node_seq = synced(engine)
    acked = engine.acked_seq
    node_seq += 1
    engine.on_frame(frame(node_seq, acked, (20.0, 30.0, False)), 100.0)
    assert engine.desired[1].value == 30.0
    assert engine.desired[1].seq == engine.desired_seq + 1
    assert engine.desired[1].held
    assert not engine.has_unsent
    assert engine.holds_desired()
    assert engine.next_desired_frame(110.0).args()["values"] == "30,0"
    # A second local change right after it is adopted at once (not deferred as pending).
    node_seq += 1
    result = engine.on_frame(frame(node_seq, acked, (20.0, 31.0, False)), 100.1)
    assert result.adopted == [1]
    assert engine.desired[1].value == 31.0


def test_a_first_report_on_a_new_boot_still_goes_out() -> None:
    """Before the node has applied any frame of its boot, an adopted value is carried by
    the next frame as before (nothing of this boot to count it against)."""
    engine = make_engine()
    engine.on_frame(frame(1, 0, (20.0, 21.0, False)), 0.0)
    assert engine.desired[1].seq == 0
    assert not engine.holds_desired()


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
