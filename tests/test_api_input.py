"""The REST API's input (issue 15, point 7): `/pipeline/execute` and `/deploy` check environment
names against the name pattern and the repository's config on its default branch, and answer
422 naming what is configured, before anything is queued."""

from __future__ import annotations

from tests.app_harness import API_TOKEN, HEAD, app_fixture, config, gh_fixture
from tests.conftest import webhook_example

__all__ = ["app_fixture", "gh_fixture"]  # fixtures, for pytest to find
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
REPO = "Codertocat/Hello-World"


def _installed(app, gh):
    gh.config = config("shop")
    app.deliver("installation", webhook_example("installation", action="created"))
    app.work()


def test_execute_refuses_environments_the_config_does_not_define(app, gh):
    _installed(app, gh)
    body = {"repository": REPO, "sha": HEAD, "environments": ["staging", "prod"]}
    answer = app.client.post("/pipeline/execute", json=body, headers=AUTH)
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert "'prod'" in detail
    assert "staging, production" in detail
    assert app.services.deliveries.recent() == app.services.deliveries.recent("done")


def test_execute_refuses_names_no_environment_can_have(app, gh):
    _installed(app, gh)
    for bad in (["Staging!"], ["../x"], [""], [], ["a" * 100], ["staging"] * 40):
        body = {"repository": REPO, "sha": HEAD, "environments": bad}
        answer = app.client.post("/pipeline/execute", json=body, headers=AUTH)
        assert answer.status_code == 422, bad


def test_deploy_refuses_an_environment_the_config_does_not_define(app, gh):
    _installed(app, gh)
    body = {"repository": REPO, "environment": "qa", "sha": HEAD}
    answer = app.client.post("/deploy", json=body, headers=AUTH)
    assert answer.status_code == 422
    assert "'qa'" in answer.json()["detail"]


def test_execute_with_configured_environments_is_queued(app, gh):
    _installed(app, gh)
    body = {"repository": REPO, "sha": HEAD, "environments": ["staging"]}
    assert app.client.post("/pipeline/execute", json=body, headers=AUTH).status_code == 202
