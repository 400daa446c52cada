"""What an AI recommendation may change: safeguards added, never removed, and nothing in a cluster.

The model can raise the risk level, propose a plan and add monitoring checkpoints. It can never
lower the rule-based risk or take a safeguard away from the rule-based plan, and nothing it says
deploys, promotes, rolls back or changes a cluster (the agent never runs such tools). Every
proposal the policy does not take is listed with the reason.

Caution is a partial order on plans, never a ranking of strategy names. A plan's safeguards are
what the deploy engine actually does with it (`safeguards`):

- manual promotion: a person promotes to full traffic (canary and blue-green honour the flag;
  a rolling update ignores it);
- canary steps: (share %, pause) per step before full traffic; only a canary has steps;
- checkpoints: the (metric, condition) pairs the plan watches;
- previous version serving: the old version keeps serving until promotion, so undoing is a scale
  or a switch back (blue-green keeps the old colour whole; a canary keeps at least one stable
  replica at every step); a rolling update replaces it in place;
- rollback window: seconds the old version stays up after the switch (blue-green's
  `keep_previous_seconds`; a canary is promoted by replacing the stable version in place, and a
  rolling update has no old version left, so both keep none);
- capacity: the share of replicas that may be unavailable during the rollout (0 beside the old
  version; a rolling update's `max_unavailable`, Kubernetes' 25 % when unset, rounded down).

A plan P is *at least as careful* as a plan B when P keeps every safeguard of B: manual promotion
if B has it; at least as many steps as B, and for each of B's steps i, P's step i is no larger and
pauses at least as long; every checkpoint of B; the previous version serving if B keeps it; a
rollback window at least as long; and no larger share of replicas unavailable. Each condition is a
partial order, so their product is one (on plans it is a preorder: replicas, `max_surge` and the
checkpoints' `when` text size or describe a rollout, they do not guard it). Consequences: a
blue-green and a canary are comparable only through their safeguards (a canary with manual
promotion and the same checkpoints is at least as careful as a blue-green with no rollback window,
never than one with a window); a rolling update keeps neither the previous version nor a window,
so it is never at least as careful as either; `none` deploys as a plain rolling update.

The model's answer can say a strategy, canary steps and a pause; whatever it cannot say (manual
promotion, the rollback window, checkpoints, capacity) stays as the rule-based plan has it, as far
as the proposed strategy can carry it (`proposed_plan`). The result is taken only when it is at
least as careful as the rule-based plan; otherwise it is refused, naming what it would remove.

An AI assistant (over MCP) reaches an environment only as the trusted config defines it
(`assistant_refusal`): never one marked `assistants: deny` with a tool that changes a cluster,
never another environment's namespace through a `namespace` argument, and never a namespace that a
protected environment shares on the same kube context.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from pipeline_bot.core.report import duration
from pipeline_bot.core.strategy import strategy_named
from pipeline_bot.models import (
    AIRefusal,
    AIStrategy,
    Analysis,
    Checkpoint,
    Recommendation,
    Strategy,
)
from pipeline_bot.repo_config import Environment, RepoConfig, default_config

LEVEL = {"low": 1, "medium": 2, "high": 3, "critical": 4}
PROMOTED = ("canary", "blue-green")  # strategies that hold for a person when asked to
K8S_DEFAULT_UNAVAILABLE = "25%"


@dataclass(frozen=True)
class Safeguards:
    """What a plan keeps between a bad version and the users (see the module docstring)."""

    manual_promotion: bool
    steps: tuple[tuple[int, int], ...]
    checkpoints: frozenset[tuple[str, str]]
    previous_serving: bool
    rollback_window: int
    unavailable: Fraction


def safeguards(plan: Strategy) -> Safeguards:
    """The safeguards the deploy engine gives `plan`, whatever its parameters claim."""
    p = plan.parameters
    canary, blue_green = plan.name == "canary", plan.name == "blue-green"
    return Safeguards(
        manual_promotion=p.manual_promotion and plan.name in PROMOTED,
        steps=tuple((s.weight, s.pause_seconds) for s in p.steps) if canary else (),
        checkpoints=frozenset((c.metric, c.condition) for c in p.checkpoints),
        previous_serving=canary or blue_green,
        rollback_window=(p.keep_previous_seconds or 0) if blue_green else 0,
        unavailable=Fraction(0) if canary or blue_green else _unavailable(plan),
    )


def _unavailable(plan: Strategy) -> Fraction:
    p = plan.parameters
    # the engine sets maxUnavailable only together with maxSurge; otherwise Kubernetes' default
    value = (p.max_unavailable or K8S_DEFAULT_UNAVAILABLE) if p.max_surge else None
    match = re.fullmatch(r"(\d+)(%?)", (value or K8S_DEFAULT_UNAVAILABLE).strip())
    if match is None:  # unreadable: assume the worst rather than a safeguard
        return Fraction(1)
    number, percent = int(match[1]), bool(match[2])
    pods = p.replicas * number // 100 if percent else number
    return Fraction(min(pods, p.replicas), p.replicas)


def removed_safeguards(plan: Strategy, baseline: Strategy) -> list[str]:
    """Each safeguard of `baseline` that `plan` would remove; empty when `plan` is at least as
    careful."""
    mine, theirs = safeguards(plan), safeguards(baseline)
    removed: list[str] = []
    if theirs.manual_promotion and not mine.manual_promotion:
        removed.append("manual promotion (a person promotes to full traffic)")
    removed += _removed_steps(mine.steps, theirs.steps)
    missing = sorted(theirs.checkpoints - mine.checkpoints)
    if missing:
        removed.append("the checkpoints " + ", ".join(f"{m} {c}" for m, c in missing))
    if theirs.previous_serving and not mine.previous_serving:
        removed.append("the previous version serving until promotion")
    if mine.rollback_window < theirs.rollback_window:
        removed.append(
            f"the {duration(theirs.rollback_window)} rollback window (the previous version "
            f"kept after the switch; {duration(mine.rollback_window)} instead)"
        )
    if mine.unavailable > theirs.unavailable:
        removed.append(
            f"capacity during the rollout (up to {_percent(mine.unavailable)} of replicas "
            f"unavailable instead of {_percent(theirs.unavailable)})"
        )
    return removed


def _removed_steps(
    mine: tuple[tuple[int, int], ...], theirs: tuple[tuple[int, int], ...]
) -> list[str]:
    removed = []
    if len(mine) < len(theirs):
        removed.append(f"canary steps ({len(mine)} instead of {len(theirs)})")
    for i, ((weight, pause), (their_weight, their_pause)) in enumerate(
        zip(mine, theirs, strict=False), 1
    ):
        if weight > their_weight:
            removed.append(f"the {their_weight}% size of step {i} ({weight}% instead)")
        if pause < their_pause:
            removed.append(
                f"the {duration(their_pause)} pause of step {i} ({duration(pause)} instead)"
            )
    return removed


def _percent(share: Fraction) -> str:
    return f"{float(share * 100):g}%"


def at_least_as_careful(plan: Strategy, baseline: Strategy) -> bool:
    """The partial order of the module docstring: `plan` keeps every safeguard of `baseline`."""
    return not removed_safeguards(plan, baseline)


def proposed_plan(rule: Strategy, proposal: AIStrategy, env: Environment) -> Strategy:
    """The rule-based plan as the model's proposal would change it: the proposal's strategy,
    steps and pause; the rule's replicas, checkpoints, manual promotion, rollback window and
    capacity wherever the proposed strategy carries them."""
    name, p = proposal.name, proposal.parameters
    weights = [s for s in p.steps if 0 < s <= 100]
    rule_steps = rule.parameters.steps if rule.name == "canary" else []
    longest = max((s.pause_seconds for s in rule_steps), default=None)
    plan = strategy_named(
        name,
        env,
        reason=f"AI review: {proposal.reason or 'a more careful plan'}"[:300],
        steps=weights or [s.weight for s in rule_steps] or None,
        pause_seconds=p.pause_seconds or longest,
    )
    mine, theirs = plan.parameters, rule.parameters
    mine.replicas = theirs.replicas
    mine.checkpoints = list(theirs.checkpoints)
    if name in PROMOTED:
        mine.manual_promotion = mine.manual_promotion or theirs.manual_promotion
    if name == "blue-green":
        window = max(mine.keep_previous_seconds or 0, theirs.keep_previous_seconds or 0)
        mine.keep_previous_seconds = window or None
    if name == rule.name == "rolling":
        mine.max_surge, mine.max_unavailable = theirs.max_surge, theirs.max_unavailable
    plan.reasons = [*rule.reasons, *plan.reasons]
    return plan


def _describe(proposal: AIStrategy) -> str:
    p = proposal.parameters
    text = f"use the {proposal.name} strategy"
    weights = [s for s in p.steps if 0 < s <= 100]
    if proposal.name == "canary" and weights:
        text += " with steps " + ", ".join(f"{w}%" for w in weights)
    if proposal.name == "canary" and p.pause_seconds:
        text += f" and {duration(p.pause_seconds)} pauses"
    return text


def decide_plan(
    rule: Strategy, proposal: AIStrategy, env: Environment
) -> tuple[Strategy, AIRefusal | None]:
    """The plan to use and, when the proposal is not taken, why."""
    if rule.name == "none" and proposal.name != "none":
        # not a question of caution: the change has nothing to roll out
        why = "the change has nothing deployable (rule-based strategy: none)"
        return rule, AIRefusal(action=f"deploy with {proposal.name}", reason=why)
    plan = proposed_plan(rule, proposal, env)
    removed = removed_safeguards(plan, rule)
    if removed:
        reason = (
            f"it would remove {'; '.join(removed)} from the rule-based {rule.name} plan; "
            "the AI may only add safeguards"
        )
        return rule, AIRefusal(action=_describe(proposal), reason=reason[:1000])
    if plan.name == rule.name and safeguards(plan) == safeguards(rule):
        return rule, None
    return plan, None


def apply_policy(
    analysis: Analysis, rec: Recommendation, env: Environment
) -> tuple[Analysis, list[AIRefusal]]:
    """The analysis with the caution the recommendation adds, and what was refused."""
    result = analysis.model_copy(deep=True)
    refused: list[AIRefusal] = []
    rule_level = analysis.risk.level
    if LEVEL[rec.risk_level] > LEVEL[rule_level]:
        result.risk.level = rec.risk_level
    elif LEVEL[rec.risk_level] < LEVEL[rule_level]:
        refused.append(
            AIRefusal(
                action=f"lower the risk level to {rec.risk_level}",
                reason=f"the rule-based level is {rule_level}; the AI may only raise it",
            )
        )
    plan, refusal = decide_plan(analysis.strategy, rec.strategy, env)
    result.strategy = plan.model_copy(deep=True)
    if refusal is not None:
        refused.append(refusal)
    known = {(c.metric, c.condition) for c in result.strategy.parameters.checkpoints}
    for c in rec.checkpoints:
        if (c.metric, c.condition) not in known and result.strategy.name != "none":
            result.strategy.parameters.checkpoints.append(
                Checkpoint(metric=c.metric[:200], condition=c.condition[:200], when=c.when[:200])
            )
            known.add((c.metric, c.condition))
    return result, refused


# ---------------------------------------------------------------- what an AI assistant may reach

PROTECTED = (
    "environment {env!r} is protected from AI assistants (`assistants: deny` in "
    ".github/pipeline-bot.yml)"
)
OTHER_NAMESPACE = (
    "namespace {namespace!r} belongs to environment {owner!r}, not {env!r}: an assistant reaches "
    "an environment's namespace only by naming that environment"
)
SHARED_NAMESPACE = (
    "environment {env!r} deploys to namespace {namespace!r}, which protected environment "
    "{owner!r} (`assistants: deny`) uses on the same kube context"
)


def namespace_of(env: Environment) -> str:
    return env.namespace or env.name


def assistant_refusal(
    config: RepoConfig, environment: str, namespace: str | None, *, changes_cluster: bool
) -> str | None:
    """Why an AI assistant may not use `environment` with the `namespace` it asked for, or None
    when it may. Raises UnknownEnvironmentError for an environment `config` does not define."""
    env = config.environment(environment)
    own = namespace_of(env)
    target = (namespace or own).strip().lower()
    others = [e for e in config.environments or default_config().environments if e.name != env.name]
    if target != own.lower():
        owner = next((e for e in others if namespace_of(e).lower() == target), None)
        if owner is not None:
            return OTHER_NAMESPACE.format(namespace=namespace, owner=owner.name, env=env.name)
    if not changes_cluster:
        return None
    if env.assistants == "deny":
        return PROTECTED.format(env=env.name)
    for other in others:
        same_place = (
            namespace_of(other).lower() == target and other.kube_context == env.kube_context
        )
        if other.assistants == "deny" and same_place:
            return SHARED_NAMESPACE.format(env=env.name, namespace=target, owner=other.name)
    return None
