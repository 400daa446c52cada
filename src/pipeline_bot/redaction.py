"""Every secret the process was given, registered once and redacted by value wherever text leaves.

Settings register their secret fields when they are read (settings.py), the Action its secret
inputs, and both the parts of composite secrets: each token, key and certificate of a kubeconfig
and the credentials of a URL (`https://user:pass@host`). `redact` replaces each registered value
in text on its way out: errors (PipelineBotError redacts its message), logs, the Action's outputs,
summaries and annotations, the App's requests to GitHub and its API answers, MCP responses and
requests to a model. Masking by value, not by line, catches a token that turns up alone in an
error long after the kubeconfig it came in was masked.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Iterable
from typing import Any

import yaml

MASK = "***"
MIN_LENGTH = 6
"""Shorter values are not registered: masking every `admin` or `1234` would garble text, and a
value that short is not what keeps anything safe."""
_KUBE_KEYS = frozenset(
    {
        "token",
        "password",
        "client-key-data",
        "client-certificate-data",
        "client-secret",
        "refresh-token",
        "id-token",
        "access-token",
    }
)
_lock = threading.Lock()
_values: set[str] = set()
_pattern: re.Pattern[str] | None = None


def register(*values: str | None) -> None:
    """Remember secret values (and the parts of a kubeconfig or URL among them)."""
    found: set[str] = set()
    for value in values:
        if not value:
            continue
        found.add(value)
        found.update(_parts(value))
    found = {v.strip() for v in found if len(v.strip()) >= MIN_LENGTH}
    global _pattern
    with _lock:
        if found <= _values:
            return
        _values.update(found)
        ordered = sorted(_values, key=len, reverse=True)  # the longest first, so parts follow
        _pattern = re.compile("|".join(map(re.escape, ordered)))


def redact(text: str) -> str:
    pattern = _pattern
    if pattern is None or not text:
        return text
    return pattern.sub(MASK, text)


def redact_data(data: Any) -> Any:
    """Every string in nested JSON-like data, redacted."""
    if _pattern is None:
        return data
    if isinstance(data, str):
        return redact(data)
    if isinstance(data, dict):
        return {redact_data(k): redact_data(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [redact_data(v) for v in data]
    return data


def values() -> frozenset[str]:
    with _lock:
        return frozenset(_values)


_AUTHORITY = re.compile(r"^(\s*(?:[A-Za-z][A-Za-z0-9+.-]*:)?//)([^/?#]*)(.*)$", re.DOTALL)
"""A URL's scheme and `//`, its authority (up to the first `/`, `?` or `#`), and the rest: the
split urllib.parse makes, kept here so that the core's errors need no I/O-side module."""


def _userinfo(url: str) -> tuple[str, str, str, str] | None:
    """(scheme and //, user info, host and port, rest) of a URL with user info, else None."""
    match = _AUTHORITY.match(url)
    if match is None or "@" not in match.group(2):
        return None
    userinfo, _, hostport = match.group(2).rpartition("@")
    return match.group(1), userinfo, hostport, match.group(3)


def safe_url(url: str) -> str:
    """A URL to show: without its user and password."""
    parts = _userinfo(url)
    if parts is None:
        return url
    start, _, hostport, rest = parts
    return f"{start}{hostport}{rest}"


def _parts(value: str) -> Iterable[str]:
    yield from _url_parts(value)
    if "\n" in value or value.lstrip().startswith(("apiVersion", "{", "clusters", "users")):
        yield from kubeconfig_parts(value)
    for line in value.splitlines():
        yield line.strip()


def url_parts(value: str) -> list[str]:
    """The credentials in a URL (user:password, the password, or a token given as the user)."""
    return list(_url_parts(value))


def _url_parts(value: str) -> Iterable[str]:
    if "://" not in value or "@" not in value:
        return
    parts = _userinfo(value.strip())
    if parts is None:
        return
    user, colon, password = parts[1].partition(":")
    if colon and password:
        yield password
        yield parts[1]
    elif user:
        yield user  # a token passed as the user (https://TOKEN@host)


def kubeconfig_parts(text: str) -> list[str]:
    """The credentials in a kubeconfig: tokens, passwords, client keys and certificates (the
    base64 text and what it decodes to)."""
    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError):
        return []
    out: list[str] = []
    todo = [data]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key in _KUBE_KEYS and isinstance(value, str):
                    out.append(value)
                    out += _decoded(value)
                elif isinstance(value, dict | list):
                    todo.append(value)
        elif isinstance(node, list):
            todo += node
    return out


def _decoded(value: str) -> list[str]:
    try:
        text = base64.b64decode(value, validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return []
    # a PEM block is masked line by line as well: its body lines are what would leak
    return [text, *(line for line in text.splitlines() if "-----" not in line)]


def _reset_for_tests() -> None:
    global _pattern
    with _lock:
        _values.clear()
        _pattern = None


class RedactingStream:
    """A text stream whose writes are redacted (stdout and stderr of the CLI and the Action);
    everything else (the binary buffer an MCP transport uses, fileno, isatty) passes through."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact(text))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def redact_streams() -> None:
    """Redact everything this process prints from now on."""
    import sys

    if not isinstance(sys.stdout, RedactingStream):
        sys.stdout = RedactingStream(sys.stdout)
    if not isinstance(sys.stderr, RedactingStream):
        sys.stderr = RedactingStream(sys.stderr)


def redact_logs() -> None:
    """Redact every log record this process makes, whatever handler later writes it."""
    import logging

    previous = logging.getLogRecordFactory()
    if getattr(previous, "redacts", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if _pattern is not None:
            record.msg = redact(record.getMessage())
            record.args = None
        return record

    factory.redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
