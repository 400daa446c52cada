"""Promotion with approval: the pure rules (table-driven), and a plan promoted from staging to
production on the Kubernetes API test server, waiting for approval, approved, re-approved for a
new plan, and stopped by an approval that expired."""

from __future__ import annotations

import contextlib
import json
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest

from pipeline_bot.core.plan import build_plan
from pipeline_bot.core.promotion import Approval, check_approval, plan_digest, promotion_order

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PLAN = build_plan([("db", []), ("api", ["db"])])
IMAGES = {"db": "r/db:1", "api": "r/api:1"}
DIGEST = plan_digest(PLAN, "production", "a" * 40, IMAGES)


def _approval(**changes):
    base = {
        "environment": "production",
        "commit_sha": "a" * 40,
        "plan_digest": DIGEST,
        "approved_by": "octocat",
        "approved_at": NOW - timedelta(hours=1),
        "expires_at": NOW + timedelta(hours=1),
    }
    return Approval(**{**base, **changes})


@pytest.mark.parametrize(
    ("approval", "verdict"),
    [
        (None, "missing"),
        (_approval(), "approved"),
        (_approval(environment="staging"), "missing"),
        (_approval(commit_sha="b" * 40), "other_commit"),
        (_approval(plan_digest="0" * 16), "other_plan"),
        (_approval(expires_at=NOW), "expired"),
        (_approval(expires_at=NOW - timedelta(seconds=1)), "expired"),
    ],
)
def test_an_approval_holds_for_its_commit_and_plan_until_it_expires(approval, verdict):
    check = check_approval(
        approval, environment="production", commit_sha="a" * 40, digest=DIGEST, now=NOW
    )
    assert check.verdict == verdict


@pytest.mark.parametrize(
    ("changed", "same"),
    [
        ({}, True),
        ({"environment": "staging"}, False),
        ({"commit": "b" * 40}, False),
        ({"images": {**IMAGES, "api": "r/api:2"}}, False),
        ({"plan": build_plan([("db", []), ("api", [])])}, False),  # a dependency dropped
    ],
)
def test_the_digest_changes_with_the_environment_commit_images_and_stages(changed, same):
    digest = plan_digest(
        changed.get("plan", PLAN),
        changed.get("environment", "production"),
        changed.get("commit", "a" * 40),
        changed.get("images", IMAGES),
    )
    assert (digest == DIGEST) is same


def test_promotion_order_follows_order_then_the_config():
    assert promotion_order([("prod", 3), ("qa", 1), ("staging", 1), ("dev", 0)]) == [
        "dev",
        "qa",
        "staging",
        "prod",
    ]


# ---------------------------------------------------------------- on the Kubernetes API test server


@pytest.fixture
def two_envs(kube_api, namespace, tmp_path, monkeypatch, base_repo):  # type: ignore[no-untyped-def]
    prod = f"{namespace[:40]}-prod"
    monkeypatch.setenv("KUBECONFIG", str(kube_api.kubeconfig(tmp_path / "kubeconfig", namespace)))
    monkeypatch.setenv("PIPELINE_BOT_PIN_DIGEST", "false")  # registry.local is no registry
    base_repo.commit(
        "promotion",
        {
            ".github/pipeline-bot.yml": (
                "version: 1\nenvironments:\n"
                f"  - {{name: staging, order: 1, namespace: {namespace}, replicas: 1}}\n"
                f"  - {{name: production, order: 2, namespace: {prod}, replicas: 1, "
                "requires_approval: true, approval_expires: 1h}\n"
                "services:\n"
                "  - {name: db, paths: ['db/**'], image: registry.local/db}\n"
                "  - {name: api, paths: ['api/**'], image: registry.local/api, depends_on: [db]}\n"
            )
        },
    )
    yield base_repo, prod
    gone = urllib.request.Request(f"{kube_api.url}/api/v1/namespaces/{prod}", method="DELETE")
    with contextlib.suppress(OSError):  # never created: the promotion stopped before it
        urllib.request.urlopen(gone, timeout=5).close()


def _promote(cli, repo, image, sha):  # type: ignore[no-untyped-def]
    return cli(
        "promotion", "run", "--repo", str(repo.root), "--image", image, "--commit", sha,
        "--strategy", "rolling", "--timeout", "30s", "--format", "json",
    )  # fmt: skip


def test_a_promotion_waits_for_approval_of_this_commit_and_plan(cli, two_envs):
    repo, _ = two_envs
    sha = repo.git("rev-parse", "HEAD")
    waiting = _promote(cli, repo, "1", sha)
    assert waiting.exit_code == 5, waiting.stderr
    data = waiting.json()
    assert data["status"] == "waiting_for_approval"
    assert [(e["environment"], e["status"]) for e in data["environments"]] == [
        ("staging", "succeeded"),
        ("production", "waiting_for_approval"),
    ]
    assert "production requires a person's approval of plan" in data["message"]

    approve = ("promotion", "approve", "--repo", str(repo.root), "-e", "production")
    approved = cli(*approve, "--image", "1", "--commit", sha)
    assert approved.exit_code == 0, approved.stderr
    digest = data["environments"][1]["plan_digest"]
    assert f"approved plan {digest} of {sha[:12]} into production" in approved.stdout

    done = _promote(cli, repo, "1", sha)
    assert done.exit_code == 0, done.stderr
    steps = done.json()["environments"]
    assert steps[0]["message"] == "this commit already runs here"  # staging not deployed again
    assert steps[1]["status"] == "succeeded"
    assert steps[1]["plan_id"]

    # another image is another plan: the approval no longer holds
    again = _promote(cli, repo, "2", sha)
    assert again.exit_code == 5
    assert "approve it again" in again.json()["message"]
    assert "the plan is now" in again.json()["message"]


def test_an_expired_approval_stops_the_promotion(cli, two_envs, kube_api):
    repo, prod = two_envs
    sha = repo.git("rev-parse", "HEAD")
    _promote(cli, repo, "1", sha)
    approve = ("promotion", "approve", "--repo", str(repo.root), "-e", "production")
    assert cli(*approve, "--image", "1", "--commit", sha).exit_code == 0
    # an hour and more passes: the stored approval's expiry is in the past
    url = f"{kube_api.url}/api/v1/namespaces/{prod}/configmaps/pipeline-bot-approval"
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
    expired = _promote(cli, repo, "1", sha)
    assert expired.exit_code == 5
    assert "expired at" in expired.json()["message"]
    assert expired.json()["environments"][1]["status"] == "waiting_for_approval"
