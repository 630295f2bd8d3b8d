"""Shared fixtures: Home Assistant test setup and real simulated nodes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

# Home Assistant's loader must see this repository's custom_components before the hass
# fixture runs, or it finds the test plugin's own (empty) custom_components first.
import custom_components.data_exchange  # noqa: F401
from tests.harness.node import REPO, NodeFactory

NODES = REPO / "tests" / "nodes"
FIRMWARE = REPO / "esphome"


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Load the integration from this working tree in every test."""


@pytest.fixture
def node_factory(socket_enabled: None) -> Iterator[NodeFactory]:
    """Build and start real host-platform nodes; all are stopped at teardown, pass or fail."""
    factory = NodeFactory()
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture
def nodes_dir() -> Path:
    return NODES
