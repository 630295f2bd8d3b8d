"""Values on the wire: how each point type's value is written in a frame, and read back.

Plain Python without Home Assistant imports, the twin of the node's codec.h / codec.cpp.
Everything decoded here comes from the network: any deviation raises ProtocolError.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from enum import StrEnum
import math
import re
from typing import overload

from .float32 import format_f32

_ESCAPE = re.compile(r"[%,\x00-\x1f\x7f]")
_UNESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_FLOAT = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
# Key "w": per value its age in ms (ASCII decimal, at most 20 digits) or an empty field.
# Possessive: the grammar never needs to give a digit back, so none is tried.
_AGES = re.compile(r"[0-9]{0,20}+(?:,[0-9]{0,20}+)*+")

type Value = float | bool | str | None


class ProtocolError(ValueError):
    """A frame or model description that does not follow the protocol."""


class PointType(StrEnum):
    """Point types and their codes in the model description."""

    SENSOR = "S"
    BINARY_SENSOR = "B"
    TEXT_SENSOR = "T"
    NUMBER = "N"
    SWITCH = "W"
    SELECT = "L"
    TEXT = "X"

    @property
    def writable(self) -> bool:
        return self in _WRITABLE

    @property
    def encoding(self) -> str:
        """How values of this type are encoded: number, bool or string."""
        return _ENCODING[self]


_WRITABLE = frozenset(
    {PointType.NUMBER, PointType.SWITCH, PointType.SELECT, PointType.TEXT}
)
_ENCODING = {
    PointType.SENSOR: "number",
    PointType.NUMBER: "number",
    PointType.BINARY_SENSOR: "bool",
    PointType.SWITCH: "bool",
    PointType.TEXT_SENSOR: "string",
    PointType.SELECT: "string",
    PointType.TEXT: "string",
}


def encode_value(ptype: PointType, value: Value) -> str:
    """Encode one value of a point of type ``ptype``; None is unknown / no desired value."""
    if value is None:
        return ""
    encoding = ptype.encoding
    if encoding == "bool":
        if not isinstance(value, bool):
            raise TypeError(f"{ptype.name} takes a bool")
        return "1" if value else "0"
    if encoding == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{ptype.name} takes a number")
        number = float(value)
        if not math.isfinite(number):
            raise ValueError("NaN and infinities are not values")
        # What the node holds: the 32-bit float, as the shortest text it reads back from.
        return format_f32(number)
    if not isinstance(value, str):
        raise TypeError(f"{ptype.name} takes a string")
    return "'" + _ESCAPE.sub(lambda m: f"%{ord(m.group()):02X}", value)


def decode_value(ptype: PointType, field: str) -> Value:
    """Decode one field; raises ProtocolError on anything malformed."""
    if field == "":
        return None
    encoding = ptype.encoding
    if encoding == "bool":
        if field not in ("0", "1"):
            raise ProtocolError(f"{ptype.name} value {field[:16]!r}")
        return field == "1"
    if encoding == "number":
        # Only what the node writes: no NaN or infinity, no hex floats, no underscores
        # or spaces; a number too large for a float ("1e999") is no value either.
        if len(field) > 40 or not _FLOAT.fullmatch(field):
            raise ProtocolError(f"{ptype.name} value {field[:16]!r}")
        number = float(field)
        if math.isinf(number):
            raise ProtocolError(f"{ptype.name} value {field[:16]!r} out of range")
        return number
    if not field.startswith("'"):
        raise ProtocolError(f"{ptype.name} value {field[:16]!r}")
    body = field[1:]
    if "%" in _UNESCAPE.sub("", body):
        raise ProtocolError(f"bad escape in {ptype.name} value")
    return _UNESCAPE.sub(lambda m: chr(int(m.group(1), 16)), body)


def encode_values(types: Sequence[PointType], values: Sequence[Value]) -> str:
    if len(types) != len(values):
        raise ValueError("one value per point")
    return ",".join(encode_value(t, v) for t, v in zip(types, values, strict=True))


def decode_values(text: str, types: Sequence[PointType]) -> tuple[Value, ...]:
    fields = text.split(",")
    if len(fields) != len(types):
        raise ProtocolError(f"{len(fields)} values for {len(types)} points")
    return tuple(decode_value(t, f) for t, f in zip(types, fields, strict=True))


class Ages(Sequence[int | None]):
    """The ages of a frame's values (key ``w``), checked at once and read when asked.

    A full frame carries an age for every point, and most frames change nothing, so their
    ages are never read (node_clock.py reads the ages of changed values). The check of the
    whole field is one regular expression; the numbers are made on first access.
    """

    __slots__ = ("_count", "_text", "_values")

    def __init__(self, text: str, count: int) -> None:
        if not _AGES.fullmatch(text) or text.count(",") + 1 != count:
            raise ProtocolError("malformed value ages")
        self._text, self._count = text, count
        self._values: tuple[int | None, ...] | None = None

    def _decoded(self) -> tuple[int | None, ...]:
        if self._values is None:
            self._values = tuple(int(p) if p else None for p in self._text.split(","))
        return self._values

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> int | None: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[int | None, ...]: ...
    def __getitem__(self, index: int | slice) -> int | tuple[int | None, ...] | None:
        return self._decoded()[index]

    def __iter__(self) -> Iterator[int | None]:
        return iter(self._decoded())

    def __repr__(self) -> str:
        return f"Ages({self._text[:32]!r})"
