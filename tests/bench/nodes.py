"""Generated benchmark nodes: N writable number points, nothing random."""

from __future__ import annotations

from pathlib import Path

from tests.harness.node import FIRMWARE_DIR, work_dir


def points_node(count: int, cycle: str = "1s") -> Path:
    """A host node with ``count`` template numbers, all of them data_exchange points."""
    lines = [
        "esphome:",
        f"  name: bench-{count}",
        "host:",
        "logger:",
        "  level: WARN",
        "api:",
        "  batch_delay: 0ms",
        "  reboot_timeout: 0s",
        "  max_send_queue: 64",
        "external_components:",
        "  - source:",
        "      type: local",
        f"      path: {FIRMWARE_DIR / 'components'}",
        "    components: [data_exchange]",
        *template_numbers(count),
    ]
    lines += ["data_exchange:", f"  cycle: {cycle}", "  points:"]
    lines += [f"    - number: p{i}" for i in range(count)]
    path = work_dir() / "bench" / f"points-{count}-{cycle}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines) + "\n"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def template_numbers(count: int) -> list[str]:
    """YAML lines of ``count`` optimistic template numbers p0..p(count-1), names P0..."""
    lines = ["number:"]
    for i in range(count):
        lines += [
            "  - platform: template",
            f"    id: p{i}",
            f"    name: P{i}",
            "    min_value: 0",
            "    max_value: 1000000",
            "    step: 1",
            "    initial_value: 0",
            "    optimistic: true",
        ]
    return lines
