"""Node-supplied text is shown literally wherever Home Assistant renders markdown.

A real node whose friendly name and point name carry markdown links, an image and HTML; the
repair issues that name them (no encryption, a refused desired value) must carry them
escaped, so the Repairs panel shows the text and renders no link, image or tag.
"""

from __future__ import annotations

import re
from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.template import Template
import pytest
import yaml

from custom_components.data_exchange import (
    desired as desired_module,
    points as points_module,
)
from custom_components.data_exchange.const import DOMAIN
from custom_components.data_exchange.plain import plain
from tests.conftest import NODES, REPO
from tests.harness.node import Node, NodeFactory
from tests.integration.conftest import entity_ids, setup_node, until

# What would render as a link, an image or an HTML tag.
ACTIVE = re.compile(r"(?<!\\)\[[^\]]*(?<!\\)\]\(|<[a-zA-Z/!]")


def test_plain_escapes_markdown_and_html() -> None:
    for text in (
        "[x](http://e)",
        "![i](http://e/x.png)",
        "<script>alert(1)</script>",
        "a\nb\x00c",
        "**b** _i_ `c` # h",
        "x" * 500,
    ):
        shown = plain(text)
        assert not ACTIVE.search(shown)
        assert "\n" not in shown
        assert "\x00" not in shown
        assert len(shown) < 2 * 200 + 10
    assert plain("Living room 21.5") == r"Living room 21\.5"


@pytest.fixture
def markup_node(node_factory: NodeFactory) -> Node:
    return node_factory.start(NODES / "markup.yaml")


async def test_node_texts_are_escaped_in_repair_issues(
    hass: HomeAssistant, markup_node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Home Assistant's value rule made to drift (accept anything), so the real node refuses
    # a value and a repair issue names its point.
    monkeypatch.setattr(points_module, "refusal", lambda limits, value: None)
    monkeypatch.setattr(desired_module, "refusal", lambda limits, value: None)
    entry = await setup_node(hass, markup_node)
    issues = ir.async_get(hass)
    no_key = issues.async_get_issue(DOMAIN, f"no_encryption_{entry.entry_id}")
    assert no_key is not None
    name = no_key.translation_placeholders["name"]
    assert "Click me" in name  # the text is there ...
    assert not ACTIVE.search(name)  # ... but nothing in it is active
    number = next(iter(entity_ids(hass, entry, "number")))
    await hass.services.async_call(
        "number", "set_value", {"entity_id": number, "value": 2.5}, blocking=True
    )
    await until(
        hass,
        lambda: issues.async_get_issue(DOMAIN, f"refused_{entry.entry_id}") is not None,
        what="refusal issue",
    )
    refused = issues.async_get_issue(DOMAIN, f"refused_{entry.entry_id}")
    assert refused is not None
    for value in refused.translation_placeholders.values():
        assert not ACTIVE.search(value), value
    assert "javascript" in refused.translation_placeholders["point"]


def _waiting_card_template() -> str:
    """The content template of the dashboard's "Waiting for the node" markdown card."""
    dashboard = yaml.safe_load(
        (REPO / "config" / "dashboards" / "data_exchange.yaml").read_text()
    )

    def cards(node: Any) -> Any:
        if isinstance(node, dict):
            if node.get("type") == "markdown" and node.get("title") == (
                "Waiting for the node"
            ):
                yield node
            for value in node.values():
                yield from cards(value)
        elif isinstance(node, list):
            for value in node:
                yield from cards(value)

    (card,) = list(cards(dashboard))
    return str(card["content"])


async def test_node_texts_are_escaped_in_the_dashboards_markdown(
    hass: HomeAssistant, markup_node: Node
) -> None:
    """The dashboard lists writes waiting for the node in a markdown card: the node's point
    name (and its values and unit) must show literally, not as a link, image or tag."""
    entry = await setup_node(hass, markup_node)
    (level,) = entity_ids(hass, entry, "number")
    manager = entry.runtime_data
    markup_node.kill()
    await until(hass, lambda: not manager.connected)
    await hass.services.async_call(
        "number", "set_value", {"entity_id": level, "value": 5}, blocking=True
    )
    await until(hass, lambda: hass.states.get(level).attributes["pending_value"] == 5)
    rendered = Template(_waiting_card_template(), hass).async_render(parse_result=False)
    assert "img" in rendered  # the point's row is there, with its name ...
    assert "link" in rendered
    assert not ACTIVE.search(rendered), rendered  # ... shown literally
    assert "\\[link\\]" in rendered
    assert "**5\\.0" in rendered  # the desired value, bold (ours), its text escaped
