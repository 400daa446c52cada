"""The Action's `plan` and `pipeline` commands as a workflow step runs them (a process of its own):
a plan on the Kubernetes API test server with its first service made to fail, and a workflow run
on the GitHub Actions double served on loopback; each with its job summary."""

from __future__ import annotations

import pytest

from tests.fakes.github_actions import REPO, ActionsDouble
from tests.test_action import _run


def test_a_plan_whose_first_service_fails_skips_the_rest_and_says_so(
    base_repo, tmp_path, kube_api, namespace, monkeypatch
):
    monkeypatch.setenv("PIPELINE_BOT_PIN_DIGEST", "false")  # registry.local is no registry
    base_repo.commit(
        "three services",
        {
            ".github/pipeline-bot.yml": (
                "version: 1\nenvironments:\n"
                f"  - {{name: staging, namespace: {namespace}, replicas: 1}}\n"
                "services:\n"
                "  - {name: db, paths: ['db/**'], image: registry.local/db}\n"
                "  - {name: api, paths: ['api/**'], image: registry.local/api, depends_on: [db]}\n"
                "  - {name: web, paths: ['web/**'], image: registry.local/web, depends_on: [api]}\n"
            )
        },
    )
    kube_api.fail_image("registry.local/db:5")
    kubeconfig = kube_api.kubeconfig(tmp_path / "kc", namespace).read_text()
    proc, outputs, summary = _run(
        base_repo,
        tmp_path,
        "workflow_dispatch",
        {},
        COMMAND="plan",
        ENVIRONMENT="staging",
        IMAGE="5",
        STRATEGY="rolling",
        KUBECONFIG=kubeconfig,
        TIMEOUT="30s",
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert outputs["status"] == "failed"
    assert "plan failed: 3 service(s): 1 rolled back, 2 skipped" in proc.stdout
    assert "```mermaid\ngraph LR" in summary
    assert '  s0["db (rolled_back)"]' in summary
    assert "  s0 --> s1" in summary
    assert "| 2 | `api` | skipped | not deployed: db did not succeed (rolled back) |" in summary


@pytest.fixture
def served_actions(monkeypatch):
    double = ActionsDouble(conclusion="failure")
    url, server = double.serve()
    monkeypatch.setenv("GITHUB_API_URL", url)  # the step's environment, as the runner sets it
    monkeypatch.setenv("GITHUB_REPOSITORY", REPO)
    yield double, url
    server.shutdown()
    server.server_close()


def test_the_pipeline_command_follows_the_run_into_the_summary(base_repo, tmp_path, served_actions):
    double, _ = served_actions
    double.conclusion = "success"
    proc, outputs, summary = _run(
        base_repo,
        tmp_path,
        "workflow_dispatch",
        {},
        COMMAND="pipeline",
        WORKFLOW="deploy.yml",
        REF="main",
        **{"WORKFLOW-INPUTS": '{"environment": "staging"}'},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert outputs["status"] == "succeeded"
    assert "## pipeline-bot pipeline: deploy.yml on main: **succeeded**" in summary
    assert "| deploy | success | 119s |" in summary
    sent = double.made("POST", "/dispatches$")[0][3]
    assert sent["inputs"] == {"environment": "staging"}
    printed = [line for line in proc.stdout.splitlines() if not line.startswith("::add-mask::")]
    assert not any("ghs_secret_token_value" in line for line in printed)
    assert "ghs_secret_token_value" not in summary


def test_a_failed_run_fails_the_step(base_repo, tmp_path, served_actions):
    proc, outputs, summary = _run(
        base_repo,
        tmp_path,
        "workflow_dispatch",
        {},
        COMMAND="pipeline",
        WORKFLOW="deploy.yml",
        REF="main",
    )
    assert proc.returncode == 1
    assert outputs["status"] == "failed"
    assert "::pipeline failed: run " in proc.stdout
    assert "| deploy | failure |" in summary
