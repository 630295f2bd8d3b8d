"""Diagnostics for a node: its model, options, exchange statistics; keys redacted."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.core import HomeAssistant
from homeassistant.helpers.device_registry import DeviceEntry

from .const import CONF_NOISE_PSK
from .manager import DataExchangeConfigEntry
from .values import stamped_as_dict

# The encryption key above all; MAC addresses identify a device on the network.
TO_REDACT = {CONF_NOISE_PSK, "mac", "mac_address", "unique_id"}


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: DataExchangeConfigEntry
) -> dict[str, Any]:
    node = entry.runtime_data
    engine = node.engine
    model = engine.model

    return async_redact_data(
        {
            "entry": {
                "title": entry.title,
                "unique_id": entry.unique_id,
                "data": dict(entry.data),
                "options": dict(entry.options),
            },
            "node": None if node.device is None else node.device.as_dict(),
            "mode": node.mode,
            "connected": node.connected,
            "stale_reason": node.stale_reason,
            "model": None
            if model is None
            else {
                "model_id": model.model_id,
                "cycle_ms": model.cycle_ms,
                "failsafe_ms": model.failsafe_ms,
            },
            "points": [
                {
                    "index": p.index,
                    "type": p.type.name,
                    "object_id": p.info.object_id,
                    "reported": None
                    if (reported := engine.reported[p.index]) is None
                    else stamped_as_dict(reported),
                    "desired": None
                    if (desired := engine.desired.get(p.index)) is None
                    else stamped_as_dict(desired),
                }
                for p in node.points
            ],
            "acquisition": {
                "running": engine.acquisition_running,
                "failsafe_active": engine.failsafe_active,
            },
            "frames": asdict(engine.stats),
            "desired_frames_sent": engine.desired_seq,
            "acknowledged": engine.acked_seq,
            "seen": engine.seen,
            "node_boot": engine.node_boot,
            "node_uptime_ms": engine.node_uptime_ms,
            # Measurement time (node_clock.py): the node's time source and clock offset.
            "node_clock": None
            if (clock := getattr(node.exchange, "clock", None)) is None
            else clock.as_dict(),
            "last_refusal": None
            if engine.last_refusal is None
            else asdict(engine.last_refusal),
            "stats": asdict(node.stats()),
            "connection": asdict(node.connection.stats),
        },
        TO_REDACT,
    )


async def async_get_device_diagnostics(
    hass: HomeAssistant, entry: DataExchangeConfigEntry, device: DeviceEntry
) -> dict[str, Any]:
    """A node is one device: the same as its config entry."""
    return await async_get_config_entry_diagnostics(hass, entry)
