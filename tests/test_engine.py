"""The exchange engine on its own: writer priority, sequence tracking, staleness, persistence."""

from __future__ import annotations

from hypothesis import given, strategies as st
import pytest

from custom_components.data_exchange.engine import (
    SENDER_NODE,
    ExchangeEngine,
    StaleReason,
)
from custom_components.data_exchange.protocol import (
    Model,
    ModelPoint,
    NodeFrame,
    PointType,
)

DELAY = 2.0
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


def frame(
    seq: int,
    applied: int,
    values: tuple,
    *,
    uptime: int | None = None,
    running: bool = True,
    failsafe: bool = False,
) -> NodeFrame:
    return NodeFrame(
        model_id=MODEL.model_id,
        seq=seq,
        uptime_ms=seq * 1000 if uptime is None else uptime,
        applied_seq=applied,
        acquisition_running=running,
        failsafe_active=failsafe,
        rejected_frames=0,
        values=values,
    )


@pytest.fixture
def engine() -> ExchangeEngine:
    e = ExchangeEngine(DELAY)
    e.set_model(MODEL)
    e.start_session()
    return e


def synced(engine: ExchangeEngine, now: float = 0.0) -> int:
    """Send one desired frame and have the node acknowledge it; returns the node seq."""
    seq = engine.next_desired_frame()["seq"]
    assert isinstance(seq, int)
    engine.on_frame(frame(1, seq, (20.0, 21.0, False)), now)
    return 1


def test_first_report_becomes_desired(engine: ExchangeEngine) -> None:
    synced(engine)
    assert engine.desired[1].value == 21.0
    assert engine.desired[1].sender == SENDER_NODE
    assert engine.next_desired_frame()["values"] == "21,0"


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
    synced(engine)
    engine.write(1, 25.0, "user:abc", now=10.0)
    desired = engine.next_desired_frame()
    assert desired["values"] == "25,0"
    # The node applied that frame, but reports another value (a local change racing the
    # write) within the delay: Home Assistant's value wins and keeps being sent.
    result = engine.on_frame(
        frame(2, int(desired["seq"]), (20.0, 30.0, False)), 10.0 + DELAY / 2
    )
    assert result.adopted == []
    assert engine.desired[1].value == 25.0
    assert engine.desired[1].sender == "user:abc"
    assert engine.next_desired_frame()["values"] == "25,0"


def test_later_local_change_wins(engine: ExchangeEngine) -> None:
    synced(engine)
    engine.write(1, 25.0, "user:abc", now=10.0)
    desired = engine.next_desired_frame()
    engine.on_frame(frame(2, int(desired["seq"]), (20.0, 25.0, False)), 10.1)
    result = engine.on_frame(
        frame(3, int(desired["seq"]), (20.0, 30.0, False)), 10.0 + DELAY + 0.1
    )
    assert result.adopted == [1]
    assert engine.desired[1].value == 30.0
    assert engine.desired[1].sender == SENDER_NODE
    assert engine.next_desired_frame()["values"] == "30,0"


def test_reports_before_ack_do_not_count(engine: ExchangeEngine) -> None:
    synced(engine)
    engine.write(1, 25.0, "user:abc", now=10.0)
    desired = engine.next_desired_frame()
    # Long after the write, but the node has not applied the frame with it yet.
    result = engine.on_frame(
        frame(2, int(desired["seq"]) - 1, (20.0, 21.0, False)), 100.0
    )
    assert result.adopted == []
    assert engine.desired[1].value == 25.0


def test_restart_of_node_reapplies_desired(engine: ExchangeEngine) -> None:
    synced(engine)
    engine.write(2, True, "user:abc", now=10.0)
    seq = int(engine.next_desired_frame()["seq"])
    engine.on_frame(frame(2, seq, (20.0, 21.0, True)), 10.1)
    # The node restarts (the connection drops, a new session starts): sequence and
    # uptime start again, firmware defaults, nothing applied.
    engine.start_session()
    result = engine.on_frame(frame(1, 0, (20.0, 21.0, False), uptime=50), 100.0)
    assert result.accepted
    assert engine.stats.restarts == 1
    assert result.adopted == []
    assert engine.desired[2].value is True
    assert engine.next_desired_frame()["values"] == "21,1"


def test_new_session_reapplies_desired(engine: ExchangeEngine) -> None:
    synced(engine)
    engine.write(1, 25.0, "user:abc", now=10.0)
    seq = int(engine.next_desired_frame()["seq"])
    engine.on_frame(frame(2, seq, (20.0, 25.0, False)), 10.1)
    # Reconnect; the node was changed locally while Home Assistant was away.
    engine.start_session()
    result = engine.on_frame(frame(9, seq, (20.0, 30.0, False)), 500.0)
    assert result.adopted == []
    assert engine.desired[1].value == 25.0


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
    assert engine.next_desired_frame()["acquisition"] == 1


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
        ExchangeEngine.stale_reason(
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
    engine.set_model(new)
    assert engine.desired[0].value == 25.0
    assert engine.reported[0] is not None
    assert engine.reported[1] is None
    assert engine.next_desired_frame()["values"] == "25,"


def test_persistence_round_trip(engine: ExchangeEngine) -> None:
    synced(engine)
    engine.write(2, True, "user:abc", now=3.0)
    engine.write_acquisition(False, "automation:x", 4.0)
    data = engine.as_dict()
    restored = ExchangeEngine(DELAY)
    restored.set_model(MODEL)
    restored.restore(data, 0.0)
    assert restored.desired == engine.desired
    assert restored.reported == engine.reported
    assert restored.desired_acquisition == engine.desired_acquisition
    # Sequence numbers continue, so acknowledgements of an earlier session never count.
    assert restored.next_desired_frame()["seq"] == engine.desired_seq + 1


@given(
    write_at=st.floats(0, 100),
    report_after=st.floats(0, 10),
    delay=st.floats(0.1, 5),
)
def test_writer_priority_rule(
    write_at: float, report_after: float, delay: float
) -> None:
    e = ExchangeEngine(delay)
    e.set_model(MODEL)
    e.start_session()
    seq = int(e.next_desired_frame()["seq"])
    e.on_frame(frame(1, seq, (20.0, 21.0, False)), write_at - 1)
    e.write(1, 25.0, "user:abc", now=write_at)
    seq = int(e.next_desired_frame()["seq"])
    result = e.on_frame(frame(2, seq, (20.0, 30.0, False)), write_at + report_after)
    # The rule compares the times as given (t_r - t_w), rounding included.
    if (write_at + report_after) - write_at < delay:
        assert e.desired[1].value == 25.0
        assert result.adopted == []
    else:
        assert e.desired[1].value == 30.0
        assert result.adopted == [1]


def test_read_only_point_cannot_be_written(engine: ExchangeEngine) -> None:
    with pytest.raises(ValueError, match="read-only"):
        engine.write(0, 1.0, "user:abc", now=0.0)
    with pytest.raises(IndexError):
        engine.write(7, 1.0, "user:abc", now=0.0)


def test_reconnect_is_not_a_restart(engine: ExchangeEngine) -> None:
    engine.on_frame(frame(1, 0, (1.0, 21.0, False), uptime=1000), 0.0)
    engine.on_frame(frame(2, 0, (1.0, 21.0, False), uptime=2000), 1.0)
    engine.start_session()  # the connection dropped; the node kept running
    engine.on_frame(frame(3, 0, (1.0, 21.0, False), uptime=9000), 9.0)
    assert engine.stats.restarts == 0
    engine.start_session()  # the node rebooted: its frame count starts again
    engine.on_frame(frame(1, 0, (1.0, 21.0, False), uptime=50_000), 60.0)
    assert engine.stats.restarts == 1


def test_unchanged_desired_values_are_not_encoded_again(engine: ExchangeEngine) -> None:
    synced(engine)
    first = engine.next_desired_frame()["values"]
    second = engine.next_desired_frame()["values"]
    assert second is first  # the very same string: no per-cycle encoding
    engine.write(1, 30.0, "user:abc", now=1.0)
    third = engine.next_desired_frame()["values"]
    assert third == "30,0"
    assert engine.desired[1].seq == engine.desired_seq


def test_a_desired_frame_says_whether_it_carries_writes(engine: ExchangeEngine) -> None:
    """The coordinator measures write latency only for frames that carry writes."""
    engine.next_desired_frame()
    assert engine.frame_carries_writes is False
    engine.write(1, 25.0, "user:abc", now=10.0)
    engine.next_desired_frame()
    assert engine.frame_carries_writes is True
    engine.next_desired_frame()  # the cyclic full state: the same values again
    assert engine.frame_carries_writes is False
    engine.start_session()  # a new connection: every desired value goes out again
    engine.next_desired_frame()
    assert engine.frame_carries_writes is True
