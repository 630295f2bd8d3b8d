"""The integration package and the repository metadata HACS and hassfest read."""

from __future__ import annotations

import ast
import importlib
import json
from pathlib import Path
from typing import Any

from tests.harness.node import REPO

INTEGRATION = REPO / "custom_components" / "data_exchange"


def test_package_imports() -> None:
    module = importlib.import_module("custom_components.data_exchange")
    assert module.DOMAIN == "data_exchange"


def test_manifest_has_required_keys() -> None:
    manifest = json.loads((INTEGRATION / "manifest.json").read_text())
    for key in (
        "domain",
        "name",
        "version",
        "documentation",
        "issue_tracker",
        "codeowners",
        "iot_class",
        "integration_type",
        "config_flow",
        "requirements",
        "loggers",
    ):
        assert key in manifest, key
    assert manifest["domain"] == INTEGRATION.name
    assert manifest["iot_class"] == "local_push"
    assert manifest["integration_type"] == "device"
    assert manifest["config_flow"] is True
    # hassfest: domain and name first, the rest sorted.
    keys = list(manifest)
    assert keys[:2] == ["domain", "name"]
    assert keys[2:] == sorted(keys[2:])
    # A lower bound only, so Home Assistant's own esphome integration keeps its pinned copy.
    (req,) = [r for r in manifest["requirements"] if r.startswith("aioesphomeapi")]
    assert req.startswith("aioesphomeapi>=")


def test_manifest_requirement_satisfied_by_core_esphome_pin() -> None:
    from homeassistant import components

    core = json.loads(
        (
            REPO.__class__(components.__path__[0]) / "esphome" / "manifest.json"
        ).read_text()
    )
    (core_req,) = [r for r in core["requirements"] if r.startswith("aioesphomeapi==")]
    core_version = tuple(int(p) for p in core_req.split("==")[1].split("."))
    manifest = json.loads((INTEGRATION / "manifest.json").read_text())
    (req,) = [r for r in manifest["requirements"] if r.startswith("aioesphomeapi")]
    lower = tuple(int(p) for p in req.split(">=")[1].split("."))
    assert lower <= core_version


def test_hacs_json() -> None:
    hacs = json.loads((REPO / "hacs.json").read_text())
    assert set(hacs) <= {
        "name",
        "homeassistant",
        "content_in_root",
        "filename",
        "hide_default_branch",
        "country",
        "zip_release",
        "persistent_directory",
        "hacs",
    }
    assert hacs["name"]
    assert hacs["homeassistant"] == "2026.10.0"


def _keys(data: dict, prefix: str = "") -> set[str]:
    out = set()
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else key
        out |= _keys(value, path) if isinstance(value, dict) else {path}
    return out


def _placeholders(text: str) -> set[str]:
    import re

    return set(re.findall(r"\{(\w+)\}", text))


def _same_placeholders(lang: str, english: dict, other: dict) -> None:
    for key, value in english.items():
        if isinstance(value, dict):
            _same_placeholders(lang, value, other[key])
        else:
            assert _placeholders(other[key]) == _placeholders(value), (lang, key)


def test_translations_complete() -> None:
    folder = INTEGRATION / "translations"
    english = json.loads((folder / "en.json").read_text())
    for lang in ("de", "fr", "ru"):
        other = json.loads((folder / f"{lang}.json").read_text(encoding="utf-8"))
        assert _keys(other) == _keys(english), lang
        _same_placeholders(lang, english, other)


def test_config_flow_errors_are_translated() -> None:
    import re

    source = (INTEGRATION / "config_flow.py").read_text()
    english = json.loads((INTEGRATION / "translations" / "en.json").read_text())
    for error in set(
        re.findall(
            r'"(invalid_\w+|key_required|node_without_encryption|cannot_connect|stale_after_too_short)"',
            source,
        )
    ):
        assert (
            error in english["config"]["error"] or error in english["options"]["error"]
        ), error
    for reason in set(re.findall(r'reason="(\w+)"', source)):
        assert reason in english["config"]["abort"], reason


# --- hassfest's dependency rule -------------------------------------------------------
# hassfest is not on a package registry; this is its rule "every integration an import
# names must be in dependencies or after_dependencies" (script/hassfest/dependencies.py of
# home-assistant/core, as the hassfest action runs it on one integration path), rewritten
# with ast. What it counts and what it lets through:
# - `from homeassistant.components.X[.y] import ...`, `from homeassistant.components
#   import X, Z`, `import homeassistant.components.X[.y]`: anywhere (module level, inside
#   functions, classes, try blocks);
# - except inside `if TYPE_CHECKING:` (hassfest skips such a block, only when the test is
#   the bare name TYPE_CHECKING; `if typing.TYPE_CHECKING:` counts);
# - except `from homeassistant.components.http.auth import async_sign_path` as the only
#   name of its statement;
# - allowed: the integration itself, its dependencies and after_dependencies, every entity
#   platform (homeassistant.const.Platform), the internal integrations below, the discovery
#   integration whose key the manifest has (zeroconf, dhcp, ssdp, mqtt; homekit counts as
#   zeroconf), bluetooth when bluetooth_adapters is allowed, and X when the integration has
#   its own X.py or X/ (a platform of X). hassfest's IGNORE_VIOLATIONS pairs all start
#   with a core integration's domain, so none applies to ours.
HASSFEST_INTERNAL = {
    "alert",
    "automation",
    "conversation",
    "default_config",
    "device_automation",
    "frontend",
    "group",
    "homeassistant",
    "input_boolean",
    "input_button",
    "input_datetime",
    "input_number",
    "input_select",
    "input_text",
    "media_source",
    "onboarding",
    "panel_custom",
    "persistent_notification",
    "person",
    "script",
    "shopping_list",
    "sun",
    "system_health",
    "system_log",
    "timer",
    "webhook",
    "websocket_api",
    "zone",
    "mjpeg",
    "stream",
}
COMPONENTS = "homeassistant.components"


def _named_components(tree: ast.AST, *, type_checking_counts: bool) -> set[str]:
    """The integrations a module's imports name, as hassfest collects them."""
    found: set[str] = set()

    def walk(node: ast.AST) -> None:
        if (
            isinstance(node, ast.If)
            and not type_checking_counts
            and isinstance(node.test, ast.Name)
            and node.test.id == "TYPE_CHECKING"
        ):
            return  # the whole block, its else branch included, as hassfest does
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [alias.name for alias in node.names]
            if node.module == f"{COMPONENTS}.http.auth" and names == [
                "async_sign_path"
            ]:
                pass
            elif node.module.startswith(f"{COMPONENTS}."):
                found.add(node.module.split(".")[2])
            elif node.module == COMPONENTS:
                found.update(names)
        elif isinstance(node, ast.Import):
            found.update(
                alias.name.split(".")[2]
                for alias in node.names
                if alias.name.startswith(f"{COMPONENTS}.")
            )
        for child in ast.iter_child_nodes(node):
            walk(child)

    walk(tree)
    return found


def dependency_errors(
    folder: Path, manifest: dict[str, Any], *, type_checking_counts: bool = False
) -> list[str]:
    """hassfest's errors for this rule, in its words and order (sorted by domain)."""
    from homeassistant.const import Platform
    from homeassistant.requirements import DISCOVERY_INTEGRATIONS

    domain = manifest["domain"]
    allowed = (
        {p.value for p in Platform}
        | HASSFEST_INTERNAL
        | set(manifest.get("dependencies", []))
        | set(manifest.get("after_dependencies", []))
    )
    if "bluetooth_adapters" in allowed:
        allowed.add("bluetooth")
    allowed |= {
        discovery
        for discovery, keys in DISCOVERY_INTEGRATIONS.items()
        if any(key in manifest for key in keys)
    }
    bad: set[str] = set()
    for path in folder.glob("**/*.py"):
        if not path.is_file():
            continue
        relative = path.relative_to(folder)
        # climate.py and climate/__init__.py both stand for "climate"
        stem = relative.stem if len(relative.parts) == 1 else relative.parts[0]
        # Only this integration is loaded, so only a file named like it is "a platform
        # of another integration".
        platform_of_other = stem == domain
        tree = ast.parse(path.read_text())
        for ref in _named_components(tree, type_checking_counts=type_checking_counts):
            if ref == domain or ref in allowed:
                continue
            if platform_of_other and stem == ref:
                continue
            if not platform_of_other and (
                (folder / f"{ref}.py").is_file() or (folder / ref).is_dir()
            ):
                continue
            bad.add(ref)
    return [
        f"Using component {ref} but it's not in 'dependencies' or 'after_dependencies'"
        for ref in sorted(bad)
    ]


def _manifest() -> dict[str, Any]:
    return json.loads((INTEGRATION / "manifest.json").read_text())


def test_hassfest_dependency_rule() -> None:
    manifest = _manifest()
    assert dependency_errors(INTEGRATION, manifest) == []
    # Stricter than hassfest: no undeclared integration even under TYPE_CHECKING.
    assert dependency_errors(INTEGRATION, manifest, type_checking_counts=True) == []
    # What hassfest checks when it runs over all of core: no integration in both lists.
    assert not set(manifest.get("dependencies", [])) & set(
        manifest.get("after_dependencies", [])
    )


def test_hassfest_dependency_rule_fails_on_the_old_manifest() -> None:
    """Issue 14: hassfest reported the recorder; the download view now needs http."""
    old = _manifest()
    old.pop("dependencies", None)
    old["after_dependencies"] = ["zeroconf"]  # as it was before issue 14
    assert dependency_errors(INTEGRATION, old) == [
        "Using component http but it's not in 'dependencies' or 'after_dependencies'",
        "Using component recorder but it's not in 'dependencies' or 'after_dependencies'",
    ]


def test_hassfest_dependency_rule_cases(tmp_path: Path) -> None:
    """The rule's reach and its exceptions, on an integration made for the test."""
    (tmp_path / "diagnostics.py").write_text(
        "from homeassistant.components.diagnostics import async_redact_data\n"
    )
    (tmp_path / "energy").mkdir()  # a platform folder: energy/__init__.py
    (tmp_path / "energy" / "__init__.py").write_text("")
    (tmp_path / "__init__.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "import typing\n"
        "from homeassistant.components.http.auth import async_sign_path\n"
        "from homeassistant.components.sensor import SensorEntity\n"
        "from homeassistant.components import sun, mqtt\n"
        "from homeassistant.components.zeroconf import async_get_instance\n"
        "from homeassistant.components.demo_x import thing\n"
        "from homeassistant.components.energy import data\n"
        "import homeassistant.components.hue.bridge as hue\n"
        "from .diagnostics import async_redact_data\n"
        "if TYPE_CHECKING:\n"
        "    from homeassistant.components.cloud import Cloud\n"
        "else:\n"
        "    from homeassistant.components.lovelace import x\n"
        "if typing.TYPE_CHECKING:\n"
        "    from homeassistant.components.backup import BackupAgent\n"
        "def later():\n"
        "    from homeassistant.components.recorder import get_instance\n"
        "    from homeassistant.components.http.auth import async_sign_path, y\n"
        "class A:\n"
        "    def m(self):\n"
        "        import homeassistant.components.logbook\n"
    )
    manifest = {"domain": "demo_x", "zeroconf": ["_x._tcp.local."]}

    def refs(**kwargs: Any) -> list[str]:
        return [e.split()[2] for e in dependency_errors(tmp_path, manifest, **kwargs)]

    assert refs() == ["backup", "http", "hue", "logbook", "mqtt", "recorder"]
    assert refs(type_checking_counts=True) == [
        "backup",
        "cloud",
        "http",
        "hue",
        "logbook",
        "lovelace",
        "mqtt",
        "recorder",
    ]
    manifest |= {"dependencies": ["http", "hue"], "after_dependencies": ["recorder"]}
    manifest |= {"mqtt": ["x/#"]}
    assert refs() == ["backup", "logbook"]
    # Without its own diagnostics.py and energy/, those imports count as well.
    (tmp_path / "diagnostics.py").rename(tmp_path / "other.py")
    (tmp_path / "energy").rename(tmp_path / "other")
    assert refs() == ["backup", "diagnostics", "energy", "logbook"]
