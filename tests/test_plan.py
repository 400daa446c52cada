"""The deploy planner (core/plan.py) and its rendering, table-driven; the config names the line of
a bad dependency."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline_bot.core.plan import (
    DependencyProblem,
    PlanResult,
    ServiceOutcome,
    blocked,
    build_plan,
    dependency_problems,
    plan_status,
    ready,
    summary,
)
from pipeline_bot.core.plan_render import plan_mermaid, plan_text, result_markdown
from pipeline_bot.errors import ConfigError
from pipeline_bot.repo_config import parse_repo_config

FIVE = [
    ("db", []),
    ("cache", []),
    ("api", ["db", "cache"]),
    ("worker", ["db"]),
    ("web", ["api"]),
]


@pytest.mark.parametrize(
    ("services", "stages"),
    [
        ([], []),
        ([("a", [])], [["a"]]),
        ([("a", []), ("b", []), ("c", [])], [["a", "b", "c"]]),
        ([("c", ["b"]), ("b", ["a"]), ("a", [])], [["a"], ["b"], ["c"]]),
        # a diamond: b and c in parallel between a and d
        ([("d", ["b", "c"]), ("b", ["a"]), ("c", ["a"]), ("a", [])], [["a"], ["b", "c"], ["d"]]),
        # a stage is one past the deepest dependency, not the nearest
        ([("a", []), ("b", ["a"]), ("c", ["a", "b"])], [["a"], ["b"], ["c"]]),
        (FIVE, [["db", "cache"], ["api", "worker"], ["web"]]),
    ],
)
def test_services_become_stages_in_dependency_order(services, stages):
    assert build_plan(services).stages == stages


@pytest.mark.parametrize(
    ("services", "expected"),
    [
        ([("a", ["b"]), ("b", [])], []),
        (
            [("a", ["zzz"])],
            [(("services", 0, "depends_on", 0), "service 'a' depends on unknown service 'zzz'")],
        ),
        (
            [("a", ["a"])],
            [(("services", 0, "depends_on", 0), "in a cycle: a -> a")],
        ),
        (
            [("a", ["b"]), ("b", ["a"])],
            [(("services", 1, "depends_on", 0), "in a cycle: a -> b -> a")],
        ),
        (
            [("a", []), ("b", ["a", "d"]), ("c", ["b"]), ("d", ["c"])],
            [(("services", 2, "depends_on", 0), "in a cycle: b -> d -> c -> b")],
        ),
        (
            [("a", ["x"]), ("b", ["c"]), ("c", ["b"])],
            [
                (("services", 0, "depends_on", 0), "unknown service 'x'"),
                (("services", 2, "depends_on", 0), "in a cycle: b -> c -> b"),
            ],
        ),
    ],
)
def test_unknown_services_and_cycles_are_found_with_their_place(services, expected):
    found = dependency_problems(services)
    assert [loc for loc, _ in found] == [loc for loc, _ in expected]
    for (_, message), (_, part) in zip(found, expected, strict=True):
        assert part in message
    if expected:
        with pytest.raises(DependencyProblem):
            build_plan(services)


def test_a_long_chain_does_not_hit_the_recursion_limit():
    chain = [(f"s{i}", [f"s{i + 1}"] if i < 2999 else []) for i in range(3000)]
    assert len(build_plan(chain).stages) == 3000


@pytest.mark.parametrize(
    ("status", "ready_now", "stopped"),
    [
        ({}, ["db", "cache"], {}),
        ({"db": "running", "cache": "running"}, [], {}),
        ({"db": "succeeded", "cache": "running"}, ["worker"], {}),
        ({"db": "succeeded", "cache": "succeeded"}, ["api", "worker"], {}),
        # a failure stops its dependents, transitively, and nothing else
        ({"db": "succeeded", "cache": "rolled_back"}, ["worker"], {"api": "cache", "web": "cache"}),
        ({"db": "failed", "cache": "running"}, [], {"api": "db", "worker": "db", "web": "db"}),
        # a paused canary (waiting for promotion) stops its dependents too
        ({"db": "succeeded", "cache": "paused"}, ["worker"], {"api": "cache", "web": "cache"}),
        # a dry run's rendering lets dependents render too
        ({"db": "planned", "cache": "planned"}, ["api", "worker"], {}),
        # services already started or ended are neither ready nor stopped
        (
            {"db": "succeeded", "cache": "succeeded", "api": "failed", "worker": "running"},
            [],
            {"web": "api"},
        ),
    ],
)
def test_ready_and_blocked_services(status, ready_now, stopped):
    plan = build_plan(FIVE)
    assert ready(plan, status) == ready_now
    assert blocked(plan, status) == stopped


def _outcome(name: str, status: str) -> ServiceOutcome:
    return ServiceOutcome(name=name, stage=0, status=status)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("statuses", "overall", "line"),
    [
        (["succeeded", "succeeded"], "succeeded", "2 succeeded"),
        (["planned", "planned"], "planned", "2 planned"),
        (
            ["succeeded", "rolled_back", "skipped"],
            "failed",
            "1 succeeded, 1 rolled back, 1 skipped",
        ),
        (["succeeded", "paused"], "failed", "1 succeeded, 1 paused"),
    ],
)
def test_plan_status_and_summary(statuses, overall, line):
    outcomes = [_outcome(f"s{i}", s) for i, s in enumerate(statuses)]
    assert plan_status(outcomes) == overall
    assert summary(outcomes) == line


def test_text_and_mermaid_show_the_order_and_the_edges():
    plan = build_plan(FIVE, environment="staging", max_parallel=2)
    text = plan_text(plan)
    assert "5 service(s) in 3 stage(s), at most 2 at once" in text
    assert "api  (after db, cache)" in text
    graph = plan_mermaid(plan)
    assert graph.splitlines()[0] == "graph LR"
    assert '  s2["api"]' in graph
    assert "  s0 --> s2" in graph
    assert "  s1 --> s2" in graph
    assert "  s2 --> s4" in graph
    coloured = plan_mermaid(plan, {"db": "failed", "worker": "skipped"})
    assert '  s0["db (failed)"]' in coloured
    assert "  class s0 failed" in coloured
    assert "  class s3 skipped" in coloured


def test_the_markdown_report_escapes_messages():
    plan = build_plan([("a", [])], environment="staging")
    at = datetime(2026, 1, 1, tzinfo=UTC)
    outcome = ServiceOutcome(name="a", stage=0, status="failed", message="boom | @team <b>")
    result = PlanResult(
        plan_id="plan-1",
        environment="staging",
        status="failed",
        message="1 service(s): 1 failed",
        stages=plan.stages,
        services=[outcome],
        started_at=at,
        finished_at=at,
    )
    report = result_markdown(plan, result)
    assert "```mermaid\ngraph LR" in report
    assert "| 1 | `a` | failed | boom \\| &#64;team &lt;b&gt; |" in report


CONFIG = """\
version: 1
services:
  - name: api
    paths: ['api/**']
    depends_on: [db]
  - name: db
    paths: ['db/**']
    depends_on:
      - cache
      - api
  - name: cache
    paths: ['cache/**']
    depends_on: [nothing]
"""


def test_the_config_names_the_line_of_a_bad_dependency():
    with pytest.raises(ConfigError) as caught:
        parse_repo_config(CONFIG, source="p.yml")
    rendered = [p.render("p.yml") for p in caught.value.problems]
    assert rendered == [
        "p.yml:13: services[2].depends_on[0]: service 'cache' depends on unknown service "
        "'nothing' (known: api, db)",
        "p.yml:10: services[1].depends_on[1]: services depend on each other in a cycle: "
        "api -> db -> api",
    ]


def _progress_run(store, config, ctx, fail: str | None, seen: dict, look_at: str) -> None:  # type: ignore[no-untyped-def]
    """A plan run with a stand-in for each deploy (a record saved as the engine saves it), one
    service at a time; while `look_at` deploys, `status --plan`'s tool looks at the plan."""
    import uuid

    from pipeline_bot.deploy.plans import run_plan
    from pipeline_bot.models import DeployRecord, DeployResult
    from pipeline_bot.tools.plans import PlanStatusInput, get_plan_status, plan_for

    def deploy_one(service, held):  # type: ignore[no-untyped-def]
        at = datetime.now(UTC)
        record = DeployRecord(
            id=uuid.uuid4().hex[:12],
            environment="staging",
            app=service.name,
            namespace="ns",
            image=f"r/{service.name}:2",
            strategy="rolling",
            status="running",
            started_at=at,
        )
        held.save(record)
        if service.name == look_at:
            status = get_plan_status(PlanStatusInput(environment="staging"), ctx)
            seen.update({o.name: o.status for o in status.services})
        record.status = "failed" if service.name == fail else "succeeded"
        held.save(record)
        return DeployResult(
            deploy_id=record.id,
            environment="staging",
            app=service.name,
            namespace="ns",
            image=record.image,
            strategy="rolling",
            status=record.status,
            message="",
            started_at=at,
        )

    run_plan(plan_for(config, "staging", 1), "staging", deploy_one, store)


def test_status_shows_a_plan_in_progress_not_the_one_before(tmp_path):
    from pipeline_bot.integrations.store import SqlStore
    from pipeline_bot.tools import ToolContext

    config = parse_repo_config(
        "version: 1\nenvironments: [{name: staging}]\nservices:\n"
        "  - {name: db, paths: [db/]}\n  - {name: cache, paths: [cache/]}\n"
        "  - {name: api, paths: [api/], depends_on: [db, cache]}\n"
        "  - {name: worker, paths: [worker/], depends_on: [db]}\n"
        "  - {name: web, paths: [web/], depends_on: [api]}\n"
    )
    store = SqlStore(f"sqlite:///{tmp_path / 'pb.db'}")
    ctx = ToolContext(store=store, config=config)
    _progress_run(store, config, ctx, None, {}, look_at="")  # a plan where all succeeded
    seen: dict[str, str] = {}
    _progress_run(store, config, ctx, "cache", seen, look_at="worker")
    # while worker deploys: cache failed, its dependents skipped (not the last plan's success)
    assert seen == {
        "db": "succeeded",
        "cache": "failed",
        "api": "skipped",
        "worker": "running",
        "web": "skipped",
    }
