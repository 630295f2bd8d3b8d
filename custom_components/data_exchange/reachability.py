"""Noticing at once that a node is back: a short, bounded watch on its API port.

aioesphomeapi's ReconnectLogic retries with an exponential back-off (2, 3, 6, 10 … up to 60 s)
and connects at once when the node's mDNS record reappears, if zeroconf runs and the network
carries mDNS. Without that, a node that restarts in 3 s waits for the next back-off step,
and its desired values with it. So while a node is away this watch tries a plain TCP connect
to its API port, every PROBE_FAST for the first FAST_WINDOW (a restart: a host node is back
in milliseconds, an ESP32 within seconds), then every PROBE_INTERVAL until PROBE_WINDOW; the
first socket that connects is handed to ReconnectLogic (``async_adopt_connection``), which
runs the normal handshake (encryption included) on it, so nothing is connected twice. After
the window only the back-off remains: a node that stays away is probed at most
FAST_WINDOW / PROBE_FAST + (PROBE_WINDOW - FAST_WINDOW) / PROBE_INTERVAL times (150) per
outage, one SYN at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
import contextlib
import logging
import socket
import time

from homeassistant.core import HomeAssistant

_LOGGER = logging.getLogger(__name__)

PROBE_FAST = 0.25  # seconds between connect attempts, first FAST_WINDOW seconds
FAST_WINDOW = 10.0
PROBE_INTERVAL = 1.0  # seconds between connect attempts after that
PROBE_TIMEOUT = 0.5  # seconds a connect attempt may take
PROBE_WINDOW = 120.0  # seconds after the node went away; then back-off only


class ReturnWatch:
    """Watches one node's API port while it is away."""

    def __init__(
        self,
        hass: HomeAssistant,
        host: str,
        port: int,
        on_open: Callable[[socket.socket], Awaitable[object]],
    ) -> None:
        """``on_open`` takes a connected socket (and closes it if it cannot use it)."""
        self.hass = hass
        self.host = host
        self.port = port
        self._on_open = on_open
        self._task: asyncio.Task[None] | None = None
        self.probes = 0  # connect attempts, over all outages

    @property
    def watching(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """The node went away (or could not be reached): watch, unless already watching."""
        if not self.watching:
            self._task = self.hass.async_create_background_task(
                self._watch(), f"data_exchange return watch {self.host}:{self.port}"
            )

    def stop(self) -> None:
        """The node is connected (or unloaded). The watch's own task, connecting on its
        socket right now, is not cancelled: it ends by itself."""
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        self._task = None

    async def _watch(self) -> None:
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < PROBE_WINDOW:
            await asyncio.sleep(PROBE_FAST if elapsed < FAST_WINDOW else PROBE_INTERVAL)
            if (sock := await self._probe()) is not None:
                # Reachable: connected on it, or the handshake failed (a wrong key, say):
                # either way the watch is over, ReconnectLogic goes on from here.
                await self._on_open(sock)
                return

    async def _probe(self) -> socket.socket | None:
        """A connected socket to the node's API port, or None."""
        self.probes += 1
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                infos = await loop.getaddrinfo(
                    self.host, self.port, type=socket.SOCK_STREAM
                )
                family, kind, proto, _, address = infos[0]
                sock = socket.socket(family, kind, proto)
                sock.setblocking(False)
                try:
                    await loop.sock_connect(sock, address)
                except BaseException:
                    sock.close()
                    raise
        except (OSError, TimeoutError, IndexError) as err:
            _LOGGER.debug("%s:%s not reachable yet: %s", self.host, self.port, err)
            return None
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
