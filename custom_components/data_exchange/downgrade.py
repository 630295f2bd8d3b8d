"""No silent downgrade: an entry with a key whose node answers without encryption.

A node that answers without encryption although its entry has a key is either a node whose
encryption was removed, or something else answering in its place (a man in the middle that
wants Home Assistant, or the user, to drop the key). Home Assistant cannot tell the two
apart, so it keeps the key: the connection stays encrypted (aioesphomeapi never falls back
to plaintext: ``allow_plaintext_fallback`` stays off), nothing at all goes to the node, and
this repair issue says what happened. Only the user removes a key, in Reconfigure, after an
explicit confirmation (config_flow.py, step ``remove_encryption``).

The issue lives as long as the situation: raised on each plaintext answer, gone when the
node answers encrypted again, when the entry is unloaded or removed, or when the key is
removed on purpose. It is not kept across restarts (the next connection raises it again).
"""

from __future__ import annotations

import logging

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir

from .const import DOMAIN
from .plain import plain

_LOGGER = logging.getLogger(__name__)

TRANSLATION_KEY = "encryption_removed"


def issue_id(node_id: str) -> str:
    """``node_id``: the entry's unique id (the node's MAC), or its host without one."""
    return f"{TRANSLATION_KEY}_{node_id}"


@callback
def async_report(hass: HomeAssistant, node_id: str, name: str, host: str) -> None:
    """The node answered without encryption although its entry has a key."""
    if ir.async_get(hass).async_get_issue(DOMAIN, issue_id(node_id)) is None:
        _LOGGER.warning(
            "%s at %s answered without encryption although its entry has a key; "
            "the key is kept and nothing is sent to it (see Repairs)",
            name,
            host,
        )
    ir.async_create_issue(
        hass,
        DOMAIN,
        issue_id(node_id),
        is_fixable=False,
        is_persistent=False,
        severity=ir.IssueSeverity.ERROR,
        translation_key=TRANSLATION_KEY,
        # Both come from the node or the user: shown literally, never as markdown.
        translation_placeholders={"name": plain(name), "host": plain(host)},
    )


@callback
def async_clear(hass: HomeAssistant, node_id: str) -> None:
    ir.async_delete_issue(hass, DOMAIN, issue_id(node_id))
