"""The integration package and the repository metadata HACS and hassfest read."""

from __future__ import annotations

import importlib
import json

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
