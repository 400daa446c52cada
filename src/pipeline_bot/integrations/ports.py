"""The seams between tools and the outside world: one Protocol per kind of collaborator."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pipeline_bot.models import ChangeSet, History


@dataclass(frozen=True)
class ChangeSource:
    """A change read from a repository, with the history before it (None when unreadable)."""

    root: Path
    changes: ChangeSet
    history: History | None


class SourcePort(Protocol):
    """Reads a range of commits from a repository."""

    def read_change(self, repository: str, base: str | None, head: str) -> ChangeSource:
        """Changes from `base` (default: merge-base with the default branch) to `head`."""
        ...
