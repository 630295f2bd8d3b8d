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

import math
from typing import Final

HEARTBEAT: Final = 10.0
EARLY: Final = 0.002  # seconds a timer may fire before its time and still count


def heartbeat_period(interval: float, failsafe_ms: int) -> float:
    """Seconds between unchanged desired frames to a node that holds them all."""
    period = HEARTBEAT if failsafe_ms <= 0 else min(HEARTBEAT, failsafe_ms / 3000)
    return max(interval, period)


class DesiredSchedule:
    """When the unchanged desired frame goes out next; time passed in (monotonic).

    Home Assistant wakes up for it only when it is due (and for the stale deadline), not at
    every interval: a settled node costs one wake-up per heartbeat.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.last_sent: float | None = None  # monotonic time of the last frame sent

    def next_send(self, *, holds_desired: bool, failsafe_ms: int) -> float:
        """The time of the next desired frame: one interval after the last while the node
        does not hold everything, else one heartbeat period after it (-inf: at once)."""
        if self.last_sent is None:
            return -math.inf
        if not holds_desired:
            return self.last_sent + self.interval
        return self.last_sent + heartbeat_period(self.interval, failsafe_ms)

    def due(self, *, holds_desired: bool, failsafe_ms: int, now: float) -> bool:
        """True if the desired frame goes out at ``now`` (a timer may fire a little early)."""
        send_at = self.next_send(holds_desired=holds_desired, failsafe_ms=failsafe_ms)
        return now >= send_at - EARLY

    def sent(self, now: float) -> None:
        self.last_sent = now
