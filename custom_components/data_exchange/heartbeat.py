"""When the unchanged desired state goes out again (plain Python, time passed in).

While the node does not hold every desired value (a write not yet acknowledged, a report
that differs, a judgement deferred, the fail-safe active), Home Assistant sends its full
desired state every desired frame interval, as it always did. Once the node's full frames
show that it holds all of it, the same frame would change nothing: it then goes out as a
**heartbeat** only, every ``HEARTBEAT`` seconds, or every third of the node's fail-safe
timeout when that is shorter (so a node with a fail-safe never falls into it while Home
Assistant is there), and never more often than the interval. docs/exchange.md, *Every cycle*.
"""

from __future__ import annotations

from typing import Final

HEARTBEAT: Final = 10.0


def heartbeat_period(interval: float, failsafe_ms: int) -> float:
    """Seconds between unchanged desired frames to a node that holds them all."""
    period = HEARTBEAT if failsafe_ms <= 0 else min(HEARTBEAT, failsafe_ms / 3000)
    return max(interval, period)


class DesiredSchedule:
    """Decides, at each tick of the desired frame interval, whether a frame goes out."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.last_sent: float | None = None  # monotonic time of the last frame sent
        self.skipped = 0  # ticks without a frame (diagnostics)

    def due(self, *, holds_desired: bool, failsafe_ms: int, now: float) -> bool:
        """True if the tick at ``now`` sends the desired frame."""
        if not holds_desired or self.last_sent is None:
            return True
        period = heartbeat_period(self.interval, failsafe_ms)
        # Ticks come every interval, a little late or early: half an interval of slack.
        if now - self.last_sent >= period - self.interval / 2:
            return True
        self.skipped += 1
        return False

    def sent(self, now: float) -> None:
        self.last_sent = now
