"""A second API client on a node: a plain aioesphomeapi ``APIClient``, not our integration.

Tests use it for what anything else on the network does to a node: a person at the device
(calling the node's own API actions), an observer (the node's own entity states) or a
publisher (actions that make the node send something). ``DxClient`` (dx_client.py) builds
on it to speak the Data Exchange protocol.

A peer subscribes to states only when asked (``states=True``): a subscribed client makes
the node send it every state change, which a benchmark's driver must not cost the node.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self

from aioesphomeapi import APIClient, EntityInfo, EntityState, UserService

DEFAULT_TIMEOUT = 10.0


class Endpoint(Protocol):
    """Where a node's API listens (a harness ``Node`` is one)."""

    host: str
    port: int


@dataclass(frozen=True)
class Address:
    """An endpoint given by host and port (a node started elsewhere, e.g. by a script)."""

    host: str
    port: int


class Peer:
    """A plain API client on ``node``: its entities, actions and (optionally) states."""

    def __init__(
        self,
        node: Endpoint,
        client_info: str = "test peer",
        *,
        states: bool = False,
        on_state: Callable[[str, Any], None] | None = None,
        **options: Any,
    ) -> None:
        """``states``: subscribe to the node's states, kept by object_id in ``states``.

        ``on_state`` (implies ``states``) is called with (object_id, value) after every
        state kept; ``options`` go to ``APIClient`` (e.g. ``noise_psk``).
        """
        self.api = APIClient(
            node.host, node.port, None, client_info=client_info, **options
        )
        self.entities: dict[int, EntityInfo] = {}
        self.services: dict[str, UserService] = {}
        # object_id -> the latest state's value; None: the node has no state for it
        # (missing_state, e.g. a sensor that has not published yet).
        self.states: dict[str, Any] = {}
        self._subscribe = states or on_state is not None
        self._on_state = on_state
        self._names: dict[int, str] = {}
        self._changed = asyncio.Event()

    async def start(self) -> Self:
        """Connect, list the node's entities and actions, subscribe if asked."""
        await self.api.connect(login=True)
        entities, services = await self.api.list_entities_services()
        self.entities = {e.key: e for e in entities}
        self._names = {e.key: e.object_id for e in entities}
        self.services = {s.name: s for s in services}
        if self._subscribe:
            self.api.subscribe_states(self._state)
        return self

    async def disconnect(self, force: bool = False) -> None:
        await self.api.disconnect(force=force)

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.disconnect()

    @property
    def keys(self) -> dict[str, int]:
        """object_id -> entity key, for the entity commands of ``api``."""
        return {name: key for key, name in self._names.items()}

    async def call(self, action: str, **data: Any) -> None:
        """Call the node's API action ``action`` (a local change, as the device makes it)."""
        await self.api.execute_service(self.services[action], data)

    def _state(self, state: EntityState) -> None:
        name = self._names.get(state.key)
        if name is None:
            return
        # Not every kind of state has a ``state`` (a cover's is its position): None then.
        value = (
            None
            if getattr(state, "missing_state", False)
            else getattr(state, "state", None)
        )
        self.states[name] = value
        if self._on_state is not None:
            self._on_state(name, value)
        self._changed.set()

    async def until(
        self,
        predicate: Callable[[], bool],
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - a test helper's deadline
    ) -> None:
        """Return once ``predicate()`` holds, checked after every state received."""

        async def wait() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)

    async def state(
        self,
        object_id: str,
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - a test helper's deadline
    ) -> Any:
        """The value of ``object_id``'s state, once the node has one (subscribed peers)."""
        assert self._subscribe, "a peer without states=True receives no states"
        await self.until(lambda: self.states.get(object_id) is not None, timeout)
        return self.states[object_id]
