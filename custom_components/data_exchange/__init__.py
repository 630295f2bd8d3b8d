"""Data Exchange: cyclic full-state exchange between ESPHome nodes and Home Assistant."""

from __future__ import annotations

import logging

from homeassistant.const import Platform
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import config_validation as cv, entity_registry as er
from homeassistant.helpers.typing import ConfigType

from .const import CONF_DESIRED_INTERVAL, CONFIG_MINOR_VERSION, CONFIG_VERSION, DOMAIN
from .entity import async_remove_stale_entities
from .export import async_remove_all_exports, async_setup_exports
from .manager import DataExchangeConfigEntry, NodeManager
from .repairs import async_remove_entry_issues
from .services import async_setup_services
from .storage import async_remove as async_remove_store

__all__ = ["DOMAIN"]

_LOGGER = logging.getLogger(__name__)

CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)

PLATFORMS = [
    Platform.BINARY_SENSOR,
    Platform.BUTTON,
    Platform.NUMBER,
    Platform.SELECT,
    Platform.SENSOR,
    Platform.SWITCH,
    Platform.TEXT,
]


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register the actions and the export download (once, for every node)."""
    async_setup_services(hass)
    await async_setup_exports(hass)
    return True


async def async_setup_entry(
    hass: HomeAssistant, entry: DataExchangeConfigEntry
) -> bool:
    """Set up a node: restore its stored state, create its entities, connect."""
    node = NodeManager(hass, entry)
    entry.runtime_data = node
    await node.async_setup()
    async_remove_stale_entities(hass, node)
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    # Nodes may be offline (paused at night, unplugged): setup never waits for them; the
    # connection comes up in the background and entities show stored values meanwhile.
    await node.async_start()
    return True


async def async_migrate_entry(
    hass: HomeAssistant, entry: DataExchangeConfigEntry
) -> bool:
    """1.1 -> 1.2: the option "cycle" is "desired_interval" (the node's frame period is
    its cycle); the entity "rejected_frames" is "malformed_frames"."""
    if entry.version > CONFIG_VERSION:
        return False  # written by a newer integration: not read
    if entry.version == 1 and entry.minor_version < 2:
        options = dict(entry.options)
        if "cycle" in options:
            options[CONF_DESIRED_INTERVAL] = options.pop("cycle")

        @callback
        def rename(reg_entry: er.RegistryEntry) -> dict[str, str] | None:
            if reg_entry.unique_id.endswith("-rejected_frames"):
                return {
                    "new_unique_id": reg_entry.unique_id.removesuffix(
                        "-rejected_frames"
                    )
                    + "-malformed_frames"
                }
            return None

        await er.async_migrate_entries(hass, entry.entry_id, rename)
        hass.config_entries.async_update_entry(
            entry, options=options, minor_version=CONFIG_MINOR_VERSION
        )
        _LOGGER.debug("Migrated %s to 1.%s", entry.title, CONFIG_MINOR_VERSION)
    return True


async def async_remove_entry(
    hass: HomeAssistant, entry: DataExchangeConfigEntry
) -> None:
    """The node was deleted: forget its stored state, its repair issues and the exports.

    Exports may mix several nodes' points, so all of them go (they are download files).
    """
    await async_remove_store(hass, entry.entry_id)
    async_remove_entry_issues(hass, entry.entry_id)
    await async_remove_all_exports(hass)


async def async_unload_entry(
    hass: HomeAssistant, entry: DataExchangeConfigEntry
) -> bool:
    """Unload a node: its entities, its timers and its connection."""
    unloaded = await hass.config_entries.async_unload_platforms(entry, PLATFORMS)
    if unloaded:
        await entry.runtime_data.async_shutdown()
    return unloaded
