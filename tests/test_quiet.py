"""The quiet path of the engine (a full frame equal to the last one is not judged point by
point again) and holds_desired's incremental comparison change no decision: a differential
property test against the same engine with both switched off, over random interleavings of node frames (full and
change, local changes, acknowledgements, fail-safe, pause), writes, grouped writes, desired
frames and time. Plain Python (tests/test_engine.py's helpers)."""

from __future__ import annotations

from dataclasses import astuple
from typing import Any

from hypothesis import given, settings, strategies as st

from custom_components.data_exchange.engine import ExchangeEngine
from custom_components.data_exchange.values import same
from tests.test_engine import BOOT, DELAY, LIMITS, MODEL, frame


class LoudEngine(ExchangeEngine):
    """The same engine, judging every point of every frame (no key ever matches), and
    comparing every desired value in holds_desired (no incremental bookkeeping)."""

    def _quiet_key(self, values: object) -> tuple[object, ...]:
        return (object(),)

    def _differing(self) -> set[int]:
        return {
            i
            for i, d in self.desired.items()
            if (r := self.reported[i]) is None or not same(r.value, d.value)
        }


SETPOINTS = st.sampled_from([20.0, 21.0, 25.0, 30.0, 40.0])  # 40 is out of range
STEP = st.one_of(
    st.tuples(st.just("full"), SETPOINTS, st.booleans(), st.booleans(), st.booleans()),
    st.tuples(st.just("change"), SETPOINTS),
    st.tuples(st.just("write"), st.sampled_from([21.0, 25.0, 30.0])),
    st.tuples(st.just("relay"), st.booleans()),
    st.tuples(st.just("pause"), st.booleans()),
    st.tuples(st.just("send")),
    st.tuples(st.just("reconnect")),
    st.tuples(st.just("wait"), st.sampled_from([0.1, 1.0, DELAY, 10.0])),
)


def snapshot(engine: ExchangeEngine) -> tuple[Any, ...]:
    return (
        {i: (d.value, d.seq, d.changed_by, d.time) for i, d in engine.desired.items()},
        [None if r is None else (r.value, r.time) for r in engine.reported],
        engine.seen,
        engine.acked_seq,
        engine.desired_seq,
        engine.holds_desired(),
        None
        if engine.desired_acquisition is None
        else engine.desired_acquisition.value,
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(STEP, min_size=1, max_size=60))
def test_the_quiet_path_changes_no_decision(steps: list[tuple[Any, ...]]) -> None:
    engines = [ExchangeEngine(DELAY), LoudEngine(DELAY)]
    for engine in engines:
        engine.set_model(MODEL, LIMITS)
        engine.start_session(BOOT, 0)
    now, node_seq, applied = 0.0, 0, 0
    setpoint, relay = 21.0, False
    for step in steps:
        kind = step[0]
        results: list[Any] = []
        for engine in engines:
            if kind == "full":
                _, value, acknowledge, failsafe, running = step
                results.append(
                    engine.on_frame(
                        frame(
                            node_seq + 1,
                            engine.desired_seq if acknowledge else applied,
                            (20.0, value, relay),
                            failsafe=failsafe,
                            running=running,
                        ),
                        now,
                    )
                )
            elif kind == "change":
                results.append(
                    engine.on_frame(
                        frame(node_seq + 1, applied, (step[1],), indices=(1,)), now
                    )
                )
            elif kind == "write":
                engine.write(1, step[1], "user:abc", now)
            elif kind == "relay":
                engine.write(2, step[1], "user:abc", now, group=engine.new_group())
            elif kind == "pause":
                engine.write_acquisition(step[1], "user:abc", now)
            elif kind == "reconnect":
                engine.start_session(BOOT, node_seq)
            elif kind == "send":
                results.append(engine.next_desired_frame(now).args())
        if kind == "full":
            node_seq += 1
            applied = engines[0].desired_seq if step[2] else applied
            setpoint = step[1]
        elif kind == "change":
            node_seq += 1
            setpoint = step[1]
        elif kind == "wait":
            now += step[1]
        if results and not isinstance(results[0], dict):
            results = [astuple(r) for r in results]
        assert results[0] == results[1] if results else True, step
        assert snapshot(engines[0]) == snapshot(engines[1]), step
    assert setpoint is not None


def test_a_write_after_a_quiet_frame_is_judged_on_the_next_equal_frame() -> None:
    """The quiet path is armed by a settled frame; a write between two equal frames must
    disarm it, or the node's old value would never be judged against the new one."""
    engine = ExchangeEngine(DELAY)
    engine.set_model(MODEL, LIMITS)
    engine.start_session(BOOT, 0)
    engine.on_frame(frame(1, 0, (20.0, 21.0, False)), 0.0)
    seq = int(str(engine.next_desired_frame(0.0).args()["seq"]))
    engine.on_frame(frame(2, seq, (20.0, 21.0, False)), 0.1)
    engine.on_frame(frame(3, seq, (20.0, 21.0, False)), 0.2)  # quiet
    assert engine._quiet is not None
    engine.write(1, 25.0, "user:abc", 0.3)
    sent = int(str(engine.next_desired_frame(0.3).args()["seq"]))
    # Acknowledged but still 21 after the writer priority delay: the node changed it back
    # locally, so it is adopted; a skipped judgement would leave 25 desired forever.
    result = engine.on_frame(frame(4, sent, (20.0, 21.0, False)), 0.3 + DELAY + 1)
    assert result.adopted == [1]
    assert engine.desired[1].value == 21.0


def test_a_point_home_assistant_wins_is_judged_again_once_the_delay_is_over() -> None:
    """Home Assistant winning (rule 5) depends on the time: the same frame after the writer
    priority delay is a local change to adopt (rule 6), so such a frame never arms the quiet
    path."""
    engine = ExchangeEngine(DELAY)
    engine.set_model(MODEL, LIMITS)
    engine.start_session(BOOT, 0)
    engine.on_frame(frame(1, 0, (20.0, 21.0, False)), 0.0)
    seq = int(str(engine.next_desired_frame(0.0).args()["seq"]))
    engine.on_frame(frame(2, seq, (20.0, 21.0, False)), 0.1)
    engine.write(1, 25.0, "user:abc", 1.0)
    sent = int(str(engine.next_desired_frame(1.0).args()["seq"]))
    result = engine.on_frame(frame(3, sent, (20.0, 21.0, False)), 1.1)
    assert not result.adopted  # within the delay: Home Assistant wins
    assert engine.desired[1].value == 25.0
    result = engine.on_frame(frame(4, sent, (20.0, 21.0, False)), 1.0 + DELAY + 0.1)
    assert result.adopted == [1]
    assert engine.desired[1].value == 21.0


def test_a_change_frame_home_assistant_wins_ends_holding_desired() -> None:
    """holds_desired compares only the points changed since its last call: a change frame
    whose value Home Assistant wins (within the writer-priority delay) must end "the node
    holds everything", or the desired value would wait for the heartbeat."""
    engine = ExchangeEngine(DELAY)
    engine.set_model(MODEL, LIMITS)
    engine.start_session(BOOT, 0)
    engine.on_frame(frame(1, 0, (20.0, 21.0, False)), 0.0)
    engine.write(1, 25.0, "user:abc", 1.0)
    sent = int(str(engine.next_desired_frame(1.0).args()["seq"]))
    engine.on_frame(frame(2, sent, (20.0, 25.0, False)), 1.1)
    assert engine.holds_desired()
    result = engine.on_frame(frame(3, sent, (21.0,), indices=(1,)), 1.2)
    assert not result.adopted  # within the delay: Home Assistant wins
    assert engine.desired[1].value == 25.0
    assert not engine.holds_desired()
