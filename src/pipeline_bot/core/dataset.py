"""Labelled rows for the risk model from a window of history: features known then, outcome since.

Each row is one mainline commit: its features from the history before it (core/features.py),
its label from what came after it up to the head (core/labels.py). The oldest part of the window
only builds up history (`warmup`), so early rows do not look like a newcomer's first commits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pipeline_bot.core.features import CommitRecord, HistoryState, replay
from pipeline_bot.core.labels import HORIZON_DAYS, Labels, label_history, training_set

WARMUP_SHARE = 0.2
WARMUP_MAX = 1000


@dataclass(frozen=True)
class Row:
    sha: str
    features: dict[str, float]
    label: int
    position: int  # index in the window, oldest first: the time order for splits


@dataclass
class Dataset:
    rows: list[Row]
    labels: Labels
    state: HistoryState  # the history after the whole window

    @property
    def positives(self) -> int:
        return sum(r.label for r in self.rows)


def warmup(size: int) -> int:
    return min(WARMUP_MAX, int(size * WARMUP_SHARE))


def build(
    records: Sequence[CommitRecord],
    blamed: Mapping[str, Sequence[str]],
    *,
    aliases: Mapping[str, str] | None = None,
    horizon_days: int = HORIZON_DAYS,
    head_time: int | None = None,
) -> Dataset:
    """Rows for `records` (oldest first), labelled as seen from the newest of them."""
    labels = label_history(records, blamed, aliases)
    if not records:
        return Dataset([], labels, HistoryState())
    head = head_time if head_time is not None else records[-1].commit_time
    outcome = training_set(records, labels, head_time=head, horizon_days=horizon_days)
    features, state = replay(records, labels.found_out, skip=warmup(len(records)))
    rows = [
        Row(r.sha, features[r.sha], outcome[r.sha], i)
        for i, r in enumerate(records)
        if r.sha in features and r.sha in outcome
    ]
    return Dataset(rows, labels, state)
