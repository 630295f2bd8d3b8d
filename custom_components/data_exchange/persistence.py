"""The Store format of an exchange engine: what survives a Home Assistant restart.

Monotonic times do not survive a restart: restored values count as set long ago, and
values still pending get their writer-priority window when they are sent. The desired
frame counter goes on SEQ_RESTORE_MARGIN ahead of the saved one, so after a crash (the
counter is saved lazily) no frame number is used twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .protocol import PointType
from .values import stamped_as_dict, stamped_from_dict

if TYPE_CHECKING:
    from .engine import ExchangeEngine

# The counter is on disk at most 10 minutes after it moved (const.STORE_REPORTED_WITHIN);
# at the shortest cycle (50 ms) that is 12,000 frames.
SEQ_RESTORE_MARGIN = 1 << 20


def engine_as_dict(engine: ExchangeEngine) -> dict[str, Any]:
    acquisition = engine.desired_acquisition
    return {
        "desired_seq": engine.desired_seq,
        "acked_seq": engine.acked_seq,
        "seen": engine.seen,
        "node_boot": engine.node_boot,
        "reported": [
            None if s is None else stamped_as_dict(s) for s in engine.reported
        ],
        "desired": {str(i): stamped_as_dict(s) for i, s in engine.desired.items()},
        "desired_acquisition": None
        if acquisition is None
        else stamped_as_dict(acquisition),
        "acquisition_running": engine.acquisition_running,
    }


def restore_engine(engine: ExchangeEngine, data: dict[str, Any]) -> None:
    model = engine.model
    if model is None:
        raise RuntimeError("no model yet")
    engine.desired_seq = int(data.get("desired_seq", 0)) + SEQ_RESTORE_MARGIN
    engine.acked_seq = int(data.get("acked_seq", 0))
    engine.seen = int(data.get("seen", 0))
    boot = data.get("node_boot")
    engine.node_boot = None if boot is None else str(boot)
    reported = data.get("reported") or []
    if len(reported) == len(model.points):
        engine.reported = [
            None if r is None else stamped_from_dict(r, model.points[i].type)
            for i, r in enumerate(reported)
        ]
        engine.values_replaced()
    for key, raw in (data.get("desired") or {}).items():
        index = int(key)
        if 0 <= index < len(model.points) and model.points[index].type.writable:
            engine.keep_desired(index, stamped_from_dict(raw, model.points[index].type))
    acquisition = data.get("desired_acquisition")
    if acquisition is not None:
        engine.keep_acquisition(stamped_from_dict(acquisition, PointType.SWITCH))
    engine.acquisition_running = bool(data.get("acquisition_running", True))
    # A node repeats its last refusal in every frame; one from before the restart is old.
    engine.refusal_seq = engine.desired_seq
