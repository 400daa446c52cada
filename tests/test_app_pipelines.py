"""The App's `/pipeline/status/run-<id>`: a GitHub Actions run as the App's installation reads it,
from the Actions double (requests checked against GitHub's REST description)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.app_harness import (  # the fixtures are imported for pytest to find them
    API_TOKEN,
    app_fixture,  # noqa: F401
    gh_fixture,  # noqa: F401
)
from tests.conftest import webhook_example
from tests.fakes.github_actions import ActionsDouble, check_request

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
REPO = "Codertocat/Hello-World"  # the repository the App is installed on in the recorded events


@pytest.fixture
def actions(gh: Any) -> ActionsDouble:
    """The Actions double answers the installation's /actions/ and /commits/ requests; the App's
    GitHub double the rest (tokens, installations)."""
    double = ActionsDouble(conclusion="failure")
    route = gh._route

    def routed(method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        if "/actions/" in path or re.search(r"/commits/[^/]+$", path):
            template = check_request(method, path, query, body)
            return double._route(method, template, path, query, body)
        return route(method, path, query, body)

    gh._route = routed
    return double


def _installed(app: Any) -> None:
    """The App installed on REPO, as its installation event records it (recorded here directly:
    a delivery would move the process's delivery counters other tests read)."""
    event = webhook_example("installation", action="created")
    app.services.deliveries.record_installation(
        event["installation"]["id"], event["installation"]["account"]["login"], [REPO], "active"
    )


def test_a_workflow_runs_status_comes_from_github_through_the_installation(app, gh, actions):
    _installed(app)
    run_id = next(iter(actions.runs))  # a run GitHub has already completed
    status = app.client.get(
        f"/pipeline/status/run-{run_id}", params={"repository": REPO}, headers=AUTH
    )
    assert status.status_code == 200, status.text
    data = status.json()
    assert data["kind"] == "workflow_run"
    assert data["run"]["id"] == run_id
    assert data["run"]["conclusion"] == "success"
    assert data["run"]["jobs"][0]["name"] == "deploy"
    assert gh.made("GET", rf"/actions/runs/{run_id}/jobs$")
    # the installation's token, never a token of the server's own
    assert gh.made("POST", r"/app/installations/\d+/access_tokens$")


def test_a_workflow_runs_status_needs_its_repository_and_the_token(app, gh, actions):
    _installed(app)
    assert app.client.get("/pipeline/status/run-1", params={"repository": REPO}).status_code == 401
    assert app.client.get("/pipeline/status/run-1", headers=AUTH).status_code == 422
    missing = app.client.get("/pipeline/status/run-99", params={"repository": REPO}, headers=AUTH)
    assert missing.status_code == 404
    elsewhere = app.client.get(
        "/pipeline/status/run-1", params={"repository": "someone/else"}, headers=AUTH
    )
    assert elsewhere.status_code == 404


def _status(app: Any, job_id: str) -> dict[str, Any]:
    answer = app.client.get(f"/pipeline/status/{job_id}", headers=AUTH)
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.mark.parametrize(
    ("given", "conclusion"),
    [
        ({"workflow": "deploy.yml"}, "failure"),  # the double's runs end in failure
        ({"pipeline_config": ".github/workflows/deploy.yml"}, "failure"),
    ],
)
def test_execute_dispatches_a_workflow_and_its_status_follows_the_run(
    app, gh, actions, given, conclusion
):
    _installed(app)
    body = {"repository": REPO, "branch": "main", "inputs": {"environment": "staging"}, **given}
    queued = app.client.post("/pipeline/execute", json=body, headers=AUTH)
    assert queued.status_code == 202, queued.text
    job_id = queued.json()["id"]
    app.work()
    dispatches = gh.made("POST", r"/actions/workflows/deploy\.yml/dispatches$")
    assert len(dispatches) == 1
    assert dispatches[0].body["ref"] == "main"
    assert dispatches[0].body["inputs"] == {"environment": "staging"}
    first = _status(app, job_id)
    assert first["kind"] == "job"
    assert first["status"] == "done"
    run_id = first["run"]["id"]
    assert run_id not in (7001, 7002)  # the run this dispatch started, not an older one
    seen = [first["run"]["status"]]
    for _ in range(5):  # GitHub's run moves on between looks; the status shows it each time
        data = _status(app, job_id)
        seen.append(data["run"]["status"])
        if data["run"]["status"] == "completed":
            break
    assert seen[-1] == "completed"
    assert "in_progress" in seen
    assert data["run"]["conclusion"] == conclusion
    assert data["run"]["jobs"][0]["name"] == "deploy"
    assert data["run"]["html_url"].endswith(f"/actions/runs/{run_id}")
    # worked again (a retry), the job never dispatches a second time
    from pipeline_bot.app.handlers import api_jobs

    delivery = app.services.deliveries.get(job_id)
    assert delivery.state["workflow_run_id"] == run_id
    ctx = type("Ctx", (), {"state": delivery.state, "payload": {}})()
    assert api_jobs.handle_workflow(ctx) == f"dispatched run {run_id}"  # type: ignore[arg-type]
    assert len(gh.made("POST", r"/dispatches$")) == 1


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"workflow": "deploy.yml"}, "needs `branch`"),
        ({"workflow": "deploy.yml", "branch": "main", "sha": "a" * 40}, "not both"),
        ({"branch": "main"}, "give `sha`"),
        ({"sha": "a" * 40, "inputs": {"x": "1"}}, "go with `workflow`"),
        ({"workflow": "../../etc/passwd", "branch": "main"}, "pattern"),
        ({"pipeline_config": "deploy.sh", "branch": "main"}, "pattern"),
    ],
)
def test_execute_says_what_a_workflow_run_needs(app, gh, actions, body, says):
    _installed(app)
    answer = app.client.post("/pipeline/execute", json={"repository": REPO, **body}, headers=AUTH)
    assert answer.status_code == 422
    assert says in answer.text
    assert not gh.made("POST", r"/dispatches$")


def test_a_retry_after_the_dispatch_never_dispatches_the_workflow_again(app, gh, actions):
    """GitHub took the dispatch (and named the run), then reading the run failed: the job's
    retries (the queue's backoff) must not start the workflow a second time."""
    _installed(app)
    app.client.app.state.worker._backoff = lambda attempts: 0.0
    gh.fail[r"/actions/runs/\d+$"] = 502  # the run's own state, read after the dispatch
    body = {"repository": REPO, "workflow": "deploy.yml", "branch": "main"}
    queued = app.client.post("/pipeline/execute", json=body, headers=AUTH)
    assert queued.status_code == 202, queued.text
    app.work()  # every retry the queue allows, back to back
    assert len(gh.made("POST", r"/dispatches$")) == 1
    gh.fail.clear()
    data = _status(app, queued.json()["id"])
    assert data["run"]["id"] not in (7001, 7002)  # the run the one dispatch started
    assert data["run"]["html_url"].endswith(f"/actions/runs/{data['run']['id']}")


def test_a_retry_after_a_dispatch_whose_run_was_not_found_fails_without_dispatching(
    app, gh, actions
):
    """GitHub Enterprise Server names no run with the dispatch; looking for it failed: the job
    fails, saying so, rather than starting the workflow again."""
    _installed(app)
    actions.run_details = False
    app.client.app.state.worker._backoff = lambda attempts: 0.0
    gh.fail[r"/runs$"] = 502  # the list of runs the dispatch's run is looked for in
    body = {"repository": REPO, "workflow": "deploy.yml", "branch": "main"}
    job_id = app.client.post("/pipeline/execute", json=body, headers=AUTH).json()["id"]
    app.work()
    assert len(gh.made("POST", r"/dispatches$")) == 1
    data = _status(app, job_id)
    assert data["status"] == "failed"
    assert "not dispatched again" in data["outcome"]
