"""Native API encryption end to end: the real aioesphomeapi client, the real integration and
a real simulated node.

THE NOISE PROXY STANDS FOR THE NODE'S ENCRYPTION LAYER. ESPHome's Noise encryption cannot
be built offline for the host platform, so the node itself runs plaintext and
tests/harness/noise_proxy.py terminates ESPHome's encrypted native API in front of it, the
way the node's own APINoiseFrameHelper would (handshake, rejections, frame layout). What
Home Assistant talks to through the proxy is otherwise the real node: its device info,
entities, actions and frames.

Also here: no silent downgrade (issue #14 item 4). An entry with a key whose node answers
without encryption keeps its key, sends nothing, and raises a repair issue; only an explicit,
confirmed Reconfigure step removes the key.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
import json
from typing import Any

from aioesphomeapi import (
    APIClient,
    APIConnectionError,
    EncryptionPlaintextAPIError,
    InvalidEncryptionKeyAPIError,
    RequiresEncryptionAPIError,
)
from aioesphomeapi.api_pb2 import ExecuteServiceRequest
from aioesphomeapi.core import MESSAGE_TYPE_TO_PROTO
from homeassistant.config_entries import SOURCE_USER, ConfigEntryState
from homeassistant.const import CONF_HOST, CONF_PORT
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.device_registry import format_mac
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.data_exchange.config_flow import (
    CONF_CONFIRM,
    CONF_REMOVE_ENCRYPTION,
)
from custom_components.data_exchange.const import CONF_NOISE_PSK, DOMAIN
from custom_components.data_exchange.repairs import downgrade_issue_id as issue_id
from tests.harness.node import REPO, Node
from tests.harness.noise_proxy import MAC_FAILURE, NoiseProxy
from tests.harness.peer import Peer
from tests.integration.conftest import entity_ids, entry_for, live, until

TRANSLATIONS = REPO / "custom_components" / DOMAIN / "translations"
KEY = base64.b64encode(bytes(range(32))).decode()
NEW_KEY = base64.b64encode(bytes(range(100, 132))).decode()
EXECUTE_SERVICE = next(
    t for t, proto in MESSAGE_TYPE_TO_PROTO.items() if proto is ExecuteServiceRequest
)


@pytest.fixture
async def proxy(sim_node: Node) -> AsyncIterator[NoiseProxy]:
    """The sim node's encryption layer, with the key KEY."""
    noise = await NoiseProxy(sim_node, KEY).start()
    yield noise
    await noise.close()


@pytest.fixture
async def view(sim_node: Node) -> AsyncIterator[Peer]:
    """The node's own entity states, read directly (plaintext, not through the proxy)."""
    async with Peer(sim_node, "test observer", states=True) as observer:
        yield observer


async def add_keyed(
    hass: HomeAssistant, node: Node, proxy: NoiseProxy, key: str
) -> MockConfigEntry:
    """An entry for ``node`` reached through ``proxy`` with ``key``, set up."""
    entry = entry_for(node)
    entry.add_to_hass(hass)
    hass.config_entries.async_update_entry(
        entry,
        data={
            **entry.data,
            CONF_HOST: proxy.host,
            CONF_PORT: proxy.port,
            CONF_NOISE_PSK: key,
        },
    )
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


async def poll(predicate: Callable[[], bool], what: str, within: float = 15.0) -> None:
    """Wait for something that is not a state change (flows, issues, proxy counters).

    Polled: the flow manager, the issue registry and the proxy share no event to wait on.
    """
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - see above
            await asyncio.sleep(0.02)
    assert predicate(), what


def reauth_flows(hass: HomeAssistant, entry: MockConfigEntry) -> list[Any]:
    return [
        flow
        for flow in hass.config_entries.flow.async_progress_by_handler(DOMAIN)
        if flow["context"].get("source") == "reauth"
        and flow["context"].get("entry_id") == entry.entry_id
    ]


def setpoint(hass: HomeAssistant, entry: MockConfigEntry) -> str:
    return next(e for e in entity_ids(hass, entry, "number") if e.endswith("setpoint"))


async def connect(port: int, key: str | None, **kwargs: Any) -> APIClient:
    client = APIClient("127.0.0.1", port, None, noise_psk=key, **kwargs)
    await client.connect(login=True)
    return client


# ---- the proxy is an encrypted node, as aioesphomeapi sees it ----


async def test_proxy_speaks_esphome_noise(sim_node: Node, proxy: NoiseProxy) -> None:
    # The proxy stands for the node's encryption layer (see the module docstring).
    # Right key: the real node's device info, through the encrypted link; the server
    # hello carried the node's name and MAC (checked by aioesphomeapi against these).
    client = await connect(
        proxy.port,
        KEY,
        expected_name=sim_node.name,
        expected_mac=sim_node.mac.replace(":", "").lower(),
    )
    try:
        info = await client.device_info()
    finally:
        await client.disconnect()
    assert info.name == sim_node.name
    assert format_mac(info.mac_address) == format_mac(sim_node.mac)
    assert proxy.stats.handshakes == 1
    # Wrong key: rejected with the firmware's "Handshake MAC failure".
    with pytest.raises(InvalidEncryptionKeyAPIError):
        await connect(proxy.port, NEW_KEY)
    assert proxy.stats.rejected == [MAC_FAILURE]
    # No key: the node asks for one ("Bad indicator byte" in a Noise frame).
    with pytest.raises(RequiresEncryptionAPIError):
        await connect(proxy.port, None)
    # Key rotation: the new key works, the old one no longer does.
    proxy.set_key(NEW_KEY)
    await (await connect(proxy.port, NEW_KEY)).disconnect()
    with pytest.raises(InvalidEncryptionKeyAPIError):
        await connect(proxy.port, KEY)
    # Plaintext mode: the real node answers the encrypted hello without encryption.
    proxy.set_plaintext()
    with pytest.raises(EncryptionPlaintextAPIError):
        await connect(proxy.port, KEY)
    # The encrypted client sent its hello and first handshake message, nothing else.
    assert proxy.plaintext_received[:3] == b"\x01\x00\x00"
    assert proxy.plaintext_received[3] == 0x01
    # Node down: the connection is refused, as the node's own would be.
    sim_node.stop()
    proxy.set_plaintext(False)
    with pytest.raises(APIConnectionError):
        await connect(proxy.port, NEW_KEY)


# ---- through Home Assistant ----


async def test_encrypted_node_added_and_exchanging(
    hass: HomeAssistant, sim_node: Node, proxy: NoiseProxy, view: Peer
) -> None:
    """Add an encrypted node by address; its values and our writes go through encrypted."""
    # The proxy stands for the node's encryption layer (see the module docstring).
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    address = {CONF_HOST: proxy.host, CONF_PORT: proxy.port}
    result = await hass.config_entries.flow.async_configure(result["flow_id"], address)
    assert result["errors"] == {CONF_NOISE_PSK: "key_required"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {**address, CONF_NOISE_PSK: NEW_KEY}
    )
    assert result["errors"] == {CONF_NOISE_PSK: "invalid_key"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {**address, CONF_NOISE_PSK: KEY}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    entry = result["result"]
    assert entry.data[CONF_NOISE_PSK] == KEY
    assert entry.unique_id == format_mac(sim_node.mac)
    await hass.async_block_till_done()
    await until(hass, lambda: live(hass, entry), what="live values through Noise")
    # A write from Home Assistant reaches the real node through the encrypted link.
    await hass.services.async_call(
        "number",
        "set_value",
        {"entity_id": setpoint(hass, entry), "value": 23.5},
        blocking=True,
    )
    await poll(lambda: view.states.get("setpoint") == 23.5, "setpoint on the node")
    assert EXECUTE_SERVICE in proxy.stats.client_messages
    assert proxy.stats.node_messages > 0
    assert not proxy.plaintext_received


async def test_wrong_key_starts_reauth_then_right_key(
    hass: HomeAssistant, sim_node: Node, proxy: NoiseProxy
) -> None:
    # The proxy stands for the node's encryption layer (see the module docstring).
    entry = await add_keyed(hass, sim_node, proxy, NEW_KEY)
    await poll(lambda: bool(reauth_flows(hass, entry)), "reauth flow started")
    assert MAC_FAILURE in proxy.stats.rejected
    assert not live(hass, entry)
    flow_id = reauth_flows(hass, entry)[0]["flow_id"]
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_NOISE_PSK: NEW_KEY}
    )
    assert result["errors"] == {CONF_NOISE_PSK: "invalid_key"}
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_NOISE_PSK: KEY}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    assert entry.data[CONF_NOISE_PSK] == KEY
    await hass.async_block_till_done()
    await until(hass, lambda: live(hass, entry), what="live after reauth")


async def test_key_rotation_through_reconfigure(
    hass: HomeAssistant, sim_node: Node, proxy: NoiseProxy
) -> None:
    # The proxy stands for the node's encryption layer (see the module docstring).
    entry = await add_keyed(hass, sim_node, proxy, KEY)
    await until(hass, lambda: live(hass, entry), what="live with the first key")
    # The node is flashed with a new key: the stored one is refused from now on.
    proxy.set_key(NEW_KEY)
    proxy.cut()
    await poll(lambda: bool(reauth_flows(hass, entry)), "reauth after rotation")
    result = await entry.start_reconfigure_flow(hass)
    flow_id = result["flow_id"]
    address = {CONF_HOST: proxy.host, CONF_PORT: proxy.port}
    # An empty key field keeps the stored key, which the node now refuses.
    result = await hass.config_entries.flow.async_configure(flow_id, address)
    assert result["errors"] == {CONF_NOISE_PSK: "invalid_key"}
    result = await hass.config_entries.flow.async_configure(
        flow_id, {**address, CONF_NOISE_PSK: NEW_KEY}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert entry.data[CONF_NOISE_PSK] == NEW_KEY
    await hass.async_block_till_done()
    await until(hass, lambda: live(hass, entry), what="live with the new key")


async def test_plaintext_answer_keeps_the_key_and_sends_nothing(
    hass: HomeAssistant, sim_node: Node, proxy: NoiseProxy, view: Peer
) -> None:
    """A keyed node answers without encryption (a man in the middle, or encryption removed).

    The key stays, not one API message goes over plaintext (the node's values are not
    changed by Home Assistant), a repair issue says what happened, and the reauth form
    offers no way to drop the key.
    """
    # The proxy stands for the node's encryption layer (see the module docstring); in
    # plaintext mode it answers as a node without encryption, as a man in the middle would.
    entry = await add_keyed(hass, sim_node, proxy, KEY)
    await until(hass, lambda: live(hass, entry), what="live encrypted")
    # The node's fail-safe (1.5 s in these tests) may fire during the entry's first
    # connection: until Home Assistant's desired frame ends it, the node shows its safe
    # value, and that frame would then change the value read here.
    engine = entry.runtime_data.engine
    await poll(engine.holds_desired, "the node holds Home Assistant's desired values")
    shown = hass.states.get(setpoint(hass, entry))
    assert shown is not None
    await poll(
        lambda: view.states.get("setpoint") == float(shown.state), "the node's setpoint"
    )
    before = view.states["setpoint"]
    proxy.set_plaintext()
    proxy.cut()
    issues = ir.async_get(hass)
    downgrade_issue = issue_id(format_mac(sim_node.mac))
    await poll(
        lambda: issues.async_get_issue(DOMAIN, downgrade_issue) is not None,
        "downgrade repair issue",
    )
    issue = issues.async_get_issue(DOMAIN, downgrade_issue)
    assert issue is not None
    assert issue.translation_key == "encryption_removed"
    assert issue.severity is ir.IssueSeverity.ERROR
    assert issue.translation_placeholders == {
        "name": sim_node.name.replace("-", "\\-"),
        "host": "127\\.0\\.0\\.1",
    }
    await poll(lambda: bool(reauth_flows(hass, entry)), "reauth flow started")
    # A write in Home Assistant meanwhile is kept, and not sent.
    await hass.services.async_call(
        "number",
        "set_value",
        {"entity_id": setpoint(hass, entry), "value": before + 1.5},
        blocking=True,
    )
    # Proving an absence needs a window: 1 s is five desired-frame cycles of this entry.
    await asyncio.sleep(1.0)
    assert view.states["setpoint"] == before
    connection = entry.runtime_data.connection
    assert not connection.connected
    assert connection.client.noise_psk == KEY  # no fallback to plaintext
    assert entry.data[CONF_NOISE_PSK] == KEY
    # What the client sent to the plaintext node: only Noise frames (0x01), the hello and
    # the first handshake message of each attempt; never a plaintext frame (0x00).
    sent = bytes(proxy.plaintext_received)
    assert sent
    while sent:
        assert sent[0] == 0x01, sent
        sent = sent[3 + ((sent[1] << 8) | sent[2]) :]
    # The reauth form requires a key and never takes a plaintext answer as a reason to
    # drop it.
    flow_id = reauth_flows(hass, entry)[0]["flow_id"]
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_NOISE_PSK: ""}
    )
    assert result["errors"] == {CONF_NOISE_PSK: "key_required"}
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_NOISE_PSK: KEY}
    )
    assert result["errors"] == {CONF_NOISE_PSK: "answered_without_encryption"}
    assert entry.data[CONF_NOISE_PSK] == KEY
    assert view.states["setpoint"] == before


async def test_removing_encryption_needs_explicit_confirmation(
    hass: HomeAssistant, sim_node: Node, proxy: NoiseProxy, view: Peer
) -> None:
    # The proxy stands for the node's encryption layer (see the module docstring). Here the
    # user really removed encryption from the node: the proxy answers in plaintext.
    entry = await add_keyed(hass, sim_node, proxy, KEY)
    await until(hass, lambda: live(hass, entry), what="live encrypted")
    proxy.set_plaintext()
    proxy.cut()
    downgrade_issue = issue_id(format_mac(sim_node.mac))
    issues = ir.async_get(hass)
    await poll(
        lambda: issues.async_get_issue(DOMAIN, downgrade_issue) is not None,
        "downgrade repair issue",
    )
    result = await entry.start_reconfigure_flow(hass)
    assert CONF_REMOVE_ENCRYPTION in result["data_schema"].schema
    flow_id = result["flow_id"]
    address = {CONF_HOST: proxy.host, CONF_PORT: proxy.port}
    # Leaving the key empty keeps it: the plaintext answer is an error, not a removal.
    result = await hass.config_entries.flow.async_configure(flow_id, address)
    assert result["errors"] == {CONF_NOISE_PSK: "answered_without_encryption"}
    assert entry.data[CONF_NOISE_PSK] == KEY
    # The box leads to a separate step that says what is given up.
    result = await hass.config_entries.flow.async_configure(
        flow_id, {**address, CONF_REMOVE_ENCRYPTION: True}
    )
    assert result["step_id"] == "remove_encryption"
    assert result["description_placeholders"]["host"].startswith("127\\.0\\.0\\.1:")
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_CONFIRM: False}
    )
    assert result["errors"] == {CONF_CONFIRM: "confirm_required"}
    assert entry.data[CONF_NOISE_PSK] == KEY
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_CONFIRM: True}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert entry.data[CONF_NOISE_PSK] is None
    await hass.async_block_till_done()
    assert issues.async_get_issue(DOMAIN, downgrade_issue) is None
    # Now without encryption, by the user's choice: connected, and the node announces
    # that it has none (the existing no-encryption issue).
    await until(hass, lambda: live(hass, entry), what="live without encryption")
    assert issues.async_get_issue(DOMAIN, f"no_encryption_{entry.entry_id}")
    assert entry.state is ConfigEntryState.LOADED


async def test_remove_encryption_of_a_node_that_still_has_it(
    hass: HomeAssistant, sim_node: Node, proxy: NoiseProxy
) -> None:
    # The proxy stands for the node's encryption layer (see the module docstring).
    entry = await add_keyed(hass, sim_node, proxy, KEY)
    result = await entry.start_reconfigure_flow(hass)
    flow_id = result["flow_id"]
    result = await hass.config_entries.flow.async_configure(
        flow_id,
        {CONF_HOST: proxy.host, CONF_PORT: proxy.port, CONF_REMOVE_ENCRYPTION: True},
    )
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_CONFIRM: True}
    )
    assert result["errors"] == {"base": "still_encrypted"}
    await proxy.close()
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_CONFIRM: True}
    )
    assert result["errors"] == {"base": "cannot_connect"}
    assert entry.data[CONF_NOISE_PSK] == KEY


@pytest.mark.parametrize("lang", ["en", "de", "fr", "ru"])
def test_downgrade_texts_are_translated(lang: str) -> None:
    texts = json.loads((TRANSLATIONS / f"{lang}.json").read_text(encoding="utf-8"))
    config = texts["config"]
    for error in (
        "answered_without_encryption",
        "still_encrypted",
        "confirm_required",
        "node_without_encryption",
    ):
        assert config["error"][error], error
    step = config["step"]["remove_encryption"]
    assert "{name}" in step["description"]
    assert "{host}" in step["description"]
    assert step["data"][CONF_CONFIRM]
    assert config["step"]["reconfigure"]["data"][CONF_REMOVE_ENCRYPTION]
    issue = texts["issues"]["encryption_removed"]
    assert "{name}" in issue["title"]
    assert "{host}" in issue["description"]
