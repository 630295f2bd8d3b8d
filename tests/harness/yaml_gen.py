"""Every node YAML the harness and the tests make up, from Python values.

A configuration is a dict of plain values (str, int, float, bool, None for a key without
options, lists, dicts); ``Include`` is ESPHome's ``!include``, a string with line breaks a
literal block (a lambda). ``dump`` writes it the way a person would: block style, lists of
scalars in flow style (``[a, b]``), strings quoted only where YAML would read them as
something else.

The generated files keep their paths and texts for unchanged inputs: both are part of a
node build's cache key (node.config_key), so an unchanged node is not compiled again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
import re
from typing import Any

import yaml

from tests.harness.node import FIRMWARE_DIR, HARNESS_COMPONENTS, work_dir

_PLAIN = re.compile(r"[\w./][\w ./+-]*(?<! )")


@dataclass(frozen=True)
class Include:
    """``!include PATH``: another YAML file, e.g. the node under the harness wrapper."""

    path: Path


def dump(config: Mapping[str, Any]) -> str:
    """``config`` as YAML text."""
    return "".join(f"{line}\n" for line in _mapping(config, 0))


def write(path: Path, config: Mapping[str, Any]) -> Path:
    """Write ``config`` to ``path``; an unchanged file is left alone (and its mtime)."""
    text = dump(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def _scalar(value: Any) -> str:
    if isinstance(value, Include):
        return f"!include {value.path}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    # Plain only if YAML reads it back as this very string (not 0, true, null, ...).
    if _PLAIN.fullmatch(text) and yaml.safe_load(text) == text:
        return text
    return "'" + text.replace("'", "''") + "'"


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, (Mapping, list, tuple))


def _mapping(config: Mapping[str, Any], indent: int) -> list[str]:
    pad = " " * indent
    lines = []
    for key, value in config.items():
        head = f"{pad}{key}:"
        if value is None:
            lines.append(head)
        elif isinstance(value, Mapping):
            lines += [head, *_mapping(value, indent + 2)] if value else [f"{head} {{}}"]
        elif isinstance(value, (list, tuple)):
            if all(_is_scalar(item) for item in value):
                lines.append(f"{head} [{', '.join(_scalar(v) for v in value)}]")
            else:
                lines += [head, *_sequence(value, indent + 2)]
        elif isinstance(value, str) and "\n" in value:
            inner = " " * (indent + 2)
            lines.append(f"{head} |-")
            lines += [f"{inner}{line}" if line else "" for line in value.split("\n")]
        else:
            lines.append(f"{head} {_scalar(value)}")
    return lines


def _sequence(items: Iterable[Any], indent: int) -> list[str]:
    pad = " " * indent
    lines = []
    for item in items:
        if isinstance(item, Mapping) and item:
            inner = _mapping(item, indent + 2)
            lines += [f"{pad}- {inner[0][indent + 2 :]}", *inner[1:]]
        elif _is_scalar(item):
            lines.append(f"{pad}- {_scalar(item)}")
        else:
            raise TypeError(f"no YAML for a list item {item!r} here")
    return lines


# ---- pieces of nodes ----


def local_components(path: Path, *names: str) -> list[dict[str, Any]]:
    """``external_components`` entry: ``names`` from the local folder ``path``."""
    return [{"source": {"type": "local", "path": str(path)}, "components": list(names)}]


def host_node(name: str, log_level: str = "WARN", **api: Any) -> dict[str, Any]:
    """A host-platform node ``name`` whose API sends at once and never reboots it."""
    return {
        "esphome": {"name": name},
        "host": None,
        "logger": {"level": log_level},
        "api": {"batch_delay": "0ms", "reboot_timeout": "0s", **api},
    }


def template_numbers(count: int) -> list[dict[str, Any]]:
    """``count`` optimistic template numbers p0..p(count-1), named P0..."""
    return [
        {
            "platform": "template",
            "id": f"p{i}",
            "name": f"P{i}",
            "min_value": 0,
            "max_value": 1000000,
            "step": 1,
            "initial_value": 0,
            "optimistic": True,
        }
        for i in range(count)
    ]


def data_exchange(cycle: str, numbers: int) -> dict[str, Any]:
    """Our component (from the firmware tree) with the numbers p0.. as its points."""
    return {
        "external_components": local_components(
            FIRMWARE_DIR / "components", "data_exchange"
        ),
        "data_exchange": {
            "cycle": cycle,
            "points": [{"number": f"p{i}"} for i in range(numbers)],
        },
    }


# ---- the harness wrapper (node.py) ----


def harness_wrapper(
    yaml_path: Path,
    substitutions: Mapping[str, str],
    build_path: Path,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """What NodeBuild compiles: ``yaml_path`` as a package, plus the dx_harness component
    (port and MAC from the environment) and name_add_mac_suffix.

    ``extra``: more configuration; a dict merges into the wrapper's dict of the same key.
    """
    config: dict[str, Any] = {}
    if substitutions:
        config["substitutions"] = dict(substitutions)
    config |= {
        "packages": {"node": Include(yaml_path)},
        "esphome": {"name_add_mac_suffix": True, "build_path": str(build_path)},
        "external_components": local_components(HARNESS_COMPONENTS, "dx_harness"),
        "dx_harness": None,
    }
    for key, value in (extra or {}).items():
        old = config.get(key)
        config[key] = (
            {**old, **value}
            if isinstance(old, Mapping) and isinstance(value, Mapping)
            else value
        )
    return dump(config)


# ---- generated nodes of the benchmarks ----


def points_node(count: int, cycle: str = "1s") -> Path:
    """A host node with ``count`` template numbers, all of them data_exchange points."""
    config = host_node(f"bench-{count}", max_send_queue=64)
    exchange = data_exchange(cycle, count)
    config["external_components"] = exchange.pop("external_components")
    config["number"] = template_numbers(count)
    config |= exchange
    return write(work_dir() / "bench" / f"points-{count}-{cycle}.yaml", config)


def peer_node(count: int, exchange: bool, period_ms: int, cycle_ms: int) -> Path:
    """A host node with ``count`` template numbers and actions for local changes.

    ``local_set(index, value)`` sets one number; ``local_burst(ticks, base)`` sets every
    number to base+1, base+2, ... every ``period_ms`` for ``ticks`` ticks. ``exchange``:
    with the data_exchange component (all numbers are its points, cycle ``cycle_ms``);
    without it the node is a plain ESPHome node with the same entities.
    """
    name = f"peers-{'dx' if exchange else 'plain'}-{count}"
    ids = ", ".join(f"id(p{i})" for i in range(count))
    points = f"number::Number *points[] = {{{ids}}};"
    local_set = (
        f"{points}\n"
        f"if (index < 0 || index >= {count}) return;\n"
        "auto call = points[index]->make_call();\n"
        "call.set_value(value);\n"
        "call.perform();"
    )
    burst = "id(burst_left) = ticks;\nid(burst_value) = base;"
    tick = (
        "if (id(burst_left) <= 0) return;\n"
        "id(burst_left)--;\n"
        "id(burst_value)++;\n"
        f"{points}\n"
        "for (auto *p : points) {\n"
        "  auto call = p->make_call();\n"
        "  call.set_value(id(burst_value));\n"
        "  call.perform();\n"
        "}"
    )
    config = host_node(
        name,
        actions=[
            {
                "action": "local_set",
                "variables": {"index": "int", "value": "float"},
                "then": [{"lambda": local_set}],
            },
            {
                "action": "local_burst",
                "variables": {"ticks": "int", "base": "int"},
                "then": [{"lambda": burst}],
            },
        ],
    )
    config |= {
        "globals": [
            {"id": "burst_left", "type": "int", "initial_value": "0"},
            {"id": "burst_value", "type": "int", "initial_value": "0"},
        ],
        "interval": [{"interval": f"{period_ms}ms", "then": [{"lambda": tick}]}],
        "number": template_numbers(count),
    }
    if exchange:
        config |= data_exchange(f"{cycle_ms}ms", count)
    # The file's stem is the node's name (the harness derives the device name from it).
    folder = work_dir() / "bench" / f"peers-{period_ms}ms-{cycle_ms}ms"
    return write(folder / f"{name}.yaml", config)
