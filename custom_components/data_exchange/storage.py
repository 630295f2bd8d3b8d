"""A node's Store: its format, its migrations, and when it is written.

What survives a Home Assistant restart (``.storage/data_exchange.<entry_id>``): the exchange
mode, the node's device description, its model event and entity infos (entities exist and
show their last values, marked stale, before the node answers), and the engine's values
(format in persistence.py).

When it is written: a desired value within STORE_DESIRED_WITHIN (1 s), reported values within
STORE_REPORTED_WITHIN (10 minutes), everything at stop. Home Assistant's
``Store.async_delay_save`` postpones a pending save on every call; here a pending save is
only ever brought forward, so values that keep changing cannot hold it off.

Format history: 1.1 (protocol 2); 1.2 renamed ``sender`` to ``changed_by`` in every stored
value and the device's ``model`` (its hardware) to ``hardware_model``. A desired value may
carry ``held`` (true only; absent reads as false, so no migration): it was adopted from the
node's current boot, which holds it (values.Stamped).
"""

from __future__ import annotations

from collections.abc import Callable
import time
from typing import Any

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.storage import Store

from .const import DOMAIN, STORE_REPORTED_WITHIN

STORAGE_VERSION = 1
STORAGE_MINOR_VERSION = 2


def storage_key(entry_id: str) -> str:
    return f"{DOMAIN}.{entry_id}"


def _migrate_1_1(data: dict[str, Any]) -> dict[str, Any]:
    def stamped(raw: Any) -> Any:
        if isinstance(raw, dict) and "sender" in raw:
            raw = {**raw, "changed_by": raw["sender"]}
            del raw["sender"]
        return raw

    device = dict(data.get("device") or {})
    if "model" in device:
        device["hardware_model"] = device.pop("model")
    engine = data.get("engine")
    if isinstance(engine, dict):
        engine = {
            **engine,
            "reported": [stamped(r) for r in engine.get("reported") or []],
            "desired": {
                k: stamped(v) for k, v in (engine.get("desired") or {}).items()
            },
            "desired_acquisition": stamped(engine.get("desired_acquisition")),
        }
    return {**data, "device": device, "engine": engine}


class _VersionedStore(Store[dict[str, Any]]):
    async def _async_migrate_func(
        self, old_major_version: int, old_minor_version: int, old_data: dict[str, Any]
    ) -> dict[str, Any]:
        if old_major_version != STORAGE_VERSION:
            raise NotImplementedError  # a major version we do not know: not read
        if old_minor_version < 2:
            old_data = _migrate_1_1(old_data)
        # A newer minor version (a downgrade of the integration) reads as it is.
        return old_data


class NodeStore:
    """One node's Store; ``data`` builds what is written, when it is written."""

    def __init__(
        self, hass: HomeAssistant, entry_id: str, data: Callable[[], dict[str, Any]]
    ) -> None:
        self.store = _VersionedStore(
            hass,
            STORAGE_VERSION,
            storage_key(entry_id),
            minor_version=STORAGE_MINOR_VERSION,
        )
        self._data = data
        self._deadline: float | None = None  # monotonic; a save is scheduled

    async def async_load(self) -> dict[str, Any] | None:
        return await self.store.async_load()

    def _to_store(self) -> dict[str, Any]:
        self._deadline = None  # called by the Store when it writes
        return self._data()

    @callback
    def schedule_save(self, within: float = STORE_REPORTED_WITHIN) -> None:
        """Have the Store written at most ``within`` seconds from now."""
        deadline = time.monotonic() + within
        if self._deadline is not None and self._deadline <= deadline:
            return
        self._deadline = deadline
        self.store.async_delay_save(self._to_store, within)

    async def async_save(self) -> None:
        """Write now (a changed node description, the final save at unload)."""
        await self.store.async_save(self._to_store())


async def async_remove(hass: HomeAssistant, entry_id: str) -> None:
    """The entry was deleted: its Store goes with it."""
    await Store[dict[str, Any]](
        hass, STORAGE_VERSION, storage_key(entry_id)
    ).async_remove()
