"""`esphome config` for every node YAML, offline, and the component's schema errors."""

from __future__ import annotations

from pathlib import Path
import shutil
import subprocess

import pytest

from tests.conftest import FIRMWARE
from tests.harness.node import REPO, esphome_command

NODE_YAMLS = sorted(
    p.name for p in FIRMWARE.glob("*.yaml") if not p.name.startswith("secrets")
)


@pytest.fixture(scope="module")
def firmware_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The firmware tree with the example secrets, as a fresh clone would set it up."""
    root = tmp_path_factory.mktemp("firmware") / "esphome"
    shutil.copytree(FIRMWARE, root, ignore=shutil.ignore_patterns(".esphome"))
    shutil.copy(root / "secrets.example.yaml", root / "secrets.yaml")
    return root


def _config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*esphome_command(), "config", path.name],
        cwd=path.parent,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_every_node_yaml_is_listed() -> None:
    assert {"esp32-node.yaml", "sim-node.yaml"} <= set(NODE_YAMLS)


@pytest.mark.parametrize("name", NODE_YAMLS)
def test_esphome_config_valid(firmware_copy: Path, name: str) -> None:
    result = _config(firmware_copy / name)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Configuration is valid!" in result.stdout + result.stderr


TEST_NODE_YAMLS = sorted(
    str(p.relative_to(REPO))
    for folder in (REPO / "tests" / "nodes", REPO / "tests" / "firmware" / "nodes")
    for p in folder.glob("*.yaml")
)


def test_test_node_yamls_are_found() -> None:
    assert "tests/firmware/nodes/sim-node.yaml" in TEST_NODE_YAMLS
    assert len(TEST_NODE_YAMLS) > 1


@pytest.mark.parametrize("name", TEST_NODE_YAMLS)
def test_test_node_yaml_config_valid(name: str) -> None:
    """Every node YAML the tests build (with the sanitizer variant) is a valid config."""
    result = _config(REPO / name)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Configuration is valid!" in result.stdout + result.stderr


INVALID = {
    "safe value on a sensor": (
        "    - sensor: temperature\n      safe_value: 1\n",
        "read-only and has no safe_value",
    ),
    "point listed twice": (
        "    - number: setpoint\n    - number: setpoint\n",
        "listed twice",
    ),
    "two entities in one point": (
        "    - number: setpoint\n      switch: relay\n",
        "exactly one entity",
    ),
    "unknown entity": ("    - sensor: no_such_sensor\n", "no_such_sensor"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_component_schema_rejects(firmware_copy: Path, case: str) -> None:
    points, message = INVALID[case]
    sim = (firmware_copy / "sim-node.yaml").read_text()
    head, _, _ = sim.partition("  points:\n")
    bad = firmware_copy / "bad-node.yaml"
    bad.write_text(head + "  points:\n" + points)
    result = _config(bad)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


INVALID_BACKLOG = {
    "a text sensor kept": ("    points: [status]\n", "a backlog keeps"),
    "not a point": ("    points: [no_such_point]\n", "is not one of the points"),
    "listed twice": ("    points: [temperature, temperature]\n", "listed twice"),
    "smaller than a reading": ("    size: 11\n", "11"),
}


@pytest.mark.parametrize("case", sorted(INVALID_BACKLOG))
def test_backlog_schema_rejects(firmware_copy: Path, case: str) -> None:
    option, message = INVALID_BACKLOG[case]
    sim = (firmware_copy / "sim-node.yaml").read_text()
    block = "  backlog:\n    size: ${backlog_size}\n"
    assert block in sim
    bad = firmware_copy / "bad-backlog.yaml"
    bad.write_text(sim.replace(block, "  backlog:\n" + option))
    result = _config(bad)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
