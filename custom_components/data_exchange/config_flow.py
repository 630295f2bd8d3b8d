"""Config flow: add a node by address or by discovery; reauth, reconfigure.

No silent downgrade (repairs.py): no form drops a stored key. Reauth requires a key;
Reconfigure keeps the stored key when the field is left empty; only its "remove encryption"
box, confirmed in a separate step that says what the user gives up, removes it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from ipaddress import ip_address
import re
from typing import Any

from aioesphomeapi import (
    APIClient,
    APIConnectionError,
    DeviceInfo as NodeDeviceInfo,
    EncryptionPlaintextAPIError,
    InvalidEncryptionKeyAPIError,
    RequiresEncryptionAPIError,
)
from homeassistant.config_entries import (
    SOURCE_RECONFIGURE,
    ConfigEntry,
    ConfigFlow,
    ConfigFlowResult,
)
from homeassistant.const import CONF_HOST, CONF_PORT
from homeassistant.core import callback
from homeassistant.helpers.device_registry import format_mac
from homeassistant.helpers.selector import (
    BooleanSelector,
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)
from homeassistant.helpers.service_info.zeroconf import ZeroconfServiceInfo
import probatio

from . import repairs
from .const import (
    CLIENT_INFO,
    CONF_DEVICE_NAME,
    CONF_NOISE_PSK,
    CONFIG_MINOR_VERSION,
    CONFIG_VERSION,
    DEFAULT_PORT,
    DOMAIN,
)
from .options_flow import DataExchangeOptionsFlow
from .plain import plain

# A host name (RFC 1123 labels); addresses are checked by ipaddress. Nothing else reaches
# the client.
_HOST = re.compile(
    r"(?=.{1,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?"
)
_KEY_SELECTOR = TextSelector(TextSelectorConfig(type=TextSelectorType.PASSWORD))
# Reconfigure of an entry with a key: the box that leads to the confirmation step, and that
# step's own box.
CONF_REMOVE_ENCRYPTION = "remove_encryption"
CONF_CONFIRM = "confirm"
# Errors shown at the key field; the others concern the whole form.
_KEY_ERRORS = frozenset(
    {
        "invalid_key",
        "invalid_key_format",
        "key_required",
        "node_without_encryption",
        "answered_without_encryption",
    }
)


def _errors(error: str | None, keyed: bool = False) -> dict[str, str]:
    """The form's errors; ``keyed``: the entry has a key, which no answer talks away."""
    error = error or "cannot_connect"
    if keyed and error == "node_without_encryption":
        error = "answered_without_encryption"
    return {CONF_NOISE_PSK if error in _KEY_ERRORS else "base": error}


def valid_host(host: str) -> bool:
    try:
        ip_address(host)
    except ValueError:
        return bool(_HOST.fullmatch(host))
    return True


def valid_key(key: str) -> bool:
    """An ESPHome API encryption key: 32 bytes, base64."""
    try:
        return len(base64.b64decode(key, validate=True)) == 32
    except binascii.Error, ValueError:
        return False


async def async_try_connect(
    host: str, port: int, key: str | None
) -> tuple[NodeDeviceInfo | None, str | None]:
    """Connect once; the node's device info, or an error key of the form."""
    if not valid_host(host):
        return None, "invalid_host"
    if key and not valid_key(key):
        return None, "invalid_key_format"
    client = APIClient(host, port, None, noise_psk=key or None, client_info=CLIENT_INFO)
    try:
        await client.connect(login=True)
        return await client.device_info(), None
    except RequiresEncryptionAPIError:
        return None, "key_required"
    except InvalidEncryptionKeyAPIError:
        return None, "invalid_key"
    except EncryptionPlaintextAPIError:
        return None, "node_without_encryption"
    except APIConnectionError, OSError, TimeoutError:
        return None, "cannot_connect"
    finally:
        await client.disconnect(force=True)


class DataExchangeConfigFlow(ConfigFlow, domain=DOMAIN):
    """Add a node."""

    VERSION = CONFIG_VERSION
    MINOR_VERSION = CONFIG_MINOR_VERSION

    def __init__(self) -> None:
        self._host = ""
        self._port = DEFAULT_PORT
        self._name = ""
        self._key_required = False

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: ConfigEntry) -> DataExchangeOptionsFlow:
        return DataExchangeOptionsFlow()

    # ---- by address ----

    async def async_step_user(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        return await self._async_step_address(
            "user", user_input, {CONF_PORT: DEFAULT_PORT}
        )

    async def _async_step_address(
        self,
        step_id: str,
        user_input: dict[str, Any] | None,
        suggested: dict[str, Any],
    ) -> ConfigFlowResult:
        """Host, port and key (user and reconfigure steps): connect, then create or update.

        Reconfigure of an entry with a key: an empty key field keeps the stored key, and
        only the remove-encryption box (then its confirmation step) removes it.
        """
        stored = self._stored_key()
        errors: dict[str, str] = {}
        if user_input is not None:
            self._host = user_input[CONF_HOST].strip()
            self._port = int(user_input[CONF_PORT])
            if (
                stored
                and user_input.get(CONF_REMOVE_ENCRYPTION)
                and valid_host(self._host)
            ):
                return await self.async_step_remove_encryption()
            key = (user_input.get(CONF_NOISE_PSK) or "").strip() or stored
            info, error = await async_try_connect(self._host, self._port, key)
            if info is not None:
                return await self._async_create_or_update(info, key)
            errors = _errors(error, keyed=bool(stored))
        fields: dict[Any, Any] = {
            probatio.Required(CONF_HOST): str,
            probatio.Required(CONF_PORT): probatio.All(
                probatio.Coerce(int), probatio.Range(min=1, max=65535)
            ),
            probatio.Optional(CONF_NOISE_PSK): _KEY_SELECTOR,
        }
        if stored:
            fields[probatio.Optional(CONF_REMOVE_ENCRYPTION, default=False)] = (
                BooleanSelector()
            )
        schema = probatio.Schema(fields)
        return self.async_show_form(
            step_id=step_id,
            data_schema=self.add_suggested_values_to_schema(
                schema, user_input or suggested
            ),
            errors=errors,
        )

    # ---- by discovery ----

    async def async_step_zeroconf(
        self, discovery_info: ZeroconfServiceInfo
    ) -> ConfigFlowResult:
        mac = discovery_info.properties.get("mac")
        if not mac:
            return self.async_abort(reason="no_mac")
        await self.async_set_unique_id(format_mac(mac))
        self._host = discovery_info.host
        self._port = discovery_info.port or DEFAULT_PORT
        self._abort_if_unique_id_configured(
            updates={CONF_HOST: self._host, CONF_PORT: self._port}
        )
        self._name = (
            discovery_info.properties.get("friendly_name")
            or discovery_info.hostname.split(".")[0]
        )
        self._key_required = "api_encryption" in discovery_info.properties
        self.context["title_placeholders"] = {"name": self._name}
        return await self.async_step_discovery_confirm()

    async def async_step_discovery_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        errors: dict[str, str] = {}
        if user_input is not None:
            if self._key_required:
                return await self.async_step_encryption_key()
            info, error = await async_try_connect(self._host, self._port, None)
            if info is not None:
                return await self._async_create_or_update(info, None)
            if error == "key_required":
                self._key_required = True
                return await self.async_step_encryption_key()
            errors = _errors(error)
        self._set_confirm_only()
        return self.async_show_form(
            step_id="discovery_confirm",
            description_placeholders={"name": plain(self._name)},
            errors=errors,
        )

    async def async_step_encryption_key(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        errors: dict[str, str] = {}
        if user_input is not None:
            key = user_input[CONF_NOISE_PSK].strip()
            # The node asks for a key: without one there is nothing to try.
            info, error = (
                await async_try_connect(self._host, self._port, key)
                if key
                else (None, "key_required")
            )
            if info is not None:
                return await self._async_create_or_update(info, key)
            errors = _errors(error)
        return self.async_show_form(
            step_id="encryption_key",
            data_schema=probatio.Schema(
                {probatio.Required(CONF_NOISE_PSK): _KEY_SELECTOR}
            ),
            description_placeholders={"name": plain(self._name or self._host)},
            errors=errors,
        )

    # ---- reauth and reconfigure ----

    async def async_step_reauth(
        self, entry_data: Mapping[str, Any]
    ) -> ConfigFlowResult:
        self._host = entry_data[CONF_HOST]
        self._port = entry_data[CONF_PORT]
        self._name = self._get_reauth_entry().title
        return await self.async_step_reauth_confirm()

    async def async_step_reauth_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """A key, always: a node that answers without one never talks the key away."""
        errors: dict[str, str] = {}
        if user_input is not None:
            key = user_input[CONF_NOISE_PSK].strip()
            info, error = (
                await async_try_connect(self._host, self._port, key)
                if key
                else (None, "key_required")
            )
            if info is not None:
                entry = self._get_reauth_entry()
                await self.async_set_unique_id(format_mac(info.mac_address))
                self._abort_if_unique_id_mismatch(reason="wrong_device")
                return self.async_update_reload_and_abort(
                    entry, data_updates={CONF_NOISE_PSK: key}
                )
            errors = _errors(error, keyed=True)
        return self.async_show_form(
            step_id="reauth_confirm",
            data_schema=probatio.Schema(
                {probatio.Required(CONF_NOISE_PSK): _KEY_SELECTOR}
            ),
            description_placeholders={"name": plain(self._name)},
            errors=errors,
        )

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        entry = self._get_reconfigure_entry()
        return await self._async_step_address(
            "reconfigure",
            user_input,
            {CONF_HOST: entry.data[CONF_HOST], CONF_PORT: entry.data[CONF_PORT]},
        )

    async def async_step_remove_encryption(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Removing a key: explicit, after saying what it gives up and who would want it."""
        entry = self._get_reconfigure_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            if not user_input[CONF_CONFIRM]:
                errors = {CONF_CONFIRM: "confirm_required"}
            else:
                info, error = await async_try_connect(self._host, self._port, None)
                if info is not None:
                    node_id = entry.unique_id or entry.data[CONF_HOST]
                    repairs.async_clear_downgrade(self.hass, node_id)
                    return await self._async_create_or_update(info, None)
                # The node still asks for its key: nothing to remove.
                if error == "key_required":
                    error = "still_encrypted"
                errors = {"base": error or "cannot_connect"}
        return self.async_show_form(
            step_id="remove_encryption",
            data_schema=probatio.Schema(
                {probatio.Required(CONF_CONFIRM, default=False): BooleanSelector()}
            ),
            description_placeholders={
                "name": plain(entry.title),
                "host": plain(f"{self._host}:{self._port}"),
            },
            errors=errors,
        )

    def _stored_key(self) -> str | None:
        """The key of the entry being reconfigured (None in every other flow)."""
        if self.source != SOURCE_RECONFIGURE:
            return None
        key: str | None = self._get_reconfigure_entry().data.get(CONF_NOISE_PSK)
        return key or None

    async def _async_create_or_update(
        self, info: NodeDeviceInfo, key: str | None
    ) -> ConfigFlowResult:
        data = {
            CONF_HOST: self._host,
            CONF_PORT: self._port,
            CONF_NOISE_PSK: key,
            CONF_DEVICE_NAME: info.name,
        }
        await self.async_set_unique_id(
            format_mac(info.mac_address), raise_on_progress=False
        )
        if self.source == SOURCE_RECONFIGURE:
            self._abort_if_unique_id_mismatch(reason="wrong_device")
            return self.async_update_reload_and_abort(
                self._get_reconfigure_entry(), data_updates=data
            )
        # Adding a node again (or its discovery) without a key never drops a stored key:
        # a node answering without encryption may be anything (repairs.py).
        updates = (
            data if key else {k: v for k, v in data.items() if k != CONF_NOISE_PSK}
        )
        self._abort_if_unique_id_configured(updates=updates)
        return self.async_create_entry(title=info.friendly_name or info.name, data=data)
