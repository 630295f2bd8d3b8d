"""The Data Exchange wire format (protocol version 5), as documented in docs/protocol.md.

Plain Python without Home Assistant imports: the firmware tests, the exchange engine and
the benchmarks all use this one implementation. Everything decoded here comes from the
network and is treated as untrusted: any deviation raises ProtocolError.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
import re
from typing import Final

from .codec import (
    Ages,
    PointType,
    ProtocolError,
    Value,
    decode_value,
    decode_values,
    encode_value,
    encode_values,
)
from .fields import (
    is_uint,
    read_flag,
    read_hex16,
    read_positions,
    read_safe_points,
    read_text,
    read_uint,
)

__all__ = [
    "PointType",
    "ProtocolError",
    "Value",
    "decode_value",
    "decode_values",
    "encode_value",
    "encode_values",
]

PROTOCOL_VERSION: Final = 5
# Nodes send frames only to API clients whose Hello starts with this name.
CLIENT_INFO_PREFIX: Final = "data_exchange"
FRAME_EVENT: Final = "esphome.data_exchange"
MODEL_EVENT: Final = "esphome.data_exchange_model"
WRITE_ACTION: Final = "data_exchange_write"
DESCRIBE_ACTION: Final = "data_exchange_describe"
# The node refuses any incoming message over 32768 bytes and drops the connection; a
# desired frame must stay well below (protobuf framing and the other arguments).
MAX_DESIRED_VALUES_BYTES: Final = 32_000
# Largest frame or model event accepted from a node (its send limit is 65535 bytes).
MAX_EVENT_BYTES: Final = 65_535

_HEX8 = re.compile(r"[0-9a-f]{8}")
# A full frame's clock: what changes from one cycle frame to the next while nothing else does.
_CLOCK_KEYS: Final = frozenset("suwd")


class ProtocolVersionError(ProtocolError):
    """The node speaks another protocol version than this Home Assistant."""

    def __init__(self, version: str) -> None:
        super().__init__(f"unsupported protocol version {version[:8]!r}")
        self.version = version[:8]


@dataclass(frozen=True, slots=True)
class ModelPoint:
    """One point: its type and the native API key of the entity it stands for."""

    type: PointType
    key: int


@dataclass(frozen=True, slots=True)
class Model:
    """A node's point list, in frame order."""

    model_id: str
    cycle_ms: int
    failsafe_ms: int
    points: tuple[ModelPoint, ...]
    # Where the node stood when it answered the describe request: its boot id (random per
    # boot), uptime (ms) and the number of its last frame. Not part of the model's identity.
    boot_id: str = field(default="", compare=False)
    # This boot's secret: every desired frame carries it (only Data Exchange clients get it).
    token: str = field(default="", compare=False, repr=False)
    uptime_ms: int = field(default=0, compare=False)
    node_seq: int = field(default=0, compare=False)
    # Since 5: the desired frame whose kept values the node started this boot with (0: none).
    kept_seq: int = field(default=0, compare=False)
    # The points' types, in frame order (made once: every frame is decoded with them).
    types: tuple[PointType, ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "types", tuple(p.type for p in self.points))

    @property
    def writable(self) -> tuple[int, ...]:
        """Indices of the writable points: the order of values in a desired frame."""
        return tuple(i for i, p in enumerate(self.points) if p.type.writable)

    @classmethod
    def from_event(cls, data: Mapping[str, str], *, stored: bool = False) -> Model:
        """Decode a model event (``esphome.data_exchange_model``).

        ``stored``: one kept in the Store (points and ids only; its per-boot keys were not
        kept and its version may be older): it describes the entities before the node
        answers, and is replaced by the node's own answer on every connection.
        """
        if not stored:
            _check_version(data)
        model_id = read_text(data, "m")
        if not _HEX8.fullmatch(model_id):
            raise ProtocolError(f"malformed model id {model_id[:16]!r}")
        points = []
        text = read_text(data, "p")
        for item in text.split(",") if text else ():
            if len(item) != 9 or not _HEX8.fullmatch(item[1:]):
                raise ProtocolError(f"malformed point {item[:16]!r}")
            try:
                ptype = PointType(item[0])
            except ValueError:
                raise ProtocolError(f"unknown point type {item[0]!r}") from None
            points.append(ModelPoint(ptype, int(item[1:], 16)))
        if not points:
            raise ProtocolError("a model has at least one point")
        if stored:
            return cls(
                model_id, read_uint(data, "c"), read_uint(data, "t"), tuple(points)
            )
        return cls(
            model_id,
            read_uint(data, "c"),
            read_uint(data, "t"),
            tuple(points),
            boot_id=read_hex16(data, "b"),
            token=read_hex16(data, "k"),
            uptime_ms=read_uint(data, "u"),
            node_seq=read_uint(data, "s"),
            kept_seq=read_uint(data, "g") if "g" in data else 0,
        )


@dataclass(frozen=True, slots=True)
class NodeFrame:
    """One frame from a node: a full frame (the node's state and every point's reported
    value) or a change frame (only the values of the points in ``indices``)."""

    model_id: str
    seq: int
    uptime_ms: int
    applied_seq: int
    acquisition_running: bool
    failsafe_active: bool
    refused_frames: int  # desired frames the node refused since boot
    refusal: Refusal | None  # the last one (None: none since boot)
    values: tuple[Value, ...]
    # Desired frames from other API clients the node ignored since boot (key "o").
    foreign_requests: int = 0
    # A change frame (key "i"): the positions of the points it carries, ascending; None for
    # a full frame (every point, in model order).
    indices: tuple[int, ...] | None = None
    # A full frame's values as sent (key "x"), to tell an unchanged one without decoding.
    text: str = field(default="", compare=False, repr=False)
    # Measurement time (protocol 5, node_clock.py): per value its age in ms at ``uptime_ms``
    # (key "w"; None for a point without a value, () when the node sent none), and the
    # node's Unix time in ms when it sent the frame (key "d"; None without a time source).
    ages: Sequence[int | None] = field(default=(), compare=False)
    node_time_ms: int | None = field(default=None, compare=False)
    # Since 5, full frames of a node with a backlog: readings dropped since boot (key "l")
    # and readings waiting to be sent (key "n"); None without one.
    backlog_dropped: int | None = None
    backlog_waiting: int | None = None
    # Full frames while the fail-safe is active (key "y"): the positions of the points that
    # hold the safe value it set; None when the node does not say (every point counts).
    safe_points: frozenset[int] | None = None
    # A full frame's fields other than its clock (s, u, w, d), as sent: the next full frame
    # with the same ones is this frame at a later time (most cycle frames).
    header: Mapping[str, str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_event(
        cls, data: Mapping[str, str], model: Model, previous: NodeFrame | None = None
    ) -> NodeFrame:
        """Decode a frame event (``esphome.data_exchange``) of a node with ``model``.

        A frame of another model is malformed: new firmware means a reboot and a new
        connection, which reads the model again. ``previous``: the last full frame of this
        model; a full frame with the very same values text takes its decoded values (the
        text decodes to the same values), and one that differs from it only in its clock
        (``s``, ``u``, ``w``, ``d``: most cycle frames) is ``previous`` at that clock.
        """
        header = None
        if "i" not in data:
            header = {k: v for k, v in data.items() if k not in _CLOCK_KEYS}
            if previous is not None and header == previous.header:
                # Checked when ``previous`` was decoded (version and size included: the
                # clock's fields are bounded by their own checks); only its clock is new.
                return cls(  # not dataclasses.replace: it costs as much as a decode
                    model_id=previous.model_id,
                    seq=read_uint(data, "s"),
                    uptime_ms=read_uint(data, "u"),
                    applied_seq=previous.applied_seq,
                    acquisition_running=previous.acquisition_running,
                    failsafe_active=previous.failsafe_active,
                    refused_frames=previous.refused_frames,
                    refusal=previous.refusal,
                    values=previous.values,
                    foreign_requests=previous.foreign_requests,
                    text=previous.text,
                    ages=Ages(read_text(data, "w"), len(model.types))
                    if "w" in data
                    else (),
                    node_time_ms=read_uint(data, "d") if "d" in data else None,
                    backlog_dropped=previous.backlog_dropped,
                    backlog_waiting=previous.backlog_waiting,
                    safe_points=previous.safe_points,
                    header=previous.header,
                )
        _check_version(data)
        model_id = read_text(data, "m")
        if model_id != model.model_id:
            raise ProtocolError(f"frame of model {model_id[:16]!r}")
        if "h" in data:
            raise ProtocolError("a backlog frame is not a full or change frame")
        types: Sequence[PointType] = model.types
        indices = None
        if "i" in data:
            indices = read_positions(read_text(data, "i"), len(types))
            types = [types[i] for i in indices]
        text = read_text(data, "x")
        seq, uptime_ms = read_uint(data, "s"), read_uint(data, "u")
        ages = Ages(read_text(data, "w"), len(types)) if "w" in data else ()
        node_time_ms = read_uint(data, "d") if "d" in data else None
        if indices is not None:
            # A change frame carries values only (protocol 4): acknowledgements, refusals,
            # counters, acquisition and fail-safe travel in full frames. Its header fields
            # keep their defaults and are read by nobody (``full`` is False).
            return cls(
                model_id=model_id,
                seq=seq,
                uptime_ms=uptime_ms,
                applied_seq=0,
                acquisition_running=True,
                failsafe_active=False,
                refused_frames=0,
                refusal=None,
                values=decode_values(text, types),
                indices=indices,
                ages=ages,
                node_time_ms=node_time_ms,
            )
        return cls(
            model_id=model_id,
            seq=seq,
            uptime_ms=uptime_ms,
            applied_seq=read_uint(data, "a"),
            acquisition_running=read_flag(data, "q"),
            failsafe_active=read_flag(data, "f"),
            refused_frames=read_uint(data, "r"),
            refusal=Refusal.decode(data.get("e", "")),
            foreign_requests=read_uint(data, "o"),
            backlog_dropped=read_uint(data, "l") if "l" in data else None,
            backlog_waiting=read_uint(data, "n") if "n" in data else None,
            safe_points=read_safe_points(data, len(types)),
            values=previous.values
            if previous is not None
            and previous.text == text
            and previous.model_id == model_id
            else decode_values(text, types),
            text=text,
            ages=ages,
            node_time_ms=node_time_ms,
            header=header,
        )

    @property
    def full(self) -> bool:
        """A full frame (every point and the node's state), not a change frame."""
        return self.indices is None


@dataclass(frozen=True, slots=True)
class Refusal:
    """The node's last refused desired frame (frame key ``e``: ``seq:point:reason``).

    ``point`` is the position among the writable points (None for a frame-level reason:
    model, count, acquisition); ``reason`` one of the rule's codes or a frame-level one.
    """

    seq: int
    point: int | None
    reason: str

    @classmethod
    def decode(cls, text: object) -> Refusal | None:
        if not isinstance(text, str):
            raise ProtocolError("malformed refusal")
        if text == "":
            return None
        parts = text.split(":")
        if (
            len(parts) != 3
            or not is_uint(parts[0])
            or not (parts[1] == "" or is_uint(parts[1]))
            or parts[2] not in REFUSAL_REASONS
        ):
            raise ProtocolError(f"malformed refusal {text[:32]!r}")
        return cls(int(parts[0]), int(parts[1]) if parts[1] else None, parts[2])


# Reasons a node gives for a refused desired frame: a value's (the rule's codes) or the
# frame's own.
REFUSAL_REASONS: Final = frozenset(
    {"format", "range", "step", "option", "length", "model", "count", "acquisition"}
)


def _check_version(data: Mapping[str, str]) -> None:
    if sum(map(len, data)) + sum(map(len, data.values())) > MAX_EVENT_BYTES:
        raise ProtocolError("oversized event")
    version = read_text(data, "v")
    if version != str(PROTOCOL_VERSION):
        raise ProtocolVersionError(version)


def encode_desired_values(model: Model, values: Sequence[Value]) -> str:
    """The ``values`` argument of a desired frame: one value per writable point."""
    types = [model.points[i].type for i in model.writable]
    text = encode_values(types, values)
    if len(text.encode()) > MAX_DESIRED_VALUES_BYTES:
        raise ValueError("desired frame exceeds the node's receive limit")
    return text


@dataclass(frozen=True, slots=True)
class DesiredFrame:
    """One desired frame (a ``data_exchange_write`` call), as the engine builds it.

    ``values`` is the encoded values argument (encode_desired_values), one value per
    writable point; ``seen`` the sequence number of the newest node frame taken into
    account; ``acquisition`` None when Home Assistant desires nothing for it.
    """

    model_id: str
    token: str
    seq: int
    seen: int
    values: str
    acquisition: bool | None = None
    # Since 5: the sequence number of the last backlog reading stored (0: none this boot).
    backlog: int = 0

    @classmethod
    def of(
        cls,
        model: Model,
        seq: int,
        seen: int,
        values: Sequence[Value],
        acquisition: bool | None = None,
    ) -> DesiredFrame:
        """A desired frame from plain values (None: no desired value for that point)."""
        return cls(
            model.model_id,
            model.token,
            seq,
            seen,
            encode_desired_values(model, values),
            acquisition,
        )

    def args(self) -> dict[str, int | str]:
        """The action's arguments: the one encoder of a desired frame.

        Sequence numbers travel as decimal strings: the API's integer arguments are 32-bit,
        and a 32-bit counter of frames would not last a year at the shortest cycle.
        """
        return {
            "token": self.token,
            "seq": str(self.seq),
            "seen": str(self.seen),
            "model": self.model_id,
            "values": self.values,
            "acquisition": -1 if self.acquisition is None else int(self.acquisition),
            "backlog": str(self.backlog),
        }
