"""Build and run real ESPHome nodes (host platform) for tests, benchmarks and scripts/develop.

A node YAML is compiled once per configuration (the YAML, the firmware tree and the ESPHome
version): unchanged nodes are not rebuilt, across runs and across clones that share the
cache. One build is started as many instances as needed; each gets its own API port, MAC
address (and so its own name, through name_add_mac_suffix) and preferences directory from
the environment, read by the test-only ``dx_harness`` component.

Nothing here may outlive its owner: every process is started with a parent-death signal,
and ``Node.stop`` sends SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import ctypes
from dataclasses import dataclass, field
import fcntl
import hashlib
import itertools
import os
from pathlib import Path
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import IO

REPO = Path(__file__).resolve().parents[2]
FIRMWARE_DIR = REPO / "esphome"
HARNESS_COMPONENTS = Path(__file__).resolve().parent / "components"

_mac_counter = itertools.count(1)


class NodeError(RuntimeError):
    """A node could not be built or started."""


def work_dir() -> Path:
    """The cache for builds, shared between runs (scripts/lib.sh sets DX_WORK)."""
    default = Path.home() / ".cache" / "data-exchange" / "work"
    return Path(os.environ.get("DX_WORK", default))


def esphome_command() -> list[str]:
    """The ESPHome CLI of the separate ESPHome environment."""
    exe = os.environ.get("DX_ESPHOME") or shutil.which("esphome")
    if not exe:
        raise NodeError(
            "ESPHome not found: run through scripts/test (DX_ESPHOME unset)"
        )
    return [exe]


def _tree_digest(digest: hashlib._Hash, root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if (
            path.is_file()
            and ".esphome" not in path.parts
            and "__pycache__" not in path.parts
        ):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())


def config_key(yaml_path: Path, substitutions: dict[str, str]) -> str:
    """What decides a build: the node YAML, the firmware tree, the harness, ESPHome.

    Contents only, not where the clone is: clones of the same commit share their builds.
    """
    digest = hashlib.sha256()
    digest.update(yaml_path.name.encode())
    digest.update(yaml_path.read_bytes())
    digest.update(repr(sorted(substitutions.items())).encode())
    _tree_digest(digest, FIRMWARE_DIR)
    # The YAML's own tree too: a firmware variant is a copy elsewhere (firmware_variant).
    if yaml_path.resolve().parent != FIRMWARE_DIR.resolve():
        _tree_digest(digest, yaml_path.resolve().parent)
    _tree_digest(digest, HARNESS_COMPONENTS)
    digest.update(esphome_command()[0].encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class NodeBuild:
    """A compiled host node, ready to start."""

    yaml_path: Path
    program: Path
    name: str

    @classmethod
    def compile(
        cls, yaml_path: Path | str, substitutions: dict[str, str] | None = None
    ) -> NodeBuild:
        """Compile ``yaml_path`` for the host platform, or reuse the cached build."""
        yaml_path = Path(yaml_path).resolve()
        subs = dict(substitutions or {})
        key = config_key(yaml_path, subs)
        build_dir = work_dir() / "nodes" / f"{yaml_path.stem}-{key}"
        build_dir.mkdir(parents=True, exist_ok=True)
        done = build_dir / "program.path"
        # Several test workers may ask for the same node at once: one builds, the others wait.
        with (build_dir / "lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not done.exists():
                cls._build(yaml_path, subs, build_dir, done)
            program = Path(done.read_text().strip())
        return cls(yaml_path=yaml_path, program=program, name=yaml_path.stem)

    @staticmethod
    def _build(
        yaml_path: Path, subs: dict[str, str], build_dir: Path, done: Path
    ) -> None:
        # yaml_gen builds on this module's paths, hence imported here.
        from tests.harness.yaml_gen import harness_wrapper

        wrapper = build_dir / "node.yaml"
        wrapper.write_text(harness_wrapper(yaml_path, subs, build_dir / "build"))
        log = build_dir / "compile.log"
        with log.open("w") as out:
            result = subprocess.run(
                [*esphome_command(), "compile", str(wrapper)],
                cwd=build_dir,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        programs = list((build_dir / "build" / ".pioenvs").glob("*/program"))
        if result.returncode != 0 or len(programs) != 1:
            tail = "\n".join(log.read_text().splitlines()[-40:])
            raise NodeError(f"esphome compile {yaml_path} failed:\n{tail}")
        done.write_text(str(programs[0]))


def firmware_variant(
    name: str,
    yaml_name: str,
    drop: list[str] | None = None,
    replace: dict[str, str] | None = None,
    sources: dict[str, dict[str, str]] | None = None,
) -> Path:
    """A copy of the firmware tree whose ``yaml_name`` lacks the lines in ``drop`` and has
    the texts in ``replace`` replaced; ``sources`` replaces texts in other files of the
    tree (path relative to esphome/ -> {old: new}), e.g. an older protocol version.

    Lives at a stable path in the build cache, so the variant is compiled once and reused;
    used to test a firmware change (points removed) on a node with the same MAC.
    """
    root = work_dir() / "variants" / name
    yaml = root / yaml_name
    text = (FIRMWARE_DIR / yaml_name).read_text()
    for line in drop or []:
        if line + "\n" not in text:
            raise NodeError(f"{yaml_name} has no line {line!r}")
        text = text.replace(line + "\n", "", 1)
    for old, new in (replace or {}).items():
        if old not in text:
            raise NodeError(f"{yaml_name} has no text {old!r}")
        text = text.replace(old, new, 1)
    patched = {}
    for rel, changes in (sources or {}).items():
        source = (FIRMWARE_DIR / rel).read_text()
        for old, new in changes.items():
            if old not in source:
                raise NodeError(f"{rel} has no text {old!r}")
            source = source.replace(old, new, 1)
        patched[rel] = source
    # The copy follows the firmware tree (the component's sources too, not just the YAML).
    digest = hashlib.sha256(text.encode())
    for rel in sorted(patched):
        digest.update(rel.encode() + patched[rel].encode())
    _tree_digest(digest, FIRMWARE_DIR)
    stamp = work_dir() / "variants" / f"{name}.stamp"
    if (
        not yaml.exists()
        or not stamp.exists()
        or stamp.read_text() != digest.hexdigest()
    ):
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(FIRMWARE_DIR, root, ignore=shutil.ignore_patterns(".esphome"))
        yaml.write_text(text)
        for rel, source in patched.items():
            (root / rel).write_text(source)
        stamp.write_text(digest.hexdigest())
    return yaml


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unique_mac() -> str:
    """A locally administered MAC, unique per process and call."""
    pid = os.getpid()
    count = next(_mac_counter)
    octets = [
        0x02,
        0x44,
        (pid >> 8) & 0xFF,
        pid & 0xFF,
        (count >> 8) & 0xFF,
        count & 0xFF,
    ]
    return ":".join(f"{o:02X}" for o in octets)


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG: the node gets SIGKILL if the process that started it dies.
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


@dataclass
class Node:
    """One running instance of a build."""

    build: NodeBuild
    port: int = field(default_factory=free_port)
    mac: str = field(default_factory=unique_mac)
    state_dir: Path = field(
        default_factory=lambda: Path(tempfile.mkdtemp(prefix="dx-node-"))
    )
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None
    # More environment for the node program (test-only hooks, e.g. DX_FRAME_SEQ).
    env: dict[str, str] = field(default_factory=dict)

    host = "127.0.0.1"

    @property
    def name(self) -> str:
        """The node's name as it reports it (name_add_mac_suffix: last three MAC octets)."""
        return f"{self.build.name}-{self.mac.replace(':', '')[-6:].lower()}"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "node.log"

    def start(self, timeout: float = 30.0) -> Node:
        """Start the node and return once it accepts API connections."""
        if self.process is not None and self.process.poll() is None:
            raise NodeError("node already running")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.state_dir),
            "DX_NODE_PORT": str(self.port),
            "DX_NODE_MAC": self.mac,
            "ESPHOME_PREFDIR": str(self.state_dir / "prefs"),
            **self.env,
        }
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [str(self.build.program)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - only sets the death signal
        )
        self._wait_listening(timeout)
        return self

    def _wait_listening(self, timeout: float) -> None:
        # A readiness probe, not a fixed sleep: try to connect until the API server listens.
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise NodeError(
                    f"node exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), 0.5),
            ):
                return
            if time.monotonic() > deadline:
                self.stop()
                raise NodeError(
                    f"node did not listen on {self.port}:\n{self.log_tail()}"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(
                self.log_path.read_text(errors="replace").splitlines()[-lines:]
            )
        except OSError:
            return ""

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """Kill the node at once (SIGKILL), as a crash or power loss would."""
        if self.running:
            assert self.process is not None
            self.process.kill()
            self.process.wait()
        self._close_log()

    def stop(self, grace: float = 5.0) -> None:
        """Stop the node: SIGTERM, then SIGKILL after ``grace`` seconds."""
        if self.running:
            assert self.process is not None
            self.process.terminate()
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._close_log()

    def reset_preferences(self) -> None:
        """Forget what the node stored, so the next start comes up with firmware defaults."""
        shutil.rmtree(self.state_dir / "prefs", ignore_errors=True)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.state_dir, ignore_errors=True)


class NodeFactory:
    """Builds and starts nodes; stops every one of them at the end."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []

    def build(self, yaml_path: Path | str, **substitutions: str) -> NodeBuild:
        return NodeBuild.compile(yaml_path, substitutions)

    def start(self, yaml_path: Path | str, **substitutions: str) -> Node:
        node = Node(self.build(yaml_path, **substitutions))
        self.nodes.append(node)
        return node.start()

    def close(self) -> None:
        for node in self.nodes:
            node.cleanup()
        self.nodes.clear()
