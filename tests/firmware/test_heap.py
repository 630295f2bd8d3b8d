"""Heap and frame-size figures of the component (esphome/README.md, "Stack and heap").

Host builds with the test-only heap probe (dx_probe: glibc's mallinfo2, bytes in use):
the same entities with and without the data_exchange component, for the example ESP32
node's points (as template entities) and for the same plus 100 sensors. What the
component holds is the difference, measured once a Data Exchange client is connected and
frames flow (its buffers grown). The largest frame for 100 points uses sensors whose value
has the longest text a float can have.
"""

from __future__ import annotations

from pathlib import Path

from tests.firmware.fuzz import HEAP_EVENT, RawClient
from tests.harness.node import FIRMWARE_DIR, HARNESS_COMPONENTS, NodeFactory, work_dir

# The example ESP32 node's points (esphome/esp32-node.yaml): 7 sensors, a binary sensor,
# two numbers, a switch, a select.
ESP32_POINTS = {"sensor": 7, "binary_sensor": 1, "number": 2, "switch": 1, "select": 1}
EXTRA = 100
# The longest text of a float (sign, 9 digits, exponent): what a frame's worst case holds.
LONGEST_FLOAT = "-1.17549435e-38"

ENTITY = {
    "sensor": "  - platform: template\n    id: {id}\n    name: {id}\n"
    "    lambda: return {value}f;\n    update_interval: 1s\n",
    "binary_sensor": "  - platform: template\n    id: {id}\n    name: {id}\n"
    "    lambda: return true;\n",
    "number": "  - platform: template\n    id: {id}\n    name: {id}\n"
    "    optimistic: true\n    min_value: 0\n    max_value: 100\n    step: 0.5\n",
    "switch": "  - platform: template\n    id: {id}\n    name: {id}\n"
    "    optimistic: true\n",
    "select": "  - platform: template\n    id: {id}\n    name: {id}\n"
    "    optimistic: true\n    options: [eco, comfort, 'off']\n",
}


def _node_yaml(name: str, counts: dict[str, int], with_dx: bool) -> Path:
    head = (
        f"esphome:\n  name: {name}\nhost:\nlogger:\n  level: WARN\n"
        "api:\n  reboot_timeout: 0s\n"
        "external_components:\n"
        f"  - source:\n      type: local\n      path: {FIRMWARE_DIR / 'components'}\n"
        "    components: [data_exchange]\n"
        f"  - source:\n      type: local\n      path: {HARNESS_COMPONENTS}\n"
        "    components: [dx_probe]\n"
        "dx_probe:\n"
    )
    sections: list[str] = [head]
    points: list[str] = []
    for kind, count in counts.items():
        entities = []
        for i in range(count):
            entity_id = f"{kind}_{i}"
            entities.append(ENTITY[kind].format(id=entity_id, value=LONGEST_FLOAT))
            points.append(f"    - {kind}: {entity_id}")
        sections.append(f"{kind}:\n" + "".join(entities))
    if with_dx:
        sections.append(
            "data_exchange:\n  cycle: 100ms\n  points:\n" + "\n".join(points) + "\n"
        )
    path = work_dir() / "heap-nodes" / name / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(sections)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


async def _measure(factory: NodeFactory, yaml: Path, with_dx: bool) -> tuple[int, int]:
    """Heap in use with a client connected (and frames flowing), and the largest frame's
    values (key x) in bytes (0 without the component)."""
    node = factory.start(yaml)
    client = await RawClient(node.host, node.port).connect() if with_dx else None
    try:
        if client is None:
            client = RawClient(node.host, node.port)
            await client.api.connect(login=True)
            _, services = await client.api.list_entities_services()
            client.services = {s.name: s for s in services}
            client.api.subscribe_service_calls(client._on_call)
        else:
            # Every point sampled: the frame at its largest, the buffers grown to it.
            await client.frame_where(lambda f: "" not in f.data["x"].split(","))
            await client.frame_where(lambda f: len(client.frames) >= 5)
        heap = min(
            [
                int((await client.request("dx_probe_heap", {}, HEAP_EVENT))["bytes"])
                for _ in range(3)
            ]
        )
        size = max((len(f.data["x"].encode()) for f in client.frames), default=0)
        return heap, size
    finally:
        await client.api.disconnect()


async def test_heap_and_frame_figures(node_factory: NodeFactory) -> None:
    base = dict(ESP32_POINTS)
    more = {**ESP32_POINTS, "sensor": ESP32_POINTS["sensor"] + EXTRA}
    figures = {}
    for label, counts in (("esp32", base), ("esp32-plus", more)):
        for with_dx in (False, True):
            name = f"heap-{label}-{'dx' if with_dx else 'bare'}"
            figures[(label, with_dx)] = await _measure(
                node_factory, _node_yaml(name, counts, with_dx), with_dx
            )
    held = figures[("esp32", True)][0] - figures[("esp32", False)][0]
    held_plus = figures[("esp32-plus", True)][0] - figures[("esp32-plus", False)][0]
    per_point = (held_plus - held) / EXTRA
    frame_112 = figures[("esp32-plus", True)][1]
    print(
        f"component heap, example ESP32 node's 12 points: {held} bytes; "
        f"with {EXTRA} more sensors: {held_plus} bytes; per extra point: {per_point:.1f} bytes; "
        f"largest values text for {12 + EXTRA} points: {frame_112} bytes"
    )
    assert 0 < held < 16_384
    # Protocol 3: each point also holds a state callback (change frames).
    assert 0 < per_point < 320
    assert frame_112 > 0
