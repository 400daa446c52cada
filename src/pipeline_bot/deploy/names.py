"""Kubernetes object names and label values made from names we do not control."""

from __future__ import annotations

import hashlib
import re

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_SUBDOMAIN_PART = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def label_value(text: str) -> str:
    """`text` where it is a valid label value, else a digest of it (`h-` and 20 hex digits):
    selecting by it stays exact, and the full text is kept beside it."""
    if len(text) <= 63 and _LABEL_VALUE.match(text):
        return text
    return "h-" + _digest(text, 20)


def name_part(text: str) -> str:
    """`text` where it can be one dot-separated part of an object name, else a digest of it."""
    if len(text) <= 63 and _SUBDOMAIN_PART.match(text):
        return text
    return "h-" + _digest(text, 20)


def _digest(text: str, size: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:size]
