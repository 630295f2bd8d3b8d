"""The exchange engine on its own: writer priority, sequence tracking, staleness, persistence.

Plain Python and fast. Frames are written out by hand; comments say what the node does with
each desired frame (esphome/components/data_exchange/data_exchange.cpp, ``on_write``): it
applies a value to a point unless the point's latest local change was first reported in a
frame newer than the desired frame's ``seen``, and acknowledges the frame (``a``) anyway.
"""

from __future__ import annotations

import json
import math

from hypothesis import given, strategies as st
import pytest

from custom_components.data_exchange.engine import ExchangeEngine
from custom_components.data_exchange.persistence import (
    SEQ_RESTORE_MARGIN,
    engine_as_dict,
    restore_engine,
)
from custom_components.data_exchange.protocol import (
    Model,
    ModelPoint,
    NodeFrame,
    PointType,
    Refusal as NodeRefusal,
    Value,
    decode_value,
)
from custom_components.data_exchange.rules import Limits
from custom_components.data_exchange.values import (
    CHANGED_BY_NODE,
    PointRefusal,
    StaleReason,
    stale_reason,
)

DELAY = 2.0
BOOT = "0123456789abcdef"
OTHER_BOOT = "fedcba9876543210"
MODEL = Model(
    "0a1b2c3d",
    1000,
    0,
    (
        ModelPoint(PointType.SENSOR, 1),
        ModelPoint(PointType.NUMBER, 2),
        ModelPoint(PointType.SWITCH, 3),
    ),
)
# The number is the simulated node's setpoint: 5..35 in steps of 0.5.
LIMITS = [
    Limits(PointType.SENSOR),
    Limits(PointType.NUMBER, 5.0, 35.0, 0.5),
    Limits(PointType.SWITCH),
]
# With a text point, for grouped writes: writable positions 0 (number), 1 (switch), 2 (text).
MODEL4 = Model("0a1b2c3e", 1000, 0, (*MODEL.points, ModelPoint(PointType.TEXT, 4)))
LIMITS4 = [*LIMITS, Limits(PointType.TEXT, max_length=16)]


def frame(
    seq: int,
    applied: int,
    values: tuple[Value, ...],
    *,
    uptime: int | None = None,
    running: bool = True,
    failsafe: bool = False,
    refusal: NodeRefusal | None = None,
    refused: int = 0,
    model: Model = MODEL,
    indices: tuple[int, ...] | None = None,
    safe_points: frozenset[int] | None = None,
) -> NodeFrame:
    """A full frame, or with ``indices`` a change frame carrying those points."""
    return NodeFrame(
        model_id=model.model_id,
        seq=seq,
        uptime_ms=seq * 1000 if uptime is None else uptime,
        applied_seq=applied,
        acquisition_running=running,
        failsafe_active=failsafe,
        refused_frames=refused,
        refusal=refusal,
        values=values,
        indices=indices,
        safe_points=safe_points,
    )


def make_engine(
    model: Model = MODEL,
    limits: list[Limits] | None = None,
    *,
    delay: float = DELAY,
    boot: str = BOOT,
    node_seq: int = 0,
) -> ExchangeEngine:
    e = ExchangeEngine(delay)
    e.set_model(model, LIMITS if limits is None else limits)
    e.start_session(boot, node_seq)
    return e


@pytest.fixture
def engine() -> ExchangeEngine:
    return make_engine()


def seq_of(args: dict[str, int | str]) -> int:
    """A desired frame's sequence number (a decimal string on the wire)."""
    assert isinstance(args["seq"], str)
    return int(args["seq"])


def synced(engine: ExchangeEngine, now: float = 0.0) -> int:
    """The node's first values become desired and are acknowledged; returns the node seq.

    Frame 1 reports (20, 21, off): the node's values become the desired values (rule 2); the
    next desired frame carries them and the node acknowledges it in frame 2.
    """
    engine.on_frame(frame(1, 0, (20.0, 21.0, False)), now)
    seq = seq_of(engine.next_desired_frame(now).args())
    engine.on_frame(frame(2, seq, (20.0, 21.0, False)), now)
    assert engine.acked_seq == seq
    return 2


# ---- writer priority (docs/exchange.md, rules 1-6) ----


def test_first_report_becomes_desired(engine: ExchangeEngine) -> None:
    synced(engine)
    assert engine.desired[1].value == 21.0
    assert engine.desired[1].changed_by == CHANGED_BY_NODE
    assert engine.next_desired_frame().args()["values"] == "21,0"


def test_reported_values_and_changes(engine: ExchangeEngine) -> None:
    result = engine.on_frame(frame(1, 0, (20.0, 21.0, False)), 0.0)
    assert result.changed == [0, 1, 2]
    result = engine.on_frame(frame(2, 0, (20.5, 21.0, False)), 1.0)
    assert result.changed == [0]
    result = engine.on_frame(frame(3, 0, (20.5, 21.0, False)), 2.0)
    assert result.changed == []
    assert engine.reported[0] is not None
    assert engine.reported[0].value == 20.5
    assert engine.reported[0].time == 1.0


def test_home_assistant_write_wins_within_delay(engine: ExchangeEngine) -> None:
    node_seq = synced(engine)
    engine.write(1, 25.0, "user:abc", now=10.0)
    desired = engine.next_desired_frame(10.0).args()
    assert desired["values"] == "25,0"
    # The node applied that frame, but reports another value (a local change racing the
    # write) within the delay: Home Assistant's value wins and keeps being sent.
    result = engine.on_frame(
        frame(node_seq + 1, seq_of(desired), (20.0, 30.0, False)), 10.0 + DELAY / 2
    )
    assert result.adopted == []
    assert engine.desired[1].value == 25.0
    assert engine.desired[1].changed_by == "user:abc"
    assert engine.next_desired_frame(11.5).args()["values"] == "25,0"


def test_later_local_change_wins(engine: ExchangeEngine) -> None:
    synced(engine)
    engine.write(1, 25.0, "user:abc", now=10.0)
    desired = engine.next_desired_frame(10.0).args()
    engine.on_frame(frame(3, seq_of(desired), (20.0, 25.0, False)), 10.1)
    result = engine.on_frame(
        frame(4, seq_of(desired), (20.0, 30.0, False)), 10.0 + DELAY + 0.1
    )
    assert result.adopted == [1]
    assert engine.desired[1].value == 30.0
    assert engine.desired[1].changed_by == CHANGED_BY_NODE
    assert engine.next_desired_frame(12.2).args()["values"] == "30,0"


def test_reports_before_ack_do_not_count(engine: ExchangeEngine) -> None:
    synced(engine)
    engine.write(1, 25.0, "user:abc", now=10.0)
    desired = engine.next_desired_frame(10.0).args()
    # Long after the write, but the node has not applied the frame with it yet.
    result = engine.on_frame(frame(3, seq_of(desired) - 1, (20.0, 21.0, False)), 100.0)
    assert result.adopted == []
    assert engine.desired[1].value == 25.0


def test_window_opens_when_the_write_is_sent_not_when_made(
    engine: ExchangeEngine,
) -> None:
    """t_d is when the first desired frame carrying d was sent (rule 5)."""
    synced(engine)
    engine.write(1, 25.0, "user:abc", now=10.0)
    assert engine.desired[1].time == 10.0
    args = engine.next_desired_frame(50.0).args()  # e.g. the send was delayed
    assert engine.desired[1].time == 50.0
    assert engine.desired[1].seq == seq_of(args)
    # The cyclic full state carries it again: the window does not move.
    engine.next_desired_frame(51.0)
    assert engine.desired[1].time == 50.0
    result = engine.on_frame(frame(3, seq_of(args), (20.0, 30.0, False)), 51.0)
    assert result.adopted == []  # 51 - 10 > DELAY, but 51 - 50 < DELAY
    assert engine.desired[1].value == 25.0


@given(
    write_at=st.floats(0, 100),
    report_after=st.floats(0, 10),
    delay=st.floats(0.1, 5),
)
def test_writer_priority_rule(
    write_at: float, report_after: float, delay: float
) -> None:
    e = make_engine(delay=delay)
    e.on_frame(frame(1, 0, (20.0, 21.0, False)), write_at - 1)
    e.write(1, 25.0, "user:abc", now=write_at)
    seq = seq_of(e.next_desired_frame(write_at).args())
    result = e.on_frame(frame(2, seq, (20.0, 30.0, False)), write_at + report_after)
    # The rule compares the times as given (t_r - t_d), rounding included.
    if (write_at + report_after) - write_at < delay:
        assert e.desired[1].value == 25.0
        assert result.adopted == []
    else:
        assert e.desired[1].value == 30.0
        assert result.adopted == [1]


# ---- deferral and seen ----


def test_local_change_while_pending_is_deferred_and_seen_stays(
    engine: ExchangeEngine,
) -> None:
    synced(engine)  # node frames 1, 2
    assert engine.seen == 2
    engine.write(1, 25.0, "user:abc", now=10.0)
    args = engine.next_desired_frame(10.0).args()
    assert args["seen"] == "2"
    # Frame 3 reports a local change before the node got the desired frame: rule 4,
    # deferred, however long after the write it arrives.
    result = engine.on_frame(frame(3, seq_of(args) - 1, (20.0, 30.0, False)), 60.0)
    assert result.adopted == []
    assert not result.desired_changed
    assert engine.desired[1].value == 25.0
    # Frame 3 was not judged in full: seen does not pass it, so the node does not apply
    # the next desired frames over that local change either.
    assert engine.seen == 2
    assert engine.next_desired_frame(60.1).args()["seen"] == "2"
    # The node applied the write (its local change came in frame 3 > seen 2, so it kept
    # 30) and acknowledges it: now the local change is judged, after the window: adopted.
    result = engine.on_frame(frame(4, seq_of(args), (20.0, 30.0, False)), 60.2)
    assert result.adopted == [1]
    assert engine.desired[1].value == 30.0
    assert engine.seen == 4
    assert engine.next_desired_frame(60.3).args()["seen"] == "4"


def test_seen_advances_over_frames_judged_in_full(engine: ExchangeEngine) -> None:
    for seq in range(1, 6):
        engine.on_frame(frame(seq, 0, (20.0 + seq, 21.0, False)), float(seq))
        assert engine.seen == seq
    # Equal values, a sensor change, unknown values: all judged.
    engine.on_frame(frame(6, 0, (None, None, None)), 6.0)
    assert engine.seen == 6


def test_change_frames_judge_their_points_and_seen_waits_for_deferred_ones(
    engine: ExchangeEngine,
) -> None:
    """Protocol 3: a change frame carries some points; the others keep their judgement. A
    report deferred (its desired value pending) holds `seen` back until a later frame
    judges that point again, whichever kind of frame that is."""
    synced(engine)
    engine.on_frame(frame(3, 0, (25.0,), indices=(0,)), 1.0)  # a sensor change
    assert engine.seen == 3
    assert engine.reported[0] is not None
    assert engine.reported[0].value == 25.0
    assert engine.reported[1] is not None
    assert engine.reported[1].value == 21.0  # untouched
    engine.write(1, 30.0, "user:abc", now=2.0)
    sent = seq_of(engine.next_desired_frame(2.0).args())
    # The node reports a local change before it applied the write: judged later.
    engine.on_frame(frame(4, sent - 1, (22.0,), indices=(1,)), 2.1)
    assert engine.seen == 3
    # Another point changes: the deferred report is still not judged.
    engine.on_frame(frame(5, sent - 1, (26.0,), indices=(0,)), 2.2)
    assert engine.seen == 3
    # The node applied the write: the next frame judges the point again.
    engine.on_frame(frame(6, sent, (26.0, 30.0, False)), 2.3)
    assert engine.seen == 6
    assert engine.desired[1].value == 30.0
    assert engine.desired[1].changed_by == "user:abc"


def test_a_change_frame_with_a_local_change_is_adopted_after_the_window(
    engine: ExchangeEngine,
) -> None:
    synced(engine)
    result = engine.on_frame(frame(3, 0, (28.5,), indices=(1,)), DELAY + 10.0)
    assert result.adopted == [1]
    assert engine.desired[1].value == 28.5
    assert engine.desired[1].changed_by == CHANGED_BY_NODE
    assert engine.seen == 3


def test_pending_acquisition_defers_seen_too(engine: ExchangeEngine) -> None:
    synced(engine)
    engine.write_acquisition(False, "user:abc", now=10.0)
    args = engine.next_desired_frame(10.0).args()
    assert args["acquisition"] == 0
    engine.on_frame(frame(3, seq_of(args) - 1, (20.0, 21.0, False)), 10.1)
    assert engine.seen == 2
    engine.on_frame(frame(4, seq_of(args), (20.0, 21.0, False), running=False), 10.2)
    assert engine.seen == 4
    assert engine.desired_acquisition is not None
    assert engine.desired_acquisition.value is False


def test_local_change_before_the_first_desired_frame_is_acknowledged(
    engine: ExchangeEngine,
) -> None:
    """Issue 13, item 5: a node value not yet sent back is pending only until acknowledged.

    The desired value (the node's own first value) is pending; a local change reported
    meanwhile is deferred, the frame carrying the old value goes out with ``seen`` before
    that change (so the node keeps the change), and once acknowledged the change is adopted.
    """
    engine.on_frame(frame(1, 0, (20.0, 21.0, False)), 0.0)
    engine.on_frame(frame(2, 0, (20.0, 30.0, False)), 0.1)  # local change
    assert engine.desired[1].value == 21.0
    args = engine.next_desired_frame(0.2).args()
    assert args["values"] == "21,0"
    assert args["seen"] == "1"  # the node will not apply 21 over its change of frame 2
    result = engine.on_frame(frame(3, seq_of(args), (20.0, 30.0, False)), 0.3)
    assert result.adopted == [1]
    assert engine.desired[1].value == 30.0
    assert engine.next_desired_frame(0.4).args()["values"] == "30,0"


# ---- reconciliation (sessions, restarts) ----


def test_offline_write_wins_over_an_earlier_local_change(
    engine: ExchangeEngine,
) -> None:
    """Issue 13, item 2: the first frame of a session carries the seen of the last one."""
    synced(engine)  # node frames 1, 2
    # A person at the device changes the setpoint; frame 3 reports it: adopted.
    result = engine.on_frame(frame(3, engine.acked_seq, (20.0, 30.0, False)), 5.0)
    assert result.adopted == [1]
    args = engine.next_desired_frame(5.1).args()
    engine.on_frame(frame(4, seq_of(args), (20.0, 30.0, False)), 5.2)
    assert engine.seen == 4
    # The connection drops. Home Assistant writes while the node is away.
    engine.write(1, 25.0, "user:abc", now=100.0)
    assert engine.start_session(BOOT, 9) is False  # same boot: a reconnect
    args = engine.next_desired_frame(200.0).args()
    assert engine.frame_carries_writes
    assert args["values"] == "25,0"
    # Not 0: the node would skip the point (its local change of frame 3 is newer than 0)
    # yet acknowledge the frame, and the old value would then be adopted.
    assert args["seen"] == "4"
    assert engine.desired[1].time == 200.0  # its window opens now
    # A frame from before the node applied it: deferred.
    result = engine.on_frame(frame(10, seq_of(args) - 1, (20.0, 30.0, False)), 200.1)
    assert result.adopted == []
    assert engine.seen == 4
    # Applied (seen 4 >= 3): settled.
    result = engine.on_frame(frame(11, seq_of(args), (20.0, 25.0, False)), 200.2)
    assert result.adopted == []
    assert engine.desired[1].value == 25.0
    assert engine.desired[1].changed_by == "user:abc"
    assert engine.seen == 11


def test_offline_write_gets_its_window_when_sent(engine: ExchangeEngine) -> None:
    synced(engine)
    engine.write(1, 25.0, "user:abc", now=100.0)  # offline
    engine.start_session(BOOT, 5)
    args = engine.next_desired_frame(200.0).args()
    # Acknowledged, but the node reports another value 1.5 s after the send (e.g. a local
    # change racing it): 101.5 s after the write, yet within its window.
    result = engine.on_frame(frame(6, seq_of(args), (20.0, 30.0, False)), 201.5)
    assert result.adopted == []
    assert engine.desired[1].value == 25.0
    result = engine.on_frame(frame(7, seq_of(args), (20.0, 30.0, False)), 200.0 + DELAY)
    assert result.adopted == [1]


@pytest.mark.parametrize("frame_first", [False, True])
def test_local_change_in_first_cycle_after_reconnect_is_adopted(
    engine: ExchangeEngine, frame_first: bool
) -> None:
    """Issue 13, item 5: a value the node acknowledged before is not written again."""
    synced(engine)
    engine.write(2, True, "user:abc", now=10.0)
    args = engine.next_desired_frame(10.0).args()
    engine.on_frame(frame(3, seq_of(args), (20.0, 21.0, True)), 10.1)
    # The connection drops; meanwhile the setpoint and the relay are changed at the device.
    assert engine.start_session(BOOT, 50) is False
    changed = frame(51, seq_of(args), (20.0, 30.0, False))
    if frame_first:  # the node's cycle frame crosses the first desired frame
        result = engine.on_frame(changed, 500.0)
        args = engine.next_desired_frame(500.1).args()
    else:
        args = engine.next_desired_frame(500.0).args()
        result = engine.on_frame(changed, 500.1)
    assert sorted(result.adopted) == [1, 2]
    assert engine.desired[1].value == 30.0
    assert engine.desired[2].value is False
    assert engine.desired[2].changed_by == CHANGED_BY_NODE
    if not frame_first:
        # That first frame carried the acknowledged values as the cyclic state, not as
        # new writes; the node's newer local changes kept (seen 3 < 51).
        assert engine.frame_carries_writes is False
        assert args["seen"] == "3"
    assert engine.next_desired_frame(500.2).args()["values"] == "30,0"


def test_restart_by_boot_id_reapplies_desired(engine: ExchangeEngine) -> None:
    synced(engine)
    engine.write(2, True, "user:abc", now=10.0)
    seq = seq_of(engine.next_desired_frame(10.0).args())
    engine.on_frame(frame(3, seq, (20.0, 21.0, True)), 10.1)
    acked = {i: s.seq for i, s in engine.desired.items()}
    assert all(acked.values())
    # The node restarted: another boot id; its frame counter started again.
    assert engine.start_session(OTHER_BOOT, 4) is True
    assert engine.stats.restarts == 1
    assert engine.acked_seq == 0
    assert engine.seen == 4
    assert all(s.seq == 0 for s in engine.desired.values())  # all pending again
    args = engine.next_desired_frame(100.0).args()
    assert engine.frame_carries_writes
    assert args["values"] == "21,1"
    assert args["seen"] == "4"
    # Firmware defaults reported before the node applied the frame: deferred.
    result = engine.on_frame(frame(5, 0, (20.0, 21.0, False), uptime=50), 100.1)
    assert result.accepted
    assert result.adopted == []
    assert engine.desired[2].value is True
    assert engine.seen == 4
    result = engine.on_frame(frame(6, seq_of(args), (20.0, 21.0, True)), 100.2)
    assert result.acknowledged == seq_of(args)
    assert engine.seen == 6


def test_reconnect_same_boot_keeps_acknowledged_state(engine: ExchangeEngine) -> None:
    synced(engine)
    engine.write(2, True, "user:abc", now=10.0)
    seq = seq_of(engine.next_desired_frame(10.0).args())
    engine.on_frame(frame(3, seq, (20.0, 21.0, True)), 10.1)
    engine.write(1, 22.0, "user:abc", now=11.0)  # not yet sent when the link drops
    before = {i: (s.seq, s.time) for i, s in engine.desired.items()}
    assert engine.start_session(BOOT, 70) is False
    assert engine.stats.restarts == 0
    assert engine.acked_seq == seq
    assert engine.seen == 3  # carried over; not the node's current frame
    assert engine.desired[2].seq == before[2][0]
    assert engine.desired[2].time == before[2][1]
    args = engine.next_desired_frame(20.0).args()
    assert engine.frame_carries_writes  # only the unsent write counts as one
    assert engine.desired[1].seq == seq_of(args)
    assert engine.desired[2].seq == before[2][0]  # not re-sent as a fresh write


def test_restarts_are_counted_by_boot_id_only() -> None:
    e = ExchangeEngine(DELAY)
    e.set_model(MODEL, LIMITS)
    assert e.start_session(BOOT, 0) is True  # never heard of: counts as restarted
    assert e.stats.restarts == 0  # ...but is no restart
    e.on_frame(frame(1, 0, (1.0, 21.0, False), uptime=1000), 0.0)
    e.on_frame(frame(2, 0, (1.0, 21.0, False), uptime=2000), 1.0)
    assert e.start_session(BOOT, 3) is False  # the connection dropped
    # Uptime says nothing (a host node's clock does not start at zero), nor a lower seq.
    e.on_frame(frame(1, 0, (1.0, 21.0, False), uptime=10), 9.0)
    assert e.stats.restarts == 0
    assert e.start_session(OTHER_BOOT, 1) is True
    e.on_frame(frame(2, 0, (1.0, 21.0, False), uptime=50_000), 60.0)
    assert e.stats.restarts == 1
    assert e.start_session(BOOT, 1) is True
    assert e.stats.restarts == 2


# ---- one rule for values: never adopt what the node would refuse ----


@pytest.mark.parametrize("value", [21.3, 21.25, 40.0, 4.5, 35.5, -1.0, 1e30])
def test_value_the_node_would_refuse_is_never_adopted(
    engine: ExchangeEngine, value: float
) -> None:
    """Issue 13, item 1: an off-step or out-of-range device value blocks nothing."""
    node_seq = synced(engine)
    # Set on the device (a local number.set checks only min/max, another client nothing).
    result = engine.on_frame(
        frame(node_seq + 1, engine.acked_seq, (20.0, value, False)), 10.0
    )
    assert result.adopted == [1]  # the local change wins (rule 6) ...
    assert 1 not in engine.desired  # ... but is not sent back: no desired value
    assert engine.reported[1] is not None
    assert engine.reported[1].value == value  # Home Assistant shows what the node holds
    args = engine.next_desired_frame(10.1).args()
    assert args["values"] == ",0"
    for k in range(2, 5):  # it stays so, frame after frame
        engine.on_frame(frame(node_seq + k, seq_of(args), (20.0, value, False)), 10 + k)
        assert 1 not in engine.desired
        assert engine.next_desired_frame(10.0 + k).args()["values"] == ",0"
    # Back on a step: the node's value is the desired value again (rule 2).
    result = engine.on_frame(frame(node_seq + 9, seq_of(args), (20.0, 22.0, False)), 20)
    assert result.desired_changed
    assert engine.desired[1].value == 22.0
    assert engine.next_desired_frame(20.1).args()["values"] == "22,0"


@pytest.mark.parametrize("value", [21.3, 40.0])
def test_first_value_the_node_would_refuse_is_not_desired(value: float) -> None:
    e = make_engine()
    e.on_frame(frame(1, 0, (20.0, value, True)), 0.0)
    assert 1 not in e.desired
    assert e.desired[2].value is True
    assert e.next_desired_frame(0.0).args()["values"] == ",1"


def test_model_change_drops_desired_values_the_point_no_longer_takes(
    engine: ExchangeEngine,
) -> None:
    synced(engine)
    engine.write(1, 30.0, "user:abc", now=1.0)
    engine.set_model(
        MODEL, [LIMITS[0], Limits(PointType.NUMBER, 5, 25, 0.5), LIMITS[2]]
    )
    assert 1 not in engine.desired
    assert engine.next_desired_frame(2.0).args()["values"] == ",0"


# ---- refusals from the node ----


def _grouped(e: ExchangeEngine) -> dict[str, int | str]:
    """A grouped write of number + switch, and a separate text write, in one frame."""
    group = e.new_group()
    e.write(1, 25.0, "user:abc", 1.0, group=group)
    e.write(2, True, "user:abc", 1.0, group=group)
    e.write(3, "hello", "user:abc", 1.0)
    args = e.next_desired_frame(1.0).args()
    assert args["values"] == "25,1,'hello"
    return args


@pytest.mark.parametrize(("point", "index"), [(0, 1), (1, 2)])
def test_refusal_drops_the_point_and_its_group_only(point: int, index: int) -> None:
    e = make_engine(MODEL4, LIMITS4)
    args = _grouped(e)
    refusal = NodeRefusal(seq_of(args), point, "range")
    result = e.on_frame(
        frame(1, 0, (20.0, 21.0, False, ""), refusal=refusal, refused=1, model=MODEL4),
        1.1,
    )
    assert result.refused == PointRefusal(seq_of(args), index, "range")
    assert e.last_refusal == result.refused
    assert e.stats.refused_by_node == 1
    # Both values of the group went; the node's own values are the desired ones again.
    assert e.desired[1].value == 21.0
    assert e.desired[1].changed_by == CHANGED_BY_NODE
    assert e.desired[2].value is False
    # The separate write is kept and flows with the next frame.
    assert e.desired[3].value == "hello"
    assert e.desired[3].changed_by == "user:abc"
    args = e.next_desired_frame(1.2).args()
    assert args["values"] == "21,0,'hello"
    # The node keeps naming its last refusal in every frame: taken once.
    again = frame(
        2, seq_of(args), (20.0, 21.0, False, "hello"), refusal=refusal, model=MODEL4
    )
    result = e.on_frame(again, 1.3)
    assert result.refused is None
    assert e.desired[3].value == "hello"


def test_refusal_of_a_single_write_keeps_the_others() -> None:
    e = make_engine(MODEL4, LIMITS4)
    e.write(1, 25.0, "user:abc", 1.0)
    e.write(2, True, "user:abc", 1.0)
    args = e.next_desired_frame(1.0).args()
    refusal = NodeRefusal(seq_of(args), 0, "step")
    e.on_frame(frame(1, 0, (20.0, 21.0, False, ""), refusal=refusal, model=MODEL4), 1.1)
    assert e.desired[1].changed_by == CHANGED_BY_NODE
    assert e.desired[2].value is True
    assert e.desired[2].changed_by == "user:abc"


@pytest.mark.parametrize(
    "refusal",
    [
        NodeRefusal(1, None, "model"),  # a frame-level reason names no point
        NodeRefusal(99, 0, "range"),  # a frame Home Assistant never sent
        NodeRefusal(1, 7, "range"),  # no such writable point
    ],
)
def test_refusal_that_names_no_known_value_drops_nothing(
    refusal: NodeRefusal,
) -> None:
    e = make_engine(MODEL4, LIMITS4)
    args = _grouped(e)
    assert seq_of(args) == 1
    e.on_frame(frame(1, 0, (20.0, 21.0, False, ""), refusal=refusal, model=MODEL4), 1.1)
    assert {i: s.value for i, s in e.desired.items()} == {1: 25.0, 2: True, 3: "hello"}


def test_refusal_keeps_a_newer_write_of_the_refused_point() -> None:
    """The node refused frame N for point P; a write to P sent after N is not refused.

    E.g. rule drift: HA sent X, the node refuses it; meanwhile the user wrote Y (valid),
    carried first by frame N+1. The refusal of N names P, but Y was not in N: dropping Y
    loses the write (the next node frame, reporting the old value, becomes the desired one
    and frame N+2 takes the node back to it).
    """
    e = make_engine()
    e.write(1, 25.0, "user:abc", 1.0)
    refused = seq_of(e.next_desired_frame(1.0).args())
    e.write(1, 26.0, "user:abc", 1.1)
    newer = seq_of(e.next_desired_frame(1.1).args())
    assert e.desired[1].seq == newer > refused
    e.on_frame(
        frame(1, 0, (20.0, 21.0, False), refusal=NodeRefusal(refused, 0, "step")), 1.2
    )
    assert e.desired[1].value == 26.0


# ---- persistence ----


def _restored(data: dict[str, object], model: Model = MODEL) -> ExchangeEngine:
    e = ExchangeEngine(DELAY)
    e.set_model(model, LIMITS if model is MODEL else LIMITS4)
    # Through JSON, as the Store keeps it.
    restore_engine(e, json.loads(json.dumps(data)))
    return e


def test_persistence_round_trip(engine: ExchangeEngine) -> None:
    synced(engine)
    engine.write(2, True, "user:abc", now=3.0, wall=1_700_000_000.0)
    engine.next_desired_frame(3.0)
    engine.write_acquisition(False, "automation:x", 4.0)
    data = engine_as_dict(engine)
    restored = _restored(data)

    def simple(e: ExchangeEngine) -> object:
        return {i: (s.value, s.changed_by, s.wall, s.seq) for i, s in e.desired.items()}

    assert simple(restored) == simple(engine)
    assert [None if r is None else r.value for r in restored.reported] == [
        None if r is None else r.value for r in engine.reported
    ]
    assert restored.desired_acquisition is not None
    assert restored.desired_acquisition.value is False
    assert restored.acked_seq == engine.acked_seq
    assert restored.seen == engine.seen
    assert restored.node_boot == BOOT
    # Monotonic times do not survive: restored values count as set long ago.
    assert all(s.time == -math.inf for s in restored.desired.values())
    # Sequence numbers continue with a margin (the counter is saved lazily), so no frame
    # number is used twice and no acknowledgement of before is mistaken for a new one.
    assert restored.desired_seq == engine.desired_seq + SEQ_RESTORE_MARGIN
    args = restored.next_desired_frame(0.0).args()
    assert args["seq"] == str(engine.desired_seq + SEQ_RESTORE_MARGIN + 1)


def test_restored_values_reconcile_by_boot_id(engine: ExchangeEngine) -> None:
    synced(engine)
    engine.write(2, True, "user:abc", now=3.0)
    seq = seq_of(engine.next_desired_frame(3.0).args())
    engine.on_frame(frame(3, seq, (20.0, 21.0, True)), 3.1)
    engine.write(1, 30.0, "user:abc", now=4.0)  # written, not sent before the restart
    data = engine_as_dict(engine)

    same = _restored(data)
    assert same.start_session(BOOT, 10) is False
    args = same.next_desired_frame(100.0).args()
    assert args["values"] == "30,1"
    assert args["seen"] == "3"
    assert same.desired[1].seq == seq_of(args)  # the pending write: sent now ...
    assert same.desired[1].time == 100.0  # ... with its window from now
    assert same.desired[2].seq == seq  # the acknowledged one keeps its state
    # A local change to the relay made while Home Assistant was down is adopted.
    result = same.on_frame(frame(11, seq_of(args), (20.0, 30.0, False)), 100.1)
    assert result.adopted == [2]
    assert same.desired[1].value == 30.0

    other = _restored(data)
    assert other.start_session(OTHER_BOOT, 2) is True
    assert other.stats.restarts == 1
    assert other.seen == 2
    assert all(s.seq == 0 for s in other.desired.values())
    assert other.next_desired_frame(100.0).args()["values"] == "30,1"


def test_old_refusal_is_not_taken_again_after_restore() -> None:
    """The node repeats its last refusal (key e) in every frame until the next one.

    Refused frame 1 (point 0); later the user's valid write goes out in frame 2 and is
    pending when Home Assistant restarts. After the restart the node's first frame still
    says "1:0:range": that refusal was taken before, the pending write must stay.
    """
    e = make_engine()
    e.write(1, 25.0, "user:abc", 1.0)
    refused = seq_of(e.next_desired_frame(1.0).args())
    e.on_frame(
        frame(1, 0, (20.0, 21.0, False), refusal=NodeRefusal(refused, 0, "range")), 1.1
    )
    e.write(1, 26.0, "user:abc", 2.0)
    e.next_desired_frame(2.0)
    restored = _restored(engine_as_dict(e))
    restored.start_session(BOOT, 5)
    args = restored.next_desired_frame(10.0).args()
    assert args["values"] == "26,0"
    # The node never got the write (it was away when Home Assistant went down).
    restored.on_frame(
        frame(6, 0, (20.0, 21.0, False), refusal=NodeRefusal(refused, 0, "range")),
        10.1,
    )
    assert restored.desired[1].value == 26.0


# ---- numbers are what the node holds ----


def test_numbers_are_kept_as_float32() -> None:
    """Issue 13, item 8: 123456789 is 123456790 on the node, and so in Home Assistant."""
    big = [LIMITS[0], Limits(PointType.NUMBER, 0.0, 1e9, 1.0), LIMITS[2]]
    e = make_engine(limits=big)
    e.write(1, 123456789, "user:abc", now=1.0)
    assert e.desired[1].value == 123456790.0
    args = e.next_desired_frame(1.0).args()
    assert args["values"] == "1.2345679e+08,"
    # The node holds 123456792.0f and reports it as the shortest text that reads back.
    reported = decode_value(PointType.NUMBER, "1.2345679e+08")
    assert reported == e.desired[1].value
    for k, now in enumerate((1.1, 5.0, 500.0), start=1):  # long past the window
        result = e.on_frame(frame(k, seq_of(args), (20.0, reported, False)), now)
        assert result.adopted == []
        assert e.desired[1].changed_by == "user:abc"
    e.write(1, 0.1, "user:abc", now=600.0)
    assert (
        e.desired[1].value == 0.1
    )  # 0.1f is "0.1": the shortest text, read as a double


# ---- clocks and counters ----


def _trace(walls: list[float]) -> list[object]:
    """A scenario over rules 2, 4, 5 and 6, with the given wall-clock values."""
    wall = iter(walls)
    e = make_engine()
    out: list[object] = []

    def take(f: NodeFrame, now: float) -> None:
        r = e.on_frame(f, now, next(wall))
        out.append((r.adopted, r.desired_changed, r.acknowledged, e.seen))

    take(frame(1, 0, (20.0, 21.0, False)), 0.0)
    out.append(e.next_desired_frame(0.1).args())
    take(frame(2, 1, (20.0, 21.0, False)), 0.2)
    e.write(1, 25.0, "user:abc", 1.0, wall=next(wall))
    e.write_acquisition(False, "user:abc", 1.0, next(wall))
    out.append(e.next_desired_frame(1.1).args())
    take(frame(3, 1, (20.0, 30.0, False)), 1.2)  # deferred
    take(frame(4, 2, (20.0, 30.0, False), running=False), 2.0)  # HA wins
    out.append(e.next_desired_frame(2.1).args())
    take(frame(5, 3, (20.0, 31.0, False)), 1.1 + DELAY)  # local change wins
    out.append(e.next_desired_frame(3.5).args())
    out.append(
        {i: (s.value, s.changed_by, s.seq, s.time) for i, s in e.desired.items()}
    )
    return out


@given(st.lists(st.floats(allow_nan=False), min_size=10, max_size=10))
def test_wall_clock_changes_no_decision(walls: list[float]) -> None:
    """Issue 13, item 7: only ``now`` (monotonic) drives the rules; wall is for display."""
    assert _trace(walls) == _trace([0.0] * 10)


def test_trace_covers_the_rules() -> None:
    trace = _trace([0.0] * 10)
    assert trace[4] == ([], False, None, 2)  # deferred: seen stays
    assert trace[5] == ([], True, 2, 4)  # acknowledged; Home Assistant wins
    assert trace[7] == ([1], True, 3, 5)  # the local change after the window


def test_counters_near_their_limits() -> None:
    """Issue 13, item 6: 64-bit counters travel as decimal strings, nothing wraps."""
    e = ExchangeEngine(DELAY)
    e.set_model(MODEL, LIMITS)
    e.desired_seq = 2**63 - 5
    node = 2**64 - 10
    e.start_session(BOOT, node)
    e.write(1, 25.0, "user:abc", now=0.0)
    args = e.next_desired_frame(0.0).args()
    assert args["seq"] == str(2**63 - 4)
    assert args["seen"] == str(2**64 - 10)
    assert all(isinstance(args[k], str) for k in ("seq", "seen"))
    result = e.on_frame(frame(node + 1, 2**63 - 4, (20.0, 25.0, False)), 0.1)
    assert result.accepted
    assert result.acknowledged == 2**63 - 4
    now = 0.2
    for s in range(node + 2, 2**64):  # up to the node's last frame number
        args = e.next_desired_frame(now).args()
        result = e.on_frame(frame(s, seq_of(args), (20.0, 25.0, False)), now)
        assert result.accepted
        now += 0.1
    assert seq_of(args) > 2**63  # past a signed 64-bit integer: still a plain number
    assert e.seen == 2**64 - 1
    assert e.acked_seq == seq_of(args)
    assert (e.stats.missed, e.stats.duplicates, e.stats.out_of_order) == (0, 0, 0)
    assert e.next_desired_frame(now).args()["seen"] == "18446744073709551615"
    restored = _restored(engine_as_dict(e))
    assert restored.seen == 2**64 - 1
    assert restored.desired_seq == e.desired_seq + SEQ_RESTORE_MARGIN


# ---- sequence tracking, acquisition, staleness, model changes ----


@pytest.mark.parametrize(
    ("seqs", "missed", "duplicates", "out_of_order"),
    [
        ([1, 2, 3, 4], 0, 0, 0),
        ([1, 2, 5, 6], 2, 0, 0),
        ([1, 2, 2, 3], 0, 1, 0),
        ([1, 3, 2, 4], 1, 0, 1),
    ],
)
def test_sequence_tracking(
    engine: ExchangeEngine,
    seqs: list[int],
    missed: int,
    duplicates: int,
    out_of_order: int,
) -> None:
    for i, seq in enumerate(seqs):  # one session: one TCP connection
        engine.on_frame(
            frame(seq, 0, (float(i), 21.0, False), uptime=1000 + seq), float(i)
        )
    assert engine.stats.missed == missed
    assert engine.stats.duplicates == duplicates
    assert engine.stats.out_of_order == out_of_order


def test_duplicate_frame_is_not_applied(engine: ExchangeEngine) -> None:
    engine.on_frame(frame(1, 0, (1.0, 21.0, False)), 0.0)
    result = engine.on_frame(frame(1, 0, (2.0, 21.0, False)), 1.0)
    assert not result.accepted
    assert engine.reported[0] is not None
    assert engine.reported[0].value == 1.0


def test_acquisition_flags(engine: ExchangeEngine) -> None:
    engine.on_frame(frame(1, 0, (1.0, 21.0, False)), 0.0)
    result = engine.on_frame(frame(2, 0, (1.0, 21.0, False), running=False), 1.0)
    assert result.node_state_changed
    assert not engine.acquisition_running
    engine.write_acquisition(True, "user:abc", 2.0)
    assert engine.next_desired_frame(2.0).args()["acquisition"] == 1


@pytest.mark.parametrize(
    ("connected", "running", "last", "reason"),
    [
        (False, True, 9.0, StaleReason.OFFLINE),
        (True, False, 9.0, StaleReason.PAUSED),
        (True, True, 1.0, StaleReason.SILENT),
        (True, True, None, StaleReason.SILENT),
        (True, True, 9.0, None),
    ],
)
def test_stale_reason(
    connected: bool, running: bool, last: float | None, reason: StaleReason | None
) -> None:
    assert (
        stale_reason(
            connected=connected,
            acquisition_running=running,
            last_frame=last,
            now=10.0,
            stale_after=5.0,
        )
        == reason
    )


def test_model_change_keeps_values_of_remaining_points(engine: ExchangeEngine) -> None:
    synced(engine)
    engine.write(1, 25.0, "user:abc", now=1.0)
    new = Model("ffffffff", 1000, 0, (MODEL.points[1], ModelPoint(PointType.TEXT, 9)))
    engine.set_model(new, [LIMITS[1], Limits(PointType.TEXT)])
    assert engine.desired[0].value == 25.0
    assert engine.reported[0] is not None
    assert engine.reported[1] is None
    assert engine.next_desired_frame(1.0).args()["values"] == "25,"


def test_read_only_point_cannot_be_written(engine: ExchangeEngine) -> None:
    with pytest.raises(ValueError, match="read-only"):
        engine.write(0, 1.0, "user:abc", now=0.0)
    with pytest.raises(IndexError):
        engine.write(7, 1.0, "user:abc", now=0.0)


def test_unchanged_desired_values_are_not_encoded_again(engine: ExchangeEngine) -> None:
    synced(engine)
    first = engine.next_desired_frame().args()["values"]
    second = engine.next_desired_frame().args()["values"]
    assert second is first  # the very same string: no per-cycle encoding
    engine.write(1, 30.0, "user:abc", now=1.0)
    third = engine.next_desired_frame(1.0).args()["values"]
    assert third == "30,0"
    assert engine.desired[1].seq == engine.desired_seq


def test_a_desired_frame_says_whether_it_carries_writes(engine: ExchangeEngine) -> None:
    """Write latency is measured only for frames that carry writes."""
    engine.next_desired_frame()
    assert engine.frame_carries_writes is False
    engine.write(1, 25.0, "user:abc", now=10.0)
    args = engine.next_desired_frame(10.0).args()
    assert engine.frame_carries_writes is True
    engine.next_desired_frame(11.0)  # the cyclic full state: the same values again
    assert engine.frame_carries_writes is False
    engine.start_session(BOOT, 0)  # a reconnect: the unacknowledged write goes again
    engine.next_desired_frame(12.0)
    assert engine.frame_carries_writes is True
    engine.on_frame(frame(1, engine.desired_seq, (20.0, 25.0, False)), 12.1)
    engine.next_desired_frame(13.0)  # the node's switch value, adopted, goes out
    engine.on_frame(frame(2, engine.desired_seq, (20.0, 25.0, False)), 13.1)
    engine.start_session(BOOT, 2)  # acknowledged values do not count as writes again
    engine.next_desired_frame(14.0)
    assert engine.frame_carries_writes is False
    engine.start_session(OTHER_BOOT, 0)  # a restart: everything is applied again
    engine.next_desired_frame(15.0)
    assert engine.frame_carries_writes is True
    assert args["values"] == "25,"


def test_write_latency_is_timed_from_the_frame_carrying_the_write(
    engine: ExchangeEngine,
) -> None:
    """The engine times a write: from the desired frame that carried it to the first node
    frame that applied it; a cyclic frame without writes starts no measurement."""
    synced(engine)
    engine.latency.ms = None
    engine.write(1, 25.0, "user:abc", now=10.0)
    sent = engine.next_desired_frame(10.0).seq
    engine.next_desired_frame(10.02)  # the cycle: no new measurement
    early = engine.on_frame(frame(3, sent - 1, (20.0, 21.0, False)), 10.03)
    assert engine.latency.ms is None
    assert not early.stats_changed
    result = engine.on_frame(frame(4, sent, (20.0, 25.0, False)), 10.05)
    assert result.stats_changed
    assert engine.latency.ms == pytest.approx(50.0)
    engine.on_frame(frame(5, sent + 1, (20.0, 25.0, False)), 11.0)
    assert engine.latency.ms == pytest.approx(50.0)  # measured once


def test_staleness_is_the_engines_rule_on_its_own_frames() -> None:
    engine = ExchangeEngine(DELAY, stale_after=5.0)
    engine.set_model(MODEL, LIMITS)
    engine.start_session(BOOT, 0)
    assert engine.stale_reason(connected=True, now=1.0) is StaleReason.SILENT
    engine.on_frame(frame(1, 0, (20.0, 21.0, False)), 1.0)
    assert engine.stale_reason(connected=True, now=6.0) is None
    assert engine.stale_reason(connected=True, now=6.1) is StaleReason.SILENT
    assert engine.stale_reason(connected=False, now=2.0) is StaleReason.OFFLINE
    engine.start_session(BOOT, 1)  # a new session: no frame of it yet
    assert engine.stale_reason(connected=True, now=2.0) is StaleReason.SILENT


def test_safe_values_of_the_fail_safe_are_not_adopted(engine: ExchangeEngine) -> None:
    """A node that fell into its fail-safe during an outage reports its safe values until
    it applies Home Assistant's next desired frame: they are not local changes, so the
    desired values and who wrote them stay; a change once the fail-safe ended is one."""
    n = synced(engine)
    engine.write(2, True, "user:abc", now=10.0)
    seq = seq_of(engine.next_desired_frame(10.0).args())
    engine.on_frame(frame(n + 1, seq, (20.0, 21.0, True)), 10.1)
    assert engine.start_session(BOOT, 90) is False  # Home Assistant was away meanwhile
    result = engine.on_frame(frame(n + 50, seq, (20.0, 18.0, False), failsafe=True), 99)
    assert result.accepted
    assert not result.adopted
    assert engine.desired[1].value == 21.0
    assert engine.desired[2].value is True
    assert engine.desired[2].changed_by == "user:abc"
    assert not engine.holds_desired()  # so the next tick sends the desired frame
    args = engine.next_desired_frame(99.0).args()
    assert args["values"].split(",")[:2] == ["21", "1"]
    # The node applied it (fail-safe over); then a local change is adopted as ever.
    engine.on_frame(frame(n + 51, seq_of(args), (20.0, 21.0, True)), 99.1)
    result = engine.on_frame(frame(n + 52, seq_of(args), (20.0, 21.0, False)), 120)
    assert result.adopted == [2]
    assert engine.desired[2].changed_by == "node"


def test_a_local_change_during_the_fail_safe_is_adopted(engine: ExchangeEngine) -> None:
    """The node says which points hold the safe value its fail-safe set ("y"): a point
    changed on the device meanwhile is a local change like any other (nothing lost), the
    points at their safe values keep their desired values. Without "y" (an older node)
    every point counts as set by the fail-safe."""
    n = synced(engine)  # desired: 21.0, False (from the node)
    engine.write(2, True, "user:abc", now=10.0)
    seq = seq_of(engine.next_desired_frame(10.0).args())
    engine.on_frame(frame(n + 1, seq, (20.0, 21.0, True)), 10.1)
    engine.start_session(BOOT, 90)  # Home Assistant was away meanwhile
    # Fail-safe: the relay (2) went to its safe value False; the setpoint (1) was then set
    # to 24.5 on the device.
    result = engine.on_frame(
        frame(
            n + 50, seq, (20.0, 24.5, False), failsafe=True, safe_points=frozenset({2})
        ),
        99,
    )
    assert result.adopted == [1]
    assert engine.desired[1].value == 24.5
    assert engine.desired[1].changed_by == "node"
    assert engine.desired[2].value is True
    assert engine.desired[2].changed_by == "user:abc"
    args = engine.next_desired_frame(99.0).args()
    assert args["values"].split(",")[:2] == ["24.5", "1"]


def test_a_change_frame_during_the_fail_safe_is_a_local_change(
    engine: ExchangeEngine,
) -> None:
    """A change frame never carries a safe value (the node leaves out what it applied), so
    a writable value in it is a local change, fail-safe or not."""
    n = synced(engine)
    engine.on_frame(
        frame(n + 1, 0, (20.0, 21.0, False), failsafe=True, safe_points=frozenset()),
        5.0,
    )
    assert engine.failsafe_active
    result = engine.on_frame(frame(n + 2, 0, (23.0,), indices=(1,)), 5.1)
    assert result.adopted == [1]
    assert engine.desired[1].value == 23.0
