"""Secrets are masked by value wherever text leaves the process (issue 15, point 3): known values
are planted in every path a secret comes in by, and every output is searched for them."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline_bot import redaction
from pipeline_bot.settings import get_settings
from tests.fakes.openai_server import ScriptedModel, answer
from tests.test_action import _payload, _run
from tests.test_ai import RECOMMENDATION

SCRIPT = str(Path(sys.executable).parent / "pipeline-bot")
KUBE_TOKEN = "kubetoken7f3a9c2e5d8b1"
KEY_LINE = "MIIEvQIBADANBgkqhkiG9w0BAQEFAAplanted"
CLIENT_KEY = base64.b64encode(
    f"-----BEGIN PRIVATE KEY-----\n{KEY_LINE}\n-----END PRIVATE KEY-----\n".encode()
).decode()
KUBECONFIG = (
    "apiVersion: v1\nkind: Config\ncurrent-context: ci\n"
    # the token turns up alone in an error: it is also the (unreachable) server's host name
    f"clusters:\n- name: ci\n  cluster: {{server: 'https://{KUBE_TOKEN}.invalid:6443'}}\n"
    "contexts:\n- name: ci\n  context: {cluster: ci, user: ci}\n"
    f"users:\n- name: ci\n  user:\n    token: {KUBE_TOKEN}\n    client-key-data: {CLIENT_KEY}\n"
)
PROM_PASSWORD = "prompass8c1e4f7a2b"
PROM_URL = f"http://promuser:{PROM_PASSWORD}@127.0.0.1:9"
PROM_TOKEN = "promtoken5d2c8e1f9a"
OPENAI_KEY = "sk-planted-openai-key-4e7a1c9b"
PLANTED = (KUBE_TOKEN, KEY_LINE, CLIENT_KEY, PROM_PASSWORD, PROM_TOKEN, OPENAI_KEY)


@pytest.fixture(autouse=True)
def _fresh_registry():
    redaction._reset_for_tests()
    yield
    redaction._reset_for_tests()
    get_settings.cache_clear()


def _clean(*texts: str) -> None:
    for text in texts:
        for value in PLANTED:
            assert value not in text, f"{value!r} leaked"


@pytest.mark.integration
def test_the_action_masks_every_planted_secret_in_logs_summary_outputs_and_errors(
    base_repo, tmp_path, monkeypatch
):
    monkeypatch.setenv("PIPELINE_BOT_PROMETHEUS_TOKEN", PROM_TOKEN)
    before = base_repo.git("rev-parse", "HEAD")
    after = base_repo.commit("x", {"src/shop/x.py": "x = 1\n"})
    payload = _payload("push")
    payload.update(before=before, after=after)
    analysed, outputs, summary = _run(
        base_repo,
        tmp_path,
        "push",
        payload,
        KUBECONFIG=KUBECONFIG,
        **{"PROMETHEUS-URL": PROM_URL},
    )
    assert analysed.returncode == 0, analysed.stdout + analysed.stderr
    assert "could not check" in summary  # the unreachable Prometheus is reported, masked
    # a deploy whose connection error names the server: its host is the kubeconfig's token
    deployed, _, deploy_summary = _run(
        base_repo,
        tmp_path,
        "workflow_dispatch",
        {},
        COMMAND="deploy",
        ENVIRONMENT="production",
        IMAGE="registry.local/shop:1",
        KUBECONFIG=KUBECONFIG,
    )
    assert deployed.returncode == 1
    masks = [x for x in analysed.stdout.splitlines() if x.startswith("::add-mask::")]
    for value in (KUBE_TOKEN, PROM_PASSWORD, PROM_TOKEN, KEY_LINE):
        assert f"::add-mask::{value}" in masks
    rest = [
        line
        for run in (analysed, deployed)
        for line in (run.stdout + run.stderr).splitlines()
        if not line.startswith("::add-mask::")
    ]
    _clean("\n".join(rest), summary, deploy_summary, json.dumps(outputs))


@pytest.mark.integration
def test_the_cli_masks_url_credentials_in_what_it_prints(base_repo):
    env = {**os.environ, "PIPELINE_BOT_PROMETHEUS_TOKEN": PROM_TOKEN, "NO_COLOR": "1"}
    done = subprocess.run(
        [SCRIPT, "analyze", "--repo", str(base_repo.root), "--prometheus-url", PROM_URL],
        env={**env, "PIPELINE_BOT_PROMETHEUS_URL": PROM_URL},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "could not check" in done.stdout or "Findings" in done.stdout
    _clean(done.stdout, done.stderr)


def test_an_error_never_carries_a_registered_secret():
    from pipeline_bot.errors import IntegrationError

    redaction.register(KUBECONFIG, PROM_URL)
    err = IntegrationError(f"cannot reach https://{KUBE_TOKEN}.invalid via {PROM_URL}", service="x")
    _clean(err.message, str(err))
    assert "***" in err.message


@pytest.mark.integration
def test_a_model_never_sees_a_registered_secret(cli, base_repo, monkeypatch):
    scripted = ScriptedModel([answer(RECOMMENDATION)])
    try:
        monkeypatch.setenv("PIPELINE_BOT_LLM_MODEL", "scripted-model")
        monkeypatch.setenv("OPENAI_BASE_URL", scripted.url)
        monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
        monkeypatch.setenv("PIPELINE_BOT_LLM_RETRIES", "0")
        get_settings.cache_clear()
        # the key ends up in the change itself (someone pasted it), where no pattern knows it
        base_repo.commit("config", {"src/shop/conf.py": f"note = 'our key {OPENAI_KEY}'\n"})
        result = cli("analyze", "--repo", str(base_repo.root), "--llm", "--format", "json")
        assert result.exit_code == 0, result.stderr
        assert scripted.bodies()
        _clean(json.dumps(scripted.bodies()), result.stdout)
    finally:
        scripted.close()


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        (PROM_URL, {PROM_PASSWORD, f"promuser:{PROM_PASSWORD}"}),
        (f"https://{PROM_TOKEN}@example.com/x", {PROM_TOKEN}),
        ("https://example.com/x", set()),
        ("postgresql://app:pa@ss:w0rd@db:5432/x", {"pa@ss:w0rd", "app:pa@ss:w0rd"}),
        ("https://example.com/path?next=a@b.c", set()),
        ("not a url @ all://", set()),
    ],
)
def test_url_credentials(text, parts):
    assert set(redaction.url_parts(text)) == parts


def test_kubeconfig_credentials_are_found_decoded_and_line_by_line():
    found = set(redaction.kubeconfig_parts(KUBECONFIG))
    assert {KUBE_TOKEN, CLIENT_KEY, KEY_LINE} <= found


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (PROM_URL, "http://127.0.0.1:9"),
        ("https://example.com:8443/p?q=1", "https://example.com:8443/p?q=1"),
        ("https://u:p@[::1]:9090/api", "https://[::1]:9090/api"),
        ("postgresql://app:pa@ss@db/x?sslmode=require", "postgresql://db/x?sslmode=require"),
        ("https://example.com/a?mail=x@y.z#f@g", "https://example.com/a?mail=x@y.z#f@g"),
        ("https://TOKEN123@example.com", "https://example.com"),
    ],
)
def test_safe_url_drops_user_and_password(url, shown):
    assert redaction.safe_url(url) == shown
