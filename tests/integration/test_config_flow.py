"""Every config flow step and error path, against real simulated nodes.

Native API encryption (Noise) does not build offline for the host platform, so the node
answers "key required" and "invalid key" are mocked at APIClient.connect; every other answer
(success, plaintext node given a key, nothing listening) comes from a real node.
"""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import ip_address
from unittest.mock import AsyncMock, patch

from aioesphomeapi import (
    DeviceInfo,
    InvalidEncryptionKeyAPIError,
    RequiresEncryptionAPIError,
)
from homeassistant.config_entries import SOURCE_USER, SOURCE_ZEROCONF
from homeassistant.const import CONF_HOST, CONF_PORT
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers.device_registry import format_mac
from homeassistant.helpers.service_info.zeroconf import ZeroconfServiceInfo
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.data_exchange.const import (
    CONF_CYCLE,
    CONF_DEVICE_NAME,
    CONF_KEEP_VALUES,
    CONF_NOISE_PSK,
    CONF_STALE_AFTER,
    CONF_WRITER_PRIORITY_DELAY,
    DOMAIN,
)
from tests.harness.node import Node, free_port
from tests.integration.conftest import entry_for

KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
CONNECT = "custom_components.data_exchange.config_flow.APIClient.connect"
DEVICE_INFO = "custom_components.data_exchange.config_flow.APIClient.device_info"


@pytest.fixture(autouse=True)
def no_setup() -> Iterator[AsyncMock]:
    """The flow is under test here, not the entry it creates."""
    with patch(
        "custom_components.data_exchange.async_setup_entry", return_value=True
    ) as setup:
        yield setup


def discovery(node: Node, **properties: str) -> ZeroconfServiceInfo:
    return ZeroconfServiceInfo(
        ip_address=ip_address(node.host),
        ip_addresses=[ip_address(node.host)],
        hostname=f"{node.name}.local.",
        name=f"{node.name}._esphomelib._tcp.local.",
        port=node.port,
        type="_esphomelib._tcp.local.",
        properties={
            "mac": node.mac.replace(":", "").lower(),
            "friendly_name": "Simulated node",
            "project_name": "data_exchange.sim_node",
            **properties,
        },
    )


async def start_user(hass: HomeAssistant) -> str:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"
    return result["flow_id"]


# ---- user step ----


async def test_user_creates_entry(hass: HomeAssistant, sim_node: Node) -> None:
    flow_id = await start_user(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_HOST: sim_node.host, CONF_PORT: sim_node.port}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"].startswith("Simulated node")
    assert result["data"] == {
        CONF_HOST: sim_node.host,
        CONF_PORT: sim_node.port,
        CONF_NOISE_PSK: None,
        CONF_DEVICE_NAME: sim_node.name,
    }
    assert result["result"].unique_id == format_mac(sim_node.mac)


async def test_user_cannot_connect_then_succeeds(
    hass: HomeAssistant, sim_node: Node
) -> None:
    flow_id = await start_user(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_HOST: "127.0.0.1", CONF_PORT: free_port()}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "cannot_connect"}
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_HOST: sim_node.host, CONF_PORT: sim_node.port}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY


@pytest.mark.parametrize(
    "host",
    ["evil; rm -rf /", "host name", "a" * 300, "$(reboot)", "http://x", "-bad.example"],
)
async def test_user_invalid_host(hass: HomeAssistant, host: str) -> None:
    flow_id = await start_user(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_HOST: host, CONF_PORT: 6053}
    )
    assert result["errors"] == {"base": "invalid_host"}
    assert not hass.config_entries.async_entries(DOMAIN)


@pytest.mark.parametrize("key", ["abc", "not base64 at all!", KEY[:-4], KEY + "AAAA"])
async def test_user_malformed_key(
    hass: HomeAssistant, sim_node: Node, key: str
) -> None:
    flow_id = await start_user(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id,
        {CONF_HOST: sim_node.host, CONF_PORT: sim_node.port, CONF_NOISE_PSK: key},
    )
    assert result["errors"] == {CONF_NOISE_PSK: "invalid_key_format"}


async def test_user_key_for_plaintext_node(hass: HomeAssistant, sim_node: Node) -> None:
    flow_id = await start_user(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id,
        {CONF_HOST: sim_node.host, CONF_PORT: sim_node.port, CONF_NOISE_PSK: KEY},
    )
    assert result["errors"] == {CONF_NOISE_PSK: "node_without_encryption"}


@pytest.mark.parametrize(
    ("error", "key"),
    [
        (RequiresEncryptionAPIError("mocked"), "key_required"),
        (InvalidEncryptionKeyAPIError("mocked"), "invalid_key"),
    ],
)
async def test_user_encryption_errors(
    hass: HomeAssistant, socket_enabled: None, error: Exception, key: str
) -> None:
    # Mocked: a host node cannot be built with encryption offline.
    flow_id = await start_user(hass)
    with patch(CONNECT, side_effect=error):
        result = await hass.config_entries.flow.async_configure(
            flow_id, {CONF_HOST: "127.0.0.1", CONF_PORT: 6053, CONF_NOISE_PSK: KEY}
        )
    assert result["errors"] == {CONF_NOISE_PSK: key}


async def test_user_already_configured_updates_address(
    hass: HomeAssistant, sim_node: Node
) -> None:
    entry = entry_for(sim_node)
    entry.add_to_hass(hass)
    hass.config_entries.async_update_entry(
        entry, data={**entry.data, CONF_HOST: "localhost", CONF_PORT: 1}
    )
    flow_id = await start_user(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_HOST: sim_node.host, CONF_PORT: sim_node.port}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert entry.data[CONF_HOST] == sim_node.host
    assert entry.data[CONF_PORT] == sim_node.port


# ---- discovery ----


async def test_zeroconf_confirm_creates_entry(
    hass: HomeAssistant, sim_node: Node
) -> None:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_ZEROCONF}, data=discovery(sim_node)
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "discovery_confirm"
    assert result["description_placeholders"] == {"name": "Simulated node"}
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["result"].unique_id == format_mac(sim_node.mac)


async def test_zeroconf_already_configured_updates_address(
    hass: HomeAssistant, sim_node: Node
) -> None:
    entry = entry_for(sim_node)
    entry.add_to_hass(hass)
    hass.config_entries.async_update_entry(entry, data={**entry.data, CONF_PORT: 1})
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_ZEROCONF}, data=discovery(sim_node)
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert entry.data[CONF_PORT] == sim_node.port


async def test_zeroconf_without_mac(hass: HomeAssistant, sim_node: Node) -> None:
    info = discovery(sim_node)
    info.properties.pop("mac")
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_ZEROCONF}, data=info
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "no_mac"


async def test_zeroconf_node_gone(hass: HomeAssistant, sim_node: Node) -> None:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_ZEROCONF}, data=discovery(sim_node)
    )
    sim_node.stop()
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "cannot_connect"}


async def test_zeroconf_encrypted_node_asks_for_key(
    hass: HomeAssistant, sim_node: Node
) -> None:
    info = discovery(sim_node, api_encryption="Noise_NNpsk0_25519_ChaChaPoly_SHA256")
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_ZEROCONF}, data=info
    )
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["step_id"] == "encryption_key"
    flow_id = result["flow_id"]
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_NOISE_PSK: "short"}
    )
    assert result["errors"] == {CONF_NOISE_PSK: "invalid_key_format"}
    # Mocked: the encrypted handshake itself cannot happen with a host node here.
    with patch(CONNECT, side_effect=InvalidEncryptionKeyAPIError("mocked")):
        result = await hass.config_entries.flow.async_configure(
            flow_id, {CONF_NOISE_PSK: KEY}
        )
    assert result["errors"] == {CONF_NOISE_PSK: "invalid_key"}
    node_info = DeviceInfo(
        name=sim_node.name, friendly_name="Sim", mac_address=sim_node.mac
    )
    with patch(CONNECT), patch(DEVICE_INFO, return_value=node_info):
        result = await hass.config_entries.flow.async_configure(
            flow_id, {CONF_NOISE_PSK: KEY}
        )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_NOISE_PSK] == KEY


async def test_zeroconf_key_required_found_on_confirm(
    hass: HomeAssistant, sim_node: Node
) -> None:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_ZEROCONF}, data=discovery(sim_node)
    )
    # Mocked: the node turned encryption on after it announced itself.
    with patch(CONNECT, side_effect=RequiresEncryptionAPIError("mocked")):
        result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["step_id"] == "encryption_key"
    sim_node.stop()
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_NOISE_PSK: KEY}
    )
    assert result["errors"] == {"base": "cannot_connect"}


# ---- reauth ----


async def test_reauth_clears_key_of_plaintext_node(
    hass: HomeAssistant, sim_node: Node
) -> None:
    entry = entry_for(sim_node)
    entry.add_to_hass(hass)
    hass.config_entries.async_update_entry(
        entry, data={**entry.data, CONF_NOISE_PSK: KEY}
    )
    result = await entry.start_reauth_flow(hass)
    assert result["step_id"] == "reauth_confirm"
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    assert entry.data[CONF_NOISE_PSK] is None


async def test_reauth_errors(hass: HomeAssistant, sim_node: Node) -> None:
    entry = entry_for(sim_node)
    entry.add_to_hass(hass)
    result = await entry.start_reauth_flow(hass)
    flow_id = result["flow_id"]
    # Mocked: a refused key needs an encrypted node.
    with patch(CONNECT, side_effect=InvalidEncryptionKeyAPIError("mocked")):
        result = await hass.config_entries.flow.async_configure(
            flow_id, {CONF_NOISE_PSK: KEY}
        )
    assert result["errors"] == {CONF_NOISE_PSK: "invalid_key"}
    sim_node.stop()
    result = await hass.config_entries.flow.async_configure(flow_id, {})
    assert result["errors"] == {"base": "cannot_connect"}


async def test_reauth_wrong_device(hass: HomeAssistant, sim_node: Node) -> None:
    entry = entry_for(sim_node)
    other = MockConfigEntry(
        domain=DOMAIN,
        unique_id="02:00:00:00:00:99",
        data=dict(entry.data),
        title="other",
    )
    other.add_to_hass(hass)
    result = await other.start_reauth_flow(hass)
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "wrong_device"


# ---- reconfigure ----


async def test_reconfigure_changes_address(hass: HomeAssistant, sim_node: Node) -> None:
    entry = entry_for(sim_node)
    entry.add_to_hass(hass)
    hass.config_entries.async_update_entry(entry, data={**entry.data, CONF_PORT: 1})
    result = await entry.start_reconfigure_flow(hass)
    assert result["step_id"] == "reconfigure"
    flow_id = result["flow_id"]
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_HOST: sim_node.host, CONF_PORT: free_port()}
    )
    assert result["errors"] == {"base": "cannot_connect"}
    result = await hass.config_entries.flow.async_configure(
        flow_id,
        {CONF_HOST: sim_node.host, CONF_PORT: sim_node.port, CONF_NOISE_PSK: "x"},
    )
    assert result["errors"] == {CONF_NOISE_PSK: "invalid_key_format"}
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_HOST: sim_node.host, CONF_PORT: sim_node.port}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert entry.data[CONF_PORT] == sim_node.port


async def test_reconfigure_to_another_node(
    hass: HomeAssistant, sim_node: Node, plain_node: Node
) -> None:
    entry = entry_for(sim_node)
    entry.add_to_hass(hass)
    result = await entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_HOST: plain_node.host, CONF_PORT: plain_node.port}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "wrong_device"
    assert entry.data[CONF_PORT] == sim_node.port


# ---- options ----


async def test_options(hass: HomeAssistant, sim_node: Node) -> None:
    entry = entry_for(sim_node)
    entry.add_to_hass(hass)
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["step_id"] == "init"
    options = {
        CONF_CYCLE: 2.0,
        CONF_WRITER_PRIORITY_DELAY: 5.0,
        CONF_STALE_AFTER: 2.0,
        CONF_KEEP_VALUES: False,
    }
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], options
    )
    assert result["errors"] == {CONF_STALE_AFTER: "stale_after_too_short"}
    options[CONF_STALE_AFTER] = 30.0
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], options
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert entry.options == options
