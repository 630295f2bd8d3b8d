"""scripts/develop: Home Assistant with the integration and a simulated node.

Run inside the project environment (scripts/develop does that). Ctrl-C stops Home
Assistant and every node started here.

How Ctrl-C stops it: the terminal sends SIGINT to every process of the foreground process
group, Home Assistant included, so Home Assistant is already shutting down when this
program sees the interrupt. It is not signalled again: Home Assistant puts back the
default SIGINT handler after the first one, so a second SIGINT would raise
KeyboardInterrupt inside it and skip its final saves. This program waits for Home
Assistant to finish, then stops the nodes (they do not get the terminal's SIGINT: they
are started with it blocked). A second Ctrl-C (which reaches Home Assistant
too and aborts its shutdown) stops Home Assistant at once. SIGTERM to this program is
passed on to Home Assistant once, with the same clean stop.

Exit code: Home Assistant's (0 after a clean stop), 128 + the signal if it had to be
killed.

Environment (scripts/develop sets none of these; tests do):
  DX_CONFIG_DIR  configuration directory (default: the repository's config/); Home
                 Assistant's HTTP port is that configuration's (``http: server_port``)
  DX_NODE_PORT   the simulated node's API port (default 6053)
  DX_NODE_MAC    its MAC address (default 02:44:58:00:00:01, which the dashboard's
                 entity ids follow from)
"""

from __future__ import annotations

import os
from pathlib import Path
import signal
import subprocess
import sys
from types import FrameType

from tests.harness.ha_process import (
    CONFIG,
    hass_command,
    http_port,
    link_integration,
    prepare_entry,
    signal_with_parent,
)
from tests.harness.node import REPO, Node, NodeBuild

__all__ = ["CONFIG", "SIM_MAC", "SIM_NODE", "main"]

SIM_NODE = REPO / "esphome" / "sim-node.yaml"
SIM_MAC = "02:44:58:00:00:01"  # the dashboard's entity IDs follow from it
# Home Assistant's own shutdown stages may take up to 210 s together (core.py); past this,
# it is stopped with SIGTERM (which, after its first signal, ends it at once), then killed.
SHUTDOWN_TIMEOUT = 300.0
KILL_TIMEOUT = 30.0


class Terminated(Exception):  # noqa: N818 - named after the signal, like KeyboardInterrupt
    """This program received SIGTERM."""


def _on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise Terminated


def _exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def stop_hass(hass: subprocess.Popen[bytes], *, signalled: bool) -> int:
    """Wait for Home Assistant to stop; its exit code.

    ``signalled``: Home Assistant got the stop signal already (the terminal's Ctrl-C);
    otherwise it gets one SIGTERM here, which it handles as a clean stop.
    """
    if hass.poll() is None and not signalled:
        hass.terminate()
    try:
        hass.wait(SHUTDOWN_TIMEOUT)
    except subprocess.TimeoutExpired:
        print(f"Home Assistant did not stop within {SHUTDOWN_TIMEOUT:.0f} s: SIGTERM")
    except KeyboardInterrupt:
        print("second Ctrl-C: stopping Home Assistant at once, without its final saves")
    if hass.poll() is None:
        hass.terminate()
        try:
            hass.wait(KILL_TIMEOUT)
        except subprocess.TimeoutExpired:
            print("Home Assistant still running: SIGKILL")
            hass.kill()
            hass.wait()
    return _exit_code(hass.returncode)


def main() -> int:
    config_dir = Path(os.environ.get("DX_CONFIG_DIR") or CONFIG).resolve()
    nodes: list[Node] = []
    hass: subprocess.Popen[bytes] | None = None
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        if SIM_NODE.exists():
            print(
                f"building the simulated node {SIM_NODE.name} (cached after the first run)"
            )
            build = NodeBuild.compile(SIM_NODE)
            node = Node(
                build,
                port=int(os.environ.get("DX_NODE_PORT", "6053")),
                mac=os.environ.get("DX_NODE_MAC", SIM_MAC),
            )
            # Started with SIGINT blocked (a signal mask is inherited through exec): the
            # terminal's Ctrl-C does not stop the node; it is stopped after Home Assistant.
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            try:
                nodes.append(node.start())
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
            prepare_entry(config_dir, node)
            print(
                f"simulated node {node.name} on {node.host}:{node.port} (log {node.log_path})"
            )
        link_integration(config_dir)
        print(
            f"starting Home Assistant on http://localhost:{http_port(config_dir)} "
            "(Ctrl-C stops everything)"
        )
        sys.stdout.flush()
        hass = subprocess.Popen(
            hass_command(config_dir),
            stdin=subprocess.DEVNULL,
            # Stopped cleanly if this program dies without stopping it.
            preexec_fn=signal_with_parent(signal.SIGTERM),  # noqa: PLW1509
        )
        return _exit_code(hass.wait())
    except KeyboardInterrupt:
        # The terminal's Ctrl-C reached Home Assistant as well: it is stopping already.
        return 0 if hass is None else stop_hass(hass, signalled=True)
    except Terminated:
        return 0 if hass is None else stop_hass(hass, signalled=False)
    finally:
        if hass is not None and hass.poll() is None:  # an error in this program
            stop_hass(hass, signalled=False)
        # The nodes last, so Home Assistant never sees them go while it stops.
        for node in nodes:
            node.cleanup()
        sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
