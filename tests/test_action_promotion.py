"""The Action's `promotion` command as a workflow step runs it (a process of its own) on the
Kubernetes API test server: it stops before production, which requires approval, and in a job
whose GitHub environment has required reviewers (`approved-by-environment: true`) those
reviewers' approval is recorded for this commit and plan and the promotion goes on
(issue 18, point 3)."""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request

import pytest

from tests.test_action import _run


@pytest.fixture
def promotion_repo(base_repo, kube_api, namespace, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    prod = f"{namespace[:40]}-prod"
    monkeypatch.setenv("PIPELINE_BOT_PIN_DIGEST", "false")  # registry.local is no registry
    monkeypatch.setenv("GITHUB_ACTOR", "octocat")  # the runner sets it: who started the run
    base_repo.commit(
        "promotion",
        {
            ".github/pipeline-bot.yml": (
                "version: 1\nenvironments:\n"
                f"  - {{name: staging, order: 1, namespace: {namespace}, replicas: 1}}\n"
                f"  - {{name: production, order: 2, namespace: {prod}, replicas: 1, "
                "requires_approval: true, approval_expires: 2h}\n"
                "services:\n"
                "  - {name: db, paths: ['db/**'], image: registry.local/db}\n"
                "  - {name: api, paths: ['api/**'], image: registry.local/api, depends_on: [db]}\n"
            )
        },
    )
    kubeconfig = kube_api.kubeconfig(tmp_path / "kc", namespace).read_text()
    yield base_repo, prod, kubeconfig
    gone = urllib.request.Request(f"{kube_api.url}/api/v1/namespaces/{prod}", method="DELETE")
    with contextlib.suppress(OSError):
        urllib.request.urlopen(gone, timeout=5).close()


def _approval(kube_api, prod):  # type: ignore[no-untyped-def]
    url = f"{kube_api.url}/api/v1/namespaces/{prod}/configmaps/pipeline-bot-approval"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.loads(json.loads(resp.read())["data"]["approval"])
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def _promotion(repo, tmp_path, kubeconfig, **inputs):  # type: ignore[no-untyped-def]
    return _run(
        repo,
        tmp_path,
        "workflow_dispatch",
        {},
        **{
            "COMMAND": "promotion",
            "IMAGE": "7",
            "STRATEGY": "rolling",
            "KUBECONFIG": kubeconfig,
            "TIMEOUT": "30s",
            **inputs,
        },
    )


def test_a_protected_environments_job_approves_and_promotes(promotion_repo, tmp_path, kube_api):
    repo, prod, kubeconfig = promotion_repo
    sha = repo.git("rev-parse", "HEAD")

    # a job without the protected environment: staging, then a stop before production
    proc, outputs, summary = _promotion(repo, tmp_path, kubeconfig, ENVIRONMENT="production")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert outputs["status"] == "waiting_for_approval"
    assert "promotion waiting for approval: production requires a person's approval" in (
        proc.stdout
    )
    assert (
        f"## pipeline-bot promotion of `{sha[:12]}` (image tag `7`): **waiting_for_approval**"
        in (summary)
    )
    assert "| staging | succeeded |" in summary
    assert "| production | waiting_for_approval |" in summary
    assert _approval(kube_api, prod) is None

    # the job in the protected environment: its reviewers' approval is recorded, and it goes on
    (tmp_path / "summary").unlink()
    proc, outputs, summary = _promotion(
        repo,
        tmp_path,
        kubeconfig,
        ENVIRONMENT="production",
        **{"APPROVED-BY-ENVIRONMENT": "true"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert outputs["status"] == "succeeded"
    approval = _approval(kube_api, prod)
    assert approval is not None
    assert approval["approved_by"] == "github-environment:production (@octocat)"
    assert approval["commit_sha"] == sha
    assert f"of `{sha[:12]}` into `production` until" in summary
    assert approval["plan_digest"] in summary
    assert "| staging | succeeded |" in summary
    assert "this commit already runs here" in summary
    assert "| production | succeeded |" in summary

    # the recorded approval holds for this commit and plan only: another image waits again
    (tmp_path / "summary").unlink()
    proc, outputs, _ = _promotion(repo, tmp_path, kubeconfig, ENVIRONMENT="production", IMAGE="8")
    assert proc.returncode == 1
    assert outputs["status"] == "waiting_for_approval"
    assert "the plan is now" in proc.stdout


def test_approved_by_environment_needs_the_environment_and_true_or_false(
    promotion_repo, tmp_path, kube_api
):
    repo, prod, kubeconfig = promotion_repo
    proc, _, _ = _promotion(repo, tmp_path, kubeconfig, **{"APPROVED-BY-ENVIRONMENT": "true"})
    assert proc.returncode == 1
    assert "approved-by-environment needs the input environment" in proc.stdout
    proc, _, _ = _promotion(
        repo, tmp_path, kubeconfig, ENVIRONMENT="production", **{"APPROVED-BY-ENVIRONMENT": "yes"}
    )
    assert proc.returncode == 1
    assert "approved-by-environment 'yes': use true or false" in proc.stdout
    # staging requires no approval: nothing is recorded, and the promotion to it goes on
    proc, outputs, summary = _promotion(
        repo, tmp_path, kubeconfig, ENVIRONMENT="staging", **{"APPROVED-BY-ENVIRONMENT": "true"}
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert outputs["status"] == "succeeded"
    assert "does not require approval in the config" in summary
    assert _approval(kube_api, prod) is None
