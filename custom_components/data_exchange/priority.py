"""Which desired value stands: writer priority, and what a refusal drops.

Plain Python, time passed in (monotonic). Writer priority as docs/exchange.md states it
("Writer priority", rules 1-6), for one point of one node frame; the engine applies the
verdict. A refusal drops what the refused frame carried ("Refused desired frames").
"""

from __future__ import annotations

from enum import Enum

from .protocol import Value
from .values import CHANGED_BY_NODE, Stamped, same


class Verdict(Enum):
    SETTLED = "settled"  # nothing to do: equal, Home Assistant's write wins, or unknown
    DEFER = "defer"  # the desired value is pending: judged once the node applied it
    ADOPT = "adopt"  # a local change on the node becomes the desired value
    FIRST = "first"  # nothing desired yet: the node's value becomes the desired value


def judge(
    desired: Stamped | None,
    reported: Value,
    *,
    pending: bool,
    now: float,
    delay: float,
    failsafe: bool = False,
) -> Verdict:
    """The verdict on a reported value, given the desired one.

    ``pending``: the node has not yet applied a desired frame carrying ``desired``.
    ``delay``: the writer-priority delay; a value written in Home Assistant wins over a
    different report for that long after the first frame carrying it was sent.
    ``failsafe``: the reported value is the safe value the node's fail-safe set, not a
    local change, so the desired value stands (the next desired frame ends the fail-safe).
    """
    if reported is None:
        return Verdict.SETTLED
    if desired is None:
        return Verdict.FIRST
    if same(desired.value, reported):
        return Verdict.SETTLED
    if pending:
        return Verdict.DEFER
    if failsafe:
        return Verdict.SETTLED
    if desired.changed_by != CHANGED_BY_NODE and now - desired.time < delay:
        return (
            Verdict.SETTLED
        )  # Home Assistant's recent write wins and keeps being sent
    return Verdict.ADOPT


def dropped_by_refusal(
    desired: dict[int, Stamped], index: int, refused_seq: int
) -> list[int]:
    """The desired values a refusal of point ``index`` in frame ``refused_seq`` drops.

    The refused value and the rest of its grouped write (all or nothing), each only if that
    frame carried it: a value written since stays. The node's own value then becomes the
    desired value again (if the node would take it back), so every other point flows.
    """
    refused = desired.get(index)
    if refused is None or not 0 < refused.seq <= refused_seq:
        return []
    return [
        i
        for i, s in desired.items()
        if (i == index or (refused.group and s.group == refused.group))
        and 0 < s.seq <= refused_seq
    ]
