"""Data Exchange: cyclic full-state exchange between ESPHome nodes and Home Assistant."""

from __future__ import annotations

from homeassistant.core import HomeAssistant
from homeassistant.helpers import config_validation as cv, issue_registry as ir
from homeassistant.helpers.storage import Store
from homeassistant.helpers.typing import ConfigType

from .const import DOMAIN, STORAGE_VERSION
from .coordinator import PLATFORMS, DataExchangeConfigEntry, DataExchangeCoordinator
from .export import async_remove_all_exports, async_setup_exports
from .services import async_setup_services

__all__ = ["DOMAIN"]

CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register the actions and the export download (once, for every node)."""
    async_setup_services(hass)
    await async_setup_exports(hass)
    return True


async def async_setup_entry(
    hass: HomeAssistant, entry: DataExchangeConfigEntry
) -> bool:
    """Set up a node: restore its stored state, create its entities, connect."""
    coordinator = DataExchangeCoordinator(hass, entry)
    entry.runtime_data = coordinator
    await coordinator.async_setup()
    coordinator.async_remove_stale_entities()
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    # Nodes may be offline (paused at night, unplugged): setup never waits for them; the
    # connection comes up in the background and entities show stored values meanwhile.
    await coordinator.async_start()
    return True


async def async_remove_entry(
    hass: HomeAssistant, entry: DataExchangeConfigEntry
) -> None:
    """The node was deleted: forget its stored state, its repair issues and the exports.

    Exports may mix several nodes' points, so all of them go (they are download files).
    """
    await Store(hass, STORAGE_VERSION, f"{DOMAIN}.{entry.entry_id}").async_remove()
    for kind in ("no_encryption", "model_mismatch"):
        ir.async_delete_issue(hass, DOMAIN, f"{kind}_{entry.entry_id}")
    await async_remove_all_exports(hass)


async def async_unload_entry(
    hass: HomeAssistant, entry: DataExchangeConfigEntry
) -> bool:
    """Unload a node: its entities, its timers and its connection."""
    unloaded = await hass.config_entries.async_unload_platforms(entry, PLATFORMS)
    if unloaded:
        await entry.runtime_data.async_shutdown()
    return unloaded
