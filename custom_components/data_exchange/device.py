"""A node's identity: what it says about itself, and the device Home Assistant makes of it.

The MAC address (the config entry's unique id) is the identity; the rest comes from the
node's device info on every connection and is stored with the node.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from aioesphomeapi import DeviceInfo as NodeDeviceInfo
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.device_registry import DeviceInfo

from .const import DOMAIN


@dataclass(frozen=True, slots=True)
class NodeDevice:
    """What the node says about itself (``hardware_model``: the board, not the points)."""

    mac: str
    name: str = ""
    friendly_name: str = ""
    hardware_model: str = ""
    esphome_version: str = ""
    project_name: str = ""
    project_version: str = ""

    @classmethod
    def from_node(cls, mac: str, info: NodeDeviceInfo) -> NodeDevice:
        return cls(
            mac=mac,
            name=info.name,
            friendly_name=info.friendly_name,
            hardware_model=info.model,
            esphome_version=info.esphome_version,
            project_name=info.project_name,
            project_version=info.project_version,
        )

    @classmethod
    def from_dict(cls, mac: str, data: dict[str, Any]) -> NodeDevice:
        fields = {k: str(v or "") for k, v in data.items() if k in _FIELDS}
        return cls(**{**fields, "mac": mac})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def display_name(self, fallback: str) -> str:
        return self.friendly_name or self.name or fallback

    def device_info(self, fallback_name: str) -> DeviceInfo:
        project = self.project_name
        vendor, dot, product = project.partition(".")
        return DeviceInfo(
            connections={(dr.CONNECTION_NETWORK_MAC, self.mac)},
            identifiers={(DOMAIN, self.mac)},
            name=self.display_name(fallback_name),
            manufacturer=vendor if dot else "ESPHome",
            model=product or self.hardware_model,
            sw_version=self.project_version or self.esphome_version,
            hw_version=self.esphome_version if project else None,
        )


_FIELDS = frozenset(NodeDevice.__dataclass_fields__) - {"mac"}
