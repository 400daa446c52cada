"""Untrusted text (file names, commit messages, model output) made safe for each place it goes.

Terminal and log lines: control characters and line breaks shown escaped, so a file name cannot
start a new line (a workflow command such as `::error` in a CI log) or move the cursor. Markdown:
code spans that no backtick can close, table cells that no `|` or line break can split, and text
in which HTML, links, images and @mentions stay literal (a crafted file name must not ping people
or embed images in a comment).
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# what can turn text into markup: emphasis, code, links and images, tables, headings
_MD_SPECIAL = re.compile(r"[\\`*_\[\]|#~]")
_NAMES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\e"}


def terminal(text: str) -> str:
    """One line of plain text: control characters and breaks visible, never acted on."""
    return _CONTROL.sub(lambda m: _NAMES.get(m.group(), f"\\x{ord(m.group()):02x}"), text)


def md_text(text: str) -> str:
    """Markdown text that renders as the characters given: no HTML, links, emphasis or mentions,
    on one line."""
    text = terminal(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_SPECIAL.sub(lambda m: "\\" + m.group(), text)
    return text.replace("@", "&#64;")


def md_code(text: str) -> str:
    """An inline code span holding `text` exactly (the fence is longer than any backtick run)."""
    text = terminal(text)
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_cell(text: str) -> str:
    """Text for a markdown table cell."""
    return md_text(text)
