"""Kept desired values (node option keep_desired): Home Assistant's side, plain Python.

docs/exchange.md, *Reconciliation*: a node that restarted with the kept values of desired
frame g (model key ``g``) holds what every desired value first carried by frame g or an
earlier one says; those count as applied on the new boot (not re-sent as pending, no new
writer-priority window). Desired values first carried after g are pending and sent as
usual; a local change made on the node after its restart is adopted (rule 6).
"""

from __future__ import annotations

from hypothesis import given, strategies as st

from custom_components.data_exchange.engine import ExchangeEngine
from custom_components.data_exchange.persistence import engine_as_dict, restore_engine
from custom_components.data_exchange.protocol import Model
from custom_components.data_exchange.values import CHANGED_BY_NODE
from tests.test_engine import (
    BOOT,
    DELAY,
    OTHER_BOOT,
    frame,
    make_engine,
    seq_of,
    synced,
)
from tests.test_protocol import MODEL_EVENT


def _written(engine: ExchangeEngine) -> tuple[int, int]:
    """Writes the setpoint and the relay in two desired frames, both acknowledged."""
    node_seq = synced(engine)
    engine.write(1, 25.0, "user:abc", now=10.0)
    first = seq_of(engine.next_desired_frame(10.0).args())
    engine.on_frame(frame(node_seq + 1, first, (20.0, 25.0, False)), 10.1)
    engine.write(2, True, "user:abc", now=20.0)
    second = seq_of(engine.next_desired_frame(20.0).args())
    engine.on_frame(frame(node_seq + 2, second, (20.0, 25.0, True)), 20.1)
    return first, second


def test_model_event_carries_the_kept_frame() -> None:
    assert Model.from_event({**MODEL_EVENT, "g": "17"}).kept_seq == 17
    assert Model.from_event(MODEL_EVENT).kept_seq == 0  # absent: nothing kept
    assert Model.from_event({**MODEL_EVENT, "g": str(2**64 - 1)}).kept_seq == 2**64 - 1


def test_restart_with_the_kept_frame_keeps_every_value_applied() -> None:
    engine = make_engine()
    _, second = _written(engine)
    before = {i: (s.seq, s.time) for i, s in engine.desired.items()}
    assert engine.start_session(OTHER_BOOT, 0, kept_seq=second) is True
    assert engine.stats.restarts == 1
    assert engine.acked_seq == second
    assert engine.seen == 0  # seen is of the new boot, not the old one
    assert {i: (s.seq, s.time) for i, s in engine.desired.items()} == before
    args = engine.next_desired_frame(100.0).args()
    # Nothing pending: no write latency measured, no writer-priority window opened.
    assert not engine.frame_carries_writes
    assert args["values"] == "25,1"
    # The node reports its kept values before it applied anything on this boot (a = 0).
    result = engine.on_frame(frame(1, 0, (20.0, 25.0, True)), 100.1)
    assert result.adopted == []
    assert not result.desired_changed
    assert engine.seen == 1  # judged, not deferred
    # A local change after the restart: no window was reopened, so it is adopted (rule 6).
    result = engine.on_frame(frame(2, 0, (20.0, 30.0, True)), 100.2)
    assert result.adopted == [1]
    assert engine.desired[1].value == 30.0
    assert engine.desired[1].changed_by == CHANGED_BY_NODE


def test_values_written_after_the_kept_frame_are_sent_again() -> None:
    engine = make_engine()
    first, _ = _written(engine)
    relay = engine.desired[2]
    # The record of the second frame had not reached the node's flash when it restarted.
    assert engine.start_session(OTHER_BOOT, 0, kept_seq=first) is True
    assert engine.acked_seq == first
    assert engine.desired[1].seq != 0
    assert engine.desired[1].time == 10.0
    assert relay.seq == 0  # pending again
    args = engine.next_desired_frame(100.0).args()
    assert engine.frame_carries_writes
    assert relay.seq == seq_of(args)  # its window from now
    assert relay.time == 100.0
    # The node started with the first frame's values (relay off): deferred, not adopted.
    result = engine.on_frame(frame(1, 0, (20.0, 25.0, False)), 100.1)
    assert result.adopted == []
    assert engine.desired[2].value is True
    result = engine.on_frame(frame(2, seq_of(args), (20.0, 25.0, True)), 100.2)
    assert result.acknowledged == seq_of(args)


def test_a_kept_frame_home_assistant_never_sent_proves_nothing() -> None:
    engine = make_engine()
    _, second = _written(engine)
    # E.g. Home Assistant's Store lost its last frames in a crash: g is beyond its count.
    assert engine.start_session(OTHER_BOOT, 0, kept_seq=engine.desired_seq + 5) is True
    assert engine.acked_seq == 0
    assert all(s.seq == 0 for s in engine.desired.values())
    assert second < engine.desired_seq + 5


def test_without_a_kept_frame_a_restart_reapplies_everything() -> None:
    engine = make_engine()
    _written(engine)
    assert engine.start_session(OTHER_BOOT, 4) is True
    assert engine.acked_seq == 0
    assert engine.seen == 4
    assert all(s.seq == 0 for s in engine.desired.values())


def test_the_kept_frame_means_nothing_on_the_same_boot() -> None:
    engine = make_engine()
    first, second = _written(engine)
    engine.write(1, 26.0, "user:abc", now=30.0)  # not sent yet
    assert engine.start_session(BOOT, 9, kept_seq=first) is False
    assert engine.acked_seq == second  # unchanged by g
    assert engine.desired[1].seq == 0
    assert engine.desired[2].seq != 0


def test_acquisition_kept_like_a_point() -> None:
    engine = make_engine()
    synced(engine)
    engine.write_acquisition(False, "user:abc", now=10.0)
    seq = seq_of(engine.next_desired_frame(10.0).args())
    engine.on_frame(frame(3, seq, (20.0, 21.0, False), running=False), 10.1)
    assert engine.start_session(OTHER_BOOT, 0, kept_seq=seq) is True
    assert engine.desired_acquisition is not None
    assert engine.desired_acquisition.seq == seq  # applied: the node booted paused
    engine.next_desired_frame(100.0)
    assert not engine.frame_carries_writes


@given(
    writes=st.lists(
        st.tuples(st.integers(1, 2), st.booleans(), st.booleans()), max_size=8
    ),
    kept=st.integers(0, 12),
)
def test_pending_after_a_restart_is_exactly_what_the_kept_frame_did_not_carry(
    writes: list[tuple[int, bool, bool]], kept: int
) -> None:
    """For any history of writes (each sent or not), a restart with kept frame g leaves a
    desired value applied exactly when it was first carried by a frame <= g that Home
    Assistant sent; every other one is pending (seq 0) and goes out with the next frame."""
    engine = make_engine()
    synced(engine)
    now = 10.0
    for index, on, send in writes:
        value: float | bool = (25.0 if on else 26.0) if index == 1 else on
        engine.write(index, value, "user:abc", now=now)
        if send:
            engine.next_desired_frame(now)
        now += DELAY
    carried = {i: s.seq for i, s in engine.desired.items()}
    valid = 0 < kept <= engine.desired_seq
    engine.start_session(OTHER_BOOT, 0, kept_seq=kept)
    for index, stamped in engine.desired.items():
        applied = valid and 0 < carried[index] <= kept
        assert (stamped.seq != 0) == applied, (index, carried[index], kept)
    engine.next_desired_frame(now)
    assert all(s.seq != 0 for s in engine.desired.values())


def _local_change_after(engine: ExchangeEngine) -> tuple[int, int]:
    """Synced, then the setpoint changed on the node (25) and adopted; returns the desired
    frame the node had applied before the change, and the node's last frame number."""
    synced(engine)
    before = engine.acked_seq
    result = engine.on_frame(frame(3, before, (20.0, 25.0, False)), 10.0)
    assert result.adopted == [1]
    assert result.desired_changed  # saved within the desired-value deadline
    return before, 3


def test_a_local_change_is_not_covered_by_a_kept_frame_from_before_it() -> None:
    """The node's record of frame g may predate a local change adopted after g (the record
    is written at most every keep_desired_interval, and a SIGKILL loses what ESPHome had
    not synced): the adopted value is applied again, not taken as held. Found by the model
    test (a node killed 4 s after a local change booted with the record of the frame
    before it; Home Assistant then adopted the old value as a local change)."""
    engine = make_engine()
    before, _ = _local_change_after(engine)
    adopted = engine.desired[1]
    assert adopted.seq > before  # first carried by the next frame, not the one before
    assert engine.start_session(OTHER_BOOT, 0, kept_seq=before) is True
    assert adopted.seq == 0
    assert not adopted.held
    args = engine.next_desired_frame(100.0).args()
    assert engine.frame_carries_writes
    assert args["values"] == "25,0"
    # The node booted with the record's 21: deferred until it applied the frame, not
    # adopted back.
    result = engine.on_frame(frame(1, 0, (20.0, 21.0, False)), 100.1)
    assert result.adopted == []
    assert engine.desired[1].value == 25.0


def test_a_local_change_held_by_the_node_is_not_pending_on_its_boot() -> None:
    """The same boot holds what it reported: no frame has to go out for it, it is not
    pending (a different report is judged, not deferred), and a reconnect to the same boot
    does not send it as a write."""
    engine = make_engine()
    before, node_seq = _local_change_after(engine)
    assert not engine.has_unsent
    # A further local change is judged (rule 6: adopted), not deferred as if pending.
    result = engine.on_frame(frame(node_seq + 1, before, (20.0, 26.0, False)), 11.0)
    assert result.adopted == [1]
    assert engine.start_session(BOOT, node_seq + 1) is False
    assert not engine.has_unsent
    assert engine.desired[1].seq != 0


def test_a_local_change_is_covered_once_a_kept_frame_carried_it() -> None:
    engine = make_engine()
    _, node_seq = _local_change_after(engine)
    carried = seq_of(engine.next_desired_frame(20.0).args())
    assert engine.desired[1].seq == carried
    result = engine.on_frame(frame(node_seq + 1, carried, (20.0, 25.0, False)), 20.1)
    assert result.acknowledged == carried
    assert not result.desired_changed  # nothing was pending: no state, no early save
    assert engine.start_session(OTHER_BOOT, 0, kept_seq=carried) is True
    assert engine.desired[1].seq == carried
    engine.next_desired_frame(100.0)
    assert not engine.frame_carries_writes


def test_held_survives_a_home_assistant_restart() -> None:
    engine = make_engine()
    _local_change_after(engine)
    restored = make_engine()
    restore_engine(restored, engine_as_dict(engine))
    assert restored.desired[1].held
    assert restored.desired[1].seq == engine.desired[1].seq
    # Same node boot: the held value is not sent as a write on the new session.
    assert restored.start_session(BOOT, 3) is False
    assert not restored.has_unsent
