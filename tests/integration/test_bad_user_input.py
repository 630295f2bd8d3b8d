"""Bad input from users: every config flow field and every action argument.

Wrong types, out-of-range values and injection-like strings must end in a translated error
(or in Home Assistant's own schema validation error) and change nothing: no config entry
created or modified, no connection attempted where validation can tell first, no desired
value set, no frame with part of a rejected write.

The config flow tests never reach a node: every input here must be refused before a
connection, so APIClient is replaced by a mock that records being constructed (and fails
the connection if it ever is). The action tests run against a real simulated node.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import ip_address
import json
from pathlib import Path
import re
from typing import Any
from unittest.mock import AsyncMock, MagicMock, patch

from aioesphomeapi import APIConnectionError
from homeassistant.config_entries import SOURCE_USER, SOURCE_ZEROCONF
from homeassistant.const import CONF_HOST, CONF_PORT
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType, InvalidData
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import (
    device_registry as dr,
    entity_registry as er,
)
from homeassistant.helpers.service_info.zeroconf import ZeroconfServiceInfo
import probatio
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.data_exchange.const import (
    CONF_DESIRED_INTERVAL,
    CONF_DEVICE_NAME,
    CONF_KEEP_VALUES,
    CONF_NOISE_PSK,
    CONF_STALE_AFTER,
    CONF_WRITER_PRIORITY_DELAY,
    DOMAIN,
)
from custom_components.data_exchange.manager import NodeManager
from custom_components.data_exchange.protocol import (
    WRITE_ACTION,
    encode_desired_values,
)
from tests.harness.node import Node
from tests.integration.conftest import entity_ids, setup_node, until

INTEGRATION = Path(__file__).resolve().parents[2] / "custom_components" / DOMAIN
ENGLISH = json.loads((INTEGRATION / "translations" / "en.json").read_text())
FLOW = "custom_components.data_exchange.config_flow"
KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
KEY_16_BYTES = "MDEyMzQ1Njc4OWFiY2RlZg=="
LONG = "a" * 10_000
SCHEMA = "schema"  # rejected by the flow manager's or the action's schema


def p(*values: Any, id: str) -> Any:  # noqa: A002 - pytest's name
    return pytest.param(*values, id=id)


# ==== config flow ====


@pytest.fixture
def no_setup() -> Iterator[AsyncMock]:
    """An entry a flow might create is not set up: the flow is under test."""
    with patch(
        "custom_components.data_exchange.async_setup_entry", return_value=True
    ) as setup:
        yield setup


@pytest.fixture
def client(no_setup: AsyncMock) -> Iterator[MagicMock]:
    """APIClient, recording any connection attempt (there must be none)."""
    with patch(f"{FLOW}.APIClient") as client:
        client.return_value.connect = AsyncMock(
            side_effect=APIConnectionError("no connection expected")
        )
        client.return_value.disconnect = AsyncMock()
        yield client


def translated_flow_error(key: str) -> bool:
    return key in ENGLISH["config"]["error"] or key in ENGLISH["options"]["error"]


async def outcome(configure: Any, flow_id: str, data: dict[str, Any]) -> Any:
    """SCHEMA, or the errors of the form shown again."""
    try:
        result = await configure(flow_id, data)
    except InvalidData:
        return SCHEMA
    assert result["type"] is FlowResultType.FORM, result
    for error in result["errors"].values():
        assert translated_flow_error(error), error
    return result["errors"]


def invalid_host(*_: Any) -> dict[str, str]:
    return {"base": "invalid_host"}


def key_format() -> dict[str, str]:
    return {CONF_NOISE_PSK: "invalid_key_format"}


VALID_ADDRESS = {CONF_HOST: "node.local", CONF_PORT: 6053}

# (change to a valid host/port/key form, expected outcome)
ADDRESS_CASES = [
    # host: wrong types
    p({CONF_HOST: None}, SCHEMA, id="host-none"),
    p({CONF_HOST: 6053}, SCHEMA, id="host-int"),
    p({CONF_HOST: ["node.local"]}, SCHEMA, id="host-list"),
    p({CONF_HOST: {"a": 1}}, SCHEMA, id="host-dict"),
    # host: not a host name or address
    p({CONF_HOST: ""}, invalid_host(), id="host-empty"),
    p({CONF_HOST: "   "}, invalid_host(), id="host-blank"),
    p({CONF_HOST: "node.local; rm -rf /"}, invalid_host(), id="host-shell"),
    p({CONF_HOST: "$(reboot)"}, invalid_host(), id="host-subshell"),
    p({CONF_HOST: "http://x/"}, invalid_host(), id="host-url"),
    p({CONF_HOST: "../../etc/passwd"}, invalid_host(), id="host-path"),
    p({CONF_HOST: "<script>alert(1)</script>"}, invalid_host(), id="host-html"),
    p({CONF_HOST: LONG}, invalid_host(), id="host-10000-chars"),
    p({CONF_HOST: "node\n.local"}, invalid_host(), id="host-newline"),
    p({CONF_HOST: "node\x00.local"}, invalid_host(), id="host-nul"),
    p({CONF_HOST: "nöde.local"}, invalid_host(), id="host-unicode"),
    p({CONF_HOST: "-bad.example"}, invalid_host(), id="host-leading-dash"),
    p({CONF_HOST: "...."}, invalid_host(), id="host-dots"),
    p({CONF_HOST: "::::::"}, invalid_host(), id="host-colons"),
    p({CONF_HOST: "1.2.3.4:6053"}, invalid_host(), id="host-with-port"),
    p({CONF_HOST: "[::1]"}, invalid_host(), id="host-bracketed-ipv6"),
    # port
    p({CONF_PORT: "abc"}, SCHEMA, id="port-text"),
    p({CONF_PORT: ""}, SCHEMA, id="port-empty"),
    p({CONF_PORT: None}, SCHEMA, id="port-none"),
    p({CONF_PORT: [6053]}, SCHEMA, id="port-list"),
    p({CONF_PORT: "6053; rm -rf /"}, SCHEMA, id="port-shell"),
    p({CONF_PORT: 0}, SCHEMA, id="port-0"),
    p({CONF_PORT: -1}, SCHEMA, id="port-negative"),
    p({CONF_PORT: 65536}, SCHEMA, id="port-65536"),
    p({CONF_PORT: 70000}, SCHEMA, id="port-70000"),
    p({CONF_PORT: 10**30}, SCHEMA, id="port-huge"),
    p({CONF_PORT: float("nan")}, SCHEMA, id="port-nan"),
    p({CONF_PORT: float("inf")}, SCHEMA, id="port-inf"),
    # key
    p({CONF_NOISE_PSK: None}, SCHEMA, id="key-none"),
    p({CONF_NOISE_PSK: 123}, SCHEMA, id="key-int"),
    p({CONF_NOISE_PSK: [KEY]}, SCHEMA, id="key-list"),
    p({CONF_NOISE_PSK: "abc"}, key_format(), id="key-short"),
    p({CONF_NOISE_PSK: "not base64 at all!"}, key_format(), id="key-not-base64"),
    p({CONF_NOISE_PSK: KEY_16_BYTES}, key_format(), id="key-16-bytes"),
    p({CONF_NOISE_PSK: KEY + "AAAA"}, key_format(), id="key-too-long"),
    p({CONF_NOISE_PSK: LONG}, key_format(), id="key-10000-chars"),
    p({CONF_NOISE_PSK: KEY[:20] + "\n" + KEY[20:]}, key_format(), id="key-newline"),
    p({CONF_NOISE_PSK: KEY + "\x00"}, key_format(), id="key-nul"),
    p({CONF_NOISE_PSK: "ключ" * 11}, key_format(), id="key-unicode"),
    p({CONF_NOISE_PSK: "<script>alert(1)</script>"}, key_format(), id="key-html"),
    # the form itself
    p({"extra": "x"}, SCHEMA, id="unknown-field"),
    p({CONF_HOST: ...}, SCHEMA, id="host-missing"),
    p({CONF_PORT: ...}, SCHEMA, id="port-missing"),
]


def form(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``change`` applied; a value of ... removes the field."""
    data = {**base, **change}
    return {k: v for k, v in data.items() if v is not ...}


@pytest.mark.parametrize(("change", "expected"), ADDRESS_CASES)
async def test_user_step(
    hass: HomeAssistant, client: MagicMock, change: dict[str, Any], expected: Any
) -> None:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    got = await outcome(
        hass.config_entries.flow.async_configure,
        result["flow_id"],
        form(VALID_ADDRESS, change),
    )
    assert got == expected
    assert not client.called, "connection attempted"
    assert not hass.config_entries.async_entries(DOMAIN)


def configured_entry(hass: HomeAssistant) -> MockConfigEntry:
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="node",
        unique_id="02:44:58:00:00:01",
        data={
            CONF_HOST: "127.0.0.1",
            CONF_PORT: 6053,
            CONF_NOISE_PSK: KEY,
            CONF_DEVICE_NAME: "node",
        },
        options={
            CONF_DESIRED_INTERVAL: 1.0,
            CONF_WRITER_PRIORITY_DELAY: 3.0,
            CONF_STALE_AFTER: 10.0,
            CONF_KEEP_VALUES: True,
        },
    )
    entry.add_to_hass(hass)
    return entry


@dataclass(frozen=True)
class Snapshot:
    data: dict[str, Any]
    options: dict[str, Any]
    entries: int

    @classmethod
    def of(cls, hass: HomeAssistant, entry: MockConfigEntry) -> Snapshot:
        return cls(
            dict(entry.data),
            dict(entry.options),
            len(hass.config_entries.async_entries(DOMAIN)),
        )


@pytest.mark.parametrize(("change", "expected"), ADDRESS_CASES)
async def test_reconfigure_step(
    hass: HomeAssistant, client: MagicMock, change: dict[str, Any], expected: Any
) -> None:
    entry = configured_entry(hass)
    before = Snapshot.of(hass, entry)
    result = await entry.start_reconfigure_flow(hass)
    assert result["step_id"] == "reconfigure"
    got = await outcome(
        hass.config_entries.flow.async_configure,
        result["flow_id"],
        form(VALID_ADDRESS, change),
    )
    assert got == expected
    assert not client.called, "connection attempted"
    assert Snapshot.of(hass, entry) == before


KEY_CASES = [
    p({CONF_NOISE_PSK: None}, SCHEMA, id="key-none"),
    p({CONF_NOISE_PSK: 123}, SCHEMA, id="key-int"),
    p({CONF_NOISE_PSK: {"k": KEY}}, SCHEMA, id="key-dict"),
    p({CONF_NOISE_PSK: "abc"}, key_format(), id="key-short"),
    p({CONF_NOISE_PSK: "not base64 at all!"}, key_format(), id="key-not-base64"),
    p({CONF_NOISE_PSK: KEY_16_BYTES}, key_format(), id="key-16-bytes"),
    p({CONF_NOISE_PSK: LONG}, key_format(), id="key-10000-chars"),
    p({CONF_NOISE_PSK: "ключ" * 11}, key_format(), id="key-unicode"),
    p({CONF_NOISE_PSK: KEY + "\x00"}, key_format(), id="key-nul"),
    p({CONF_NOISE_PSK: "$(cat /etc/passwd)"}, key_format(), id="key-subshell"),
    p({"extra": KEY}, SCHEMA, id="unknown-field"),
]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        *KEY_CASES,
        # The node announced encryption: without a key there is nothing to try.
        p({CONF_NOISE_PSK: ""}, {CONF_NOISE_PSK: "key_required"}, id="key-empty"),
        p({CONF_NOISE_PSK: "  "}, {CONF_NOISE_PSK: "key_required"}, id="key-blank"),
        p({}, SCHEMA, id="key-missing"),
    ],
)
async def test_encryption_key_step(
    hass: HomeAssistant, client: MagicMock, change: dict[str, Any], expected: Any
) -> None:
    info = ZeroconfServiceInfo(
        ip_address=ip_address("127.0.0.1"),
        ip_addresses=[ip_address("127.0.0.1")],
        hostname="node.local.",
        name="node._esphomelib._tcp.local.",
        port=6053,
        type="_esphomelib._tcp.local.",
        properties={
            "mac": "024458000001",
            "api_encryption": "Noise_NNpsk0_25519_ChaChaPoly_SHA256",
        },
    )
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_ZEROCONF}, data=info
    )
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["step_id"] == "encryption_key"
    got = await outcome(
        hass.config_entries.flow.async_configure, result["flow_id"], form({}, change)
    )
    assert got == expected
    assert not client.called, "connection attempted"
    assert not hass.config_entries.async_entries(DOMAIN)


@pytest.mark.parametrize(("change", "expected"), KEY_CASES)
async def test_reauth_step(
    hass: HomeAssistant, client: MagicMock, change: dict[str, Any], expected: Any
) -> None:
    entry = configured_entry(hass)
    before = Snapshot.of(hass, entry)
    result = await entry.start_reauth_flow(hass)
    assert result["step_id"] == "reauth_confirm"
    got = await outcome(
        hass.config_entries.flow.async_configure, result["flow_id"], change
    )
    assert got == expected
    assert not client.called, "connection attempted"
    assert Snapshot.of(hass, entry) == before


def number_error(field: str) -> dict[str, str]:
    return {field: "invalid_number"}


VALID_OPTIONS = {
    CONF_DESIRED_INTERVAL: 2.0,
    CONF_WRITER_PRIORITY_DELAY: 5.0,
    CONF_STALE_AFTER: 30.0,
    CONF_KEEP_VALUES: False,
}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        p({CONF_DESIRED_INTERVAL: "abc"}, SCHEMA, id="cycle-text"),
        p({CONF_DESIRED_INTERVAL: None}, SCHEMA, id="cycle-none"),
        p({CONF_DESIRED_INTERVAL: [1.0]}, SCHEMA, id="cycle-list"),
        p({CONF_DESIRED_INTERVAL: "1; rm -rf /"}, SCHEMA, id="cycle-shell"),
        p({CONF_DESIRED_INTERVAL: -1}, SCHEMA, id="cycle-negative"),
        p({CONF_DESIRED_INTERVAL: 0}, SCHEMA, id="cycle-0"),
        p({CONF_DESIRED_INTERVAL: 0.01}, SCHEMA, id="cycle-below-min"),
        p({CONF_DESIRED_INTERVAL: 3601}, SCHEMA, id="cycle-above-max"),
        p({CONF_DESIRED_INTERVAL: 1e300}, SCHEMA, id="cycle-huge"),
        p({CONF_DESIRED_INTERVAL: float("inf")}, SCHEMA, id="cycle-inf"),
        p({CONF_DESIRED_INTERVAL: "-inf"}, SCHEMA, id="cycle-minus-inf-text"),
        p(
            {CONF_DESIRED_INTERVAL: float("nan")},
            number_error(CONF_DESIRED_INTERVAL),
            id="cycle-nan",
        ),
        p(
            {CONF_DESIRED_INTERVAL: "nan"},
            number_error(CONF_DESIRED_INTERVAL),
            id="cycle-nan-text",
        ),
        p({CONF_WRITER_PRIORITY_DELAY: "x"}, SCHEMA, id="priority-text"),
        p({CONF_WRITER_PRIORITY_DELAY: -0.1}, SCHEMA, id="priority-negative"),
        p({CONF_WRITER_PRIORITY_DELAY: 601}, SCHEMA, id="priority-above-max"),
        p(
            {CONF_WRITER_PRIORITY_DELAY: float("nan")},
            number_error(CONF_WRITER_PRIORITY_DELAY),
            id="priority-nan",
        ),
        p({CONF_STALE_AFTER: None}, SCHEMA, id="stale-none"),
        p({CONF_STALE_AFTER: 0}, SCHEMA, id="stale-0"),
        p({CONF_STALE_AFTER: 86401}, SCHEMA, id="stale-above-max"),
        p(
            {CONF_STALE_AFTER: float("nan")},
            number_error(CONF_STALE_AFTER),
            id="stale-nan",
        ),
        p(
            {CONF_STALE_AFTER: 2.0},
            {CONF_STALE_AFTER: "stale_after_too_short"},
            id="stale-equal-cycle",
        ),
        p({CONF_HOST: "evil.example"}, SCHEMA, id="unknown-field"),
    ],
)
async def test_options(
    hass: HomeAssistant, no_setup: AsyncMock, change: dict[str, Any], expected: Any
) -> None:
    entry = configured_entry(hass)
    before = Snapshot.of(hass, entry)
    result = await hass.config_entries.options.async_init(entry.entry_id)
    got = await outcome(
        hass.config_entries.options.async_configure,
        result["flow_id"],
        form(VALID_OPTIONS, change),
    )
    assert got == expected
    assert Snapshot.of(hass, entry) == before


# ==== actions ====


def find(hass: HomeAssistant, entry: MockConfigEntry, domain: str, suffix: str) -> str:
    return next(e for e in entity_ids(hass, entry, domain) if e.endswith(suffix))


WRITABLE = {
    "setpoint": "number",
    "led_brightness": "number",
    "relay": "switch",
    "mode": "select",
    "label": "text",
}


class Exchange:
    """One node set up in Home Assistant, and what must not change."""

    def __init__(self, hass: HomeAssistant, entry: MockConfigEntry) -> None:
        self.hass = hass
        self.entry = entry
        self.manager: NodeManager = entry.runtime_data
        self.ids = {name: find(hass, entry, d, name) for name, d in WRITABLE.items()}
        self.sent: list[dict[str, Any]] = []
        execute = self.manager.connection.async_execute

        async def spy(action: str, data: dict[str, Any]) -> None:
            if action == WRITE_ACTION:
                self.sent.append(dict(data))
            await execute(action, data)

        self.manager.connection.async_execute = spy  # type: ignore[method-assign]

    def entity(self, ref: Any) -> Any:
        """``domain:suffix`` of one of the node's entities, or a literal entity id."""
        if isinstance(ref, str) and ":" in ref and "." not in ref.split(":")[0]:
            domain, suffix = ref.split(":", 1)
            return find(self.hass, self.entry, domain, suffix)
        return ref

    def state(self) -> dict[str, Any]:
        manager = self.manager
        states = {}
        for name, entity_id in self.ids.items():
            state = self.hass.states.get(entity_id)
            states[name] = (
                state and state.state,
                manager.reported_value(name),
            )
        return {
            "desired": dict(manager.engine.desired),
            "acquisition": manager.engine.desired_acquisition,
            "points": states,
            # Desired frames the node refused.
            "refused_by_node": manager.engine.stats.refused_by_node,
            "connects": manager.connection.stats.connects,
        }

    async def frames(self, count: int = 3) -> None:
        """Wait until the node sent ``count`` more frames and Home Assistant two more
        desired frames (so writes had time to act)."""
        stats = self.manager.engine.stats
        received, sent = stats.received, len(self.sent)
        await until(
            self.hass,
            lambda: stats.received >= received + count and len(self.sent) >= sent + 2,
            30,
        )

    async def assert_unchanged(self, before: dict[str, Any]) -> None:
        await self.frames()
        assert self.state() == before
        # No desired frame carried any part of the rejected call.
        model = self.manager.engine.model
        assert model is not None
        desired = before["desired"]
        values = encode_desired_values(
            model,
            [desired[i].value if i in desired else None for i in model.writable],
        )
        assert self.sent
        assert {f["values"] for f in self.sent} == {values}


@pytest.fixture
async def exchange(hass: HomeAssistant, sim_node: Node) -> Exchange:
    return Exchange(hass, await setup_node(hass, sim_node))


def translation_error(domain: str, key: str) -> tuple[str, str]:
    return (domain, key)


def ours(key: str) -> tuple[str, str]:
    return (DOMAIN, key)


def translated(err: HomeAssistantError) -> tuple[str, str]:
    """The translation of an error; ours must render (every placeholder given)."""
    assert err.translation_domain is not None, f"untranslated: {err!r}"
    assert err.translation_key is not None, f"untranslated: {err!r}"
    if err.translation_domain == DOMAIN:
        message = ENGLISH["exceptions"][err.translation_key]["message"]
        needed = set(re.findall(r"\{(\w+)\}", message))
        assert needed <= set(err.translation_placeholders or {})
    return (err.translation_domain, err.translation_key)


async def call(
    hass: HomeAssistant, domain: str, service: str, data: dict[str, Any]
) -> Any:
    """SCHEMA, (translation domain, key), or the type of another exception."""
    try:
        await hass.services.async_call(
            domain,
            service,
            data,
            blocking=True,
            return_response=service == "export_history",
        )
    except probatio.Invalid:
        return SCHEMA
    except HomeAssistantError as err:
        return translated(err)
    except Exception as err:  # noqa: BLE001 - the outcome under test
        return type(err)
    return None


# The valid members written together with the bad one: a partial write would show.
COMPANIONS = {"number:setpoint": 22.0, "text:label": "partial"}


@pytest.mark.parametrize(
    ("member", "value", "expected"),
    [
        # numbers (setpoint 5..35 step 0.5, LED brightness 0..100 step 1)
        p("number:setpoint", True, ours("wrong_type"), id="number-bool"),
        p("number:setpoint", "22", ours("wrong_type"), id="number-text"),
        p("number:setpoint", None, ours("wrong_type"), id="number-none"),
        p("number:setpoint", [22.0], ours("wrong_type"), id="number-list"),
        p("number:setpoint", {"v": 22}, ours("wrong_type"), id="number-dict"),
        p("number:setpoint", 4.5, ours("out_of_range"), id="number-below-min"),
        p("number:setpoint", 35.5, ours("out_of_range"), id="number-above-max"),
        p("number:setpoint", -1e308, ours("out_of_range"), id="number-huge-negative"),
        p("number:setpoint", 10**400, ours("out_of_range"), id="number-huge-int"),
        p("number:setpoint", float("nan"), ours("out_of_range"), id="number-nan"),
        p("number:setpoint", float("inf"), ours("out_of_range"), id="number-inf"),
        p("number:setpoint", float("-inf"), ours("out_of_range"), id="number-minf"),
        p("number:setpoint", 21.3, ours("off_step"), id="number-off-step"),
        p("number:led_brightness", 50.5, ours("off_step"), id="number-off-step-1"),
        p("number:led_brightness", 101, ours("out_of_range"), id="number-101"),
        # switch
        p("switch:relay", "yes", ours("wrong_type"), id="switch-text"),
        p("switch:relay", "on", ours("wrong_type"), id="switch-on-text"),
        p("switch:relay", 1, ours("wrong_type"), id="switch-int"),
        p("switch:relay", None, ours("wrong_type"), id="switch-none"),
        # select
        p("select:mode", "turbo", ours("invalid_option"), id="select-unknown"),
        p("select:mode", "ECO", ours("invalid_option"), id="select-case"),
        p("select:mode", "eco,off", ours("invalid_option"), id="select-comma"),
        p("select:mode", "", ours("invalid_option"), id="select-empty"),
        p("select:mode", 1, ours("wrong_type"), id="select-int"),
        # text (0..32 bytes on the node)
        p("text:label", "x" * 33, ours("invalid_text"), id="text-33-chars"),
        p("text:label", LONG, ours("invalid_text"), id="text-10000-chars"),
        p("text:label", "ä" * 32, ours("invalid_text"), id="text-32-chars-64-bytes"),
        p("text:label", "☃" * 11, ours("invalid_text"), id="text-11-chars-33-bytes"),
        p("text:label", "a\ud800", ours("invalid_text"), id="text-lone-surrogate"),
        p("text:label", 5, ours("wrong_type"), id="text-int"),
        p("text:label", None, ours("wrong_type"), id="text-none"),
        p("text:label", ["a"], ours("wrong_type"), id="text-list"),
        # not writable points, not points, not ours
        p("sensor:temperature", 20.0, ours("read_only"), id="sensor"),
        p("binary_sensor:occupancy", True, ours("read_only"), id="binary-sensor"),
        p("sensor:status", "idle", ours("read_only"), id="text-sensor"),
        p("switch:acquisition", True, ours("unknown_point"), id="node-switch"),
        p("binary_sensor:connection", True, ours("unknown_point"), id="node-entity"),
        p("number.not_a_point", 1.0, ours("unknown_point"), id="unknown-entity"),
        p("light.kitchen", 1.0, ours("unknown_point"), id="unknown-domain"),
        p("number.x; drop table states", 1.0, ours("unknown_point"), id="id-sql"),
        p("../../etc/passwd", 1.0, ours("unknown_point"), id="id-path"),
        p("<script>alert(1)</script>", 1.0, ours("unknown_point"), id="id-html"),
        p("", 1.0, ours("unknown_point"), id="id-empty"),
        p("number." + LONG, 1.0, ours("unknown_point"), id="id-10000-chars"),
        p(5, 1.0, ours("unknown_point"), id="id-int"),
        p("sensor.foreign_temperature", 1.0, ours("unknown_point"), id="foreign"),
    ],
)
async def test_write_member(
    hass: HomeAssistant, exchange: Exchange, member: Any, value: Any, expected: Any
) -> None:
    er.async_get(hass).async_get_or_create(
        "sensor", "other_integration", "t1", suggested_object_id="foreign_temperature"
    )
    values = {exchange.entity(k): v for k, v in COMPANIONS.items()}
    values[exchange.entity(member)] = value
    before = exchange.state()
    assert await call(hass, DOMAIN, "write", {"values": values}) == expected
    await exchange.assert_unchanged(before)


@pytest.mark.parametrize(
    "data",
    [
        p({}, id="values-missing"),
        p({"values": None}, id="values-none"),
        p({"values": {}}, id="values-empty"),
        p({"values": []}, id="values-list"),
        p({"values": "number.setpoint=22"}, id="values-text"),
        p({"values": 22}, id="values-number"),
        p({"values": {"number.x": 1}, "path": "../../etc/passwd"}, id="extra-field"),
    ],
)
async def test_write_schema(
    hass: HomeAssistant, exchange: Exchange, data: dict[str, Any]
) -> None:
    before = exchange.state()
    assert await call(hass, DOMAIN, "write", data) == SCHEMA
    await exchange.assert_unchanged(before)


async def test_write_to_unloaded_node(hass: HomeAssistant, exchange: Exchange) -> None:
    label = exchange.ids["label"]
    engine = exchange.manager.engine
    assert await hass.config_entries.async_unload(exchange.entry.entry_id)
    desired = dict(engine.desired)
    assert await call(hass, DOMAIN, "write", {"values": {label: "x"}}) == ours(
        "node_not_loaded"
    )
    assert engine.desired == desired


# Texts that look like an attack on the wire format or on something downstream: all valid
# (at most 32 bytes), so each must arrive at the node exactly as written, in one field.
INJECTION_TEXTS = [
    p("a,b", id="comma"),
    p(",,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,", id="32-commas"),
    p("100%", id="percent"),
    p("%2C%25%", id="escape-lookalike"),
    p("'", id="quote"),
    p('it\'s "quoted"', id="quotes"),
    p("line1\nline2\r", id="newline"),
    p("tab\there", id="tab"),
    p("nul\x00byte", id="nul"),
    p("del\x7f", id="del"),
    p("<script>x</script>", id="html"),
    p("'; DROP TABLE states;--", id="sql"),
    p("$(reboot)`id`", id="shell"),
    p("Grüße ☃", id="unicode"),
    p("ä" * 16, id="32-bytes-unicode"),
    p("", id="empty"),
]


@pytest.mark.parametrize("text", INJECTION_TEXTS)
@pytest.mark.parametrize("how", ["write", "text.set_value"])
async def test_injection_like_text_arrives_exactly(
    hass: HomeAssistant, exchange: Exchange, text: str, how: str
) -> None:
    label = exchange.ids["label"]
    setpoint = exchange.manager.reported_value("setpoint")
    if how == "write":
        await hass.services.async_call(
            DOMAIN, "write", {"values": {label: text}}, blocking=True
        )
    else:
        await hass.services.async_call(
            "text", "set_value", {"entity_id": label, "value": text}, blocking=True
        )
    manager = exchange.manager
    await until(hass, lambda: manager.reported_value("label") == text, 30)
    await until(hass, lambda: hass.states.get(label).state == text, 30)
    await exchange.frames()
    assert manager.reported_value("label") == text
    assert manager.reported_value("setpoint") == setpoint
    assert manager.engine.stats.refused_by_node == 0


@pytest.mark.parametrize(
    ("service", "member", "data", "expected"),
    [
        p("number.set_value", "setpoint", {"value": "abc"}, SCHEMA, id="number-text"),
        p("number.set_value", "setpoint", {"value": None}, SCHEMA, id="number-none"),
        p("number.set_value", "setpoint", {"value": [1]}, SCHEMA, id="number-list"),
        p(
            "number.set_value",
            "setpoint",
            {"value": 4},
            translation_error("number", "out_of_range"),
            id="number-below-min",
        ),
        p(
            "number.set_value",
            "setpoint",
            {"value": 36},
            translation_error("number", "out_of_range"),
            id="number-above-max",
        ),
        p(
            "number.set_value",
            "setpoint",
            {"value": "inf"},
            translation_error("number", "out_of_range"),
            id="number-inf",
        ),
        p(
            "number.set_value",
            "setpoint",
            {"value": float("nan")},
            ours("out_of_range"),
            id="number-nan",
        ),
        p(
            "number.set_value",
            "setpoint",
            {"value": "nan"},
            ours("out_of_range"),
            id="number-nan-text",
        ),
        p(
            "number.set_value",
            "setpoint",
            {"value": 21.3},
            ours("off_step"),
            id="number-off-step",
        ),
        p(
            "number.set_value",
            "led_brightness",
            {"value": 50.5},
            ours("off_step"),
            id="number-off-step-1",
        ),
        p(
            "select.select_option",
            "mode",
            {"option": "turbo"},
            translation_error("select", "not_valid_option"),
            id="select-unknown",
        ),
        p(
            "select.select_option",
            "mode",
            {"option": "eco; rm -rf /"},
            translation_error("select", "not_valid_option"),
            id="select-shell",
        ),
        p("select.select_option", "mode", {"option": None}, SCHEMA, id="select-none"),
        p("select.select_option", "mode", {}, SCHEMA, id="select-missing"),
        # Home Assistant's text action checks the length in characters, with an
        # untranslated ValueError (its own code); the node counts bytes.
        p("text.set_value", "label", {"value": "x" * 33}, ValueError, id="text-33"),
        p("text.set_value", "label", {"value": LONG}, ValueError, id="text-10000"),
        p(
            "text.set_value",
            "label",
            {"value": "ä" * 32},
            ours("invalid_text"),
            id="text-32-chars-64-bytes",
        ),
        p("text.set_value", "label", {"value": None}, SCHEMA, id="text-none"),
        p("text.set_value", "label", {"value": ["a"]}, SCHEMA, id="text-list"),
        p("switch.turn_on", "relay", {"value": 1}, SCHEMA, id="switch-extra-field"),
        p("switch.toggle", "relay", {"state": "on"}, SCHEMA, id="toggle-extra-field"),
    ],
)
async def test_entity_action(
    hass: HomeAssistant,
    exchange: Exchange,
    service: str,
    member: str,
    data: dict[str, Any],
    expected: Any,
) -> None:
    domain, name = service.split(".")
    before = exchange.state()
    got = await call(hass, domain, name, {"entity_id": exchange.ids[member], **data})
    assert got == expected
    await exchange.assert_unchanged(before)


@pytest.fixture
def config_dir(hass: HomeAssistant, tmp_path: Path) -> Path:
    hass.config.config_dir = str(tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        p({"entity_id": None}, SCHEMA, id="entity-none"),
        p({"entity_id": 5}, SCHEMA, id="entity-int"),
        p({"entity_id": {"a": 1}}, SCHEMA, id="entity-dict"),
        p({"entity_id": [5]}, SCHEMA, id="entity-list-of-int"),
        p({"entity_id": [None]}, SCHEMA, id="entity-list-of-none"),
        p({"entity_id": ""}, SCHEMA, id="entity-empty"),
        p({"entity_id": "../../etc/passwd"}, SCHEMA, id="entity-path"),
        p({"entity_id": "sensor.x; rm -rf /"}, SCHEMA, id="entity-shell"),
        p({"entity_id": "sensor.nope"}, ours("unknown_point"), id="entity-unknown"),
        p(
            {"entity_id": "sensor.foreign_temperature"},
            ours("unknown_point"),
            id="entity-foreign",
        ),
        p(
            {"entity_id": ["text:label", "sensor.nope"]},
            ours("unknown_point"),
            id="entity-one-unknown",
        ),
        p({"entity_id": "switch:acquisition"}, ours("unknown_point"), id="node-switch"),
        p({"start": "yesterday"}, SCHEMA, id="start-text"),
        p({"start": None}, SCHEMA, id="start-none"),
        p({"start": 5}, SCHEMA, id="start-int"),
        p({"start": "2026-13-01T00:00:00"}, SCHEMA, id="start-month-13"),
        p({"start": "2026-01-01T00:00:00+99:00"}, SCHEMA, id="start-bad-offset"),
        p({"start": "../../etc/passwd"}, SCHEMA, id="start-path"),
        p({"start": "9999-12-31T00:00:00"}, ours("bad_range"), id="start-future"),
        p({"end": "<script>"}, SCHEMA, id="end-html"),
        p({"end": "2025-12-31T00:00:00"}, ours("bad_range"), id="end-before-start"),
        p({"end": "2026-01-01T00:00:00"}, ours("bad_range"), id="end-equals-start"),
        p({"path": "../../etc/passwd"}, SCHEMA, id="path-argument"),
        p({"filename": "/etc/passwd"}, SCHEMA, id="filename-argument"),
        p({"start": ...}, SCHEMA, id="start-missing"),
        p({"entity_id": ...}, SCHEMA, id="entity-missing"),
    ],
)
async def test_export_history(
    hass: HomeAssistant,
    exchange: Exchange,
    config_dir: Path,
    data: dict[str, Any],
    expected: Any,
) -> None:
    er.async_get(hass).async_get_or_create(
        "sensor", "other_integration", "t1", suggested_object_id="foreign_temperature"
    )
    args = form({"entity_id": "text:label", "start": "2026-01-01T00:00:00"}, data)
    entities = args.get("entity_id")
    if isinstance(entities, str):
        args["entity_id"] = exchange.entity(entities)
    elif isinstance(entities, list):
        args["entity_id"] = [exchange.entity(e) for e in entities]
    before = exchange.state()
    assert await call(hass, DOMAIN, "export_history", args) == expected
    exports = await hass.async_add_executor_job(lambda: [*config_dir.rglob("*.csv")])
    assert exports == []
    await exchange.assert_unchanged(before)


@pytest.mark.parametrize(
    ("device", "expected"),
    [
        p(None, SCHEMA, id="none"),
        p(["x"], SCHEMA, id="list"),
        p({"id": "x"}, SCHEMA, id="dict"),
        p(..., SCHEMA, id="missing"),
        p("nope", ours("unknown_node"), id="unknown"),
        p("", ours("unknown_node"), id="empty"),
        p(5, ours("unknown_node"), id="int"),
        p("../../etc/passwd", ours("unknown_node"), id="path"),
        p("'; DROP TABLE devices;--", ours("unknown_node"), id="sql"),
        p(LONG, ours("unknown_node"), id="10000-chars"),
        p("foreign", ours("unknown_node"), id="device-of-other-integration"),
    ],
)
async def test_resync(
    hass: HomeAssistant, exchange: Exchange, device: Any, expected: Any
) -> None:
    if device == "foreign":
        other = MockConfigEntry(domain="other_integration")
        other.add_to_hass(hass)
        device = (
            dr.async_get(hass)
            .async_get_or_create(
                config_entry_id=other.entry_id, identifiers={("other", "x")}
            )
            .id
        )
    before = exchange.state()
    data = {} if device is ... else {"device_id": device}
    assert await call(hass, DOMAIN, "resync", data) == expected
    await exchange.assert_unchanged(before)
