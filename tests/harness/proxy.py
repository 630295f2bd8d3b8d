"""A TCP proxy on loopback between Home Assistant and a node: cuts connections on demand.

Used to make network outages without touching the node: `cut()` aborts every connection
through the proxy at once (both sides see a reset, as after a Wi-Fi drop); new connections
are accepted and forwarded at once, so a client reconnects straight away. It also counts
the bytes it forwards each way (`bytes_to_node`, `bytes_from_node`): the benchmarks' bytes
on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib


class Pipe(asyncio.Protocol):
    """One direction-pair end: what arrives here is written to the peer."""

    def __init__(self, proxy: TcpProxy, *, node_side: bool = False) -> None:
        self.proxy = proxy
        self.node_side = node_side  # the connection to the node (else: to the client)
        self.transport: asyncio.Transport | None = None
        self.peer: Pipe | None = None
        self._buffer: list[bytes] = []
        self.refused = False  # a connection made during an outage (TcpProxy.hold)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.refused:
            transport.abort()
            return
        self.proxy.pipes.add(self)

    def data_received(self, data: bytes) -> None:
        if self.node_side:
            self.proxy.bytes_from_node += len(data)
        else:
            self.proxy.bytes_to_node += len(data)
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write(data)
        else:
            self._buffer.append(data)

    def attach(self, peer: Pipe) -> None:
        self.peer = peer
        if self._buffer and peer.transport is not None:
            peer.transport.write(b"".join(self._buffer))
            self._buffer.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        self.proxy.pipes.discard(self)
        self.proxy.changed()
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a node's API port."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.accepted = 0
        self.pipes: set[Pipe] = set()
        self._server: asyncio.Server | None = None
        self._idle: list[asyncio.Future[None]] = []
        self.held = False  # an outage: every new connection is reset at once
        self.bytes_to_node = 0
        self.bytes_from_node = 0

    async def start(self) -> TcpProxy:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._client_side, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def _client_side(self) -> Pipe:
        client = Pipe(self)
        self.accepted += 1
        if self.held:
            client.refused = True  # reset as soon as it is connected
            return client
        asyncio.get_running_loop().create_task(self._connect_upstream(client))
        return client

    async def _connect_upstream(self, client: Pipe) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, upstream = await loop.create_connection(
                lambda: Pipe(self, node_side=True), "127.0.0.1", self.target_port
            )
        except OSError:
            if client.transport is not None:
                client.transport.abort()
            return
        upstream.attach(client)
        client.attach(upstream)
        if client.transport is None or client.transport.is_closing():
            upstream.transport.close()  # type: ignore[union-attr]

    @property
    def open_connections(self) -> int:
        """Connections through the proxy (each has two pipes)."""
        return len(self.pipes) // 2

    def changed(self) -> None:
        if not self.pipes:
            for future in self._idle:
                if not future.done():
                    future.set_result(None)

    async def closed(self, within: float = 10.0) -> None:
        """Wait until no connection goes through the proxy any more."""
        if not self.pipes:
            return
        future = asyncio.get_running_loop().create_future()
        self._idle.append(future)
        try:
            async with asyncio.timeout(within):
                await future
        finally:
            self._idle.remove(future)

    def cut(self) -> None:
        """Abort every connection through the proxy now (a reset, not a clean close)."""
        for pipe in list(self.pipes):
            if pipe.transport is not None:
                pipe.transport.abort()

    def hold(self) -> None:
        """A lasting outage: cut every connection and reset new ones until `release`."""
        self.held = True
        self.cut()

    def release(self) -> None:
        """End the outage: new connections are forwarded again."""
        self.held = False

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
