"""The describe handshake: on every connection, Home Assistant asks a frame-mode node for
its model, and takes only the answer to its own request.

The answer (a model event) gives the points in frame order and where the node stands: its
boot id, its last frame number and this boot's token, which every desired frame must carry.
The token is not kept: the node gives it again on every connection.
"""

from __future__ import annotations

import asyncio

from .connection import NodeConnection
from .protocol import DESCRIBE_ACTION, Model, ProtocolError, ProtocolVersionError

DESCRIBE_TIMEOUT = 10.0


class Describe:
    """One node's describe requests; at most one is open."""

    def __init__(self, connection: NodeConnection) -> None:
        self.connection = connection
        self._answer: asyncio.Future[Model] | None = None
        # The last model event, as it is stored (no per-boot token).
        self.event: dict[str, str] | None = None

    async def async_request(self) -> Model:
        """Ask the node; raises TimeoutError, APIConnectionError or ProtocolError."""
        self._answer = asyncio.get_running_loop().create_future()
        await self.connection.async_execute(DESCRIBE_ACTION, {})
        async with asyncio.timeout(DESCRIBE_TIMEOUT):
            return await self._answer

    def on_model_event(self, data: dict[str, str]) -> None:
        """A model event from the node; raises ProtocolError when it is not taken."""
        if self._answer is None or self._answer.done():
            raise ProtocolError("model description nobody asked for")
        try:
            model = Model.from_event(data)
        except ProtocolVersionError as err:
            self._answer.set_exception(err)  # the answer: another protocol version
            return
        self.event = {k: v for k, v in data.items() if k != "k"}
        self._answer.set_result(model)

    def cancel(self) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.cancel()
