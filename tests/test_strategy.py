"""Risk + environment -> strategy, with the reasons and parameters spelled out."""

from __future__ import annotations

import pytest

from pipeline_bot.core.classify import Kind
from pipeline_bot.core.strategy import choose_strategy
from pipeline_bot.core.weights import level_for
from pipeline_bot.models import Risk, RiskFactor
from pipeline_bot.repo_config import Environment

PROD = Environment(name="production", order=2, replicas=4)
STAGING = Environment(name="staging", order=1)


def _risk(score: int) -> Risk:
    factors = [RiskFactor(rule="migration", weight=score, reason="database migrations (1 file)")]
    return Risk(score=score, level=level_for(score), factors=factors if score else [])


def _choose(score, env=PROD, rules=frozenset(), deployable=True):
    return choose_strategy(
        _risk(score), set(rules), deployable=deployable, environment=env, kinds={Kind.CODE}
    )


@pytest.mark.parametrize(
    ("score", "env", "name"),
    [
        (0, PROD, "rolling"),
        (24, PROD, "rolling"),
        (25, PROD, "canary"),
        (60, PROD, "canary"),
        (80, PROD, "blue-green"),
        (60, STAGING, "rolling"),
        (80, STAGING, "canary"),
    ],
)
def test_strategy_follows_risk_level_and_environment(score, env, name):
    strategy = _choose(score, env)
    assert strategy.name == name
    assert strategy.environment == env.name
    assert strategy.reasons[0].startswith(f"risk is {level_for(score)} ({score}/100)")


def test_higher_risk_canaries_take_smaller_first_steps_and_longer_pauses():
    medium, high = _choose(30).parameters, _choose(60).parameters
    assert [s.weight for s in medium.steps] == [25, 50]
    assert [s.weight for s in high.steps] == [10, 25, 50]
    assert high.steps[0].pause_seconds > medium.steps[0].pause_seconds
    assert medium.replicas == 4


def test_critical_production_change_waits_for_a_person_and_keeps_the_old_colour():
    params = _choose(90).parameters
    assert params.manual_promotion is True
    assert params.keep_previous_seconds == 7200


def test_rolling_never_drops_capacity():
    params = _choose(5).parameters
    assert (params.max_surge, params.max_unavailable) == ("25%", "0")


def test_a_migration_adds_a_checkpoint_and_a_reason():
    strategy = _choose(40, rules={"migration"})
    assert any(c.metric == "database-errors" for c in strategy.parameters.checkpoints)
    assert any("migration" in r for r in strategy.reasons)


def test_an_environment_can_force_its_strategy():
    forced = Environment(name="production", strategy="blue-green")
    strategy = _choose(5, forced)
    assert strategy.name == "blue-green"
    assert "configured to always use blue-green" in strategy.reasons[1]


def test_nothing_deployable_means_no_deploy_even_when_forced():
    forced = Environment(name="production", strategy="canary")
    strategy = choose_strategy(
        _risk(0), set(), deployable=False, environment=forced, kinds={Kind.DOCS, Kind.TEST}
    )
    assert strategy.name == "none"
    assert strategy.reasons == ["nothing deployable changed (only: docs, test)"]


@pytest.mark.parametrize(
    ("kinds", "unowned", "says", "never"),
    [
        ({Kind.DOCS}, (), "nothing deployable changed (only: docs)", "paths"),
        (
            {Kind.CODE, Kind.MIGRATION},
            ("api", "web"),
            "under no service's `paths` (services: api, web)",
            "nothing deployable changed",
        ),
    ],
)
def test_why_nothing_deploys_names_the_real_reason(kinds, unowned, says, never):
    """Issue 16, point 5: a HIGH code change outside every service's paths was reported as
    'nothing deployable changed (only: code, ...)'."""
    strategy = choose_strategy(
        _risk(70), set(), deployable=False, environment=PROD, kinds=kinds, unowned=unowned
    )
    assert strategy.name == "none"
    assert says in strategy.reasons[0]
    assert never not in strategy.reasons[0]
