"""Shared by every benchmark."""

from __future__ import annotations

import asyncio
import os

import pytest

# The test plugin turns on asyncio's debug mode for every test (autouse fixture
# enable_event_loop_debug); Home Assistant itself runs without it, and it costs CPU per
# callback. Off in every benchmark unless DX_BENCH_ASYNCIO_DEBUG=1; the results say which.
ASYNCIO_DEBUG = os.environ.get("DX_BENCH_ASYNCIO_DEBUG", "0") == "1"


@pytest.fixture(autouse=True)
async def enable_event_loop_debug() -> None:
    """Overrides the test plugin's fixture of that name: debug mode per ASYNCIO_DEBUG."""
    asyncio.get_running_loop().set_debug(ASYNCIO_DEBUG)
