"""The audit trail: every tool call from every front end, one JSON line each, appended to a file.

Who asked (actor), through which front end, which tool with which inputs (redacted by value),
what the policy decided, how it ended and how long it took. Appends take an exclusive lock, so
several processes (the App's workers, a CLI next to it) write whole lines; entries older than the
retention are dropped when the file is compacted (at most once an hour per process).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pipeline_bot.models import AuditEntry
from pipeline_bot.redaction import redact_data

COMPACT_EVERY = 3600.0


class AuditLog:
    """AuditPort over a JSON-lines file (created 0600: inputs can be sensitive even redacted)."""

    def __init__(self, path: Path, *, retention_days: float = 90) -> None:
        self.path = path
        self.retention = timedelta(days=retention_days)
        self._compacted = time.monotonic()  # the first compaction an hour after start
        self._lock = threading.Lock()

    def record(self, entry: AuditEntry) -> None:
        data = redact_data(entry.model_dump(mode="json"))
        line = json.dumps(data, separators=(",", ":"), sort_keys=True) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, self._locked("a") as f:
            f.write(line)
        if time.monotonic() - self._compacted > COMPACT_EVERY:
            self._compacted = time.monotonic()
            self.compact()

    def entries(
        self, *, limit: int = 100, tool: str | None = None, actor: str | None = None
    ) -> list[AuditEntry]:
        """The newest entries first."""
        if not self.path.exists():
            return []
        out: list[AuditEntry] = []
        with self._locked("r") as f:
            lines = f.readlines()
        for line in reversed(lines):
            try:
                entry = AuditEntry.model_validate_json(line)
            except ValueError:
                continue  # a torn line of a process killed mid-write: skip it
            if (tool is None or entry.tool == tool) and (actor is None or entry.actor == actor):
                out.append(entry)
                if len(out) >= limit:
                    break
        return out

    def compact(self) -> int:
        """Drop entries past the retention; returns how many were dropped."""
        if not self.path.exists():
            return 0
        cutoff = datetime.now(UTC) - self.retention
        with self._locked("r+") as f:
            lines = f.readlines()
            kept = [line for line in lines if _at(line) is None or _at(line) >= cutoff]  # type: ignore[operator]
            if len(kept) == len(lines):
                return 0
            f.seek(0)
            f.writelines(kept)
            f.truncate()
        return len(lines) - len(kept)

    @contextlib.contextmanager
    def _locked(self, mode: str) -> Iterator[Any]:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | (os.O_APPEND if mode == "a" else 0), 0o600)
        with os.fdopen(fd, mode, encoding="utf-8") as f:
            fcntl.flock(f, fcntl.LOCK_EX if mode != "r" else fcntl.LOCK_SH)
            try:
                yield f
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def _at(line: str) -> datetime | None:
    try:
        return datetime.fromisoformat(json.loads(line)["at"])
    except (ValueError, KeyError, TypeError):
        return None
