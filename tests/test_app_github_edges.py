"""The App against GitHub as it really is (issue 14, point 10): the check run's deploy button under
GitHub's 20-character identifier, the organisation Members permission that `allowed_teams` needs,
the status comment that only the App's own bot user wrote, deployments that name their image,
and event names with digits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from pipeline_bot.app.context import STATUS_MARKER
from tests.app_harness import (  # the fixtures are imported for pytest to find them
    HEAD,
    Harness,
    app_fixture,  # noqa: F401
    gh_fixture,  # noqa: F401
    kube_fixture,  # noqa: F401
    pull_request_payload,
)
from tests.conftest import npm_file, webhook_example

ROOT = Path(__file__).resolve().parent.parent


def _environments(namespace: str, first: str, second: str) -> str:
    return (
        "version: 1\n"
        "environments:\n"
        f"  - {{name: {first}, order: 1, namespace: {namespace}, replicas: 1, "
        "strategy: rolling}\n"
        f"  - {{name: {second}, order: 2, namespace: {namespace}, replicas: 1, "
        "strategy: rolling}\n"
        "services:\n"
        "  - {name: shop, paths: ['src/**'], image: registry.local/shop}\n"
    )


def _press(app: Harness, identifier: str, login: str = "writer", head_sha: str = HEAD) -> None:
    """A button of the analysis check run on `head_sha` (the pull request's head by default)."""
    payload = webhook_example("check_run", action="requested_action")
    payload["repository"] = webhook_example("pull_request", action="opened")["repository"]
    payload["check_run"]["name"] = "pipeline-bot / analysis"
    payload["check_run"]["head_sha"] = head_sha
    payload["check_run"]["pull_requests"][0]["number"] = 7
    payload["requested_action"]["identifier"] = identifier
    payload["sender"]["login"] = login
    app.deliver("check_run", payload)
    app.work()


def _deploy_button(app: Harness, gh: Any) -> dict[str, str]:
    app.deliver(
        "pull_request", pull_request_payload(webhook_example("pull_request", action="opened"))
    )
    app.work()
    actions = gh.made("PATCH", r"/check-runs/\d+$")[-1].body["actions"]
    for action in actions:  # GitHub's limits for a check run's button
        assert len(action["label"]) <= 20, action
        assert len(action["description"]) <= 40, action
        assert len(action["identifier"]) <= 20, action
    return dict(actions[0])


# ---------------------------------------------------------------------- (a) the deploy button


def test_the_deploy_button_deploys_to_exactly_its_environment_never_a_prefix(
    app, gh, kube, namespace
):
    # "deploy:preproduction-eu" cut to 20 characters names the other environment
    gh.config = _environments(namespace, "preproduction-eu", "preproduction")
    button = _deploy_button(app, gh)
    assert "preproduction-eu" in button["label"] + button["description"]
    _press(app, button["identifier"])
    created = gh.made("POST", r"/deployments$")
    assert [c.body["environment"] for c in created] == ["preproduction-eu"]
    assert "**succeeded**" in app.status_comment()


def test_a_deploy_button_of_an_older_head_deploys_nothing(app, gh, kube, namespace):
    """The button deploys the commit its check run analysed, or nothing: never a head pushed
    after the analysis that the one pressing it has not seen."""
    gh.config = _environments(namespace, "preproduction-eu", "preproduction")
    button = _deploy_button(app, gh)
    gh.pulls[7].head = "c" * 40  # pushed after the analysis of HEAD
    _press(app, button["identifier"], head_sha=HEAD)
    assert gh.made("POST", r"/deployments$") == []
    text = app.status_comment()
    assert f"moved from `{HEAD[:12]}`" in text, text
    assert f"to `{'c' * 12}`" in text, text


def test_a_deploy_button_that_no_longer_matches_the_config_is_refused(app, gh, kube, namespace):
    gh.config = _environments(namespace, "preproduction-eu", "preproduction")
    button = _deploy_button(app, gh)
    gh.config = _environments(namespace, "preproduction-eu1", "preproduction")  # renamed since
    _press(app, button["identifier"])
    assert "no longer" in app.status_comment()
    # a button from before the fix, cut at 20 characters, cannot say which environment it meant
    _press(app, "deploy:preproduction")
    assert "no longer" in app.status_comment()
    assert gh.made("POST", r"/deployments$") == []


# ---------------------------------------------------------------------- (b) allowed_teams


def test_the_app_manifest_requests_the_members_permission_allowed_teams_needs():
    manifest = yaml.safe_load((ROOT / "app.yml").read_text())
    spec = npm_file(
        "@octokit", "openapi", "generated", "api.github.com.json", what="GitHub's description"
    )
    permissions = json.loads(spec.read_text())["components"]["schemas"]["app-permissions"]
    for name, level in manifest["default_permissions"].items():
        assert level in permissions["properties"][name]["enum"], name
    assert manifest["default_permissions"]["members"] == "read"


def test_a_team_member_may_deploy_and_a_missing_members_permission_is_named(app, gh, kube):
    gh.config = gh.config.replace(
        "strategy: rolling, ", "strategy: rolling, allowed_teams: [Codertocat/deployers], "
    )
    gh.teams["Codertocat/deployers"] = {"writer"}
    app.comment("/deploy staging", "writer")
    assert "**succeeded**" in app.status_comment()
    gh.members_permission = False
    app.comment("/deploy staging", "writer", comment_id=502)
    text = app.status_comment()
    assert "Members" in text
    assert "permission" in text
    assert "Codertocat/deployers" in text


# ---------------------------------------------------------------------- (c) the status comment


def test_a_comment_by_someone_else_holding_the_marker_is_never_edited(app, gh, kube):
    planted = f"{STATUS_MARKER}\nplanted by mallory"
    gh.comments[900] = planted
    gh.authors[900] = ("mallory", "User")
    gh.comments[901] = f"{STATUS_MARKER}\nanother App's comment"
    gh.authors[901] = ("other-app[bot]", "Bot")
    app.comment("/status staging", "reader")
    assert gh.comments[900] == planted
    assert gh.comments[901].endswith("another App's comment")
    assert len(gh.made("POST", r"/issues/7/comments$")) == 1
    assert gh.made("PATCH", r"/issues/comments/90[01]$") == []


def test_the_apps_own_status_comment_is_found_and_edited(app, gh, kube):
    gh.comments[902] = f"{STATUS_MARKER}\nan earlier status"
    gh.authors[902] = (gh.bot, "Bot")
    app.comment("/status staging", "reader")
    assert gh.made("POST", r"/issues/7/comments$") == []
    assert "| staging | shop |" in gh.comments[902]


# ---------------------------------------------------------------------- (d) deployments


def test_github_deployments_record_the_image_and_its_tag(app, gh, kube):
    app.comment("/deploy staging", "writer")
    app.comment("/deploy staging --image registry.local/shop:v2", "writer", comment_id=502)
    created = [c.body for c in gh.made("POST", r"/deployments$")]
    assert [c["payload"]["image"] for c in created] == [
        f"registry.local/shop:{HEAD}",
        "registry.local/shop:v2",
    ]
    assert [c["payload"]["tag"] for c in created] == [HEAD, "v2"]
    assert f"registry.local/shop:{HEAD}" in created[0]["description"]
    assert "registry.local/shop:v2" in created[1]["description"]


# ---------------------------------------------------------------------- (e) event names


def _id(event: str) -> str:
    return "event-" + event.replace("_", "-")  # delivery ids are GUIDs: no underscores


def test_every_event_github_sends_is_accepted_and_the_unhandled_ones_ignored(app):
    index = npm_file(
        "@octokit", "webhooks-examples", "api.github.com", "index.json", what="webhook examples"
    )
    names = {e["name"] for e in json.loads(index.read_text())}
    names |= {"projects_v2", "projects_v2_status_update", "security_and_analysis"}
    assert "projects_v2_item" in names
    for name in sorted(names):
        response = app.deliver(name, {"installation": {"id": 1}}, _id(name))
        assert response.status_code == 202, (name, response.text)
        assert response.json()["status"] in ("queued", "ignored"), name
    for name in ("projects_v2_item", "projects_v2", "security_and_analysis", "star"):
        assert app.services.deliveries.get(_id(name)).status == "ignored"
    # the REST API's own jobs are never a webhook's to claim
    assert app.deliver("api.deploy", {"installation": {"id": 1}}).status_code == 400
