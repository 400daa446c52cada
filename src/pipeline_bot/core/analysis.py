"""ChangeSet + repository config (+ history) -> Analysis: findings, risk, services, strategy."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pipeline_bot.core import weights
from pipeline_bot.core.classify import (
    NOT_DEPLOYABLE,
    Kind,
    is_auth_sensitive,
    is_key_file,
    kind_of,
)
from pipeline_bot.core.globs import PathMatcher
from pipeline_bot.core.metrics import change_metrics
from pipeline_bot.core.riskmodel import RiskInputs
from pipeline_bot.core.scoring import floor_level, model_risk
from pipeline_bot.core.strategy import choose_strategy
from pipeline_bot.models import (
    SEVERITY_ORDER,
    Analysis,
    ChangeMetrics,
    ChangeSet,
    ChangeStats,
    Commit,
    FileChange,
    FileStatus,
    Finding,
    Risk,
    RiskFactor,
    RiskModelInfo,
    trusted,
)
from pipeline_bot.repo_config import RepoConfig, Service

_FACTOR_PATHS = 10
_KIND_RULES = {
    Kind.MIGRATION: "migration",
    Kind.TERRAFORM: "terraform",
    Kind.KUBERNETES: "kubernetes-manifest",
    Kind.HELM: "helm-chart",
    Kind.DOCKERFILE: "dockerfile",
    Kind.CI: "ci-workflow",
    Kind.DEPENDENCY: "dependency-manifest",
    Kind.LOCKFILE: "lockfile",
}
_COMMIT_RULES = (
    ("commit-revert", re.compile(r"^revert\b|\brevert(?:s|ed|ing)?\s+(?:commit|\")", re.I)),
    ("commit-hotfix", re.compile(r"\bhot[- ]?fix", re.I)),
    ("commit-wip", re.compile(r"^(?:wip\b|fixup!|squash!|amend!)|\bWIP\b|\bdo not merge\b", re.I)),
)
_EXAMPLE_SUFFIXES = (".example", ".sample", ".template", ".dist")
# key files that are text and may hold only certificates, which are public
_TEXT_KEY_CONTAINERS = (".pem",)


@dataclass
class _Hits:
    """Findings grouped by rule, in the order rules first fired."""

    by_rule: dict[str, list[Finding]] = field(default_factory=dict)

    def add(self, rule: str, finding: Finding) -> None:
        self.by_rule.setdefault(rule, []).append(finding)

    def all(self) -> list[Finding]:
        return [f for group in self.by_rule.values() for f in group]


def analyze(
    changes: ChangeSet,
    config: RepoConfig,
    *,
    risk: RiskInputs | None = None,
    environment: str | None = None,
) -> Analysis:
    """Judge a change: what it touches, how likely it is to go wrong and why, and how to ship it.

    With a model (`risk`), the score is the model's calibrated probability (0-100) that the change
    will be reverted or need a fix, and the factors are each feature's share of it; the rules
    still find what a reviewer must see and what must not depend on a probability (a migration's
    advice, a leaked secret's failure). Without one, the rules' fixed weights make the score."""
    env = config.environment(environment)
    excluded = PathMatcher([*config.risk.ignore, *config.risk.generated])
    files = [f for f in changes.files if not excluded(f.path)]
    kinds = {f.path: kind_of(f) for f in files}
    custom = {rule.id: rule for rule in config.risk.rules}
    rules = {
        rid: rule
        for rid, rule in weights.RULES.items()
        if rid not in config.risk.disable and rid not in custom
    }
    hits = _Hits()
    _file_rules(files, kinds, hits)
    _commit_rules(changes.commits, hits)
    hits.by_rule = {rid: fs for rid, fs in hits.by_rule.items() if rid in rules}
    _custom_rules(config, files, hits)

    metrics = change_metrics(
        files,
        changes.commits,
        risk.history if risk else None,
        lines_before=risk.lines_before if risk else None,
        note=risk.note if risk else "history was not read",
    )
    if risk is None or risk.params.kind == "rules":
        scored = _rules_risk(hits, rules, config, metrics, files)
    else:
        scored = model_risk(files, changes.commits, risk, hits.by_rule, config)
    if not changes.files:
        scored = _unchanged(scored)

    # docs, tests and CI files never make a service need a deploy, wherever they live
    shipped = [f for f in files if kinds[f.path] not in NOT_DEPLOYABLE]
    services = affected_services(config.services, shipped)
    deployable = bool(services) if config.services else bool(shipped)
    unowned = tuple(s.name for s in config.services) if shipped and not deployable else ()
    strategy = choose_strategy(
        scored,
        set(hits.by_rule),
        deployable=deployable,
        environment=env,
        kinds={kinds[f.path] for f in shipped} if unowned else set(kinds.values()),
        unowned=unowned,
    )
    findings = sorted(hits.all(), key=_finding_order)
    return Analysis(
        repository=changes.repository,
        base=changes.base,
        head=changes.head,
        commits=changes.commits,
        risk=scored,
        strategy=strategy,
        findings=findings,
        affected_services=services,
        stats=ChangeStats(
            files=len(files),
            additions=metrics.lines_added,
            deletions=metrics.lines_deleted,
            commits=len(changes.commits),
            binary_files=sum(f.binary for f in files),
            excluded_files=len(changes.files) - len(files),
        ),
        metrics=metrics,
    )


def affected_services(services: Sequence[Service], files: Iterable[FileChange]) -> list[str]:
    """Services whose path globs match a changed file (its old path counts for renames)."""
    matchers = [(s.name, PathMatcher(s.paths)) for s in services]
    hit: set[str] = set()
    for f in files:
        for name, matcher in matchers:
            if name not in hit and (matcher(f.path) or (f.old_path and matcher(f.old_path))):
                hit.add(name)
    return [s.name for s in services if s.name in hit]


# --------------------------------------------------------------------------- rules on files


def _file_rules(files: Sequence[FileChange], kinds: dict[str, Kind], hits: _Hits) -> None:
    tests_changed = any(kinds[f.path] is Kind.TEST for f in files)
    for f in files:
        kind = kinds[f.path]
        rule = _KIND_RULES.get(kind)
        if rule:
            extra = ", ".join(f.signals.kube_kinds)
            hits.add(rule, _finding(f, rule, kinds=f" ({extra})" if extra else ""))
        if kind not in (Kind.DOCS, Kind.TEST) and is_auth_sensitive(f.path):
            hits.add("auth-sensitive", _finding(f, "auth-sensitive"))
        _secret_findings(f, hits)
        _test_findings(f, kind, hits)
        if (f.binary or f.signals.lfs_pointer) and f.status is not FileStatus.DELETED:
            hits.add("binary-file", _finding(f, "binary-file"))  # an LFS pointer stands for one
        if f.signals.generated_marker and f.additions >= weights.GENERATED_MIN_LINES:
            hits.add("generated-file", _finding(f, "generated-file"))
        elif kind is Kind.CODE and not tests_changed and f.status is not FileStatus.DELETED:
            hits.add("untested-code", _finding(f, "untested-code"))


def _secret_findings(f: FileChange, hits: _Hits) -> None:
    for hit in f.signals.secrets:
        kind = hit.kind.replace("_", " ")
        hits.add("secret-added", _finding(f, "secret-added", kind=kind, lines=(hit.line, hit.line)))
    added = f.status in (FileStatus.ADDED, FileStatus.RENAMED, FileStatus.COPIED)
    if f.status is FileStatus.RENAMED and f.old_path and _real_key_file(f.old_path):
        added = False  # moved: it was committed before under another name, nothing new leaks
    if f.status is FileStatus.ADDED and not f.binary and f.path.endswith(_TEXT_KEY_CONTAINERS):
        added = False  # all its text was scanned: a private key in it is a hit above
    if added and _real_key_file(f.path):
        hits.add("secret-added", _finding(f, "secret-added", kind="key or environment file"))


def _real_key_file(path: str) -> bool:
    return is_key_file(path) and not path.endswith(_EXAMPLE_SUFFIXES)


def _test_findings(f: FileChange, kind: Kind, hits: _Hits) -> None:
    if kind is not Kind.TEST:
        return
    if f.status is FileStatus.DELETED:
        hits.add("tests-deleted", _finding(f, "tests-deleted", count="test file deleted"))
        return
    net = f.signals.removed_tests - f.signals.added_tests
    if net > 0:
        lines = f.signals.removed_test_lines
        where = (min(lines), max(lines)) if lines else None
        count = f"{net} test definition{'s' if net > 1 else ''}"
        hits.add("tests-deleted", _finding(f, "tests-deleted", count=count, lines=where))


def _commit_rules(commits: Sequence[Commit], hits: _Hits) -> None:
    for commit in commits:
        subject = commit.message.strip().splitlines()[0] if commit.message.strip() else ""
        for rule, pattern in _COMMIT_RULES:
            if pattern.search(subject):
                short = subject if len(subject) <= 72 else subject[:69] + "..."
                rid = weights.RULES[rule]
                hits.add(
                    rule,
                    Finding(
                        path=None,
                        severity=rid.severity,
                        rule=rule,
                        message=f"{commit.sha[:12]}: " + rid.message.format(subject=repr(short)),
                    ),
                )


def _custom_rules(config: RepoConfig, files: Sequence[FileChange], hits: _Hits) -> None:
    for rule in config.risk.rules:
        matcher = PathMatcher(rule.paths)
        for f in files:
            if matcher(f.path):
                start, end = _range(f)
                hits.add(
                    rule.id,
                    Finding(
                        path=f.path,
                        start_line=start,
                        end_line=end,
                        severity=rule.severity,
                        rule=rule.id,
                        message=rule.message,
                    ),
                )


def _finding(
    f: FileChange, rule: str, *, lines: tuple[int, int] | None = None, **fmt: object
) -> Finding:
    spec = weights.RULES[rule]
    start, end = lines if lines else _range(f)
    values = {"kind": "", "kinds": "", "count": "", "lines": f.additions, **fmt}
    return trusted(  # a finding per code file in a large change: no need to re-check these
        Finding,
        {
            "path": f.path,
            "start_line": start,
            "end_line": end,
            "severity": spec.severity,
            "rule": rule,
            "message": spec.message.format(**values),
        },
    )


def _range(f: FileChange) -> tuple[int | None, int | None]:
    """Head-version lines from the first change to the last; none for deletions and binaries."""
    if f.status is FileStatus.DELETED or not f.hunks:
        return None, None
    if len(f.hunks) == 1:
        return f.hunks[0].changed_start, f.hunks[0].changed_end
    return min(h.changed_start for h in f.hunks), max(h.changed_end for h in f.hunks)


def _finding_order(f: Finding) -> tuple[int, str, int]:
    return (-SEVERITY_ORDER[f.severity], f.path or "", f.start_line or 0)


# --------------------------------------------------------------------------- risk factors


def _unchanged(scored: Risk) -> Risk:
    """Base and head hold the same tree (an empty range, or commits that change no file):
    nothing can go wrong that was not there before, so no score. The model would otherwise
    score the author's and files' history features of a change of nothing."""
    note = "no file changes between base and head: nothing to score"
    model = scored.model.model_copy(update={"note": note}) if scored.model else None
    return Risk(
        score=0,
        level="low",
        factors=[],
        probability=0.0 if scored.probability is not None else None,
        model=model,
    )


def _rules_risk(
    hits: _Hits,
    rules: dict[str, weights.Rule],
    config: RepoConfig,
    metrics: ChangeMetrics,
    files: Sequence[FileChange],
) -> Risk:
    """The fixed-weight score: each rule that fired adds its weight (no model available)."""
    factors = [_rule_factor(rid, group, rules, config) for rid, group in hits.by_rule.items()]
    factors += _metric_factors(metrics)
    for f in factors:
        f.points = float(f.weight)
    factors.sort(key=lambda f: -f.weight)
    score = min(100, sum(f.weight for f in factors))
    level = floor_level(weights.level_for(score), set(hits.by_rule))
    model = RiskModelInfo(kind="rules", note="fixed rule weights (core/weights.py)")
    return Risk(score=score, level=level, factors=factors, model=model)


def _rule_factor(
    rid: str, group: list[Finding], rules: dict[str, weights.Rule], config: RepoConfig
) -> RiskFactor:
    custom = next((r for r in config.risk.rules if r.id == rid), None)
    weight = custom.weight if custom else rules[rid].weight
    paths = sorted({f.path for f in group if f.path})
    if custom:
        reason = custom.message
    elif paths:
        reason = _rule_reason(rid, len(paths))
    else:
        reason = f"{len(group)} commit{'s' if len(group) > 1 else ''}: " + group[0].message
    return RiskFactor(
        rule=rid,
        weight=weight,
        reason=reason,
        paths=paths[:_FACTOR_PATHS],
        count=len(paths) or len(group),
    )


_REASONS = {
    "secret-added": "credential-like strings added",
    "migration": "database migrations",
    "terraform": "Terraform infrastructure",
    "kubernetes-manifest": "Kubernetes manifests",
    "helm-chart": "Helm chart files",
    "auth-sensitive": "authentication or security-sensitive code",
    "dockerfile": "container build files",
    "tests-deleted": "tests removed",
    "ci-workflow": "CI/CD workflows",
    "dependency-manifest": "dependency manifests",
    "untested-code": "code changed with no test changed",
    "lockfile": "lockfiles",
    "binary-file": "binary files",
    "generated-file": "large generated files",
}


def _rule_reason(rid: str, count: int) -> str:
    what = _REASONS.get(rid, rid)
    return f"{what} ({count} file{'s' if count > 1 else ''})"


def _metric_factors(m: ChangeMetrics) -> list[RiskFactor]:
    out: list[RiskFactor] = []
    lines = m.lines_added + m.lines_deleted
    size = _step(lines, weights.SIZE_STEPS)
    if size:
        out.append(
            RiskFactor(
                rule="size",
                weight=size,
                count=lines,
                reason=f"large change: {lines} lines added or deleted",
            )
        )
    spread = _step(m.subsystems, weights.SPREAD_STEPS)
    if spread:
        out.append(
            RiskFactor(
                rule="spread",
                weight=spread,
                count=m.subsystems,
                reason=f"touches {m.subsystems} top-level directories",
            )
        )
    if m.entropy >= weights.SCATTER_ENTROPY and m.files >= weights.SCATTER_MIN_FILES:
        out.append(
            RiskFactor(
                rule="scatter",
                weight=weights.SCATTER_WEIGHT,
                count=m.files,
                reason=f"lines spread evenly over {m.files} files (entropy {m.entropy:.2f})",
            )
        )
    return out


def _step(value: int, steps: tuple[tuple[int, int], ...]) -> int:
    for threshold, weight in steps:
        if value >= threshold:
            return weight
    return 0
