"""Strict readers of a node event's fields (protocol.py, backlog.py): plain Python.

Everything here comes from the network: a field that is missing or not of its form raises
ProtocolError, and the frame it came in is rejected whole.
"""

from __future__ import annotations

from collections.abc import Mapping
import itertools
import re

from .codec import ProtocolError

_HEX16 = re.compile(r"[0-9a-f]{16}")


def read_hex16(data: Mapping[str, str], key: str) -> str:
    value = read_text(data, key)
    if not _HEX16.fullmatch(value):
        raise ProtocolError(f"field {key!r} is not 16 hex digits")
    return value


def read_positions(text: str, count: int) -> tuple[int, ...]:
    """A change frame's point positions: strictly ascending, each a point of the model."""
    parts = text.split(",")
    if len(parts) > count or not all(is_uint(p) for p in parts):
        raise ProtocolError(f"malformed point positions {text[:32]!r}")
    indices = tuple(int(p) for p in parts)
    if any(b <= a for a, b in itertools.pairwise(indices)) or (indices[-1] >= count):
        raise ProtocolError(f"point positions {text[:32]!r} out of order or range")
    return indices


def read_safe_points(data: Mapping[str, str], count: int) -> frozenset[int] | None:
    """Key "y" of a full frame: the points holding the fail-safe's safe value."""
    if "y" not in data:
        return None
    text = read_text(data, "y")
    return frozenset(read_positions(text, count)) if text else frozenset()


def is_uint(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 20


def read_text(data: Mapping[str, str], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise ProtocolError(f"missing field {key!r}")
    return value


def read_uint(data: Mapping[str, str], key: str) -> int:
    # read_text and is_uint in one (read for several keys of every frame)
    value = data.get(key)
    if not isinstance(value, str):
        raise ProtocolError(f"missing field {key!r}")
    if not (value.isascii() and value.isdigit() and len(value) <= 20):
        raise ProtocolError(f"field {key!r} is not an unsigned integer")
    return int(value)


def read_flag(data: Mapping[str, str], key: str) -> bool:
    value = read_text(data, key)
    if value not in ("0", "1"):
        raise ProtocolError(f"field {key!r} is not 0 or 1")
    return value == "1"
