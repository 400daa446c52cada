"""Approving a promotion from a pull request (issue 18, point 3): `/approve <environment>` and the
check run's "Approve <env>" button, through the App's webhook path (signed deliveries, GitHub's
API double, the Kubernetes API test server). The approval is the registry's approve_promotion
for the head commit and the default branch's plan, so `promote_plan` lets exactly that commit
and plan past the gate, and no longer once the approval has expired."""

from __future__ import annotations

import contextlib
import json
import re
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest

from pipeline_bot.core.checkrun import APPROVE_BUTTON, button_digest
from pipeline_bot.integrations.kubernetes import KubernetesCluster
from pipeline_bot.repo_config import parse_repo_config
from pipeline_bot.tools import ToolContext, build_registry
from tests.app_harness import (  # the fixtures are imported for pytest to find them
    HEAD,
    app_fixture,  # noqa: F401
    gh_fixture,  # noqa: F401
    kube_fixture,  # noqa: F401
    pull_request_payload,
)
from tests.conftest import webhook_example

REPO = "Codertocat/Hello-World"


def approval_config(staging: str, production: str, extra: str = "") -> str:
    return (
        "version: 1\n"
        "environments:\n"
        f"  - {{name: staging, order: 1, namespace: {staging}, replicas: 1, strategy: rolling}}\n"
        f"  - {{name: production, order: 2, namespace: {production}, replicas: 1, "
        "strategy: rolling, required_permission: maintain, requires_approval: true, "
        f"approval_expires: 1h{extra}}}\n"
        "services:\n"
        "  - {name: shop, paths: ['src/**'], image: registry.local/shop}\n"
    )


@pytest.fixture
def approvals(gh, kube, kube_api, namespace):  # type: ignore[no-untyped-def]
    """The test repository's config with production requiring approval (its own namespace),
    and a `maintainer`; yields the production namespace, deleted afterwards."""
    prod = f"{namespace[:40]}-prod"
    gh.config = approval_config(namespace, prod)
    gh.permissions["maintainer"] = "maintain"
    yield prod
    gone = urllib.request.Request(f"{kube_api.url}/api/v1/namespaces/{prod}", method="DELETE")
    with contextlib.suppress(OSError):  # never created: nothing was approved or deployed there
        urllib.request.urlopen(gone, timeout=5).close()


def _stored_url(kube_api, prod: str) -> str:  # type: ignore[no-untyped-def]
    return f"{kube_api.url}/api/v1/namespaces/{prod}/configmaps/pipeline-bot-approval"


def _stored(kube_api, prod: str) -> dict | None:  # type: ignore[no-untyped-def]
    try:
        with urllib.request.urlopen(_stored_url(kube_api, prod), timeout=5) as resp:
            return json.loads(json.loads(resp.read())["data"]["approval"])
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def _promote(app, gh, kube, sha: str = HEAD):  # type: ignore[no-untyped-def]
    """promote_plan through the registry, with the App's cluster and store and the config the
    App reads from the default branch."""
    ctx = ToolContext(
        cluster=lambda env: KubernetesCluster.connect(kubeconfig=str(kube)),
        store=app.services.store,
        config=parse_repo_config(gh.config, source="the test's config"),
        front_end="test",
    )
    arguments = {
        "image_tag": sha,  # what the App deploys: each service's image tagged with the commit
        "commit_sha": sha,
        "strategy": "rolling",
        "repository": REPO,
        "timeout_seconds": 30,
    }
    return build_registry().call("promote_plan", arguments, ctx)


def test_approve_lets_the_promotion_of_this_head_and_plan_past_the_gate(
    app, gh, kube, kube_api, approvals
):
    waiting = _promote(app, gh, kube)
    assert waiting.status == "waiting_for_approval", waiting.message
    assert [(e.environment, e.status) for e in waiting.environments] == [
        ("staging", "succeeded"),
        ("production", "waiting_for_approval"),
    ]
    digest = waiting.environments[1].plan_digest
    assert digest

    app.comment("/approve production", "maintainer")
    text = app.status_comment()
    assert f"approved plan `{digest}` of `{HEAD[:12]}` into **production**" in text, text
    assert text.count("@maintainer") == 1  # who approved, mentioned once
    expiry = re.search(r"until (\d{4}-\d\d-\d\d \d\d:\d\d) UTC", text)
    assert expiry, text
    stored = _stored(kube_api, approvals)
    assert stored is not None
    assert (stored["commit_sha"], stored["plan_digest"]) == (HEAD, digest)
    assert stored["approved_by"] == "@maintainer"
    assert stored["expires_at"].replace("T", " ").startswith(expiry.group(1))
    expires = datetime.fromisoformat(stored["expires_at"])
    assert timedelta(minutes=59) < expires - datetime.now(UTC) <= timedelta(hours=1)
    assert [c.body["content"] for c in gh.made("POST", r"/reactions$")] == ["eyes", "rocket"]

    done = _promote(app, gh, kube)
    assert done.status == "succeeded", done.message
    assert done.environments[0].message == "this commit already runs here"
    assert done.environments[1].status == "succeeded"
    assert done.environments[1].plan_id

    # another commit is another approval: the one for HEAD does not let it in
    other = _promote(app, gh, kube, sha="c" * 40)
    assert other.status == "waiting_for_approval"
    assert f"is for commit {HEAD[:12]}, not {'c' * 12}" in other.message


def test_an_approval_that_expired_stops_the_promotion_again(app, gh, kube, kube_api, approvals):
    app.comment("/approve production", "maintainer")
    assert "approved plan" in app.status_comment()
    # an hour and more passes: the stored approval's expiry is in the past
    url = _stored_url(kube_api, approvals)
    with urllib.request.urlopen(url, timeout=5) as resp:
        stored = json.loads(resp.read())
    approval = json.loads(stored["data"]["approval"])
    approval["expires_at"] = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    stored["data"]["approval"] = json.dumps(approval)
    put = urllib.request.Request(
        url,
        method="PUT",
        data=json.dumps(stored).encode(),
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(put, timeout=5).close()
    expired = _promote(app, gh, kube)
    assert expired.status == "waiting_for_approval"
    assert "expired at" in expired.message
    assert "by @maintainer" in expired.message
    assert expired.environments[1].status == "waiting_for_approval"


def test_approve_is_refused_without_permission_where_none_is_required_and_for_unknown_envs(
    app, gh, kube, kube_api, approvals
):
    app.comment("/approve production", "writer")
    text = app.status_comment()
    assert "refused" in text
    assert "needs maintain permission" in text
    assert "&#64;writer has write" in text
    app.comment("/approve staging", "maintainer", comment_id=502)
    text = app.status_comment()
    assert "refused" in text
    assert "staging does not require approval" in text
    app.comment("/approve qa", "maintainer", comment_id=503)
    text = app.status_comment()
    assert "unknown environment 'qa'" in text
    assert "staging, production" in text
    app.comment("/approve production --app shop", "maintainer", comment_id=504)
    assert "Usage: `/approve <environment> [--image TAG]`" in app.status_comment()
    assert _stored(kube_api, approvals) is None  # nothing was approved
    reactions = [c.body["content"] for c in gh.made("POST", r"/reactions$")]
    assert reactions.count("rocket") == 0


def test_prevent_self_approval_refuses_the_author_and_committers_and_not_others(
    app, gh, kube, kube_api, approvals, namespace
):
    gh.config = approval_config(namespace, approvals, ", prevent_self_approval: true")
    gh.permissions["author"] = gh.permissions["pusher"] = "maintain"
    pr = gh.pulls[7]
    pr.author, pr.commits = "Author", [("author", "web-flow"), (None, "pusher")]
    # who opened the pull request (logins compared as GitHub does: case aside)
    app.comment("/approve production", "author")
    text = app.status_comment()
    assert "refused" in text
    assert "production prevents self-approval" in text, text
    # who committed to it, even without an account matching a commit's author email
    app.comment("/approve production", "pusher", comment_id=502)
    assert "production prevents self-approval" in app.status_comment()
    assert _stored(kube_api, approvals) is None
    # the check run's button asks the same
    identifier = APPROVE_BUTTON + button_digest("production", APPROVE_BUTTON)
    app.deliver("check_run", _button(identifier, "author", HEAD))
    app.work()
    assert "production prevents self-approval" in app.status_comment()
    assert _stored(kube_api, approvals) is None
    # someone who wrote none of it approves
    app.comment("/approve production", "maintainer", comment_id=503)
    assert "approved plan" in app.status_comment()
    stored = _stored(kube_api, approvals)
    assert stored is not None
    assert stored["approved_by"] == "@maintainer"
    asked = gh.made("GET", r"/pulls/7/commits$")
    assert asked
    assert all(c.query.get("per_page") == "100" for c in asked)


def test_prevent_self_approval_refuses_a_commit_whose_authors_cannot_be_told(
    app, gh, kube, kube_api, approvals, namespace
):
    """Who wrote a commit is read from the pull request's commits, as GitHub lists them now: an
    Approve button for an older head (pushed over, perhaps force-pushed away with its author's
    commits) and a pull request with more commits than GitHub lists (250) cannot show that the
    approver wrote none of it, so the approval is refused."""
    gh.config = approval_config(namespace, approvals, ", prevent_self_approval: true")
    gh.permissions["mallory"] = "maintain"
    identifier = APPROVE_BUTTON + button_digest("production", APPROVE_BUTTON)
    # mallory's commit was the head the check run analysed; the branch was then force-pushed
    # to commits of others only
    app.deliver("check_run", _button(identifier, "mallory", "d" * 40))
    app.work()
    text = app.status_comment()
    assert "refused" in text, text
    assert "cannot tell who wrote" in text, text
    assert _stored(kube_api, approvals) is None
    # mallory's commit is the 251st: GitHub's list of the pull request's commits stops before it
    gh.pulls[7].commits = [("octocat", "web-flow")] * 250 + [("mallory", "mallory")]
    app.comment("/approve production", "mallory", comment_id=502)
    assert "cannot tell who wrote" in app.status_comment()
    assert _stored(kube_api, approvals) is None
    # the button for the current head, by someone who wrote none of it, still approves
    gh.pulls[7].commits = [("octocat", "web-flow")]
    app.deliver("check_run", _button(identifier, "maintainer", HEAD))
    app.work()
    assert "approved plan" in app.status_comment()
    assert _stored(kube_api, approvals) is not None


def test_deploy_into_an_environment_that_requires_approval_needs_this_commits_approval(
    app, gh, kube, kube_api, approvals, namespace
):
    """`/deploy production` is no way round production's approval (nor its
    prevent_self_approval): it needs a current approval of the head commit and its plan."""
    gh.config = approval_config(namespace, approvals, ", prevent_self_approval: true")
    gh.permissions["author"] = "maintain"
    gh.pulls[7].author = "author"
    app.comment("/approve production", "author")
    assert "prevents self-approval" in app.status_comment()
    app.comment("/deploy production", "author", comment_id=502)
    text = app.status_comment()
    assert "refused" in text, text
    assert "production requires approval" in text, text
    assert gh.made("POST", r"/deployments$") == []
    # an approval of another commit is none for this one
    gh.pulls[7].head = "c" * 40
    app.comment("/approve production", "maintainer", comment_id=503)
    assert "approved plan" in app.status_comment()
    gh.pulls[7].head = HEAD
    app.comment("/deploy production", "author", comment_id=504)
    assert "is for commit cccccccccccc" in app.status_comment()
    assert gh.made("POST", r"/deployments$") == []
    # someone else approves this head: the author may deploy it
    app.comment("/approve production", "maintainer", comment_id=505)
    assert "approved plan" in app.status_comment()
    app.comment("/deploy production", "author", comment_id=506)
    assert "**succeeded**" in app.status_comment()
    assert [c.body["environment"] for c in gh.made("POST", r"/deployments$")] == ["production"]


def test_without_prevent_self_approval_the_author_may_approve(app, gh, kube, kube_api, approvals):
    gh.pulls[7].author = "maintainer"
    app.comment("/approve production", "maintainer")
    assert "approved plan" in app.status_comment()
    assert not gh.made("GET", r"/pulls/7/commits$")  # not asked: nothing to decide with it


def test_help_lists_approve(app, gh, kube):
    app.comment("/help", "reader")
    assert "`/approve <environment> [--image TAG]`" in app.status_comment()


def _button(identifier: str, login: str, head_sha: str):  # type: ignore[no-untyped-def]
    payload = webhook_example("check_run", action="requested_action")
    payload["repository"] = webhook_example("pull_request", action="opened")["repository"]
    payload["check_run"]["name"] = "pipeline-bot / analysis"
    payload["check_run"]["head_sha"] = head_sha
    payload["check_run"]["pull_requests"][0]["number"] = 7
    payload["requested_action"]["identifier"] = identifier
    payload["sender"]["login"] = login
    return payload


def test_the_check_run_has_an_approve_button_that_approves_its_own_commit(
    app, gh, kube, kube_api, approvals
):
    app.deliver(
        "pull_request", pull_request_payload(webhook_example("pull_request", action="opened"))
    )
    app.work()
    final = gh.made("PATCH", r"/check-runs/\d+$")[-1].body
    labels = [a["label"] for a in final["actions"]]
    assert labels == ["Deploy to staging", "Approve production", "Re-analyze"]
    identifier = final["actions"][1]["identifier"]
    assert identifier.startswith("approve:")
    assert len(identifier) <= 20

    gh.pulls[7].head = "c" * 40  # the pull request moved on after the analysis
    app.deliver("check_run", _button(identifier, "reader", HEAD))
    app.work()
    assert "needs maintain permission" in app.status_comment()
    assert _stored(kube_api, approvals) is None

    app.deliver("check_run", _button(identifier, "maintainer", HEAD))
    app.work()
    text = app.status_comment()
    assert f"of `{HEAD[:12]}` into **production**" in text, text
    stored = _stored(kube_api, approvals)
    assert stored is not None
    assert stored["commit_sha"] == HEAD  # the check run's commit, not the moved head
    assert stored["approved_by"] == "@maintainer"
    # the same plan promote_plan gates on: the button's approval lets HEAD through
    done = _promote(app, gh, kube)
    assert done.status == "succeeded", done.message


def test_a_check_run_has_no_approve_button_when_no_environment_requires_approval(app, gh, kube):
    app.deliver(
        "pull_request", pull_request_payload(webhook_example("pull_request", action="opened"))
    )
    app.work()
    final = gh.made("PATCH", r"/check-runs/\d+$")[-1].body
    assert [a["label"] for a in final["actions"]] == ["Deploy to staging", "Re-analyze"]
