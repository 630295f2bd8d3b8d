"""Data Exchange: cyclic full-state exchange between ESPHome nodes and Home Assistant."""

from __future__ import annotations

from homeassistant.core import HomeAssistant

from .const import DOMAIN
from .coordinator import PLATFORMS, DataExchangeConfigEntry, DataExchangeCoordinator

__all__ = ["DOMAIN"]


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


async def async_unload_entry(
    hass: HomeAssistant, entry: DataExchangeConfigEntry
) -> bool:
    """Unload a node: its entities, its timers and its connection."""
    unloaded = await hass.config_entries.async_unload_platforms(entry, PLATFORMS)
    if unloaded:
        await entry.runtime_data.async_shutdown()
    return unloaded
