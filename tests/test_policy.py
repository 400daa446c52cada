"""The AI may only add safeguards: caution is a partial order on plans, never a ranking of names."""

from __future__ import annotations

import pytest

from pipeline_bot.core.classify import Kind
from pipeline_bot.core.policy import apply_policy, at_least_as_careful, removed_safeguards
from pipeline_bot.core.report import analysis_markdown
from pipeline_bot.core.strategy import choose_strategy
from pipeline_bot.models import (
    AIResources,
    AIReview,
    AIStrategy,
    AIStrategyParameters,
    Analysis,
    CanaryStep,
    ChangeMetrics,
    ChangeStats,
    Recommendation,
    Risk,
    RiskLevel,
    Strategy,
    StrategyName,
)
from pipeline_bot.repo_config import Environment

PROD = Environment(name="production", order=2, replicas=4)

SCORE: dict[str, int] = {"low": 10, "medium": 30, "high": 60, "critical": 90}


def _analysis(level: RiskLevel, env: Environment = PROD, deployable: bool = True) -> Analysis:
    risk = Risk(score=SCORE[level], level=level, factors=[])
    strategy = choose_strategy(
        risk, set(), deployable=deployable, environment=env, kinds={Kind.CODE}
    )
    return Analysis(
        repository="acme/shop",
        base="a" * 40,
        head="b" * 40,
        commits=[],
        risk=risk,
        strategy=strategy,
        findings=[],
        affected_services=["shop"],
        stats=ChangeStats(files=1, additions=1, deletions=0, commits=1),
        metrics=ChangeMetrics(
            subsystems=1,
            directories=1,
            files=1,
            entropy=0.0,
            lines_added=1,
            lines_deleted=0,
            is_fix=False,
        ),
    )


def _proposal(
    name: StrategyName, steps: list[int] | None = None, pause: int = 0, level: RiskLevel = "low"
) -> Recommendation:
    return Recommendation(
        summary="",
        risk_level=level,
        risks=[],
        strategy=AIStrategy(
            name=name, parameters=AIStrategyParameters(steps=steps or [], pause_seconds=pause)
        ),
        resources=AIResources(),
        checkpoints=[],
        confidence=0.5,
    )


def test_a_one_step_canary_cannot_replace_a_critical_production_blue_green():
    analysis = _analysis("critical")
    rule = analysis.strategy
    assert rule.name == "blue-green"
    assert rule.parameters.manual_promotion is True
    assert rule.parameters.keep_previous_seconds == 7200
    decided, refused = apply_policy(analysis, _proposal("canary", [100], level="critical"), PROD)
    assert decided.strategy == rule
    assert [r.action for r in refused] == ["use the canary strategy with steps 100%"]
    assert "rollback window" in refused[0].reason


STAGING = Environment(name="staging", order=1, replicas=4)


def _rule(level: RiskLevel, env: Environment = PROD, deployable: bool = True) -> Strategy:
    risk = Risk(score=SCORE[level], level=level, factors=[])
    return choose_strategy(
        risk, {"migration"}, deployable=deployable, environment=env, kinds={Kind.CODE}
    )


# one plan per strategy, as the rules make them: low/medium/critical risk in production
PLANS: dict[str, Strategy] = {
    "none": _rule("low", deployable=False),
    "rolling": _rule("low"),
    "canary": _rule("medium"),
    "blue-green": _rule("critical"),
}

# (plan, baseline) -> words naming each safeguard the plan would remove; [] = at least as careful
ORDER = {
    ("none", "none"): [],
    ("none", "rolling"): ["the checkpoints", "capacity during the rollout"],
    ("none", "canary"): [
        "canary steps (0 instead of 2)",
        "the checkpoints",
        "previous",
        "capacity",
    ],
    ("none", "blue-green"): [
        "manual promotion",
        "checkpoints",
        "previous",
        "2h rollback",
        "capacity",
    ],
    ("rolling", "none"): [],
    ("rolling", "rolling"): [],
    ("rolling", "canary"): ["canary steps (0 instead of 2)", "previous version serving"],
    ("rolling", "blue-green"): ["manual promotion", "previous version serving", "2h rollback"],
    ("canary", "none"): [],
    ("canary", "rolling"): [],
    ("canary", "canary"): [],
    ("canary", "blue-green"): ["manual promotion", "the 2h rollback window"],
    ("blue-green", "none"): [],
    ("blue-green", "rolling"): [],
    ("blue-green", "canary"): ["canary steps (0 instead of 2)"],
    ("blue-green", "blue-green"): [],
}


@pytest.mark.parametrize(("plan", "baseline"), sorted(ORDER))
def test_caution_compares_what_two_plans_keep_in_both_directions(plan, baseline):
    removed = removed_safeguards(PLANS[plan], PLANS[baseline])
    expected = ORDER[(plan, baseline)]
    assert at_least_as_careful(PLANS[plan], PLANS[baseline]) is (expected == [])
    assert len(removed) == len(expected), removed
    for words, reason in zip(expected, removed, strict=True):
        assert words in reason


def test_the_order_is_reflexive_and_transitive_over_many_plans():
    plans = [*PLANS.values(), _rule("high"), _rule("critical", STAGING), _rule("high", STAGING)]
    plans += [_with(PLANS["blue-green"], keep_previous_seconds=None), _manual_canary()]
    for a in plans:
        assert at_least_as_careful(a, a)
        for b in plans:
            for c in plans:
                if at_least_as_careful(a, b) and at_least_as_careful(b, c):
                    assert at_least_as_careful(a, c)


def _with(plan: Strategy, **changes: object) -> Strategy:
    copy = plan.model_copy(deep=True)
    for key, value in changes.items():
        setattr(copy.parameters, key, value)
    return copy


def _manual_canary() -> Strategy:
    return _with(PLANS["canary"], manual_promotion=True)


def test_a_canary_with_manual_promotion_is_comparable_to_a_blue_green_without_a_window():
    no_window = _with(PLANS["blue-green"], keep_previous_seconds=None)
    assert at_least_as_careful(_manual_canary(), no_window)
    assert removed_safeguards(no_window, _manual_canary()) == ["canary steps (0 instead of 2)"]
    assert not at_least_as_careful(_manual_canary(), PLANS["blue-green"])


@pytest.mark.parametrize(
    ("plan", "words"),
    [
        (_with(PLANS["canary"], steps=[CanaryStep(weight=25, pause_seconds=300)]), "canary steps"),
        (_with(PLANS["canary"], steps=[CanaryStep(weight=50, pause_seconds=300)] * 2), "step 1"),
        (
            _with(
                PLANS["canary"],
                steps=[
                    CanaryStep(weight=25, pause_seconds=60),
                    CanaryStep(weight=50, pause_seconds=300),
                ],
            ),
            "pause of step 1",
        ),
        (_with(PLANS["canary"], checkpoints=[]), "request-success-rate"),
        (_with(PLANS["rolling"], max_unavailable="50%"), "50% of replicas unavailable"),
        (_with(PLANS["rolling"], max_unavailable="many"), "capacity"),
        (_with(PLANS["blue-green"], keep_previous_seconds=600), "10m instead"),
    ],
)
def test_every_single_safeguard_removed_is_named(plan, words):
    baseline = PLANS[plan.name]
    removed = removed_safeguards(plan, baseline)
    assert len(removed) == 1, removed
    assert words in removed[0]


def test_a_rolling_plan_claiming_manual_promotion_or_a_window_gets_no_credit_for_it():
    # the engine ignores both on a rolling update, so the order does too
    claims = _with(PLANS["rolling"], manual_promotion=True, keep_previous_seconds=7200)
    assert not at_least_as_careful(claims, PLANS["blue-green"])


# (rule level, environment, proposal, accepted) for every pair of strategy names
RULES = {
    "none": ("low", PROD, False),
    "rolling": ("low", PROD, True),
    "canary": ("medium", PROD, True),
    "blue-green": ("critical", PROD, True),
}
TAKEN = {
    ("none", "none"),
    ("rolling", "rolling"),
    ("rolling", "canary"),
    ("rolling", "blue-green"),
    ("canary", "canary"),
    ("blue-green", "blue-green"),
}
NAMES: list[StrategyName] = ["none", "rolling", "canary", "blue-green"]


@pytest.mark.parametrize("proposed", NAMES)
@pytest.mark.parametrize("rule_name", NAMES)
def test_a_proposal_is_taken_only_when_it_keeps_every_safeguard(rule_name, proposed):
    level, env, deployable = RULES[rule_name]
    analysis = _analysis(level, env, deployable)
    assert analysis.strategy.name == rule_name
    decided, refused = apply_policy(analysis, _proposal(proposed, level=level), env)
    if (rule_name, proposed) in TAKEN:
        assert refused == []
        assert decided.strategy.name == proposed
        assert at_least_as_careful(decided.strategy, analysis.strategy)
    else:
        assert decided.strategy == analysis.strategy
        assert len(refused) == 1
        assert proposed in refused[0].action
        assert refused[0].reason


def test_the_refusal_is_listed_in_the_report_with_the_safeguard_it_would_remove():
    analysis = _analysis("critical")
    decided, refused = apply_policy(analysis, _proposal("rolling", level="critical"), PROD)
    decided.ai = AIReview(status="ok", summary="", refused=refused)
    markdown = analysis_markdown(decided)
    assert "Refused by policy:" in markdown
    assert "- use the rolling strategy: it would remove manual promotion" in markdown
    assert "the 2h rollback window" in markdown


def test_a_proposal_that_adds_steps_and_longer_pauses_is_merged_with_the_rule_plan():
    analysis = _analysis("medium")
    rule = analysis.strategy
    decided, refused = apply_policy(
        analysis, _proposal("canary", [5, 10, 25, 50], pause=900, level="medium"), PROD
    )
    assert refused == []
    plan = decided.strategy
    assert [(s.weight, s.pause_seconds) for s in plan.parameters.steps] == [
        (5, 900),
        (10, 900),
        (25, 900),
        (50, 900),
    ]
    assert plan.parameters.checkpoints == rule.parameters.checkpoints
    assert plan.reasons[: len(rule.reasons)] == rule.reasons
    assert plan.reasons[-1].startswith("AI review:")


def test_what_the_model_cannot_say_stays_as_the_rule_has_it():
    # critical outside production: a canary with manual promotion and 15-minute pauses
    analysis = _analysis("critical", STAGING)
    rule = analysis.strategy
    assert rule.name == "canary"
    assert rule.parameters.manual_promotion
    decided, refused = apply_policy(
        analysis, _proposal("canary", [2, 5, 10, 25, 50], level="critical"), STAGING
    )
    assert refused == []
    assert decided.strategy.parameters.manual_promotion is True
    assert {s.pause_seconds for s in decided.strategy.parameters.steps} == {900}
    # a bare "canary" keeps the rule's steps: nothing changes, nothing is refused
    same, refused = apply_policy(analysis, _proposal("canary", level="critical"), STAGING)
    assert refused == []
    assert same.strategy == rule


def test_a_rolling_rule_taking_blue_green_gains_manual_promotion_and_a_window_in_production():
    analysis = _analysis("low")
    decided, refused = apply_policy(analysis, _proposal("blue-green"), PROD)
    assert refused == []
    assert decided.strategy.parameters.manual_promotion is True
    assert decided.strategy.parameters.keep_previous_seconds
