"""The Data Exchange dashboard in a real browser, against Home Assistant and a real node.

Home Assistant runs as its own process, started as scripts/develop starts it, on a copy of
config/ (the dashboard included) with the simulated node (esphome/sim-node.yaml, same MAC
as scripts/develop's, so the dashboard's entity IDs are right). Debian's Chromium, driven
by Playwright, does what a user does:

1. onboarding (all its steps, over HTTP as its pages send them), then the login page;
2. the dashboard: every point of the node is shown under its own name, with a value, and
   no text on the page is cut (ellipsis);
3. the relay is toggled and the setpoint moved through the page: the node has both;
4. the node is killed: every value is marked stale, and a setpoint written now shows as
   pending (what, by whom) in its tile and in "Waiting for the node";
5. the node is back: the pending marker goes, the node has the value;
6. Home Assistant's log has no error from the first start on (a fresh start is clean).

Screenshots (light and dark theme, live and stale) are kept; the run's summary prints where.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
import contextlib
from dataclasses import dataclass
import os
from pathlib import Path
import re
import shutil
from typing import Any

from playwright.async_api import (
    Browser,
    Locator,
    Page,
    ViewportSize,
    async_playwright,
    expect,
)
import pytest

from tests.harness.develop import SIM_MAC, SIM_NODE
from tests.harness.ha_process import (
    HassProcess,
    hass_for_node,
    known_upstream,
    problems,
)
from tests.harness.node import Node, NodeBuild
from tests.harness.peer import Peer

USER, PASSWORD = "test", "test-password"  # what HassClient.onboard creates
DASHBOARD = "data-exchange/nodes"
VIEWPORT: ViewportSize = {"width": 1280, "height": 900}
# Waits for the page (Playwright's own, on the DOM; no sleeps).
UI_TIMEOUT = 20_000  # ms
SETPOINT_START = 21.0  # the firmware's initial value; step 0.5
UNUSABLE = ("Unavailable", "Unknown", "")

# Every tile shown, with its name and state line, and every element whose text the page
# cuts with an ellipsis (its content is wider than its box). Walks open shadow roots.
PAGE_FACTS = r"""
() => {
  const tiles = [], cut = [];
  const shown = (el) => {
    const box = el.getBoundingClientRect();
    return box.width > 0 && box.height > 0 && el.checkVisibility();
  };
  const visit = (root) => {
    for (const el of root.querySelectorAll('*')) {
      if (el.shadowRoot) visit(el.shadowRoot);
      if (el.tagName === 'HUI-TILE-CARD' && el.shadowRoot && shown(el)) {
        const text = (sel) => (el.shadowRoot.querySelector(sel)?.textContent || '')
          .replace(/\s+/g, ' ').trim();
        tiles.push({name: text('[slot=primary]'), state: text('[slot=secondary]')});
      }
      if (getComputedStyle(el).textOverflow === 'ellipsis' && shown(el)
          && el.scrollWidth > el.clientWidth + 1) {
        cut.push((el.textContent || '').replace(/\s+/g, ' ').trim());
      }
    }
  };
  visit(document);
  return {tiles, cut};
}
"""


@dataclass
class Facts:
    tiles: dict[str, str]  # name -> state line, of the tiles shown
    cut: list[str]


def chromium() -> str:
    """Debian's Chromium (scripts/setup installs it); never a downloaded browser."""
    found = os.environ.get("DX_CHROMIUM") or shutil.which("chromium")
    if not found:
        pytest.fail("Debian's chromium is not installed: run scripts/setup")
    return found


@pytest.fixture(scope="module")
def sim_build() -> NodeBuild:
    """The node scripts/develop runs (the same build)."""
    return NodeBuild.compile(SIM_NODE)


@pytest.fixture
def node(sim_build: NodeBuild, socket_enabled: None) -> Iterator[Node]:
    started = Node(sim_build, mac=SIM_MAC)
    try:
        yield started.start()
    finally:
        started.cleanup()


@pytest.fixture
async def hass_process(
    tmp_path: Path, node: Node, socket_enabled: None
) -> AsyncIterator[HassProcess]:
    """Home Assistant on a fresh copy of config/ with ``node`` as its entry (started)."""
    async with hass_for_node(tmp_path / "config", node, onboarding_port=True) as hass:
        await hass.start()
        yield hass


@pytest.fixture
async def browser(socket_enabled: None) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium(),
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        try:
            yield launched
        finally:
            await launched.close()


async def facts(page: Page) -> Facts:
    found: dict[str, Any] = await page.evaluate(PAGE_FACTS)
    tiles: dict[str, str] = {}
    for tile in found["tiles"]:
        assert tile["name"] not in tiles, f"two tiles named {tile['name']!r} shown"
        tiles[tile["name"]] = tile["state"]
    return Facts(tiles=tiles, cut=found["cut"])


def tile(page: Page, name: str) -> Locator:
    """The tile shown with exactly this name."""
    exact = re.compile(rf"^\s*{re.escape(name)}\s*$")
    return (
        page.locator("hui-tile-card")
        .filter(visible=True)
        .filter(has=page.locator("[slot=primary]").filter(has_text=exact))
    )


# The page has settled in a theme: the page and every card have the background of the
# theme asked for (dark: dark), and no transition (the theme's colours fading in) or other
# finite animation runs.
SETTLED = r"""
(dark) => {
  const darkness = (el) => {
    const m = getComputedStyle(el).backgroundColor.match(/[\d.]+/g);
    if (!m || (m.length === 4 && Number(m[3]) === 0)) return null;  // transparent
    return (Number(m[0]) + Number(m[1]) + Number(m[2])) / 765 < 0.5;
  };
  if (darkness(document.documentElement) !== dark) return false;
  const cards = [];
  const visit = (root) => {
    for (const el of root.querySelectorAll('*')) {
      if (el.shadowRoot) visit(el.shadowRoot);
      if (el.tagName === 'HA-CARD') cards.push(el);
    }
  };
  visit(document);
  const running = document.getAnimations().filter(
    (a) => a.playState === 'running' && a.effect?.getTiming().iterations !== Infinity);
  return running.length === 0 && cards.every((c) => [null, dark].includes(darkness(c)));
}
"""


async def shot(page: Page, artifacts: Path, name: str) -> None:
    """Screenshots in the light and the dark theme (Home Assistant follows the system's)."""
    for scheme in ("light", "dark"):
        await page.emulate_media(color_scheme=scheme)
        await page.wait_for_function(SETTLED, arg=scheme == "dark", polling=100)
        await page.screenshot(path=artifacts / f"{name}-{scheme}.png", full_page=True)
    await page.emulate_media(color_scheme="light")
    await page.wait_for_function(SETTLED, arg=False, polling=100)


async def node_state(node: Node, object_id: str, want: Any) -> Any:
    """The node's own state of ``object_id`` once it is ``want`` (10 s), read by a plain
    API client; the last value seen if it never is (for the assertion)."""
    async with Peer(node, "browser test", states=True) as peer:
        with contextlib.suppress(TimeoutError):
            await peer.until(lambda: peer.states.get(object_id) == want)
        return peer.states.get(object_id)


async def point_names(node: Node) -> set[str]:
    """The names the node gives its points (every entity of the sim node is a point)."""
    async with Peer(node, "browser test") as peer:
        return {e.name for e in peer.entities.values()}


async def test_dashboard_in_chromium(
    hass_process: HassProcess, node: Node, browser: Browser, artifacts: Path
) -> None:
    hass = hass_process
    await hass.onboard()
    await hass.finish_onboarding()
    names = await point_names(node)
    assert {"Temperature", "Setpoint", "Relay"} <= names, names

    page = await browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(UI_TIMEOUT)
    expect.set_options(timeout=UI_TIMEOUT)
    # Like a user: the dashboard's address, Home Assistant's login page, back.
    await page.goto(f"{hass.base}/{DASHBOARD}")
    await page.locator("input[name='username']").fill(USER)
    await page.locator("input[name='password']").fill(PASSWORD)
    await page.keyboard.press("Enter")
    await page.wait_for_url(f"**/{DASHBOARD}")

    # Live: one tile per point, under the point's own name, with a value; nothing cut.
    for name in names:
        await expect(tile(page, name)).to_have_count(1)
    await expect(tile(page, "Setpoint")).to_contain_text("21.0 °C")
    live = await facts(page)
    assert names <= live.tiles.keys(), live.tiles
    empty = {n: s for n, s in live.tiles.items() if n in names and s in UNUSABLE}
    assert not empty, f"points without a value: {empty}"
    assert not live.cut, f"cut texts: {live.cut}"
    await shot(page, artifacts, "live")

    # The relay and the setpoint, through the page; the node gets them.
    await tile(page, "Relay").locator("ha-control-switch").click()
    assert await node_state(node, "relay", want=True) is True
    await tile(page, "Setpoint").locator("button[aria-label=increment]").click()
    moved = SETPOINT_START + 0.5
    assert await node_state(node, "setpoint", want=moved) == moved
    await expect(tile(page, "Setpoint")).to_contain_text(f"{moved:.1f} °C")

    # The node is gone: every value is marked stale (with when the node reported it).
    node.kill()
    for name in names:
        await expect(tile(page, f"{name} · stale")).to_have_count(1)
    stale = await facts(page)
    assert not {n for n in names if n in stale.tiles}, "a value still shown as live"
    assert not stale.cut, f"cut texts: {stale.cut}"

    # A setpoint written now waits for the node: shown as pending, with who wrote it.
    await tile(page, "Setpoint · stale").locator("button[aria-label=increment]").click()
    waiting = moved + 0.5
    pending = tile(page, "Setpoint · pending")
    await expect(pending).to_have_count(1)
    # The desired value, who wrote it, when; the control still shows what the node has.
    await expect(pending.locator("[slot=secondary]")).to_contain_text(
        f"{waiting:g} · user:Test · "
    )
    await expect(pending.get_by_role("spinbutton")).to_contain_text(f"{moved:g}")
    card = page.locator("hui-markdown-card").filter(visible=True)
    await expect(card).to_contain_text("Waiting for the node")
    await expect(card).to_contain_text(f"{waiting} °C")
    await expect(card).to_contain_text("Test (user)")
    attributes = (await hass.states())["number.simulated_node_000001_setpoint"][
        "attributes"
    ]
    assert attributes["pending_value"] == waiting, attributes
    assert str(attributes["pending_changed_by"]).startswith("user:"), attributes
    assert attributes["pending_since"], attributes
    assert not (await facts(page)).cut
    await shot(page, artifacts, "stale")

    # Back: the node gets the value; nothing is pending or stale any more.
    node.start()
    await expect(tile(page, "Setpoint")).to_contain_text(f"{waiting:.1f} °C")
    await expect(pending).to_have_count(0)
    await expect(card).to_have_count(0)
    assert await node_state(node, "setpoint", want=waiting) == waiting
    back = await facts(page)
    assert names <= back.tiles.keys(), back.tiles
    await shot(page, artifacts, "back")

    # A clean start: no error, traceback or interrupt in Home Assistant's log.
    log = (hass.config_dir / "home-assistant.log").read_text(errors="replace")
    assert not (found := problems(known_upstream(log))), "\n".join(found)
