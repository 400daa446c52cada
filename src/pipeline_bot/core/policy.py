"""What an AI recommendation may change: caution up, never down, and nothing in a cluster.

The model can raise the risk level, pick a more careful strategy and add monitoring checkpoints.
It can never lower the rule-based risk or strategy, and nothing it says deploys, promotes, rolls
back or changes a cluster (the agent never runs such tools). Every proposal the policy does not
take is listed with the reason.
"""

from __future__ import annotations

from pipeline_bot.core.strategy import strategy_named
from pipeline_bot.models import AIRefusal, Analysis, Checkpoint, Recommendation
from pipeline_bot.repo_config import Environment

CAUTION = {"none": 0, "rolling": 1, "blue-green": 2, "canary": 3}
LEVEL = {"low": 1, "medium": 2, "high": 3, "critical": 4}


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
    rule = analysis.strategy
    proposed = rec.strategy.name
    if rule.name == "none" and proposed != "none":
        refused.append(
            AIRefusal(
                action=f"deploy with {proposed}",
                reason="the change has nothing deployable (rule-based strategy: none)",
            )
        )
    elif CAUTION[proposed] > CAUTION[rule.name]:
        chosen = strategy_named(
            proposed,
            env,
            reason=f"AI review: {rec.strategy.reason or 'a more careful strategy'}"[:300],
            steps=[s for s in rec.strategy.parameters.steps if 0 < s <= 100] or None,
            pause_seconds=rec.strategy.parameters.pause_seconds or None,
        )
        chosen.reasons = [*rule.reasons, *chosen.reasons]
        chosen.parameters.checkpoints = list(rule.parameters.checkpoints)
        result.strategy = chosen
    elif CAUTION[proposed] < CAUTION[rule.name]:
        refused.append(
            AIRefusal(
                action=f"use the {proposed} strategy",
                reason=f"less careful than the rule-based {rule.name}; the AI may only add caution",
            )
        )
    known = {(c.metric, c.condition) for c in result.strategy.parameters.checkpoints}
    for c in rec.checkpoints:
        if (c.metric, c.condition) not in known and result.strategy.name != "none":
            result.strategy.parameters.checkpoints.append(
                Checkpoint(metric=c.metric[:200], condition=c.condition[:200], when=c.when[:200])
            )
            known.add((c.metric, c.condition))
    return result, refused
