"""Sessions: what a new connection to a node keeps, and what a node restart undoes.

The rules are in docs/exchange.md (*Reconciliation*). A node with ``keep_desired`` starts a
new boot with the values of one of Home Assistant's own earlier desired frames (its describe
answer says which one: ``kept_seq``, model key ``g``); the desired values that frame carried
count as applied on the new boot, so they are neither sent as pending again nor given a new
writer-priority window. Plain Python, unit-tested with the engine (tests/test_keep.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .engine import ExchangeEngine
    from .values import Stamped


def start_session(
    engine: ExchangeEngine,
    boot_id: str,
    node_seq: int,
    kept_seq: int = 0,
    *,
    acquisition_key: int,
) -> bool:
    """A new connection; the node said (describe answer) its boot id, its last frame and
    the kept desired frame it started this boot with.

    Returns True if the node restarted since Home Assistant last heard of it (or Home
    Assistant never did). Then nothing it acknowledged counts, except what its kept desired
    frame ``kept_seq`` carried: the desired values first carried by that frame or an earlier
    one (still desired, so that frame carried them too) are what the node holds now. Every
    other desired value is applied again, and ``seen`` starts from the node's current frame
    (``seen`` is meaningful only for the boot it came from). Without a restart, values the
    node acknowledged keep their state; values not yet acknowledged go out again.
    """
    restarted = boot_id != engine.node_boot
    if restarted:
        if engine.node_boot is not None:
            engine.stats.restarts += 1
        # A kept frame Home Assistant never sent (its Store lost the last frames in a
        # crash, or another Home Assistant drove the node) proves nothing about its values.
        engine.acked_seq = kept_seq if 0 < kept_seq <= engine.desired_seq else 0
        engine.seen = node_seq
    engine.node_boot = boot_id
    carried: list[tuple[int, Stamped | None]] = [
        *engine.desired.items(),
        (acquisition_key, engine.desired_acquisition),
    ]
    for index, stamped in carried:
        if stamped is None:
            continue
        if restarted:
            # What the old boot held proves nothing on the new one, except the kept frame.
            stamped.held = False
            if not 0 < stamped.seq <= engine.acked_seq:
                stamped.seq = 0
        if stamped.seq == 0 or (engine.acked_seq < stamped.seq and not stamped.held):
            stamped.seq = 0
            engine.resend(index, stamped)
    return restarted
