"""A Noise-terminating proxy: the encryption layer of a node, in front of a real node.

ESPHome's native API encryption (Noise) cannot be built offline for the host platform, so
host nodes in tests run plaintext. Every real ESP32 node runs encrypted, though. This proxy
**stands for the node's encryption layer**: it listens on loopback and speaks ESPHome's
encrypted native API to the client, exactly as ESPHome's ``APINoiseFrameHelper``
(``esphome/components/api/api_frame_helper_noise.cpp``) does, and relays the decrypted API
messages to a REAL simulated node behind it over plaintext, and the node's answers back,
encrypted. Everything above the transport (device info, entities, actions, our frames) is
the real node's.

The wire format, as the firmware and aioesphomeapi (``_frame_helper/noise.py``) have it:

- Every Noise frame is ``0x01``, a 2-byte big-endian length, then the payload.
- The client opens with an empty frame (its hello) followed by its first handshake frame.
  The prologue is ``b"NoiseAPIInit"`` + the 2-byte length of the client's hello + the hello
  itself, i.e. ``b"NoiseAPIInit\\x00\\x00"``.
- The node answers with its server hello: ``0x01`` (the chosen protocol,
  Noise_NNpsk0_25519_ChaChaPoly_SHA256), its name, ``\\0``, its MAC (12 lower-case hex
  digits), ``\\0``.
- Handshake frames start with a status byte: ``0x00`` then the Noise message, or ``0x01``
  then a reason (a rejection). A message that fails authentication (a wrong key) is
  rejected with ``0x01 "Handshake MAC failure"`` and the connection is closed; aioesphomeapi
  turns exactly that text into ``InvalidEncryptionKeyAPIError``. A client that speaks
  plaintext gets ``0x01 "Bad indicator byte"`` (aioesphomeapi: RequiresEncryptionAPIError).
- After the handshake each message is one frame whose encrypted content is the message type
  (2 bytes, big endian), the data length (2 bytes, big endian) and the protobuf data.
  Plaintext frames (to and from the node) are ``0x00``, varint length, varint type, data.

Modes: ``key`` set: an encrypted node with that key (``set_key`` rotates it, for new
connections; ``cut`` drops the current ones). ``plaintext=True``: a node without encryption
(or a man in the middle answering in its place): bytes are relayed unchanged, so the real
node's plaintext helper answers an encrypted client with ``0x00 "Bad indicator byte"``
(aioesphomeapi: EncryptionPlaintextAPIError). What a client sends in that mode is kept in
``plaintext_received`` so a test can show that nothing but the encrypted hello went out.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Coroutine
import contextlib
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from noise.connection import NoiseConnection

from tests.harness.node import Node

PROTOCOL_NAME = b"Noise_NNpsk0_25519_ChaChaPoly_SHA256"
PROLOGUE = b"NoiseAPIInit"
NOISE_INDICATOR = 0x01
STATUS_OK = 0x00
STATUS_REJECT = 0x01
# The node's limit for a handshake frame (api_frame_helper.h MAX_HANDSHAKE_SIZE).
MAX_HANDSHAKE_SIZE = 128
# ... and for a message after it (MAX_MESSAGE_SIZE, ESP32 and host): larger ones end the link.
MAX_MESSAGE_SIZE = 32768
MAC_FAILURE = "Handshake MAC failure"


class HandshakeRejectedError(Exception):
    """The handshake failed; the reason goes to the client before the connection closes."""


def noise_frame(payload: bytes) -> bytes:
    return bytes((NOISE_INDICATOR, len(payload) >> 8, len(payload) & 0xFF)) + payload


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


async def read_varint(reader: asyncio.StreamReader) -> int:
    value = shift = 0
    while True:
        byte = (await reader.readexactly(1))[0]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value
        shift += 7


@dataclass
class ProxyStats:
    handshakes: int = 0  # completed Noise handshakes
    rejected: list[str] = field(default_factory=list)  # reasons sent to clients
    # Message types the client sent, decrypted (e.g. 42 = ExecuteServiceRequest).
    client_messages: list[int] = field(default_factory=list)
    node_messages: int = 0  # messages from the node, sent on encrypted


class NoiseProxy:
    """Listens on 127.0.0.1:<port>; the node's encryption layer for ``node``."""

    def __init__(self, node: Node, key: str | None, *, plaintext: bool = False) -> None:
        self.node = node
        self.key = key
        self.plaintext = plaintext
        self.port = 0
        self.stats = ProxyStats()
        # What clients sent while the proxy answered as a node without encryption.
        self.plaintext_received = bytearray()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    host = "127.0.0.1"

    async def start(self) -> NoiseProxy:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    # ---- what tests change ----

    def set_key(self, key: str | None) -> None:
        """The node got a new key (or, with None, encryption removed): new connections."""
        self.key = key
        self.plaintext = key is None

    def set_plaintext(self, plaintext: bool = True) -> None:
        """Answer new connections as a node without encryption (or a man in the middle)."""
        self.plaintext = plaintext

    def cut(self) -> None:
        """Abort every connection through the proxy (both sides see a reset)."""
        for writer in list(self._writers):
            writer.transport.abort()

    @property
    def open_connections(self) -> int:
        return len(self._tasks)

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    # ---- one connection ----

    def _accept(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._writers.add(writer)
        try:
            # The node behind: refused when it is down, as a real node would be.
            try:
                node_reader, node_writer = await asyncio.open_connection(
                    self.node.host, self.node.port
                )
            except OSError:
                writer.transport.abort()
                return
            self._writers.add(node_writer)
            try:
                if self.plaintext or not self.key:
                    await self._relay_plaintext(
                        reader, writer, node_reader, node_writer
                    )
                else:
                    await self._serve_encrypted(
                        self.key, reader, writer, node_reader, node_writer
                    )
            finally:
                self._writers.discard(node_writer)
                node_writer.transport.abort()
        except asyncio.IncompleteReadError, ConnectionError, OSError:
            pass
        finally:
            self._writers.discard(writer)
            writer.transport.abort()

    async def _relay_plaintext(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        node_reader: asyncio.StreamReader,
        node_writer: asyncio.StreamWriter,
    ) -> None:
        async def pump(
            source: asyncio.StreamReader,
            sink: asyncio.StreamWriter,
            record: bytearray | None,
        ) -> None:
            while data := await source.read(65536):
                if record is not None:
                    record.extend(data)
                sink.write(data)
                await sink.drain()

        await _first_to_end(
            pump(reader, node_writer, self.plaintext_received),
            pump(node_reader, writer, None),
        )

    async def _serve_encrypted(
        self,
        key: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        node_reader: asyncio.StreamReader,
        node_writer: asyncio.StreamWriter,
    ) -> None:
        try:
            noise = await self._handshake(key, reader, writer)
        except HandshakeRejectedError as reject:
            reason = str(reject)
            self.stats.rejected.append(reason)
            writer.write(noise_frame(bytes((STATUS_REJECT,)) + reason.encode()))
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            writer.close()
            return
        self.stats.handshakes += 1

        async def to_node() -> None:
            while True:
                message = noise.decrypt(
                    await _read_noise_frame(reader, MAX_MESSAGE_SIZE)
                )
                if len(message) < 4:
                    return  # the node drops such a connection (BAD_DATA_PACKET)
                msg_type = (message[0] << 8) | message[1]
                length = (message[2] << 8) | message[3]
                data = bytes(message[4 : 4 + length])
                self.stats.client_messages.append(msg_type)
                node_writer.write(b"\x00" + varint(len(data)) + varint(msg_type) + data)
                await node_writer.drain()

        async def to_client() -> None:
            while True:
                if (await node_reader.readexactly(1))[0] != 0x00:
                    return  # not a plaintext node behind: nothing to relay
                length = await read_varint(node_reader)
                msg_type = await read_varint(node_reader)
                data = await node_reader.readexactly(length)
                plain = bytes(
                    (msg_type >> 8, msg_type & 0xFF, length >> 8, length & 0xFF)
                )
                writer.write(noise_frame(noise.encrypt(plain + data)))
                self.stats.node_messages += 1
                await writer.drain()

        await _first_to_end(to_node(), to_client())

    async def _handshake(
        self, key: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> NoiseConnection:
        # The client's hello: its content is ignored but goes into the prologue.
        hello = await _read_noise_frame(reader, MAX_HANDSHAKE_SIZE)
        prologue = PROLOGUE + len(hello).to_bytes(2, "big") + hello
        mac = self.node.mac.replace(":", "").lower()
        writer.write(
            noise_frame(
                b"\x01" + self.node.name.encode() + b"\0" + mac.encode() + b"\0"
            )
        )
        noise = NoiseConnection.from_name(PROTOCOL_NAME)
        noise.set_as_responder()
        noise.set_psks(psk=base64.b64decode(key))
        noise.set_prologue(prologue)
        noise.start_handshake()
        message = await _read_noise_frame(reader, MAX_HANDSHAKE_SIZE)
        if not message:
            raise HandshakeRejectedError("Empty handshake message")
        if message[0] != STATUS_OK:
            raise HandshakeRejectedError("Bad handshake error byte")
        try:
            noise.read_message(message[1:])
        except InvalidTag:
            raise HandshakeRejectedError(MAC_FAILURE) from None
        except Exception:  # noqa: BLE001 - any other failure: the node's generic reason
            raise HandshakeRejectedError("Handshake error") from None
        writer.write(noise_frame(bytes((STATUS_OK,)) + noise.write_message()))
        await writer.drain()
        assert noise.handshake_finished
        return noise


async def _read_noise_frame(reader: asyncio.StreamReader, limit: int) -> bytes:
    header = await reader.readexactly(3)
    if header[0] != NOISE_INDICATOR:
        # A plaintext client (0x00): the node answers with a rejection and closes.
        raise HandshakeRejectedError("Bad indicator byte")
    size = (header[1] << 8) | header[2]
    if size > limit:
        raise HandshakeRejectedError("Bad handshake packet len")
    return await reader.readexactly(size)


async def _first_to_end(*coroutines: Coroutine[Any, Any, None]) -> None:
    """Run the two directions of a connection; when one ends, the connection ends."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
