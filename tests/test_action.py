"""`pipeline-bot action` run as the runner runs it: a workspace with a real repository, real
webhook payloads (npm @octokit/webhooks-examples) with their SHAs rewritten to it, and files for
GITHUB_OUTPUT and GITHUB_STEP_SUMMARY."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import webhook_examples

SCRIPT = str(Path(sys.executable).parent / "pipeline-bot")
RISKY = {
    "db/migrations/0002_add.sql": "ALTER TABLE cart ADD COLUMN d int;\n",
    "Dockerfile": "FROM python:3.12-slim\nCOPY . /app\n",
    "k8s/deployment.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: shop\n"
    "spec:\n  replicas: 3\n",
}
# a private key makes any change critical, whatever the model's probability
CRITICAL = {
    **RISKY,
    "deploy/server.pem": (
        "-----BEGIN RSA PRIVATE KEY-----\n"
        + "MIIEowIBAAKCAQEA"
        + "x4lfake\n-----END RSA PRIVATE KEY-----\n"
    ),
}
KUBECONFIG_SECRET = "apiVersion: v1\nusers:\n- name: ci\n  user: {token: kube-very-secret-token}\n"


def _payload(event):
    return webhook_examples(event)[0]


def _outputs(path: Path) -> dict[str, str]:
    text = path.read_text()
    return {
        m.group(1): m.group(3)
        for m in re.finditer(r"^([\w-]+)<<(ghadelimiter_[\w-]+)\n(.*?)\n\2$", text, re.M | re.S)
    }


def _run(repo, tmp_path, event, payload, **inputs):
    (tmp_path / "event.json").write_text(json.dumps(payload))
    out, summary = tmp_path / "output", tmp_path / "summary"
    env = {
        **os.environ,
        "GITHUB_EVENT_NAME": event,
        "GITHUB_EVENT_PATH": str(tmp_path / "event.json"),
        "GITHUB_WORKSPACE": str(repo.root),
        "GITHUB_SHA": repo.git("rev-parse", "HEAD"),
        "GITHUB_OUTPUT": str(out),
        "GITHUB_STEP_SUMMARY": str(summary),
        "RUNNER_TEMP": str(tmp_path),
        "PIPELINE_BOT_DATABASE_URL": f"sqlite:///{tmp_path / 'pb.db'}",
        "INPUT_GITHUB-TOKEN": "ghs_secret_token_value",
        "INPUT_KUBECONFIG": KUBECONFIG_SECRET,
    }
    env.update({f"INPUT_{k.upper()}": v for k, v in inputs.items()})
    proc = subprocess.run(
        [SCRIPT, "action"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    outputs = _outputs(out) if out.exists() else {}
    return proc, outputs, summary.read_text() if summary.exists() else ""


def test_push_is_analysed_with_outputs_summary_and_annotations(base_repo, tmp_path):
    before = base_repo.git("rev-parse", "HEAD")
    after = base_repo.commit("add discounts", CRITICAL)
    payload = _payload("push")
    payload.update(before=before, after=after)
    proc, outputs, summary = _run(base_repo, tmp_path, "push", payload)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    first_output = next(i for i, line in enumerate(lines) if not line.startswith("::add-mask::"))
    assert lines[first_output] == "pipeline-bot 0.1.0: analyze"
    assert outputs["risk-level"] == "critical"
    assert 0 <= int(outputs["risk-score"]) <= 100
    assert outputs["strategy"] in ("canary", "blue-green")
    assert "chance that this change is reverted or needs a fix" in summary
    # the mined history and the model stay in the workspace for actions/cache to keep
    assert list((base_repo.root / ".pipeline-bot-cache" / "risk").glob("*.sqlite3"))
    assert Path(outputs["summary-markdown"]).read_text().startswith("## ")
    assert "### Why this risk" in summary
    assert any(
        line.startswith("::error title=pipeline-bot%3A migration,file=db/migrations/")
        for line in lines
    )
    assert f"push {before[:7]}..{after[:7]}" in proc.stdout


def test_secret_inputs_are_masked_first_and_never_printed(base_repo, tmp_path):
    before = base_repo.git("rev-parse", "HEAD")
    after = base_repo.commit("x", {"src/shop/x.py": "x = 1\n"})
    payload = _payload("push")
    payload.update(before=before, after=after)
    proc, outputs, summary = _run(base_repo, tmp_path, "push", payload)
    masks = [line for line in proc.stdout.splitlines() if line.startswith("::add-mask::")]
    assert "::add-mask::ghs_secret_token_value" in masks
    assert "::add-mask::user: {token: kube-very-secret-token}" in masks
    rest = "\n".join(line for line in proc.stdout.splitlines() if not line.startswith("::add-mask"))
    for secret in ("ghs_secret_token_value", "kube-very-secret-token"):
        assert secret not in rest + proc.stderr + summary + json.dumps(outputs)


def test_pull_request_range_and_fail_on(base_repo, tmp_path):
    base = base_repo.git("rev-parse", "HEAD")
    head = base_repo.commit("risky", CRITICAL)
    payload = _payload("pull_request")
    payload["pull_request"]["base"]["sha"] = base
    payload["pull_request"]["head"]["sha"] = head
    proc, outputs, _ = _run(base_repo, tmp_path, "pull_request", payload, **{"FAIL-ON": "high"})
    assert proc.returncode == 1
    assert f"pull request {base[:7]}..{head[:7]}" in proc.stdout
    assert "::error title=pipeline-bot::risk level" in proc.stdout
    assert outputs["risk-level"] in ("high", "critical")


def test_a_new_branch_push_is_analysed_from_its_fork_point(base_repo, tmp_path):
    fork = base_repo.git("rev-parse", "HEAD")
    base_repo.git("checkout", "-q", "-b", "feature")
    head = base_repo.commit("docs", {"docs/guide.md": "# Guide\n"})
    payload = _payload("push")
    payload.update(before="0" * 40, after=head, created=True)
    proc, outputs, _ = _run(base_repo, tmp_path, "push", payload)
    assert proc.returncode == 0, proc.stdout
    assert "push of a new branch" in proc.stdout
    assert outputs["strategy"] == "none"
    assert fork != head


def test_an_unknown_command_is_an_error_line(base_repo, tmp_path):
    proc, _, _ = _run(base_repo, tmp_path, "workflow_dispatch", {}, COMMAND="launch")
    assert proc.returncode == 1
    assert "::error title=pipeline-bot::unknown command 'launch'" in proc.stdout


def test_deploy_from_the_action_on_the_test_server(base_repo, tmp_path, kube_api, namespace):
    base_repo.commit(
        "config",
        {
            ".github/pipeline-bot.yml": (
                f"version: 1\nenvironments:\n  - {{name: staging, namespace: {namespace}}}\n"
            )
        },
    )
    kubeconfig = kube_api.kubeconfig(tmp_path / "kc", namespace).read_text()
    proc, outputs, summary = _run(
        base_repo,
        tmp_path,
        "workflow_dispatch",
        {},
        COMMAND="deploy",
        ENVIRONMENT="staging",
        APP="shop",
        IMAGE="shop:1",
        STRATEGY="rolling",
        KUBECONFIG=kubeconfig,
        TIMEOUT="30",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert outputs["status"] == "succeeded"
    assert outputs["rolled-back"] == "false"
    assert outputs["deployment-id"]
    assert "| rollout | succeeded |" in summary
    printed = [line for line in proc.stdout.splitlines() if not line.startswith("::add-mask::")]
    assert not any("test-server-token" in line for line in printed)


def test_a_bad_gates_input_fails_the_step_naming_the_field(base_repo, tmp_path):
    proc, _, _ = _run(
        base_repo,
        tmp_path,
        "workflow_dispatch",
        {},
        COMMAND="deploy",
        ENVIRONMENT="production",
        APP="shop",
        IMAGE="shop:1",
        GATES="- name: x\n  query: up\n  success_condition: {}\n",
    )
    assert proc.returncode == 1
    assert "gates[0].success_condition" in proc.stdout
    assert "::error title=pipeline-bot::" in proc.stdout


def test_the_compare_fallback_analyses_what_github_reports(
    base_repo, tmp_path, github_double, monkeypatch
):
    url, comparison, seen = github_double("commit-comparison")
    before = base_repo.git("rev-parse", "HEAD")
    after = base_repo.commit("change", {"src/shop/x.py": "x = 1\n"})
    clone = tmp_path / "shallow"
    subprocess.run(
        ["git", "clone", "-q", "--depth", "1", f"file://{base_repo.root}", str(clone)], check=True
    )
    subprocess.run(["git", "-C", str(clone), "remote", "remove", "origin"], check=True)
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/shop")
    monkeypatch.setenv("GITHUB_API_URL", url)

    class Shallow:
        root = clone

        def git(self, *args):
            return subprocess.run(
                ["git", "-C", str(clone), *args], capture_output=True, text=True, check=True
            ).stdout.strip()

    payload = _payload("push")
    payload.update(before=before, after=after)
    proc, outputs, summary = _run(Shallow(), tmp_path, "push", payload)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "analysed with GitHub's compare API" in proc.stdout
    assert seen == [f"/repos/acme/shop/compare/{before}...{after}"]
    assert int(outputs["risk-score"]) >= 0
    assert f"· {len(comparison['files'])} file" in summary


def test_ai_true_adds_the_ai_review_to_the_job_summary_and_masks_the_key(base_repo, tmp_path):
    from tests.fakes.openai_server import ScriptedModel, answer
    from tests.test_ai import RECOMMENDATION

    before = base_repo.git("rev-parse", "HEAD")
    after = base_repo.commit("add discounts", RISKY)
    payload = _payload("push")
    payload.update(before=before, after=after)
    model = ScriptedModel([answer(RECOMMENDATION)])
    try:
        proc, outputs, summary = _run(
            base_repo,
            tmp_path,
            "push",
            payload,
            ai="true",
            model="scripted",
            **{"openai-base-url": model.url, "openai-api-key": "sk-action-key-0123456789"},
        )
    finally:
        model.close()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "### AI review" in summary
    assert "Table lock during migration" in summary
    assert "::add-mask::sk-action-key-0123456789" in proc.stdout
    assert "sk-action-key-0123456789" not in summary
    assert outputs["risk-level"] == "critical"
    assert len(model.requests) == 1


def test_a_rolled_back_deploy_is_investigated_in_the_summary(
    base_repo, tmp_path, kube_api, namespace
):
    from tests.fakes.openai_server import ScriptedModel, answer
    from tests.test_ai import INVESTIGATION

    base_repo.commit(
        "config",
        {
            ".github/pipeline-bot.yml": (
                f"version: 1\nenvironments:\n  - {{name: staging, namespace: {namespace}}}\n"
            )
        },
    )
    kubeconfig = kube_api.kubeconfig(tmp_path / "kc", namespace).read_text()
    inputs = {
        "COMMAND": "deploy",
        "ENVIRONMENT": "staging",
        "APP": "shop",
        "STRATEGY": "rolling",
        "KUBECONFIG": kubeconfig,
        "TIMEOUT": "30",
    }
    proc, _, _ = _run(base_repo, tmp_path, "workflow_dispatch", {}, IMAGE="shop:1", **inputs)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    kube_api.fail_image("shop:2")
    model = ScriptedModel([answer(INVESTIGATION)])
    try:
        proc, outputs, summary = _run(
            base_repo,
            tmp_path,
            "workflow_dispatch",
            {},
            IMAGE="shop:2",
            MODEL="scripted",
            **{"OPENAI-BASE-URL": model.url},
            **inputs,
        )
    finally:
        model.close()
    assert proc.returncode == 1
    assert outputs["rolled-back"] == "true"
    assert "### AI investigation" in summary
    assert "Likely cause: registry.local/shop:2 does not exist" in summary
