"""Bad input from the network: hand-made frames sent by a real node over its API connection.

The node (tests/nodes/injects.yaml) has points that never change on their own and API
actions that make it send any frame event we describe. Every bad frame carries values the
node never has (level 12345, relay on, setpoint 99): none of them may ever show up.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
import logging
from typing import Any

from google.protobuf.message import DecodeError
from homeassistant.const import EVENT_STATE_CHANGED
from homeassistant.core import Event, HomeAssistant, callback
import pytest

from custom_components.data_exchange.listeners import Topic
from custom_components.data_exchange.manager import NodeManager
from tests.conftest import NODES
from tests.harness.node import Node, NodeFactory
from tests.harness.peer import Peer
from tests.integration.conftest import (
    FrameWatch,
    entity_ids,
    problems_in_log,
    setup_node,
    until,
)

FORGED = "12345,1,99,'forged"  # what a bad frame would set, were it applied
# The node's text sensor holds bytes that are not UTF-8: they arrive as U+FFFD.
FORGED_STATES = ("12345.0", "on", "99.0", "forged")
REAL = (1.5, False, 20.0, "caf\u00e9 \ufffd\ufffd(")


@pytest.fixture
def injects(node_factory: NodeFactory) -> Node:
    return node_factory.start(NODES / "injects.yaml")


@pytest.fixture
async def injector(injects: Node) -> AsyncIterator[Peer]:
    """A plain API client (not ours) that triggers the node's inject actions."""
    async with Peer(injects, "injector") as client:
        yield client


def frame(manager: NodeManager, **change: Any) -> dict[str, Any]:
    """A well-formed next frame carrying the forged values, with ``change`` applied."""
    assert manager.engine.model is not None
    return {
        "v": "5",
        "m": manager.engine.model.model_id,
        "s": str(manager.engine.stats.last_seq + 1),
        "a": "0",
        "e": "",
        "o": "0",
        "x": FORGED,
        "pad": 0,
    } | change


def applied_frame(manager: NodeManager, **change: Any) -> dict[str, Any]:
    """A well-formed frame numbered ten ahead: the node's own frames (one per 100 ms
    cycle) may take the next numbers before the injected one arrives, and a frame whose
    number was taken is dropped as a duplicate (what CI once saw under load)."""
    ahead = str(manager.engine.stats.last_seq + 10)
    return frame(manager, s=ahead) | change


# (case id, action, arguments beyond the well-formed frame, words in the log line)
CASES = [
    ("wrong_model_id", "inject", {"m": "deadbeef"}, "model 'deadbeef'"),
    ("too_few_values", "inject", {"x": "12345,1"}, "2 values for 4 points"),
    ("too_many", "inject", {"x": "12345,1,99,'x,1"}, "5 values for 4 points"),
    ("garbage_values", "inject", {"x": "\x01'; DROP TABLE states;--"}, "values for"),
    ("garbage_sequence", "inject", {"s": "12a"}, "not an unsigned integer"),
    ("nan", "inject", {"x": "nan,1,99,'x"}, "SENSOR value 'nan'"),
    ("inf", "inject", {"x": "12345,1,inf,'x"}, "NUMBER value 'inf'"),
    ("huge_number", "inject", {"x": "1e999,1,99,'x"}, "out of range"),
    # The largest event the node's API sends (it refuses anything over 65535 bytes).
    ("oversized", "inject", {"pad": 64_000}, "SENSOR value '1111"),
    # Protocol 4: a frame of version 3 (the previous protocol) is as unknown as one of 5.
    ("old_version", "inject", {"v": "3"}, "unsupported protocol version '3'"),
    ("older_version", "inject", {"v": "2"}, "unsupported protocol version '2'"),
    ("unknown_version", "inject", {"v": "6"}, "unsupported protocol version '6'"),
    # The last refusal (key e, "seq:writable_index:reason") is checked like every key.
    ("garbage_refusal", "inject", {"e": "garbage"}, "malformed refusal 'garbage'"),
    ("unknown_reason", "inject", {"e": "1:0:bogus"}, "malformed refusal '1:0:bogus'"),
    ("refusal_bad_point", "inject", {"e": "1:x:step"}, "malformed refusal '1:x:step'"),
    (
        "refusal_signed_seq",
        "inject",
        {"e": "-1:0:step"},
        "malformed refusal '-1:0:step'",
    ),
    ("refusal_extra_part", "inject", {"e": "1:0:step:"}, "malformed refusal"),
    ("garbage_foreign_count", "inject", {"o": "-1"}, "'o' is not an unsigned integer"),
    ("no_fields", "inject_empty", None, "missing field"),
    ("unasked_model", "inject_model", {"p": "N00000001"}, "nobody asked for"),
]


@pytest.mark.parametrize(
    ("action", "change", "words"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
async def test_bad_frame_is_rejected_counted_and_logged(
    hass: HomeAssistant,
    injects: Node,
    injector: Peer,
    caplog: pytest.LogCaptureFixture,
    action: str,
    change: dict[str, Any] | None,
    words: str,
) -> None:
    entry = await setup_node(hass, injects)
    manager: NodeManager = entry.runtime_data
    watch = FrameWatch(manager)
    seen = _record_point_states(hass, entry)
    counter = next(
        e for e in entity_ids(hass, entry, "sensor") if e.endswith("malformed_frames")
    )
    assert hass.states.get(counter).state == "0"
    caplog.clear()

    await injector.call(
        action, **(frame(manager, **change) if action == "inject" else change or {})
    )
    await until(hass, lambda: hass.states.get(counter).state == "1")
    # Real frames go on after it, and still nothing forged shows.
    await watch.more(5)

    assert manager.malformed_frames == 1
    assert [v.value for v in manager.engine.reported if v] == list(REAL)
    assert not [s for s in seen if s in FORGED_STATES], seen
    assert manager.connected
    assert manager.stale_reason is None
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("custom_components.data_exchange")
        and r.levelno == logging.WARNING
    ]
    assert len(warnings) == 1, warnings
    assert "rejected a malformed frame" in warnings[0]
    assert words in warnings[0], warnings[0]
    assert problems_in_log(caplog.records) == []


@pytest.mark.parametrize(
    "refusal",
    # No refusal since boot; a frame-level refusal of a desired frame numbered 0 (what the
    # node sends for a non-numeric seq, which it cannot number).
    ["", "0::format"],
    ids=["no_refusal", "frame_refusal"],
)
async def test_a_well_formed_injected_frame_is_applied(
    hass: HomeAssistant, injects: Node, injector: Peer, refusal: str
) -> None:
    """The control case: the injection path reaches the manager, so the cases above
    would see forged values if the integration took them."""
    entry = await setup_node(hass, injects)
    manager: NodeManager = entry.runtime_data
    seen = _record_point_states(hass, entry)
    await injector.call("inject", **applied_frame(manager, e=refusal))
    await until(hass, lambda: "12345.0" in seen)
    assert manager.malformed_frames == 0


async def test_text_longer_than_a_state_is_cut_not_lost(
    hass: HomeAssistant,
    injects: Node,
    injector: Peer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A well-formed frame whose text sensor value is longer than a state may be."""
    entry = await setup_node(hass, injects)
    manager: NodeManager = entry.runtime_data
    seen = _record_point_states(hass, entry)
    await injector.call("inject", **applied_frame(manager, x="1.5,0,20,'" + "a" * 300))
    await until(hass, lambda: "a" * 255 in seen)
    assert problems_in_log(caplog.records) == []


async def test_only_the_first_bad_frame_of_a_connection_is_logged(
    hass: HomeAssistant,
    injects: Node,
    injector: Peer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    entry = await setup_node(hass, injects)
    manager: NodeManager = entry.runtime_data
    counter = next(
        e for e in entity_ids(hass, entry, "sensor") if e.endswith("malformed_frames")
    )
    writes: list[str] = []

    @callback
    def counted(event: Event) -> None:
        if event.data["entity_id"] == counter:
            writes.append(event.data["new_state"].state)

    hass.bus.async_listen(EVENT_STATE_CHANGED, counted)
    updates: list[int] = []
    manager.listeners.add_topic(
        Topic.IGNORED, lambda: updates.append(manager.malformed_frames)
    )
    caplog.clear()
    for _ in range(30):
        await injector.call("inject", **frame(manager, v="9"))
    await until(hass, lambda: hass.states.get(counter).state == "30")
    warnings = [
        r
        for r in caplog.records
        if "rejected a malformed" in r.getMessage() and r.levelno == logging.WARNING
    ]
    assert len(warnings) == 1
    # Thirty rejections, but the counter entity was written at most once a second.
    assert manager.malformed_frames == 30
    assert len(writes) < 10, writes


async def test_bytes_that_are_not_utf8_end_the_connection_not_the_node(
    hass: HomeAssistant,
    injects: Node,
    injector: Peer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A message the API client cannot decode at all: the connection is dropped and made
    again, like any other outage; nothing of the message is applied."""
    caplog.set_level(logging.INFO, logger="custom_components.data_exchange")
    entry = await setup_node(hass, injects)
    manager: NodeManager = entry.runtime_data
    seen = _record_point_states(hass, entry)
    connects = manager.connection.stats.connects
    # The library's decode error reaches the event loop's exception handler; expected here
    # (and only this one), so it is taken out of what the test plugin re-raises.
    previous = hass.loop.get_exception_handler()
    decode_errors: list[BaseException] = []

    def handler(loop: Any, context: dict[str, Any]) -> None:
        if isinstance(context.get("exception"), DecodeError):
            decode_errors.append(context["exception"])
            return
        assert previous is not None
        previous(loop, context)

    hass.loop.set_exception_handler(handler)
    await injector.call("inject_bytes")
    await until(
        hass,
        lambda: (
            manager.connection.stats.connects > connects
            and manager.stale_reason is None
        ),
        30,
    )
    hass.loop.set_exception_handler(previous)
    assert len(decode_errors) == 1
    assert not [s for s in seen if s in FORGED_STATES], seen
    # aioesphomeapi logs the message it could not decode as an error, with a traceback:
    # the library's behaviour (docs/reliability.md). Nothing of ours logs an error.
    problems = problems_in_log(caplog.records)
    assert problems, "the library's decode error was expected in the log"
    assert all("Invalid protobuf message" in p for p in problems), problems


def _record_point_states(hass: HomeAssistant, entry: Any) -> list[str]:
    """Every state the node's point entities take from now on."""
    points = {
        e
        for domain in ("sensor", "switch", "number")
        for e in entity_ids(hass, entry, domain)
        if e.endswith(("level", "relay", "setpoint", "raw"))
    }
    seen: list[str] = []

    @callback
    def record(event: Event) -> None:
        if event.data["entity_id"] in points and event.data["new_state"]:
            seen.append(event.data["new_state"].state)

    hass.bus.async_listen(EVENT_STATE_CHANGED, record)
    return seen
