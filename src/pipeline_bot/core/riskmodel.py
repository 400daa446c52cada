"""The risk model as data, and scoring with it: a calibrated probability and its explanation.

The model is a logistic regression over transformed, standardised features (core/features.py),
fitted elsewhere (integrations/riskfit.py) on a prior corpus of public histories pooled with the
repository's own. Here it is only applied: pure arithmetic, no library. Each feature's share of
the score is its term in the log-odds, scaled so the shares add up exactly to the distance
between this change's probability and a typical change's (the model at the feature centre).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline_bot.core.features import BY_NAME

ModelKind = Literal["history", "prior", "rules"]
HISTORY_FEATURES = frozenset(
    {"ndev", "age", "nuc", "exp", "rexp", "sexp", "file_fixes", "file_problems", "author_problems"}
)


class ModelParams(BaseModel):
    """A fitted model: enough to score a change and to say what it was fitted on."""

    model_config = ConfigDict(extra="forbid")

    kind: ModelKind
    features: list[str]
    center: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    commits: int = Field(0, description="labelled commits of the repository's own history used")
    positives: int = Field(0, description="of which reverted or fix-inducing")
    prior_commits: int = Field(0, description="labelled commits of the prior corpus used")
    fitted_at: datetime | None = None
    cross_validated_auc: float | None = None
    newest_commit: str | None = Field(None, description="the newest commit the fit has seen")
    note: str = ""


@dataclass(frozen=True)
class Contribution:
    feature: str
    value: float
    points: float


@dataclass(frozen=True)
class Prediction:
    probability: float
    baseline: float  # a typical change's probability under the same model
    contributions: list[Contribution] = field(default_factory=list)


def transform(name: str, value: float) -> float:
    kind = BY_NAME[name].transform if name in BY_NAME else "log"
    if kind == "log":
        return math.log1p(max(0.0, value))
    if kind == "bool":
        return 1.0 if value else 0.0
    return min(1.0, max(0.0, value))


def standardised(params: ModelParams, features: Mapping[str, float]) -> list[float]:
    """The model's inputs; a feature the change lacks sits at the centre (no effect)."""
    out = []
    for name, center, scale in zip(params.features, params.center, params.scale, strict=True):
        if name not in features:
            out.append(0.0)
            continue
        out.append((transform(name, features[name]) - center) / (scale or 1.0))
    return out


def predict(params: ModelParams, features: Mapping[str, float]) -> Prediction:
    x = standardised(params, features)
    terms = [c * v for c, v in zip(params.coef, x, strict=True)]
    z0 = params.intercept
    z = z0 + sum(terms)
    p, p0 = sigmoid(z), sigmoid(z0)
    # the secant slope between the typical change and this one: shares add up to p - p0
    slope = (p - p0) / (z - z0) if abs(z - z0) > 1e-9 else p0 * (1 - p0)
    contributions = [
        Contribution(name, float(features.get(name, 0.0)), 100 * slope * t)
        for name, t in zip(params.features, terms, strict=True)
        if name in features
    ]
    contributions.sort(key=lambda c: -abs(c.points))
    return Prediction(probability=p, baseline=p0, contributions=contributions)


def sigmoid(z: float) -> float:
    if z >= 0:
        return 1 / (1 + math.exp(-z))
    e = math.exp(z)
    return e / (1 + e)


def auc(labels: Sequence[int], scores: Sequence[float]) -> float:
    """Area under the ROC curve: the probability that a random positive scores above a random
    negative, ties counting half (the Mann-Whitney statistic, from average ranks)."""
    if len(labels) != len(scores):
        raise ValueError(f"{len(labels)} labels but {len(scores)} scores")
    positives = sum(1 for y in labels if y)
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        raise ValueError("the AUC needs at least one positive and one negative")
    pairs = sorted(zip(scores, labels, strict=True), key=lambda p: p[0])
    rank_sum, i = 0.0, 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        rank = (i + j + 1) / 2  # the average of the 1-based ranks i+1 .. j
        rank_sum += rank * sum(1 for _, y in pairs[i:j] if y)
        i = j
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def explain(feature: str, value: float) -> str:
    """A reviewer's sentence for what the change has: `1,234 lines added`, `a database migration
    ships`, `no test changes`."""
    spec = BY_NAME.get(feature)
    if spec is None:
        return feature
    if spec.transform == "bool":
        return spec.describe if value else (spec.absent or "not: " + spec.describe)
    one = round(value, 1) == 1
    return spec.describe.format(
        v=value,
        s="" if one else "s",
        es="" if one else "es",
        ies="y" if one else "ies",
        people="person" if one else "people",
        were="was" if one else "were",
    )


@dataclass(frozen=True)
class RiskInputs:
    """What the analysis needs from history to score a change."""

    params: ModelParams
    history: dict[str, float] | None = None  # the change's history features; None: not read
    lines_before: int | None = None  # LT: bytes of the touched files before the change
    note: str = ""  # which history was read
