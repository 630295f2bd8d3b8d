"""Every config flow step and error path, against real simulated nodes.

Every answer comes from a real node through the real aioesphomeapi client, nothing is mocked.
Native API encryption (Noise) does not build offline for the host platform, so the encrypted
answers (key required, key refused, encrypted success) come from a real node behind
tests/harness/noise_proxy.py: THE PROXY STANDS FOR THE NODE'S ENCRYPTION LAYER (it speaks
ESPHome's Noise handshake and frames and relays the decrypted API messages to the node).
Encryption through the running integration (reauth started, key rotation, downgrade):
test_encryption.py.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from ipaddress import ip_address
from unittest.mock import AsyncMock, patch

from homeassistant.config_entries import SOURCE_USER, SOURCE_ZEROCONF
from homeassistant.const import CONF_HOST, CONF_PORT
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType, InvalidData
from homeassistant.helpers.device_registry import format_mac
from homeassistant.helpers.service_info.zeroconf import ZeroconfServiceInfo
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.data_exchange.config_flow import CONF_REMOVE_ENCRYPTION
from custom_components.data_exchange.const import (
    CONF_DESIRED_INTERVAL,
    CONF_DEVICE_NAME,
    CONF_KEEP_VALUES,
    CONF_NOISE_PSK,
    CONF_STALE_AFTER,
    CONF_WRITER_PRIORITY_DELAY,
    DOMAIN,
)
from tests.harness.node import Node, free_port
from tests.harness.noise_proxy import NoiseProxy
from tests.integration.conftest import entry_for

KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
OTHER_KEY = base64.b64encode(bytes(range(100, 132))).decode()


@pytest.fixture(autouse=True)
def no_setup() -> Iterator[AsyncMock]:
    """The flow is under test here, not the entry it creates."""
    with patch(
        "custom_components.data_exchange.async_setup_entry", return_value=True
    ) as setup:
        yield setup


@pytest.fixture
async def proxy(sim_node: Node) -> AsyncIterator[NoiseProxy]:
    """The sim node with API encryption (key KEY): the proxy stands for its Noise layer."""
    noise = await NoiseProxy(sim_node, KEY).start()
    yield noise
    await noise.close()


def keyed(entry: MockConfigEntry, hass: HomeAssistant, port: int) -> MockConfigEntry:
    """``entry`` with the key KEY, reached at ``port``, added to Home Assistant."""
    entry.add_to_hass(hass)
    hass.config_entries.async_update_entry(
        entry, data={**entry.data, CONF_PORT: port, CONF_NOISE_PSK: KEY}
    )
    return entry


def discovery(
    node: Node, port: int | None = None, **properties: str
) -> ZeroconfServiceInfo:
    return ZeroconfServiceInfo(
        ip_address=ip_address(node.host),
        ip_addresses=[ip_address(node.host)],
        hostname=f"{node.name}.local.",
        name=f"{node.name}._esphomelib._tcp.local.",
        port=port or node.port,
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


async def test_user_encrypted_node(
    hass: HomeAssistant, sim_node: Node, proxy: NoiseProxy
) -> None:
    # The proxy stands for the node's encryption layer: a real Noise handshake.
    flow_id = await start_user(hass)
    address = {CONF_HOST: proxy.host, CONF_PORT: proxy.port}
    result = await hass.config_entries.flow.async_configure(flow_id, address)
    assert result["errors"] == {CONF_NOISE_PSK: "key_required"}
    result = await hass.config_entries.flow.async_configure(
        flow_id, {**address, CONF_NOISE_PSK: OTHER_KEY}
    )
    assert result["errors"] == {CONF_NOISE_PSK: "invalid_key"}
    result = await hass.config_entries.flow.async_configure(
        flow_id, {**address, CONF_NOISE_PSK: KEY}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_NOISE_PSK] == KEY
    assert result["result"].unique_id == format_mac(sim_node.mac)
    assert proxy.stats.handshakes == 1


async def test_user_again_without_key_keeps_the_key(
    hass: HomeAssistant, sim_node: Node
) -> None:
    """Adding a keyed node again, where something answers without encryption."""
    entry = keyed(entry_for(sim_node), hass, 1)
    flow_id = await start_user(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_HOST: sim_node.host, CONF_PORT: sim_node.port}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert entry.data[CONF_PORT] == sim_node.port
    assert entry.data[CONF_NOISE_PSK] == KEY


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
    hass: HomeAssistant, sim_node: Node, proxy: NoiseProxy
) -> None:
    # The proxy stands for the node's encryption layer: a real Noise handshake.
    info = discovery(
        sim_node, proxy.port, api_encryption="Noise_NNpsk0_25519_ChaChaPoly_SHA256"
    )
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
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_NOISE_PSK: OTHER_KEY}
    )
    assert result["errors"] == {CONF_NOISE_PSK: "invalid_key"}
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_NOISE_PSK: KEY}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_NOISE_PSK] == KEY
    assert result["result"].unique_id == format_mac(sim_node.mac)


async def test_zeroconf_key_required_found_on_confirm(
    hass: HomeAssistant, sim_node: Node, proxy: NoiseProxy
) -> None:
    # The node announced no encryption but uses it (turned on after it announced itself);
    # the proxy stands for its encryption layer.
    result = await hass.config_entries.flow.async_init(
        DOMAIN,
        context={"source": SOURCE_ZEROCONF},
        data=discovery(sim_node, proxy.port),
    )
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["step_id"] == "encryption_key"
    await proxy.close()
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_NOISE_PSK: KEY}
    )
    assert result["errors"] == {"base": "cannot_connect"}


# ---- reauth ----


async def test_reauth_never_drops_the_key(hass: HomeAssistant, sim_node: Node) -> None:
    """A keyed entry whose node answers without encryption: the key stays (no way to
    submit the form without one, and a plaintext answer is an error, not a removal)."""
    entry = keyed(entry_for(sim_node), hass, sim_node.port)
    result = await entry.start_reauth_flow(hass)
    assert result["step_id"] == "reauth_confirm"
    assert result["description_placeholders"] == {
        "name": sim_node.name.replace("-", "\\-")
    }
    flow_id = result["flow_id"]
    with pytest.raises(InvalidData):
        await hass.config_entries.flow.async_configure(flow_id, {})
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_NOISE_PSK: "  "}
    )
    assert result["errors"] == {CONF_NOISE_PSK: "key_required"}
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_NOISE_PSK: KEY}
    )
    assert result["errors"] == {CONF_NOISE_PSK: "answered_without_encryption"}
    assert entry.data[CONF_NOISE_PSK] == KEY


async def test_reauth_with_the_right_key(
    hass: HomeAssistant, sim_node: Node, proxy: NoiseProxy
) -> None:
    # The proxy stands for the node's encryption layer: a real Noise handshake.
    entry = keyed(entry_for(sim_node), hass, proxy.port)
    hass.config_entries.async_update_entry(
        entry, data={**entry.data, CONF_NOISE_PSK: OTHER_KEY}
    )
    result = await entry.start_reauth_flow(hass)
    flow_id = result["flow_id"]
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_NOISE_PSK: OTHER_KEY}
    )
    assert result["errors"] == {CONF_NOISE_PSK: "invalid_key"}
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_NOISE_PSK: KEY}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    assert entry.data[CONF_NOISE_PSK] == KEY


async def test_reauth_node_gone(
    hass: HomeAssistant, sim_node: Node, proxy: NoiseProxy
) -> None:
    entry = keyed(entry_for(sim_node), hass, proxy.port)
    result = await entry.start_reauth_flow(hass)
    await proxy.close()
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_NOISE_PSK: KEY}
    )
    assert result["errors"] == {"base": "cannot_connect"}


async def test_reauth_wrong_device(
    hass: HomeAssistant, sim_node: Node, proxy: NoiseProxy
) -> None:
    # The proxy stands for the node's encryption layer: the key is right, the MAC is not.
    other = MockConfigEntry(
        domain=DOMAIN,
        unique_id="02:00:00:00:00:99",
        data=dict(entry_for(sim_node).data),
        title="other",
    )
    keyed(other, hass, proxy.port)
    result = await other.start_reauth_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_NOISE_PSK: KEY}
    )
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


async def test_reconfigure_keeps_the_stored_key(
    hass: HomeAssistant, sim_node: Node, proxy: NoiseProxy
) -> None:
    # The proxy stands for the node's encryption layer: a real Noise handshake.
    entry = keyed(entry_for(sim_node), hass, 1)
    result = await entry.start_reconfigure_flow(hass)
    assert CONF_REMOVE_ENCRYPTION in result["data_schema"].schema
    flow_id = result["flow_id"]
    # The box with a bad host: the address form first.
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_HOST: "bad host", CONF_PORT: 1, CONF_REMOVE_ENCRYPTION: True}
    )
    assert result["errors"] == {"base": "invalid_host"}
    # An empty key field: the stored key, which the node takes.
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_HOST: proxy.host, CONF_PORT: proxy.port}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert entry.data[CONF_PORT] == proxy.port
    assert entry.data[CONF_NOISE_PSK] == KEY


async def test_reconfigure_without_key_has_no_removal_box(
    hass: HomeAssistant, sim_node: Node
) -> None:
    entry = entry_for(sim_node)
    entry.add_to_hass(hass)
    result = await entry.start_reconfigure_flow(hass)
    assert CONF_REMOVE_ENCRYPTION not in result["data_schema"].schema


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
        CONF_DESIRED_INTERVAL: 2.0,
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
