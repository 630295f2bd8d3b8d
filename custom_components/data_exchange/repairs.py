"""Repair issues: every issue this integration raises, its id, when it goes.

Per config entry (ids ``<kind>_<entry_id>``, all removed with the entry):

- ``no_encryption``: the node's API is not encrypted; says how to add a key.
- ``model_mismatch``: the node's model names an entity it does not expose.
- ``protocol_mismatch``: the node speaks another protocol version; says which side to
  update. Goes when a model of our version is read.
- ``refused``: the node refused a desired frame; names the point and the reason. Goes when
  the node applied a newer write.

Per node (``encryption_removed_<MAC or host>``), no silent downgrade: a node that answers without encryption although its entry has a key is either a node whose
encryption was removed, or something else answering in its place (a man in the middle that
wants Home Assistant, or the user, to drop the key). Home Assistant cannot tell the two
apart, so it keeps the key: the connection stays encrypted (aioesphomeapi never falls back
to plaintext: ``allow_plaintext_fallback`` stays off), nothing at all goes to the node, and
this repair issue says what happened. Only the user removes a key, in Reconfigure, after an
explicit confirmation (config_flow.py, step ``remove_encryption``).

The issue lives as long as the situation: raised on each plaintext answer, gone when the
node answers encrypted again, when the entry is unloaded or removed, or when the key is
removed on purpose. It is not kept across restarts (the next connection raises it again).

Everything from the node (its name, point names, error texts) goes through ``plain``: the
frontend renders issue texts as markdown.
"""

from __future__ import annotations

from collections.abc import Callable
import logging

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir

from .const import DOMAIN
from .plain import plain
from .protocol import PROTOCOL_VERSION

_LOGGER = logging.getLogger(__name__)

NO_ENCRYPTION = "no_encryption"
MODEL_MISMATCH = "model_mismatch"
PROTOCOL_MISMATCH = "protocol_mismatch"
REFUSED = "refused"
ENTRY_ISSUES = (NO_ENCRYPTION, MODEL_MISMATCH, PROTOCOL_MISMATCH, REFUSED)
ENCRYPTION_DOCS = "https://esphome.io/components/api.html#configuration-variables"


def entry_issue_id(kind: str, entry_id: str) -> str:
    return f"{kind}_{entry_id}"


class EntryIssues:
    """The repair issues of one config entry (one node)."""

    def __init__(self, hass: HomeAssistant, entry_id: str) -> None:
        self.hass = hass
        self.entry_id = entry_id

    def _create(
        self,
        kind: str,
        severity: ir.IssueSeverity,
        placeholders: dict[str, object],
        learn_more_url: str | None = None,
    ) -> None:
        ir.async_create_issue(
            self.hass,
            DOMAIN,
            entry_issue_id(kind, self.entry_id),
            is_fixable=False,
            severity=severity,
            translation_key=kind,
            translation_placeholders={k: plain(v) for k, v in placeholders.items()},
            learn_more_url=learn_more_url,
        )

    def _delete(self, kind: str) -> None:
        ir.async_delete_issue(self.hass, DOMAIN, entry_issue_id(kind, self.entry_id))

    @callback
    def encryption(self, *, has_key: bool, name: str) -> None:
        """A node without API encryption gets an issue that says how to add a key."""
        if has_key:
            self._delete(NO_ENCRYPTION)
        else:
            self._create(
                NO_ENCRYPTION,
                ir.IssueSeverity.WARNING,
                {"name": name},
                learn_more_url=ENCRYPTION_DOCS,
            )

    @callback
    def model_mismatch(self, name: str, error: object) -> None:
        self._create(
            MODEL_MISMATCH, ir.IssueSeverity.ERROR, {"name": name, "error": error}
        )

    @callback
    def protocol_mismatch(self, name: str, version: str) -> Callable[..., None]:
        """Raised (the node's and our version named); the log for it: a warning the first
        time, then debug (the node is asked again on every reconnect)."""
        issues = ir.async_get(self.hass)
        new = issues.async_get_issue(
            DOMAIN, entry_issue_id(PROTOCOL_MISMATCH, self.entry_id)
        )
        self._create(
            PROTOCOL_MISMATCH,
            ir.IssueSeverity.ERROR,
            {"name": name, "node": version, "ours": PROTOCOL_VERSION},
        )
        return _LOGGER.warning if new is None else _LOGGER.debug

    @callback
    def model_matches(self) -> None:
        self._delete(MODEL_MISMATCH)
        self._delete(PROTOCOL_MISMATCH)

    @callback
    def refused(self, name: str, point: str, reason: str) -> None:
        self._create(
            REFUSED,
            ir.IssueSeverity.WARNING,
            {"name": name, "point": point, "reason": reason},
        )

    @callback
    def refusal_resolved(self) -> None:
        self._delete(REFUSED)


@callback
def async_remove_entry_issues(hass: HomeAssistant, entry_id: str) -> None:
    for kind in ENTRY_ISSUES:
        ir.async_delete_issue(hass, DOMAIN, entry_issue_id(kind, entry_id))


DOWNGRADE = "encryption_removed"


def downgrade_issue_id(node_id: str) -> str:
    """``node_id``: the entry's unique id (the node's MAC), or its host without one."""
    return f"{DOWNGRADE}_{node_id}"


@callback
def async_report_downgrade(
    hass: HomeAssistant, node_id: str, name: str, host: str
) -> None:
    """The node answered without encryption although its entry has a key."""
    if ir.async_get(hass).async_get_issue(DOMAIN, downgrade_issue_id(node_id)) is None:
        _LOGGER.warning(
            "%s at %s answered without encryption although its entry has a key; "
            "the key is kept and nothing is sent to it (see Repairs)",
            name,
            host,
        )
    ir.async_create_issue(
        hass,
        DOMAIN,
        downgrade_issue_id(node_id),
        is_fixable=False,
        is_persistent=False,
        severity=ir.IssueSeverity.ERROR,
        translation_key=DOWNGRADE,
        # Both come from the node or the user: shown literally, never as markdown.
        translation_placeholders={"name": plain(name), "host": plain(host)},
    )


@callback
def async_clear_downgrade(hass: HomeAssistant, node_id: str) -> None:
    ir.async_delete_issue(hass, DOMAIN, downgrade_issue_id(node_id))
