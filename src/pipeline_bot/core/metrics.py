"""Just-in-time defect prediction metrics (Kamei et al. 2013) for one change, as reported.

Diffusion: NS (subsystems), ND (directories), NF (files), Entropy. Size: LA, LD, LT. Purpose: FIX.
History: NDEV, AGE, NUC, EXP, REXP, SEXP, where the repository's history was read (the same values
the risk model scores, from core/features.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pipeline_bot.core.features import directory, entropy, is_fix_message, subsystem
from pipeline_bot.models import ChangeMetrics, Commit, FileChange


def change_metrics(
    files: Sequence[FileChange],
    commits: Sequence[Commit],
    history: Mapping[str, float] | None,
    *,
    lines_before: int | None = None,
    note: str = "history was not read",
) -> ChangeMetrics:
    metrics = ChangeMetrics(
        subsystems=len({subsystem(f.path) for f in files}),
        directories=len({directory(f.path) for f in files}),
        files=len(files),
        entropy=round(entropy([f.additions + f.deletions for f in files]), 4),
        lines_added=sum(f.additions for f in files),
        lines_deleted=sum(f.deletions for f in files),
        is_fix=any(is_fix_message(c.message) for c in commits),
        history_available=history is not None,
        history_note=note,
        lines_before=lines_before,
    )
    if history is None:
        return metrics
    return metrics.model_copy(
        update={
            "developers": int(history["ndev"]),
            "age_days": round(history["age"], 2),
            "prior_changes": int(history["nuc"]),
            "author_experience": int(history["exp"]),
            "recent_experience": round(history["rexp"], 2),
            "subsystem_experience": int(history["sexp"]),
        }
    )
