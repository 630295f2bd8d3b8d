"""Home Assistant as a process of its own, started the way scripts/develop starts it.

Shared by scripts/develop (``tests/harness/develop.py``) and the durability tests
(``tests/integration/test_durability.py``), which crash or interrupt that process and start
it again on the same configuration directory. A test talks to it as a browser would: over
HTTP (the REST API), with an access token from onboarding.

Polling here is of another process (its HTTP API, its files), with a short interval and an
overall deadline; nothing waits a fixed time in place of a condition.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
import contextlib
import ctypes
import json
import os
from pathlib import Path
import re
import shutil
import signal
import subprocess
import sys
import time
from types import MappingProxyType
from typing import IO, Any

import aiohttp

from tests.harness.node import REPO, Node, free_port

CONFIG = REPO / "config"
DEFAULT_HTTP_PORT = 8123
# What of config/ is the configuration (the rest is Home Assistant's state; see .gitignore).
CONFIGURATION = ("configuration.yaml", "dashboards")
# Lines of Home Assistant's log (and of scripts/develop's output) that a clean run never has.
PROBLEM = re.compile(r"Traceback|KeyboardInterrupt| (?:ERROR|CRITICAL) \(")


def hass_command(config_dir: Path) -> list[str]:
    """Home Assistant as scripts/develop runs it."""
    return [
        sys.executable,
        "-m",
        "homeassistant",
        "--config",
        str(config_dir),
        "--skip-pip",
    ]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment scripts/develop's programs get from dx_run (``env -i`` and a few)."""
    keep = ("PATH", "HOME", "LANG", "TERM", "VIRTUAL_ENV", "DX_ESPHOME", "DX_WORK")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(extra)
    return env


def signal_with_parent(sig: signal.Signals) -> Callable[[], None]:
    """A ``preexec_fn``: the child gets ``sig`` when the process that started it dies."""

    def preexec() -> None:
        ctypes.CDLL(None, use_errno=True).prctl(1, sig)  # PR_SET_PDEATHSIG

    return preexec


def http_port(config_dir: Path) -> int:
    """The port Home Assistant serves on with this configuration (``http: server_port``,
    else ``SETUP_PORT`` from the environment, else 8123)."""
    from homeassistant.exceptions import HomeAssistantError
    from homeassistant.util.yaml import load_yaml_dict

    default = int(os.environ.get("SETUP_PORT") or DEFAULT_HTTP_PORT)
    try:
        http = load_yaml_dict(config_dir / "configuration.yaml").get("http") or {}
        return int(http.get("server_port", default))
    except HomeAssistantError, OSError, TypeError, ValueError, AttributeError:
        return default


def copy_config(dest: Path, port: int | None) -> Path:
    """A copy of the repository's configuration (none of its state) serving on ``port``.

    ``port`` None: configuration.yaml stays as it is, and Home Assistant is to be given its
    port by the environment (``setup_port_env``). Home Assistant 2026.10 moves a YAML
    ``http:`` section into its storage as an unconfirmed trial: its frontend then asks
    the user to confirm the new port, and Home Assistant reverts to port 8123 after 5
    minutes. Tests that use the frontend take the environment.
    """
    dest.mkdir(parents=True)
    for name in CONFIGURATION:
        source = CONFIG / name
        if source.is_dir():
            shutil.copytree(source, dest / name)
        else:
            shutil.copy2(source, dest / name)
    if port is None:
        return dest
    configuration = dest / "configuration.yaml"
    text = configuration.read_text()
    if re.search(r"^http:", text, re.MULTILINE):
        raise RuntimeError(
            "config/configuration.yaml has an http: section; copy_config must merge the port"
        )
    configuration.write_text(f"{text.rstrip()}\n\nhttp:\n  server_port: {port}\n")
    return dest


def setup_port_env(port: int) -> dict[str, str]:
    """The environment that makes Home Assistant serve on ``port`` by default.

    ``SETUP_PORT`` sets the HTTP integration's default port (no ``http:`` in the
    configuration, nothing to confirm; see ``copy_config``).
    """
    return {"SETUP_PORT": str(port)}


def link_integration(config_dir: Path) -> None:
    """``custom_components`` of the configuration -> this working tree's."""
    link = config_dir / "custom_components"
    link.unlink(missing_ok=True)
    link.symlink_to(os.path.relpath(REPO / "custom_components", config_dir))


def prepare_entry(config_dir: Path, node: Node, title: str = "Simulated node") -> str:
    """Add ``node`` as a config entry before Home Assistant starts; its entry id.

    The entry is written in Home Assistant's own storage format, produced by its ConfigEntry
    class (Home Assistant is not running yet). An existing entry for the node is kept.
    """
    from homeassistant.config_entries import STORAGE_VERSION_MINOR, ConfigEntry

    from custom_components.data_exchange.const import (
        CONF_DEVICE_NAME,
        CONF_NOISE_PSK,
        CONFIG_MINOR_VERSION,
        CONFIG_VERSION,
        DOMAIN,
    )

    path = config_dir / ".storage" / "core.config_entries"
    stored = (
        json.loads(path.read_text())
        if path.exists()
        else {
            "version": 1,
            "minor_version": STORAGE_VERSION_MINOR,
            "key": "core.config_entries",
            "data": {"entries": []},
        }
    )
    entries = stored["data"]["entries"]
    unique_id = node.mac.lower()
    for existing in entries:
        if existing["domain"] == DOMAIN and existing["unique_id"] == unique_id:
            return str(existing["entry_id"])
    entry = ConfigEntry(
        data={
            "host": node.host,
            "port": node.port,
            CONF_NOISE_PSK: None,
            CONF_DEVICE_NAME: node.name,
        },
        discovery_keys=MappingProxyType({}),
        domain=DOMAIN,
        minor_version=CONFIG_MINOR_VERSION,
        options={},
        source="user",
        title=title,
        unique_id=unique_id,
        version=CONFIG_VERSION,
        subentries_data=None,
    )
    entries.append(json.loads(json.dumps(entry.as_dict(), default=str)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stored, indent=2))
    print(f"added {node.name} as a config entry ({path})")
    return entry.entry_id


def stored(config_dir: Path, key: str) -> dict[str, Any] | None:
    """The data of Home Assistant's Store ``key`` as it is on disk now (None: no file)."""
    path = config_dir / ".storage" / key
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())["data"]
    return data


# Home Assistant's ffmpeg integration (library haffmpeg) gives the binary 15 s to print its
# version; on a loaded 2-core machine at start-up that can pass, and the library then leaves
# a task whose RuntimeError Home Assistant logs as "Task exception was never retrieved".
# Upstream, not ours, and only after haffmpeg's own timeout warning: that block alone is
# dropped (``known_upstream``), anything else still counts.
_FFMPEG_TIMEOUT = re.compile(
    r"^.*\[haffmpeg\.core\] Timeout while waiting of FFmpeg\n"
    r"(?:(?!.*Error doing job).*\n)*?"
    r".*ERROR .*\[homeassistant\] Error doing job: Task exception was never retrieved.*\n"
    r"Traceback \(most recent call last\):\n(?:[ \t].*\n)*"
    r"RuntimeError: read\(\) called while another coroutine is already waiting for "
    r"incoming data\n",
    re.MULTILINE,
)


def known_upstream(text: str) -> str:
    """``text`` without the log blocks of known upstream faults (see _FFMPEG_TIMEOUT)."""
    return _FFMPEG_TIMEOUT.sub(
        lambda m: (
            "\n".join(line for line in m.group(0).splitlines() if "haffmpeg" in line)
            + "\n"
        ),
        text,
    )


def problems(
    text: str, only: tuple[str, ...] = (), ignore: tuple[str, ...] = ()
) -> list[str]:
    """The lines of a log that a clean run never has: errors, tracebacks, interrupts.

    ``only``: just error lines of these loggers (and their children); ``ignore``: not
    error lines of these.
    """

    def logged_by(line: str, names: tuple[str, ...]) -> bool:
        return any(f"[{name}" in line for name in names)

    return [
        line
        for line in text.splitlines()
        if PROBLEM.search(line)
        and (not only or logged_by(line, only))
        and not logged_by(line, ignore)
    ]


class HassError(RuntimeError):
    """Home Assistant answered an HTTP request with an error."""


class HassClient:
    """Home Assistant's REST API, as a browser (or a script) reaches it from outside.

    ``process``: what runs Home Assistant (itself, or scripts/develop), so that waiting
    ends with its log when it exits instead of at a timeout.
    """

    def __init__(
        self,
        config_dir: Path,
        port: int,
        process: subprocess.Popen[bytes] | None = None,
    ) -> None:
        self.config_dir = config_dir
        self.port = port
        self.process = process
        self.base = f"http://127.0.0.1:{port}"
        self.token: str | None = None
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def alive(self) -> bool:
        """Whether the process serving it still runs (without one: assumed)."""
        return self.process is None or self.process.poll() is None

    def describe(self) -> str:
        """What to show when it fails: the end of Home Assistant's log."""
        log = self.config_dir / "home-assistant.log"
        try:
            lines = log.read_text(errors="replace").splitlines()
        except OSError:
            return "(no home-assistant.log)"
        return "\n".join(lines[-40:])

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=30)
            )
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with self._session.request(
            method, self.base + path, headers=headers, **kwargs
        ) as response:
            if response.status >= 400:
                raise HassError(
                    f"{method} {path}: {response.status} {await response.text()}"
                )
            return await response.json(content_type=None)

    async def wait_http(self, within: float = 120.0) -> None:
        """Until Home Assistant answers HTTP (its onboarding status needs no login)."""
        deadline = time.monotonic() + within
        while True:
            try:
                await self.request("GET", "/api/onboarding")
            except aiohttp.ClientError, HassError, TimeoutError:
                pass
            else:
                return
            if not self.alive():
                raise AssertionError(
                    f"Home Assistant exited while starting:\n{self.describe()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"Home Assistant did not answer HTTP within {within} s:\n"
                    f"{self.describe()}"
                )
            await asyncio.sleep(0.2)

    async def onboard(self) -> str:
        """Onboarding's first step (the owner account), then a login: an access token.

        Only that step (``finish_onboarding`` does the others, which add default
        integrations). Returns once the login is on disk (the auth store saves with a
        delay), so a crash after this does not log the test out.
        """
        client_id = f"http://localhost:{self.port}/"
        created = await self.request(
            "POST",
            "/api/onboarding/users",
            json={
                "client_id": client_id,
                "name": "Test",
                "username": "test",
                "password": "test-password",
                "language": "en",
            },
        )
        tokens = await self.request(
            "POST",
            "/auth/token",
            data={
                "grant_type": "authorization_code",
                "code": created["auth_code"],
                "client_id": client_id,
            },
        )
        self.token = str(tokens["access_token"])
        # The access token is a JWT issued by its refresh token (claim "iss").
        payload = self.token.split(".")[1]
        refresh_id = json.loads(base64.urlsafe_b64decode(payload + "=="))["iss"]
        await self.until_on_disk(
            lambda: refresh_id in json.dumps(stored(self.config_dir, "auth")),
            "the login in .storage/auth",
        )
        return self.token

    async def finish_onboarding(self) -> None:
        """The rest of onboarding, as its pages send it after the owner account: location
        (which adds onboarding's default integrations), analytics, integrations. Needs the
        token from ``onboard``."""
        client_id = f"http://localhost:{self.port}/"
        await self.request("POST", "/api/onboarding/core_config", json={})
        await self.request("POST", "/api/onboarding/analytics", json={})
        await self.request(
            "POST",
            "/api/onboarding/integration",
            json={
                "client_id": client_id,
                "redirect_uri": f"{client_id}?auth_callback=1",
            },
        )

    async def until_on_disk(
        self, predicate: Callable[[], bool], what: str, within: float = 10.0
    ) -> None:
        deadline = time.monotonic() + within
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not on disk within {within} s")
            await asyncio.sleep(0.1)

    async def wait_running(self, within: float = 60.0) -> None:
        """Until Home Assistant has started (its state RUNNING; needs the token)."""
        deadline = time.monotonic() + within
        while (config := await self.request("GET", "/api/config"))[
            "state"
        ] != "RUNNING":
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"Home Assistant not started within {within} s: {config['state']}"
                )
            await asyncio.sleep(0.1)

    async def states(self) -> dict[str, dict[str, Any]]:
        return {s["entity_id"]: s for s in await self.request("GET", "/api/states")}

    async def until(
        self,
        predicate: Callable[[dict[str, dict[str, Any]]], bool],
        what: str,
        within: float = 60.0,
        show: Callable[[dict[str, dict[str, Any]]], Any] = lambda s: None,
    ) -> dict[str, dict[str, Any]]:
        """Poll the states until ``predicate`` holds; they are returned then.

        A timeout fails as an AssertionError that says what was awaited and, through
        ``show``, what the states were last.
        """
        deadline = time.monotonic() + within
        while True:
            states = await self.states()
            if predicate(states):
                return states
            if not self.alive():
                raise AssertionError(
                    f"{what}: Home Assistant exited:\n{self.describe()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{what}: not reached within {within} s; last: {show(states)!r}"
                )
            await asyncio.sleep(0.1)

    async def call(self, domain: str, service: str, **data: Any) -> None:
        """Run an action; returns when Home Assistant has run it."""
        await self.request("POST", f"/api/services/{domain}/{service}", json=data)


class HassProcess(HassClient):
    """Home Assistant started here, as scripts/develop starts it, on ``config_dir``."""

    def __init__(
        self, config_dir: Path, port: int, env: dict[str, str] | None = None
    ) -> None:
        """``env``: more environment for Home Assistant (e.g. ``setup_port_env``)."""
        super().__init__(config_dir, port)
        self.env = dict(env or {})
        self._output: IO[bytes] | None = None

    @property
    def output_path(self) -> Path:
        """Its console output, every start appended (home-assistant.log keeps one run)."""
        return self.config_dir.parent / f"{self.config_dir.name}.out"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def start(self, within: float = 120.0) -> HassProcess:
        """Start it and return once it answers HTTP."""
        assert not self.alive(), "Home Assistant is running already"
        self._output = self.output_path.open("ab")
        self.process = subprocess.Popen(  # noqa: ASYNC220 - returns at once
            hass_command(self.config_dir),
            cwd=REPO,
            env=clean_env(**self.env),
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=subprocess.STDOUT,
            preexec_fn=signal_with_parent(signal.SIGKILL),  # noqa: PLW1509
        )
        await self.wait_http(within)
        return self

    def kill(self) -> None:
        """SIGKILL, as a power cut or the OOM killer ends it: no shutdown, no final save."""
        if self.alive():
            assert self.process is not None
            self.process.kill()
            self.process.wait()
        self._close_output()

    async def stop(self, within: float = 120.0) -> int:
        """A clean stop (SIGTERM); its exit code. SIGKILL if it takes over ``within`` s."""
        assert self.process is not None
        if self.alive():
            self.process.terminate()
            try:
                await wait_exit(self.process, within)
            finally:
                self.kill()
        self._close_output()
        return self.process.returncode

    def _close_output(self) -> None:
        if self._output is not None:
            self._output.close()
            self._output = None


async def wait_exit(process: subprocess.Popen[Any], within: float) -> int:
    """Until ``process`` has exited (its exit code); TimeoutError after ``within`` s."""
    deadline = time.monotonic() + within
    while (code := process.poll()) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"process {process.pid} still running after {within} s")
        await asyncio.sleep(0.05)
    return code


@contextlib.asynccontextmanager
async def hass_for_node(
    dest: Path, node: Node, *, onboarding_port: bool = False
) -> AsyncIterator[HassProcess]:
    """Home Assistant on a fresh copy of config/ in ``dest`` with ``node`` as its config
    entry (not started); killed and closed afterwards. ``onboarding_port``: the HTTP port
    comes from the environment (setup_port_env) instead of the copied configuration."""
    port = free_port()
    config_dir = copy_config(dest, None if onboarding_port else port)
    link_integration(config_dir)
    prepare_entry(config_dir, node)
    env = setup_port_env(port) if onboarding_port else None
    hass = HassProcess(config_dir, port, env=env)
    try:
        yield hass
    finally:
        hass.kill()
        await hass.close()
