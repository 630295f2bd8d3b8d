"""Fuzzed desired frames against the sanitized simulated node (issue 19).

10,000 frames per scripts/test run (``DX_FUZZ_FRAMES``; scripts/fuzz runs 1,000,000),
structure-aware and random (tests/firmware/fuzz.py), sent through the native API in
batches. After every batch a valid frame that changes a point (the probe) must be answered
at once. Every node frame received is checked against the oracle's timeline: there must
be a point in the sequence of frames sent at which the node's applied sequence number,
refused and ignored counts, last refusal, acquisition and writable values are all what the
oracle says, and these points never go back. So a malformed frame that was applied, a
valid one refused, a wrong reason or a value applied wrongly each fail the test. The node
runs with ASan, LSan and UBSan: a report, a crash or an unclean exit fails it too
(sanitized_node), and its heap in use (the sanitizer allocator's count) may not grow
after the first tenth of the run.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
import json
import os
from pathlib import Path
import random
import time

from tests.firmware.fuzz import (
    HEAP_EVENT,
    UINT64_MAX,
    Frame,
    FrameFuzzer,
    Oracle,
    RawClient,
    RawFrame,
    encode_float,
    f32,
)
from tests.harness.node import Node

FRAMES = int(os.environ.get("DX_FUZZ_FRAMES", "10000"))
SEED = int(os.environ.get("DX_FUZZ_SEED", "19"))
REPORT = os.environ.get("DX_FUZZ_REPORT", "")
BATCH = 50
# Heap in use may differ by what is in flight (a log line, a frame being sent) at the
# moment it is read, not by more.
HEAP_SLACK = 4096


@dataclass(frozen=True)
class Moment:
    """What the node must report once it has taken the frames up to one point."""

    applied: int
    refused: int
    foreign: int
    refusal: str
    acquisition: str
    values: tuple[str, ...]


def _moment(frame: RawFrame, positions: list[int]) -> Moment:
    return Moment(
        frame.applied,
        frame.refused,
        frame.foreign,
        frame.data["e"],
        frame.data["q"],
        tuple(frame.writable(positions)),
    )


class Timeline:
    """The moments after each frame sent, and the node frames matched against them."""

    def __init__(self, start: Moment) -> None:
        self.moments = [start]
        self.position = 0  # the moment the last node frame matched
        self.checked = 0  # node frames checked so far

    def add(self, moment: Moment) -> None:
        self.moments.append(moment)

    def match(self, seen: Moment, sent: list[Frame]) -> None:
        for index in range(self.position, len(self.moments)):
            if self.moments[index] == seen:
                self.position = index
                return
        recent = "\n".join(f"  {f.kind}: {f.args()!r}"[:400] for f in sent[-5:])
        raise AssertionError(
            f"node reported {seen}\nexpected one of, from the last match on:\n"
            + "\n".join(f"  {m}" for m in self.moments[self.position :][:8])
            + f"\nlast frames sent:\n{recent}"
        )

    def rebase(self) -> None:
        """Forget the moments before the last match (bounded memory on long runs)."""
        self.moments = self.moments[self.position :]
        self.position = 0


async def _heap(client: RawClient) -> int:
    answer = await client.request("dx_probe_heap", {}, HEAP_EVENT)
    assert answer["source"] == "asan", answer
    return int(answer["bytes"])


def _probe(fuzzer: FrameFuzzer, oracle: Oracle, number: int) -> Frame:
    """A valid frame that changes one number point (so the node answers at once)."""
    fuzzer.seq += 1
    values = [""] * len(oracle.points)
    index = next(i for i, p in enumerate(oracle.points) if p.type == "N")
    point = oracle.points[index]
    for candidate in (point.minimum + point.step * (number % 2), point.maximum):
        text = encode_float(f32(candidate))
        if text != oracle.state[index]:
            values[index] = text
            break
    return Frame(
        fuzzer.token,
        str(fuzzer.seq),
        str(UINT64_MAX),
        fuzzer.model_id,
        ",".join(values),
        -1,
        "probe",
    )


async def test_fuzzed_desired_frames(sanitized_node: Node) -> None:
    started = time.monotonic()
    client = await RawClient(sanitized_node.host, sanitized_node.port).connect()
    try:
        points, positions = client.writable_points()
        assert [p.type for p in points] == ["N", "W", "N", "L", "X"]
        first = await client.frame_where(lambda f: True)
        oracle = Oracle(
            points,
            client.model["m"],
            client.model["k"],
            first.writable(positions),
        )
        oracle.acquisition = first.data["q"] == "1"
        fuzzer = FrameFuzzer(
            random.Random(SEED), points, client.model["m"], client.model["k"]
        )
        start = _moment(first, positions)
        timeline = Timeline(start)
        applied, refused, foreign, refusal = (
            start.applied,
            start.refused,
            start.foreign,
            start.refusal,
        )
        outcomes: Counter[str] = Counter()
        sent: list[Frame] = []
        heap: list[int] = []
        total = 0
        batches = 0
        while total < FRAMES:
            batch = [fuzzer.next() for _ in range(min(BATCH, FRAMES - total))]
            batch.append(_probe(fuzzer, oracle, batches))
            for frame in batch:
                verdict = oracle.judge(frame)
                outcomes[f"{verdict.outcome} {frame.kind}"] += 1
                if verdict.outcome == "applied":
                    applied = int(frame.seq)
                elif verdict.outcome == "refused":
                    refused += 1
                    refusal = verdict.refusal
                else:
                    foreign += 1
                timeline.add(
                    Moment(
                        applied,
                        refused,
                        foreign,
                        refusal,
                        "1" if oracle.acquisition else "0",
                        tuple(oracle.state),
                    )
                )
                sent.append(frame)
                await client.send(frame)
            probe_seq = int(batch[-1].seq)
            # Never stalls: the probe is answered (at once: it changes a point).
            await client.frame_where(lambda f, s=probe_seq: f.applied == s, timeout=20)
            for node_frame in client.frames:
                timeline.match(_moment(node_frame, positions), sent)
            timeline.checked += len(client.frames)
            client.frames.clear()  # checked: bounded memory on long runs
            assert timeline.moments[timeline.position].applied == probe_seq
            timeline.rebase()
            del sent[:-10]
            total += len(batch) - 1
            batches += 1
            if batches % max(1, FRAMES // BATCH // 10) == 0:
                heap.append(await _heap(client))
        assert sanitized_node.running
        # Memory: what the node holds after the first tenth (its buffers grown to the
        # largest frame) is what it holds at the end.
        heap.append(await _heap(client))
        assert max(heap[1:]) <= heap[0] + HEAP_SLACK, heap
        elapsed = time.monotonic() - started
        summary = {
            "frames": total,
            "seed": SEED,
            "seconds": round(elapsed, 1),
            "node_frames_checked": timeline.checked,
            "heap_bytes": heap,
            "outcomes": dict(sorted(outcomes.items())),
        }
        print(json.dumps(summary, indent=1))
        if REPORT:
            report = Path(REPORT)
            await asyncio.to_thread(
                report.write_text, json.dumps(summary, indent=1) + "\n"
            )
        # Every kind of frame was sent, and each outcome occurred.
        kinds = {key.split(" ", 1)[0] for key in outcomes}
        assert kinds == {"applied", "refused", "ignored"}, outcomes
    except BaseException:
        print("node log:\n" + sanitized_node.log_tail(40))
        raise
    finally:
        await client.disconnect()
