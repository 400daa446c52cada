"""A change's risk from the learned model: score, level and the factors behind it, in words.

The score is the model's probability (0-100) that the change will be reverted or need a fix. Each
factor is one feature's share of the distance from a typical change of the repository, in points
that add up. Two things stay rules, because they must not depend on a probability: a leaked
secret makes the level critical (so it fails any `fail-on`), and a repository's own rules
(`risk.rules` in its config) add their weight in points, as its policy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pipeline_bot.core import weights
from pipeline_bot.core.features import FileStat, change_features, is_bot
from pipeline_bot.core.riskmodel import HISTORY_FEATURES, RiskInputs, explain, predict
from pipeline_bot.models import (
    SEVERITY_ORDER,
    Commit,
    FileChange,
    Finding,
    Risk,
    RiskFactor,
    RiskLevel,
    RiskModelInfo,
)
from pipeline_bot.repo_config import RepoConfig

MIN_POINTS = 0.05
"""Contributions smaller than this are left out of the factors (reports list from 0.5 points)."""
_FACTOR_PATHS = 10
# which rule's findings show where a file-kind feature comes from
_FEATURE_RULES = {
    "kind_migration": "migration",
    "kind_terraform": "terraform",
    "kind_kubernetes": "kubernetes-manifest",
    "kind_helm": "helm-chart",
    "kind_dockerfile": "dockerfile",
    "kind_ci": "ci-workflow",
    "kind_dependency": "dependency-manifest",
    "kind_lockfile": "lockfile",
    "kind_auth": "auth-sensitive",
    "code_without_tests": "untested-code",
    "msg_revert": "commit-revert",
    "msg_wip": "commit-wip",
}
# the rules whose findings alone set a floor under the level
_FLOORS: dict[str, RiskLevel] = {"secret-added": "critical"}


def change_vector(
    files: Sequence[FileChange], commits: Sequence[Commit], risk: RiskInputs
) -> dict[str, float]:
    """The analysed change's features; those that could not be read are left out (neutral)."""
    stats = [FileStat(f.path, f.additions, f.deletions, f.binary) for f in files]
    head = commits[0] if commits else None
    merge = len(commits) > 1 or bool(head and head.message.startswith("Merge "))
    features = change_features(
        stats,
        [c.message for c in commits],
        size_before=risk.lines_before or 0,
        merge=merge,
        bot=bool(head and (is_bot(head.email) or is_bot(head.author))),
    )
    if risk.lines_before is None:
        features.pop("lt")
    if risk.history is None:
        for name in HISTORY_FEATURES:
            features.pop(name, None)
    else:
        features.update(risk.history)
    return features


def model_risk(
    files: Sequence[FileChange],
    commits: Sequence[Commit],
    risk: RiskInputs,
    hits: Mapping[str, list[Finding]],
    config: RepoConfig,
) -> Risk:
    features = change_vector(files, commits, risk)
    prediction = predict(risk.params, features)
    custom = {rule.id for rule in config.risk.rules}
    factors = [
        _factor(c.feature, c.value, c.points, hits, custom)
        for c in prediction.contributions
        if abs(c.points) >= MIN_POINTS
    ]
    extra = 0
    for rule in config.risk.rules:  # the repository's own rules: its policy, in fixed points
        if rule.id in hits and rule.weight:
            extra += rule.weight
            paths = sorted({f.path for f in hits[rule.id] if f.path})
            factors.append(
                RiskFactor(
                    rule=rule.id,
                    weight=rule.weight,
                    points=float(rule.weight),
                    reason=rule.message,
                    paths=paths[:_FACTOR_PATHS],
                    count=len(paths),
                )
            )
    factors.sort(key=lambda f: -f.points)
    score = max(0, min(100, round(100 * prediction.probability) + extra))
    params = risk.params
    info = RiskModelInfo(
        kind=params.kind,
        commits=params.commits,
        positives=params.positives,
        prior_commits=params.prior_commits,
        fitted_at=params.fitted_at,
        cross_validated_auc=params.cross_validated_auc,
        newest_commit=params.newest_commit,
        baseline=round(prediction.baseline, 4),
        history=risk.note,
        note=params.note,
    )
    return Risk(
        score=score,
        level=floor_level(weights.level_for(score), set(hits)),
        factors=factors,
        probability=round(prediction.probability, 4),
        model=info,
    )


def floor_level(level: RiskLevel, rules: set[str]) -> RiskLevel:
    """The level, raised to what a rule that must not depend on a probability demands."""
    for rule, floor in _FLOORS.items():
        if rule in rules and SEVERITY_ORDER[floor] > SEVERITY_ORDER[level]:
            level = floor
    return level


def _factor(
    feature: str,
    value: float,
    points: float,
    hits: Mapping[str, list[Finding]],
    custom: set[str],
) -> RiskFactor:
    """A feature's share; named by the built-in rule whose findings show where it comes from
    (a repository's own rule of that id is its own factor)."""
    rule = _FEATURE_RULES.get(feature, feature)
    if rule not in hits or rule in custom:
        rule = feature
    paths = sorted({f.path for f in hits.get(rule, []) if f.path})
    return RiskFactor(
        rule=rule,
        weight=round(points),
        points=round(points, 1),
        reason=explain(feature, value),
        paths=paths[:_FACTOR_PATHS],
        count=len(paths) or (int(value) if value == int(value) else 0),
        feature=feature,
        value=round(value, 4),
    )
