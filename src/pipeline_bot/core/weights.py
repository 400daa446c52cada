"""The rules' fixed weights and severities, and the levels. The README's table mirrors it.

With a learned model (core/scoring.py) the rules are findings and these weights add nothing; they
score a change only when no model is wanted (PIPELINE_BOT_RISK_MODEL=rules): the sum of the
weights of the rules that fired (each once), capped at 100. Levels: 0-24 low, 25-49 medium, 50-74
high, 75-100 critical, for both. A repository adds its own rules in `.github/pipeline-bot.yml`
(`risk.rules`) and can switch built-in rules off (`risk.disable`).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline_bot.models import RiskLevel, Severity


@dataclass(frozen=True)
class Rule:
    id: str
    weight: int
    severity: Severity
    message: str


RULES: dict[str, Rule] = {
    rule.id: rule
    for rule in (
        Rule(
            "secret-added",
            40,
            "critical",
            "A string that looks like a credential ({kind}) was added; rotate it and "
            "load it from a secret store",
        ),
        Rule(
            "migration",
            30,
            "high",
            "Database migration: the old and new versions must both work with the new "
            "schema, and it may not roll back",
        ),
        Rule(
            "terraform",
            25,
            "high",
            "Terraform change: infrastructure outside the deploy changes too; review the plan",
        ),
        Rule(
            "kubernetes-manifest",
            20,
            "high",
            "Kubernetes manifest change{kinds}: the rollout itself changes, not only the image",
        ),
        Rule(
            "helm-chart",
            20,
            "high",
            "Helm chart change: rendered manifests change for every release of this chart",
        ),
        Rule(
            "auth-sensitive",
            20,
            "high",
            "Authentication or security-sensitive code changed: ask a second reviewer",
        ),
        Rule(
            "dockerfile",
            15,
            "medium",
            "Container build changed: base image, packages or entrypoint may differ at runtime",
        ),
        Rule(
            "tests-deleted",
            15,
            "medium",
            "Tests were removed ({count}); make sure the behaviour they covered is still tested",
        ),
        Rule(
            "commit-wip",
            15,
            "medium",
            "A commit is marked work in progress ({subject}); it may not be ready to ship",
        ),
        Rule(
            "commit-hotfix",
            10,
            "medium",
            "Hotfix commit ({subject}): shipped under time pressure, watch it closely",
        ),
        Rule(
            "commit-revert",
            10,
            "medium",
            "Revert commit ({subject}): what it reverts may be depended on by later changes",
        ),
        Rule(
            "ci-workflow",
            10,
            "medium",
            "CI/CD workflow changed: the checks and permissions of the pipeline itself change",
        ),
        Rule(
            "dependency-manifest",
            10,
            "medium",
            "Dependencies changed: new or upgraded packages ship with this change",
        ),
        Rule("untested-code", 10, "low", "Code changed but no test changed in this change"),
        Rule("lockfile", 5, "low", "Lockfile changed: resolved dependency versions differ"),
        Rule("binary-file", 5, "low", "Binary file changed: it cannot be reviewed as text"),
        Rule(
            "generated-file",
            3,
            "info",
            "Generated file changed ({lines} lines): review its source instead",
        ),
    )
}

# Change metrics (Kamei et al. 2013) as risk factors: (threshold, weight), highest first.
SIZE_STEPS: tuple[tuple[int, int], ...] = ((10_000, 20), (2_000, 15), (500, 10), (100, 5))
"""Lines added + deleted."""
SPREAD_STEPS: tuple[tuple[int, int], ...] = ((6, 10), (3, 5))
"""Subsystems (top-level directories) touched."""
SCATTER_ENTROPY = 0.9
SCATTER_MIN_FILES = 10
SCATTER_WEIGHT = 5
"""Changed lines spread evenly over many files (normalised entropy at least 0.9, 10+ files)."""
GENERATED_MIN_LINES = 500
"""A generated file (`@generated`, `DO NOT EDIT` near its top) is a finding from this many added
lines; smaller ones are not even looked at."""

LEVELS: tuple[tuple[int, RiskLevel], ...] = (
    (75, "critical"),
    (50, "high"),
    (25, "medium"),
    (0, "low"),
)


def level_for(score: int) -> RiskLevel:
    for floor, level in LEVELS:
        if score >= floor:
            return level
    return "low"
