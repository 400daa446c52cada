"""Just-in-time defect prediction metrics (Kamei et al. 2013) for one change.

Diffusion: NS (subsystems), ND (directories), NF (files), Entropy. Size: LA, LD. Purpose: FIX.
History: NDEV, AGE, NUC, EXP, where the repository's history was available to read.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from pipeline_bot.models import ChangeMetrics, Commit, FileChange, History

_FIX = re.compile(r"\b(?:fix(?:e[sd])?|bug|defect|patch|hotfix)\b", re.IGNORECASE)


def change_metrics(
    files: Sequence[FileChange], commits: Sequence[Commit], history: History | None
) -> ChangeMetrics:
    subsystems = {f.path.split("/", 1)[0] if "/" in f.path else "." for f in files}
    directories = {f.path.rsplit("/", 1)[0] if "/" in f.path else "." for f in files}
    metrics = ChangeMetrics(
        subsystems=len(subsystems),
        directories=len(directories),
        files=len(files),
        entropy=round(entropy([f.additions + f.deletions for f in files]), 4),
        lines_added=sum(f.additions for f in files),
        lines_deleted=sum(f.deletions for f in files),
        is_fix=any(_FIX.search(c.message) for c in commits),
        history_available=history is not None and history.available,
        history_note=history.note if history else "history was not read",
    )
    if history is None or not history.available:
        return metrics
    return metrics.model_copy(update=_history_metrics(files, commits, history))


def entropy(lines_per_file: Sequence[int]) -> float:
    """Shannon entropy of modified lines over files, normalised to 0-1 by log2(files)."""
    total = sum(lines_per_file)
    if total == 0 or len(lines_per_file) < 2:
        return 0.0
    h = -sum(n / total * math.log2(n / total) for n in lines_per_file if n)
    return h / math.log2(len(lines_per_file))


def _history_metrics(
    files: Sequence[FileChange], commits: Sequence[Commit], history: History
) -> dict[str, object]:
    known = [history.files[f.path] for f in files if f.path in history.files]
    authors = {a for fh in known for a in fh.authors}
    ages = [
        (history.head_time - fh.last_changed).total_seconds() / 86_400
        for fh in known
        if history.head_time is not None and fh.last_changed is not None
    ]
    author = commits[0].email if commits else None  # newest first: the head commit
    return {
        "developers": len(authors),
        "age_days": round(sum(ages) / len(ages), 2) if ages else None,
        "prior_changes": history.unique_commits,
        "author_experience": history.author_commits.get(author, 0) if author else None,
    }
