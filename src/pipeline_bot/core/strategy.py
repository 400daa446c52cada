"""Risk + environment policy -> deployment strategy, its parameters, and the reasons for it.

nothing deployable changed            -> none
environment forces a strategy         -> that strategy
low risk, or any risk below critical
  outside production                  -> rolling (no capacity lost: maxUnavailable 0)
medium / high risk in production      -> canary (more, smaller steps and longer pauses at high)
critical risk anywhere                -> blue-green with manual promotion in production,
                                         canary elsewhere; the old version stays up for rollback
"""

from __future__ import annotations

from pipeline_bot.core.classify import Kind
from pipeline_bot.models import (
    CanaryStep,
    Checkpoint,
    Risk,
    Strategy,
    StrategyName,
    StrategyParameters,
)
from pipeline_bot.repo_config import Environment

CANARY_STEPS: dict[str, tuple[tuple[int, int], ...]] = {
    # level -> (replica share %, pause seconds) per step; 100 % is the promotion after the last
    "low": ((50, 120),),
    "medium": ((25, 300), (50, 300)),
    "high": ((10, 600), (25, 600), (50, 600)),
    "critical": ((5, 900), (10, 900), (25, 900), (50, 900)),
}
KEEP_PREVIOUS_SECONDS = {"medium": 1800, "high": 3600, "critical": 7200, "low": 900}
BASE_CHECKPOINTS = (
    Checkpoint(metric="request-success-rate", condition=">= 99%", when="after every step"),
    Checkpoint(metric="request-duration-p99", condition="<= 500ms", when="after every step"),
    Checkpoint(metric="pod-restarts", condition="== 0", when="during rollout"),
)


def choose_strategy(
    risk: Risk,
    rules: set[str],
    *,
    deployable: bool,
    environment: Environment,
    kinds: set[Kind],
    unowned: tuple[str, ...] = (),
) -> Strategy:
    """Pick how to ship a change to `environment`, with every reason spelled out. `unowned`:
    the configured services, when files that would ship changed under none of their paths."""
    env = environment
    if not deployable:
        what = ", ".join(sorted(k.value for k in kinds)) or "no files"
        why = f"nothing deployable changed (only: {what})"
        if unowned:
            why = (
                f"the changed files that would ship ({what}) are under no service's `paths` "
                f"(services: {', '.join(unowned)}), so no service needs a deploy; add their "
                "folders to a service's `paths` in .github/pipeline-bot.yml if they ship"
            )
        return Strategy(
            name="none",
            environment=env.name,
            reasons=[why],
            parameters=StrategyParameters(replicas=env.replicas),
        )
    reasons = [f"risk is {risk.level} ({risk.score}/100)"]
    if env.strategy != "auto":
        name: StrategyName = env.strategy
        reasons.append(f"environment {env.name!r} is configured to always use {name}")
    else:
        name = _auto(risk, env, reasons)
    params = _parameters(name, risk, env, rules)
    if "migration" in rules:
        reasons.append(
            "a database migration ships: run it before the new version, and keep it "
            "compatible with the old version until the rollout is done"
        )
    if "kubernetes-manifest" in rules or "helm-chart" in rules:
        reasons.append("manifests change: watch pod restarts and readiness, not only metrics")
    return Strategy(name=name, environment=env.name, reasons=reasons, parameters=params)


def _auto(risk: Risk, env: Environment, reasons: list[str]) -> StrategyName:
    level = risk.level
    if level == "critical":
        if env.is_production:
            reasons.append(
                "critical risk in production: deploy beside the old version and switch "
                "only after checks pass and a person promotes it; switching back is instant"
            )
            return "blue-green"
        reasons.append(
            f"critical risk: shift traffic to {env.name!r} gradually behind metric gates"
        )
        return "canary"
    if not env.is_production:
        reasons.append(
            f"{env.name!r} is not production: a rolling update is enough below critical risk"
        )
        return "rolling"
    if level == "low":
        reasons.append("low risk: a rolling update that never drops below full capacity")
        return "rolling"
    top = "; ".join([f.reason for f in risk.factors if f.points > 0][:3]) or "no single factor"
    reasons.append(
        f"{level} risk in production ({top}): expose a small share first and "
        "promote step by step while metrics stay healthy"
    )
    return "canary"


def _parameters(
    name: StrategyName, risk: Risk, env: Environment, rules: set[str]
) -> StrategyParameters:
    checkpoints = list(BASE_CHECKPOINTS)
    if "migration" in rules:
        checkpoints.append(
            Checkpoint(
                metric="database-errors",
                condition="== 0",
                when="after the migration and after every step",
            )
        )
    if name == "rolling":
        return StrategyParameters(
            replicas=env.replicas, max_surge="25%", max_unavailable="0", checkpoints=checkpoints
        )
    if name == "canary":
        steps = [CanaryStep(weight=w, pause_seconds=p) for w, p in CANARY_STEPS[risk.level]]
        return StrategyParameters(
            replicas=env.replicas,
            steps=steps,
            checkpoints=checkpoints,
            manual_promotion=risk.level == "critical",
        )
    if name == "blue-green":
        return StrategyParameters(
            replicas=env.replicas,
            checkpoints=checkpoints,
            keep_previous_seconds=KEEP_PREVIOUS_SECONDS[risk.level],
            manual_promotion=env.is_production,
        )
    return StrategyParameters(replicas=env.replicas)


def strategy_named(
    name: StrategyName,
    environment: Environment,
    *,
    reason: str,
    steps: list[int] | None = None,
    pause_seconds: int | None = None,
) -> Strategy:
    """A strategy chosen by a person rather than by risk, with the default parameters for it
    (canary: the medium-risk steps) and any steps or pause given."""
    risk = Risk(score=25, level="medium", factors=[])
    params = _parameters(name, risk, environment, set())
    if name == "canary" and (steps or pause_seconds is not None):
        pause = pause_seconds if pause_seconds is not None else CANARY_STEPS["medium"][0][1]
        weights = steps or [s.weight for s in params.steps]
        params.steps = [CanaryStep(weight=w, pause_seconds=pause) for w in weights]
    return Strategy(name=name, environment=environment.name, reasons=[reason], parameters=params)
