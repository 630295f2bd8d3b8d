"""Browser tests: where their screenshots go, and saying so at the end of the run.

Screenshots are kept outside pytest's temporary directory (which, in the Debian root, is a
private /tmp gone after the run): in ``DX_ARTIFACTS`` if set, else in the build cache
(``$DX_WORK/artifacts/browser/<UTC time>/``), which the machine sees at the same path.
"""

from __future__ import annotations

from datetime import UTC, datetime
import os
from pathlib import Path

import pytest

from tests.harness.node import work_dir

_KEPT: list[Path] = []


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """The directory the browser tests' screenshots are kept in (created)."""
    base = os.environ.get("DX_ARTIFACTS")
    root = Path(base) if base else work_dir() / "artifacts" / "browser"
    path = root / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path.mkdir(parents=True, exist_ok=True)
    _KEPT.append(path)
    return path


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for path in _KEPT:
        shots = sorted(p.name for p in path.glob("*.png"))
        terminalreporter.write_line(
            f"browser screenshots ({len(shots)}): {path}"
            + (f" [{', '.join(shots)}]" if shots else "")
        )
