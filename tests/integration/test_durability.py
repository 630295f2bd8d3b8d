"""Durability with real processes: a write accepted by Home Assistant survives its crash and
a Ctrl-C of scripts/develop.

Home Assistant runs as its own process, started as scripts/develop starts it
(``python -m homeassistant --config DIR --skip-pip``, on a copy of config/ with a free HTTP
port), against a real simulated node (esphome/sim-node.yaml, the build scripts/develop
uses). The tests talk to it over its REST API with a token from onboarding, as a browser
would, and bring the node back without its saved preferences, so that only Home
Assistant's disk can bring a write back.

- SIGKILL 2 s after a write (a power cut, the OOM killer): the promise is that a desired
  value is on disk within 1 s of being accepted, so after a restart the node holds it and
  Home Assistant shows it; with the node stopped at the time of the write (the write exists
  only in Home Assistant) and with it running.
- One SIGINT to scripts/develop's process group, as a terminal's Ctrl-C sends: exit 0, no
  traceback or error in the log, the write and the node's reported values in the Store on
  disk, and a restart shows the write.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
import contextlib
import json
import os
from pathlib import Path
import signal
import subprocess
import sys
from typing import IO, Any

import pytest

from custom_components.data_exchange.const import DOMAIN
from tests.harness.develop import SIM_NODE
from tests.harness.ha_process import (
    HassClient,
    HassProcess,
    clean_env,
    copy_config,
    hass_for_node,
    problems,
    stored,
    wait_exit,
)
from tests.harness.node import REPO, Node, NodeBuild, free_port, unique_mac
from tests.harness.peer import Address, Peer

# Any valid setpoint other than the firmware's initial value (21).
WRITTEN = 27.5
UNUSABLE = ("unavailable", "unknown")
# Loggers whose errors fail a test anywhere in a run (ours and the node API library's).
OURS = ("custom_components.data_exchange", "aioesphomeapi")
# Errors default_config's integrations log in the test environment, shortly after Home
# Assistant has started (so also after a Ctrl-C pressed right then), not caused by a stop:
# no libpcap for the DHCP watcher, no internet for the alerts feed.
ENVIRONMENT = ("aiodhcpwatcher", "homeassistant.components.homeassistant_alerts")


@pytest.fixture(scope="module")
def sim_build() -> NodeBuild:
    """The node scripts/develop runs (the same build: compiled once for both)."""
    return NodeBuild.compile(SIM_NODE)


@pytest.fixture
def node(sim_build: NodeBuild, socket_enabled: None) -> Iterator[Node]:
    started = Node(sim_build)
    try:
        yield started.start()
    finally:
        started.cleanup()


@pytest.fixture
async def hass_process(
    tmp_path: Path, node: Node, socket_enabled: None
) -> AsyncIterator[HassProcess]:
    """Home Assistant on a copy of config/ with ``node`` as a config entry (not started)."""
    async with hass_for_node(tmp_path / "config", node) as hass:
        yield hass


def setpoint_id(states: dict[str, dict[str, Any]]) -> str | None:
    found = [e for e in states if e.startswith("number.") and e.endswith("_setpoint")]
    return found[0] if len(found) == 1 else None


def live(state: dict[str, Any] | None) -> bool:
    """A value the node reported on the current connection (not a stored one)."""
    return (
        state is not None
        and state["state"] not in UNUSABLE
        and state["attributes"].get("stale") is False
    )


def shown(state: dict[str, Any] | None) -> float | None:
    if state is None or state["state"] in UNUSABLE:
        return None
    return float(state["state"])


async def live_setpoint(hass: HassClient) -> str:
    """Wait until the sim node's setpoint entity shows a live value; its entity id."""
    states = await hass.until(
        lambda s: (e := setpoint_id(s)) is not None and live(s[e]),
        "the sim node's setpoint live in Home Assistant",
        show=lambda s: {e: v["state"] for e, v in s.items() if e.startswith("number.")},
    )
    entity_id = setpoint_id(states)
    assert entity_id is not None
    return entity_id


async def shows_written(hass: HassClient, setpoint: str) -> None:
    """Home Assistant shows the written value live from the node: once connected, the
    desired frame goes out at once, so a few cycles (1 s each) are plenty."""
    await hass.until(
        lambda s: live(s.get(setpoint)),
        f"{setpoint} live after the restart",
        show=lambda s: s.get(setpoint),
    )
    await hass.until(
        lambda s: live(s.get(setpoint)) and shown(s.get(setpoint)) == WRITTEN,
        f"{setpoint} = {WRITTEN} (the write) after the restart",
        within=10,
        show=lambda s: s.get(setpoint),
    )


async def node_setpoint(host: str, port: int) -> float:
    """The setpoint the node holds, read by a bare ESPHome API client."""
    async with Peer(Address(host, port), "durability test", states=True) as peer:
        value: float = await peer.state("setpoint")
        return value


@pytest.mark.parametrize(
    "node_running", [False, True], ids=["node_stopped", "node_running"]
)
async def test_write_survives_sigkill_of_home_assistant(
    hass_process: HassProcess, node: Node, node_running: bool
) -> None:
    hass = await hass_process.start()
    await hass.onboard()
    setpoint = await live_setpoint(hass)
    if not node_running:
        # The write then exists only in Home Assistant.
        node.stop()
        await hass.until(
            lambda s: s[setpoint]["attributes"].get("stale") is True,
            "the node seen gone",
            within=30,
            show=lambda s: s.get(setpoint),
        )
    await hass.call("number", "set_value", entity_id=setpoint, value=WRITTEN)
    # The promise is "on disk within 1 s of being accepted"; the crash comes 2 s after.
    await asyncio.sleep(2)
    hass.kill()
    # Only Home Assistant's disk can bring the value back: the node forgets its own.
    node.stop()
    node.reset_preferences()
    node.start()
    await hass.start()
    await shows_written(hass, setpoint)
    assert await node_setpoint(node.host, node.port) == WRITTEN
    assert shown((await hass.states())[setpoint]) == WRITTEN


async def test_a_write_killed_before_its_save_is_kept_from_the_node(
    hass_process: HassProcess, node: Node
) -> None:
    """SIGKILL of Home Assistant right after a write, before its save (due within 1 s): its
    disk holds the write before, the node the new one (it applied it in milliseconds). Back,
    Home Assistant judges the node's first frame before sending (docs/exchange.md,
    *Reconciliation*): the node keeps the new value and Home Assistant adopts it."""
    hass = await hass_process.start()
    await hass.onboard()
    setpoint = await live_setpoint(hass)
    earlier = WRITTEN - 1.0
    await hass.call("number", "set_value", entity_id=setpoint, value=earlier)
    await asyncio.sleep(2)  # on disk within 1 s: this one is saved
    await hass.call("number", "set_value", entity_id=setpoint, value=WRITTEN)
    async with Peer(node, "durability test", states=True) as peer:
        await peer.until(lambda: peer.states.get("setpoint") == WRITTEN)
    hass.kill()
    saved = stored(hass.config_dir, f"{DOMAIN}.{entry_id(hass.config_dir)}") or {}
    on_disk = values(saved["engine"]["desired"])
    # The situation under test: the disk has the earlier write, not the last one.
    assert earlier in on_disk, on_disk
    assert WRITTEN not in on_disk, on_disk
    went_back: list[Any] = []

    def seen(name: str, value: Any) -> None:
        if name == "setpoint" and value != WRITTEN:
            went_back.append(value)

    async with Peer(node, "durability observer", on_state=seen) as view:
        assert await view.state("setpoint") == WRITTEN
        await hass.start()
        await shows_written(hass, setpoint)
        # A few node cycles (1 s) more: the first desired frames have gone out.
        await asyncio.sleep(3)
    assert went_back == []
    assert shown((await hass.states())[setpoint]) == WRITTEN


class Develop:
    """scripts/develop's program in its own session, as a terminal runs a job: its own
    process group, which Home Assistant and the node share."""

    def __init__(self, config_dir: Path, node_port: int, output: Path) -> None:
        self.config_dir = config_dir
        self.node_port = node_port
        self.node_mac = unique_mac()
        self.output = output
        self.process: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None
        self._marks: list[int] = []

    def start(self) -> subprocess.Popen[bytes]:
        self._out = self.output.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.harness.develop"],
            cwd=REPO,
            env=clean_env(
                DX_CONFIG_DIR=str(self.config_dir),
                DX_NODE_PORT=str(self.node_port),
                DX_NODE_MAC=self.node_mac,
            ),
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self.process

    @property
    def logs(self) -> tuple[Path, Path]:
        """Its console output (its own and Home Assistant's) and Home Assistant's log."""
        return self.output, self.config_dir / "home-assistant.log"

    def ctrl_c(self) -> None:
        """One SIGINT to the whole process group, as a terminal's Ctrl-C."""
        assert self.process is not None
        self._marks = [path.stat().st_size for path in self.logs]
        os.killpg(self.process.pid, signal.SIGINT)

    def since_ctrl_c(self) -> str:
        """What was logged from the Ctrl-C on (console and Home Assistant's log)."""
        texts = []
        for path, mark in zip(self.logs, self._marks, strict=True):
            with path.open("rb") as file:
                file.seek(mark)
                texts.append(file.read().decode(errors="replace"))
        return "\n".join(texts)

    def everything(self) -> str:
        return "\n".join(path.read_text(errors="replace") for path in self.logs)

    async def exited(self, within: float = 120.0) -> int:
        assert self.process is not None
        try:
            return await wait_exit(self.process, within)
        finally:
            self.close()

    def close(self) -> None:
        """Nothing of it left running (the whole group killed), the output closed."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        if self._out is not None:
            self._out.close()
            self._out = None


def entry_id(config_dir: Path) -> str:
    entries = (stored(config_dir, "core.config_entries") or {}).get("entries", [])
    ids = [e["entry_id"] for e in entries if e["domain"] == DOMAIN]
    assert len(ids) == 1, entries
    return str(ids[0])


def values(stamped: Any) -> list[Any]:
    """The values of the Store's stamped entries (``{"value": ..., ...}``), wherever nested."""
    if isinstance(stamped, dict):
        own = [stamped["value"]] if "value" in stamped else []
        return own + [v for item in stamped.values() for v in values(item)]
    if isinstance(stamped, list):
        return [v for item in stamped for v in values(item)]
    return []


@pytest.fixture
async def develop(
    tmp_path: Path, sim_build: NodeBuild, socket_enabled: None
) -> AsyncIterator[tuple[Develop, HassClient]]:
    port = free_port()
    config_dir = copy_config(tmp_path / "config", port)
    runner = Develop(config_dir, free_port(), tmp_path / "develop.out")
    hass = HassClient(config_dir, port)
    try:
        yield runner, hass
    finally:
        runner.close()
        await hass.close()


async def test_ctrl_c_in_scripts_develop_saves_everything(
    develop: tuple[Develop, HassClient],
) -> None:
    runner, hass = develop
    config_dir = runner.config_dir
    hass.process = runner.start()
    await hass.wait_http()
    await hass.onboard()
    setpoint = await live_setpoint(hass)
    await hass.call("number", "set_value", entity_id=setpoint, value=WRITTEN)
    # Once Home Assistant shows it, the node has applied the write and reported it back:
    # the reported value as well must be saved when Home Assistant stops.
    await hass.until(
        lambda s: live(s[setpoint]) and shown(s[setpoint]) == WRITTEN,
        "the write applied by the node",
        within=10,
        show=lambda s: s.get(setpoint),
    )
    # Pressed once Home Assistant has started, as a user would (what its start logs is not
    # this test's business, see below).
    await hass.wait_running()
    runner.ctrl_c()
    code = await runner.exited()
    stopping = runner.since_ctrl_c()
    assert code == 0, stopping[-3000:]
    # Everything saved: the write, and the value the node reported back (which only the
    # final save at the stop has to write; the write itself is due within 1 s).
    engine = (stored(config_dir, f"{DOMAIN}.{entry_id(config_dir)}") or {}).get(
        "engine"
    ) or {}
    saved = json.dumps(engine)[:2000]
    assert WRITTEN in values(engine.get("desired")), f"desired not saved: {saved}"
    assert WRITTEN in values(engine.get("reported")), f"reported not saved: {saved}"
    # The stop is clean: no error, traceback or KeyboardInterrupt from the Ctrl-C on. (The
    # start logs errors of default_config's integrations whose programs and libraries the
    # test environment lacks: ffmpeg, libturbojpeg, libpcap, the internet.)
    assert not (found := problems(stopping, ignore=ENVIRONMENT)), "\n".join(found)
    assert not (found := problems(runner.everything(), only=OURS)), "\n".join(found)

    # The next start (the node comes up with firmware defaults: scripts/develop gives it
    # fresh preferences) shows the write, on the node and in Home Assistant.
    hass.process = runner.start()
    await hass.wait_http()
    await shows_written(hass, setpoint)
    assert await node_setpoint("127.0.0.1", runner.node_port) == WRITTEN
    assert shown((await hass.states())[setpoint]) == WRITTEN
    await hass.wait_running()
    runner.ctrl_c()
    assert await runner.exited() == 0, runner.since_ctrl_c()[-3000:]
    assert not (found := problems(runner.since_ctrl_c(), ignore=ENVIRONMENT)), (
        "\n".join(found)
    )
    assert not (found := problems(runner.everything(), only=OURS)), "\n".join(found)
