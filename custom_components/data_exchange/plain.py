"""Text from a node, made safe to show where Home Assistant renders markdown.

Everything a node sends is untrusted: its friendly name, point names, units, options and
error texts reach repair issues, flow descriptions and error messages, which the frontend
renders as markdown (links, images, HTML). ``plain`` escapes every character markdown or
HTML gives a meaning, so the text shows as the node wrote it and does nothing else.
"""

from __future__ import annotations

import re

# Markdown's backslash escapes (CommonMark: any ASCII punctuation may be escaped) for the
# characters that start links, images, emphasis, code, headings, lists, tables, HTML.
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_LENGTH = 200


def plain(text: object, max_length: int = MAX_LENGTH) -> str:
    """``text`` shown literally in markdown: escaped, on one line, at most max_length."""
    value = _CONTROL.sub(" ", str(text))
    if len(value) > max_length:
        value = value[: max_length - 1] + "…"
    value = "".join(_HTML.get(c, c) for c in value)
    # Escape after the HTML entities, leaving their own '&...;' alone.
    return _MARKDOWN.sub(r"\\\1", value)
