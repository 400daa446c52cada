"""The App's `/pipeline/status/run-<id>`: a GitHub Actions run as the App's installation reads it,
from the Actions double (requests checked against GitHub's REST description)."""

from __future__ import annotations

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
        if "/actions/" in path:
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
