"""Actions: grouped atomic writes, CSV export from the recorder (export.py), resync.

Every argument is validated before anything happens: a call either does all it was asked
or nothing, and says why in a translated error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import (
    HomeAssistant,
    ServiceCall,
    ServiceResponse,
    SupportsResponse,
    callback,
)
from homeassistant.helpers import (
    config_validation as cv,
    device_registry as dr,
    entity_registry as er,
)
from homeassistant.util import dt as dt_util
import probatio

from .const import DOMAIN
from .export import ExportColumn, async_export
from .manager import NodeManager
from .points import NodePoint, validate_value, validation_error as _error

SERVICE_WRITE = "write"
SERVICE_EXPORT_HISTORY = "export_history"
SERVICE_RESYNC = "resync"

ATTR_VALUES = "values"
ATTR_ENTITY_ID = "entity_id"
ATTR_DEVICE_ID = "device_id"
ATTR_START = "start"
ATTR_END = "end"

WRITE_SCHEMA = probatio.Schema(
    {probatio.Required(ATTR_VALUES): probatio.All(dict, probatio.Length(min=1))}
)


EXPORT_SCHEMA = probatio.Schema(
    {
        # cv.entity_ids raises TypeError for a number: only strings and lists reach it.
        probatio.Required(ATTR_ENTITY_ID): probatio.All(
            probatio.Any(str, list), cv.entity_ids
        ),
        probatio.Required(ATTR_START): cv.datetime,
        probatio.Optional(ATTR_END): cv.datetime,
    }
)
RESYNC_SCHEMA = probatio.Schema({probatio.Required(ATTR_DEVICE_ID): cv.string})


@dataclass(frozen=True, slots=True)
class _Target:
    node: NodeManager
    point: NodePoint
    entity_id: str


def _resolve(hass: HomeAssistant, entity_id: Any) -> _Target:
    """The node and point behind an entity id, or a translated error."""
    if not isinstance(entity_id, str) or not cv.valid_entity_id(entity_id):
        raise _error("unknown_point", entity_id=str(entity_id)[:100])
    entry = er.async_get(hass).async_get(entity_id)
    if entry is None or entry.platform != DOMAIN or entry.config_entry_id is None:
        raise _error("unknown_point", entity_id=entity_id)
    config_entry = hass.config_entries.async_get_entry(entry.config_entry_id)
    if config_entry is None or config_entry.state is not ConfigEntryState.LOADED:
        raise _error("node_not_loaded", entity_id=entity_id)
    node: NodeManager = config_entry.runtime_data
    for point in node.points:
        if node.unique_id(point.kind, point.info.object_id) == entry.unique_id:
            return _Target(node, point, entity_id)
    raise _error("unknown_point", entity_id=entity_id)


async def _async_write(call: ServiceCall) -> None:
    hass = call.hass
    targets = []
    for entity_id, value in call.data[ATTR_VALUES].items():
        target = _resolve(hass, entity_id)
        targets.append((target, validate_value(target.point, target.entity_id, value)))
    nodes = {t.node for t, _ in targets}
    if len(nodes) > 1:
        raise _error("several_nodes", nodes=", ".join(sorted(c.name for c in nodes)))
    (node,) = nodes
    if node.exchange is None or not node.exchange.grouped_writes:
        raise _error("not_frame_mode", node=node.name)
    await node.async_write_many(
        [(t.point.index, value) for t, value in targets], call.context
    )


async def _async_export_history(call: ServiceCall) -> ServiceResponse:
    hass = call.hass
    columns = []
    for entity_id in call.data[ATTR_ENTITY_ID]:
        point = _resolve(hass, entity_id).point
        # Numbers are written bare; everything else is text (export.py: CSV injection).
        columns.append(ExportColumn(entity_id, point.type.encoding == "number"))
    start = dt_util.as_utc(call.data[ATTR_START])
    end = dt_util.as_utc(call.data.get(ATTR_END) or dt_util.utcnow())
    if end <= start:
        raise _error("bad_range", start=start.isoformat(), end=end.isoformat())
    return await async_export(hass, columns, start, end)


async def _async_resync(call: ServiceCall) -> None:
    hass = call.hass
    device = dr.async_get(hass).async_get(call.data[ATTR_DEVICE_ID])
    node: NodeManager | None = None
    if device is not None:
        for entry_id in device.config_entries:
            entry = hass.config_entries.async_get_entry(entry_id)
            if (
                entry
                and entry.domain == DOMAIN
                and entry.state is ConfigEntryState.LOADED
            ):
                node = entry.runtime_data
    if node is None:
        raise _error("unknown_node", device_id=str(call.data[ATTR_DEVICE_ID])[:64])
    if not node.connected:
        raise _error("not_connected", node=node.name)
    await node.async_resync()


@callback
def async_setup_services(hass: HomeAssistant) -> None:
    hass.services.async_register(
        DOMAIN, SERVICE_WRITE, _async_write, schema=WRITE_SCHEMA
    )
    hass.services.async_register(
        DOMAIN,
        SERVICE_EXPORT_HISTORY,
        _async_export_history,
        schema=EXPORT_SCHEMA,
        supports_response=SupportsResponse.ONLY,
    )
    hass.services.async_register(
        DOMAIN, SERVICE_RESYNC, _async_resync, schema=RESYNC_SCHEMA
    )
