"""The connection manager: the only owner of aioesphomeapi in this integration.

One API connection per node, kept alive by aioesphomeapi's ReconnectLogic (back-off, and an
immediate reconnect when the node's mDNS record reappears). It tells its listener (the
manager) when the node comes and goes and hands over what the node sends: our frame and
model events in frame mode, entity states in entity mode. Everything else a node sends is
dropped: a node can never make Home Assistant run an action.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
import logging
import socket
from typing import Any, Protocol

from aioesphomeapi import (
    APIClient,
    APIConnectionError,
    DeviceInfo as NodeDeviceInfo,
    EncryptionPlaintextAPIError,
    EntityInfo,
    EntityState,
    HomeassistantServiceCall,
    InvalidAuthAPIError,
    InvalidEncryptionKeyAPIError,
    ReconnectLogic,
    RequiresEncryptionAPIError,
    UserService,
)
from aioesphomeapi.client_base import KEEP_ALIVE_FREQUENCY
from homeassistant.core import HomeAssistant
from homeassistant.helpers.device_registry import format_mac

from . import repairs
from .const import CLIENT_INFO, MODE_ENTITY, MODE_FRAME
from .protocol import DESCRIBE_ACTION, FRAME_EVENT, MODEL_EVENT, WRITE_ACTION
from .reachability import ReturnWatch

_LOGGER = logging.getLogger(__name__)

# Ping interval of the API connection: aioesphomeapi's own default (as Home Assistant's
# esphome integration), named here so tests can shorten it. The connection is closed after
# 4.5 intervals without an answer (90 s); values are marked stale long before (stale_after).
KEEPALIVE = KEEP_ALIVE_FREQUENCY

AUTH_ERRORS = (
    EncryptionPlaintextAPIError,
    RequiresEncryptionAPIError,
    InvalidEncryptionKeyAPIError,
    InvalidAuthAPIError,
)


@dataclass(slots=True)
class NodeSession:
    """What the node told us when the connection came up."""

    device_info: NodeDeviceInfo
    entities: list[EntityInfo]
    services: dict[str, UserService]

    @property
    def mode(self) -> str:
        """Frame mode when the node runs our component, entity mode otherwise."""
        if WRITE_ACTION in self.services and DESCRIBE_ACTION in self.services:
            return MODE_FRAME
        return MODE_ENTITY


class ConnectionListener(Protocol):
    """What the manager (manager.NodeManager) implements."""

    async def async_on_connected(self, session: NodeSession) -> None: ...
    async def async_on_disconnected(self) -> None: ...
    async def async_on_auth_error(self, err: Exception) -> None: ...
    def on_node_event(self, name: str, data: dict[str, str]) -> None: ...
    def on_entity_state(self, state: EntityState) -> None: ...
    def on_ignored_call(self) -> None: ...


@dataclass(slots=True)
class ConnectionStats:
    connects: int = 0
    disconnects: int = 0
    ignored_calls: int = 0  # action requests or foreign events a node sent
    returns_noticed: int = 0  # connected by the return watch (reachability.py)


@dataclass
class NodeConnection:
    """A node's API connection."""

    hass: HomeAssistant
    host: str
    port: int
    noise_psk: str | None
    expected_mac: str | None
    name: str
    listener: ConnectionListener
    zeroconf_instance: Any = None
    stats: ConnectionStats = field(default_factory=ConnectionStats)
    client: APIClient | None = None
    returns: ReturnWatch | None = None  # notices at once that the node is back
    session: NodeSession | None = None
    _reconnect: ReconnectLogic | None = None
    _unavailable_logged: bool = False
    _ignored_logged: bool = False
    _stopping: bool = False
    _outage_watched: bool = False  # the return watch ran for this outage

    @property
    def connected(self) -> bool:
        return self.session is not None

    async def async_start(self) -> None:
        """Connect in the background and keep reconnecting until stopped."""
        self.client = APIClient(
            self.host,
            self.port,
            None,
            noise_psk=self.noise_psk or None,
            client_info=CLIENT_INFO,
            keepalive=KEEPALIVE,
            zeroconf_instance=self.zeroconf_instance,
        )
        self._reconnect = ReconnectLogic(
            client=self.client,
            on_connect=self._on_connect,
            on_disconnect=self._on_disconnect,
            zeroconf_instance=self.zeroconf_instance,
            name=self.name,
            on_connect_error=self._on_connect_error,
            # Never: a node that answers without encryption keeps failing (repairs.py).
            allow_plaintext_fallback=False,
        )
        self.returns = ReturnWatch(self.hass, self.host, self.port, self._adopt)
        await self._reconnect.start()

    async def _adopt(self, sock: socket.socket) -> bool:
        """The return watch reached the node: connect on that socket (the normal
        handshake, encryption included)."""
        if self._reconnect is None or self._stopping:
            sock.close()
            return False
        if await self._reconnect.async_adopt_connection(sock):
            self.stats.returns_noticed += 1
            return True
        return False

    def _watch_for_return(self) -> None:
        if self.returns is not None and not self._outage_watched and not self._stopping:
            self._outage_watched = True
            self.returns.start()

    async def async_stop(self) -> None:
        """Disconnect for good (unload): not an outage, so nothing is logged."""
        self._stopping = True
        if self.returns is not None:
            self.returns.stop()
        if self._reconnect is not None:
            await self._reconnect.stop()
            self._reconnect = None
        if self.client is not None:
            await self.client.disconnect(force=True)
        self.session = None
        repairs.async_clear_downgrade(self.hass, self.node_id)

    async def async_drop(self) -> None:
        """Close the current connection; ReconnectLogic connects again after its back-off."""
        if self.client is not None:
            await self.client.disconnect()

    @property
    def node_id(self) -> str:
        """What names this node in repair issues: its MAC, else its host."""
        return self.expected_mac or self.host

    async def _on_connect(self) -> None:
        assert self.client is not None
        client = self.client
        # Connected with the key (or without one configured): no downgrade (any more).
        repairs.async_clear_downgrade(self.hass, self.node_id)
        try:
            (
                device_info,
                entities,
                services,
            ) = await client.device_info_and_list_entities()
        except APIConnectionError as err:
            _LOGGER.debug("%s: reading device info failed: %s", self.name, err)
            await client.disconnect()
            return
        if (
            self.expected_mac
            and format_mac(device_info.mac_address) != self.expected_mac
        ):
            _LOGGER.error(
                "Unexpected node at %s:%s: expected MAC %s, found %s (%s); not connecting",
                self.host,
                self.port,
                self.expected_mac,
                format_mac(device_info.mac_address),
                device_info.name,
            )
            await client.disconnect()
            return
        session = NodeSession(device_info, entities, {s.name: s for s in services})
        if session.mode == MODE_FRAME:
            client.subscribe_service_calls(self._on_call)
        else:
            client.subscribe_states(self.listener.on_entity_state)
        self.session = session
        self.stats.connects += 1
        self._outage_watched = False
        if self.returns is not None:
            self.returns.stop()
        self._ignored_logged = False
        if self._unavailable_logged:
            _LOGGER.info("Node %s is available again", self.name)
            self._unavailable_logged = False
        await self.listener.async_on_connected(session)

    async def _on_disconnect(self, expected_disconnect: bool) -> None:
        was_connected = self.session is not None
        self.session = None
        if not was_connected:
            return
        self.stats.disconnects += 1
        if self._stopping:
            return
        if not self.hass.is_stopping and not self._unavailable_logged:
            _LOGGER.info("Node %s is unavailable", self.name)
            self._unavailable_logged = True
        # An expected disconnect (a reboot the node announced, or ours) waits out
        # ReconnectLogic's cool-down; its first failed attempt starts the watch.
        if not self.hass.is_stopping and not expected_disconnect:
            self._watch_for_return()
        await self.listener.async_on_disconnected()

    async def _on_connect_error(self, err: Exception) -> None:
        if self._stopping:
            return
        if not self._unavailable_logged and not self.hass.is_stopping:
            _LOGGER.info("Node %s is unavailable: %s", self.name, err)
            self._unavailable_logged = True
        if not self.hass.is_stopping and not isinstance(err, AUTH_ERRORS):
            self._watch_for_return()
        if self.noise_psk and isinstance(err, EncryptionPlaintextAPIError):
            repairs.async_report_downgrade(
                self.hass, self.node_id, self.name, self.host
            )
        if isinstance(err, AUTH_ERRORS):
            await self.listener.async_on_auth_error(err)

    def _on_call(self, call: HomeassistantServiceCall) -> None:
        # Only our own events are taken; a node asking for an action is never obeyed.
        if call.is_event and call.service in (FRAME_EVENT, MODEL_EVENT):
            self.listener.on_node_event(call.service, call.data)
            return
        self.stats.ignored_calls += 1
        self.listener.on_ignored_call()
        # Logged once a connection (a node may ask every cycle); every one is counted.
        log = _LOGGER.debug if self._ignored_logged else _LOGGER.warning
        self._ignored_logged = True
        log(
            "%s: the node sent %s %r; ignored, nodes cannot make Home Assistant act "
            "(further ones on this connection are only counted)",
            self.name,
            "an event" if call.is_event else "an action request",
            call.service[:64],
        )

    async def async_execute(self, action: str, data: dict[str, Any]) -> None:
        """Call one of the node's API actions (fire and forget)."""
        if self.client is None or self.session is None:
            raise APIConnectionError("not connected")
        await self.client.execute_service(self.session.services[action], data)

    def command(self, method: str, *args: Any) -> None:
        """Send an entity command (entity mode), e.g. ("number_command", key, 2.5)."""
        if self.client is None or self.session is None:
            raise APIConnectionError("not connected")
        send: Callable[..., Coroutine[Any, Any, None] | None] = getattr(
            self.client, method
        )
        send(*args)


async def async_zeroconf_instance(hass: HomeAssistant) -> Any:
    """Home Assistant's shared zeroconf instance (reconnect at once when the node announces
    itself again), if the zeroconf integration runs; ReconnectLogic's back-off otherwise."""
    if "zeroconf" not in hass.config.components:
        return None
    from homeassistant.components import zeroconf

    return await zeroconf.async_get_instance(hass)
