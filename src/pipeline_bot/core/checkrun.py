"""An analysis as GitHub check run output: annotations in batches, conclusion, buttons. Pure.

A button's identifier holds 20 characters, and an environment's name does not fit one
(`deploy:preproduction-eu` cut to 20 is `deploy:preproduction`, another environment), so the
deploy button carries a hash of the name. A press deploys to the configured environment with
that hash, and is refused when none has it any more (the config changed since the analysis).
The approve button (`approve:` and a hash the same way) is there when an environment requires
approval: a press approves the check run's commit and plan into it, as `/approve` does.
"""

from __future__ import annotations

import hashlib
from typing import Any

from pipeline_bot.core.commands import CommandSyntaxError
from pipeline_bot.core.report import analysis_markdown
from pipeline_bot.models import SEVERITY_ORDER, Analysis, Finding

ANNOTATIONS_PER_REQUEST = 50  # GitHub's limit for one check run update
MAX_ANNOTATIONS = 1000
SUMMARY_LIMIT = 65_000  # GitHub refuses output.summary over 65,535 characters
_LEVEL = {"critical": "failure", "high": "failure", "medium": "warning"}
_RISK = {"low": 1, "medium": 2, "high": 3, "critical": 4, "never": 99}
LABEL_LIMIT, DESCRIPTION_LIMIT, IDENTIFIER_LIMIT = 20, 40, 20  # GitHub's, for a button
DEPLOY_BUTTON = "deploy:"
APPROVE_BUTTON = "approve:"
MAX_ACTIONS = 3  # GitHub's limit of buttons on one check run
STALE_BUTTON = (
    "this button's environment is no longer in the configuration on the default branch (it "
    "changed since the analysis): press **Re-analyze** for new buttons, or comment "
    "`/{command} <environment>`."
)


def annotations_for(findings: list[Finding]) -> tuple[list[dict[str, Any]], int]:
    """Annotations for findings that have a file (deduplicated, worst first), and how many were
    left out over MAX_ANNOTATIONS."""
    seen: set[tuple[Any, ...]] = set()
    out: list[dict[str, Any]] = []
    for f in sorted(findings, key=lambda f: -SEVERITY_ORDER[f.severity]):
        if not f.path:
            continue
        start = f.start_line or 1
        end = max(f.end_line or start, start)
        key = (f.path, start, end, f.rule)
        if key in seen:
            continue
        seen.add(key)
        out.append(
            {
                "path": f.path,
                "start_line": start,
                "end_line": end,
                "annotation_level": _LEVEL.get(f.severity, "notice"),
                "title": f.rule,
                "message": f.message[:64_000],
            }
        )
    return out[:MAX_ANNOTATIONS], max(0, len(out) - MAX_ANNOTATIONS)


def batches(items: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    size = ANNOTATIONS_PER_REQUEST
    return [items[i : i + size] for i in range(0, len(items), size)] or [[]]


def conclusion(analysis: Analysis, fail_on: str) -> str:
    return "failure" if _RISK[analysis.risk.level] >= _RISK[fail_on] else "success"


def title(analysis: Analysis) -> str:
    r = analysis.risk
    return f"{r.level.capitalize()} risk ({r.score}/100), strategy: {analysis.strategy.name}"


def summary(analysis: Analysis, notes: list[str]) -> str:
    text = analysis_markdown(analysis)
    if notes:
        text = "\n".join(f"> [!WARNING]\n> {n}\n" for n in notes) + "\n" + text
    if len(text) > SUMMARY_LIMIT:
        text = text[:SUMMARY_LIMIT] + "\n\n…(cut: the summary is longer than GitHub allows)"
    return text


def actions(environments: list[str], approve: str | None = None) -> list[dict[str, str]]:
    """The buttons: deploy to the first environment in promotion order, approve this head's
    plan into `approve` (the first environment in promotion order that requires approval, if
    any), and re-analyze."""
    out = []
    if environments:
        env = environments[0]
        out.append(
            {
                "label": _fit(f"Deploy to {env}", LABEL_LIMIT),
                "description": _fit(f"Deploy this head to {env}", DESCRIPTION_LIMIT),
                "identifier": DEPLOY_BUTTON + button_digest(env),
            }
        )
    if approve is not None:
        out.append(
            {
                "label": _fit(f"Approve {approve}", LABEL_LIMIT),
                "description": _fit(f"Approve this head's plan into {approve}", DESCRIPTION_LIMIT),
                "identifier": APPROVE_BUTTON + button_digest(approve, APPROVE_BUTTON),
            }
        )
    out.append(
        {
            "label": "Re-analyze",
            "description": "Analyse the change again",
            "identifier": "reanalyze",
        }
    )
    return out


def button_digest(environment: str, prefix: str = DEPLOY_BUTTON) -> str:
    """The hash of `environment` that fills a button's identifier after `prefix`."""
    return hashlib.sha256(environment.encode()).hexdigest()[: IDENTIFIER_LIMIT - len(prefix)]


def button_environment(token: str, configured: list[str], prefix: str = DEPLOY_BUTTON) -> str:
    """The configured environment a deploy (or approve) button names (`token` follows
    `prefix`)."""
    for name in configured:
        if button_digest(name, prefix) == token:
            return name
    # a deploy button from before the hashes: its name is whole only when it was under the limit
    if prefix == DEPLOY_BUTTON and len(prefix + token) < IDENTIFIER_LIMIT and token in configured:
        return token
    raise CommandSyntaxError(STALE_BUTTON.format(command=prefix.rstrip(":")), prefix.rstrip(":"))


def _fit(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
