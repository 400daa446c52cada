"""execute_pipeline, list_workflow_runs and get_workflow_run against a GitHub Actions double whose
requests are checked against GitHub's REST description and whose answers are its examples: a run
that succeeds, one that fails, one cancelled, and a GitHub that does not return the run's id."""

from __future__ import annotations

import json
from typing import Any

import pytest
import respx

from pipeline_bot.core.pipeline import pick_dispatched_run
from pipeline_bot.errors import ToolError
from pipeline_bot.integrations.github import GitHubActions
from pipeline_bot.models import AuditEntry
from pipeline_bot.tools import ToolContext, build_registry
from tests.fakes.github_actions import REPO, SHA, ActionsDouble

TOKEN = "ghs_pipelinetesttoken0123456789abcdef"


class Audit:
    def __init__(self) -> None:
        self.entries_: list[AuditEntry] = []

    def record(self, entry: AuditEntry) -> None:
        self.entries_.append(entry)

    def entries(self, **_: Any) -> list[AuditEntry]:
        return self.entries_


@pytest.fixture
def actions(request: pytest.FixtureRequest) -> Any:
    double = ActionsDouble(**getattr(request, "param", {}))

    def side_effect(req: Any) -> Any:
        body = json.loads(req.content) if req.content else None
        return double.answer(req.method, req.url.path, dict(req.url.params), body)

    with respx.mock(assert_all_called=False) as mock:
        mock.route(url__startswith="https://api.github.com").mock(side_effect=side_effect)
        yield double


@pytest.fixture
def ctx() -> ToolContext:
    return ToolContext(
        workflows=GitHubActions(TOKEN), github_repository=REPO, audit=Audit(), front_end="test"
    )


def _run(ctx: ToolContext, **args: Any) -> Any:
    arguments = {"branch": "main", "workflow": "deploy.yml", "poll_seconds": 0.05, **args}
    return build_registry().call("execute_pipeline", arguments, ctx)


def test_a_run_that_succeeds_is_followed_to_its_end(actions, ctx):
    result = _run(ctx, inputs={"environment": "staging"})
    assert result.status == "succeeded"
    run = result.run
    assert run.found_by == "run details"
    assert (run.status, run.conclusion, run.seconds) == ("completed", "success", 95.0)
    assert run.logs_url == f"https://api.github.com/repos/{REPO}/actions/runs/{run.id}/logs"
    assert [j.name for j in run.jobs] == ["deploy"]
    assert run.jobs[0].steps
    assert all(s.conclusion == "success" for s in run.jobs[0].steps)
    assert result.message == f"run {run.id} succeeded in 95s"
    sent = actions.made("POST", "/dispatches$")[0][3]
    assert sent == {"ref": "main", "inputs": {"environment": "staging"}, "return_run_details": True}
    # it looked until the run completed: queued, in progress, completed
    assert len(actions.made("GET", rf"/actions/runs/{run.id}$")) == 3
    recorded = [e for e in ctx.audit.entries() if e.tool == "execute_pipeline"]
    assert [e.result for e in recorded] == [
        f"dispatched run {run.id} at {SHA[:12]}",
        "status succeeded",
    ]


@pytest.mark.parametrize("actions", [{"conclusion": "failure"}], indirect=True)
def test_a_run_that_fails_names_its_failed_job_and_step(actions, ctx):
    result = _run(ctx)
    assert result.status == "failed"
    assert result.message == f"run {result.run.id} ended failure (jobs: deploy) in 95s"
    assert result.run.jobs[0].conclusion == "failure"
    assert result.run.jobs[0].steps[-1].conclusion == "failure"


@pytest.mark.parametrize("actions", [{"conclusion": "cancelled"}], indirect=True)
def test_a_cancelled_run_says_so(actions, ctx):
    result = _run(ctx)
    assert result.status == "cancelled"
    assert result.message.startswith(f"run {result.run.id} was cancelled")


@pytest.mark.parametrize(
    "actions",
    [{"run_details": False}, {"run_details": False, "refuses_key": True}],
    indirect=True,
    ids=["answers 204", "refuses the key"],
)
def test_without_run_details_the_run_is_found_by_dispatch_time_and_head(actions, ctx):
    result = _run(ctx)
    run = result.run
    assert result.status == "succeeded"
    assert run.found_by == "dispatch time and head"
    assert "did not return the run's id" in run.note
    # the new run, not the one dispatched an hour earlier nor the one on another branch
    assert run.branch == "main"
    assert run.id == max(actions.runs)
    bodies = [c[3] for c in actions.made("POST", "/dispatches$")]
    asked = {"ref": "main", "return_run_details": True}
    # refused: dispatched again without the key (GitHub Enterprise Server's description lacks it)
    assert bodies == ([asked, {"ref": "main"}] if actions.refuses_key else [asked])
    assert actions.made("GET", "/actions/workflows/deploy.yml/runs$")[0][2] == {
        "per_page": "20",
        "branch": "main",
        "event": "workflow_dispatch",
    }


def test_no_wait_returns_the_run_as_it_starts(actions, ctx):
    result = _run(ctx, wait=False)
    assert result.status == "running"
    assert result.run.status == "queued"


def test_list_and_get_read_runs(actions, ctx):
    started = _run(ctx, wait=False).run
    registry = build_registry()
    listed = registry.call("list_workflow_runs", {"branch": "main"}, ctx)
    assert listed.runs[0].id == started.id
    assert all(r.branch == "main" for r in listed.runs)
    one = registry.call("get_workflow_run", {"run_id": started.id}, ctx)
    assert one.id == started.id
    assert one.jobs[0].name == "deploy"


def test_another_repository_than_the_configured_one_is_refused(actions, ctx):
    with pytest.raises(ToolError, match="acts on octo-org/octo-repo"):
        _run(ctx, repository="someone/else")
    assert not actions.calls


def test_without_a_token_the_tools_say_what_to_set():
    with pytest.raises(ToolError, match="set GITHUB_TOKEN"):
        build_registry().call("list_workflow_runs", {}, ToolContext())


@pytest.mark.parametrize(
    ("created", "expected"),
    [
        (["2026-03-01T12:00:00Z"], 0),
        (["2026-03-01T11:59:59Z"], 0),  # GitHub's whole seconds: within the slack
        (["2026-03-01T11:59:00Z"], None),  # before the dispatch
        (["2026-03-01T12:00:05Z", "2026-03-01T12:00:01Z"], 1),  # the oldest after it
    ],
)
def test_picking_the_dispatched_run(created, expected):
    from datetime import UTC, datetime

    runs = [
        {
            "id": i + 1,
            "event": "workflow_dispatch",
            "head_sha": SHA,
            "head_branch": "main",
            "created_at": c,
        }
        for i, c in enumerate(created)
    ]
    found = pick_dispatched_run(
        runs, dispatched_at=datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC), sha=SHA, branch="main"
    )
    assert (found["id"] - 1 if found else None) == expected


def test_the_cli_runs_follows_and_lists(actions, cli, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("GITHUB_REPOSITORY", REPO)
    ran = cli("pipeline", "run", "--workflow", "deploy.yml", "--ref", "main", "--poll", "0s")
    assert ran.exit_code == 0, ran.stderr
    assert ran.stdout.startswith("SUCCEEDED: run ")
    assert "job deploy: success" in ran.stdout
    assert TOKEN not in ran.stdout + ran.stderr
    run_id = max(actions.runs)
    status = cli("pipeline", "status", str(run_id), "--format", "json")
    assert status.exit_code == 0, status.stderr
    assert status.json()["conclusion"] == "success"
    listed = cli("pipeline", "list", "--branch", "main")
    assert listed.stdout.splitlines()[0].startswith(str(run_id))
    bad = cli("pipeline", "run", "--workflow", "deploy.yml", "--ref", "main", "-i", "novalue")
    assert bad.exit_code == 2


@pytest.mark.parametrize("actions", [{"conclusion": "failure"}], indirect=True)
def test_the_cli_exits_1_when_the_run_fails(actions, cli, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("GITHUB_REPOSITORY", REPO)
    ran = cli("pipeline", "run", "--workflow", "deploy.yml", "--ref", "main", "--poll", "0s")
    assert ran.exit_code == 1
    assert ran.stdout.startswith("FAILED: run ")
