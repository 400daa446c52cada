"""What a newcomer meets first (issue 16, points 3-6): every missing setting named in one run,
settings errors without tracebacks, the MCP server saying where it listens, help that fits."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import stop_process

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "pipeline_bot"]


def _bare_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No GitHub, App or pipeline-bot settings: what a newcomer's shell has."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIPELINE_BOT_", "GITHUB_", "OPENAI_"))
    }
    env.update(HOME=str(tmp_path), PIPELINE_BOT_CACHE_DIR=str(tmp_path / "cache"), **extra)
    return env


@pytest.mark.integration  # runs the product as its own process
def test_serve_names_every_missing_setting_in_one_run(tmp_path):
    done = subprocess.run(
        [*CLI, "serve", "--port", "0"],
        env=_bare_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    for name in ("GITHUB_WEBHOOK_SECRET", "GITHUB_APP_ID", "GITHUB_APP_PRIVATE_KEY"):
        assert name in done.stderr
    assert "3 settings to fix" in done.stderr


@pytest.mark.integration  # runs the product as its own process
@pytest.mark.parametrize("command", [["serve"], ["analyze", "--repo", "."]])
def test_a_malformed_setting_is_one_line_naming_the_variable_not_a_traceback(tmp_path, command):
    secret_looking = "abc-not-a-number-s3cr3t"
    done = subprocess.run(
        [*CLI, *command],
        env=_bare_env(tmp_path, PIPELINE_BOT_APP_WORKERS=secret_looking),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "PIPELINE_BOT_APP_WORKERS" in done.stderr
    assert secret_looking not in done.stderr  # a setting's value may be a secret: never echoed


def test_help_fits_the_terminal_and_shows_no_bool_metavar(cli):
    result = cli("deploy", "--help")
    assert result.exit_code == 0
    assert "<bool>" not in result.stdout
    assert "--no-rollback " in result.stdout
    assert "│" not in result.stdout  # no boxes that cut text at 80 columns


@pytest.mark.integration
def test_mcp_over_http_says_where_it_listens_then_serves_there(tmp_path):
    proc = subprocess.Popen(
        [*CLI, "mcp", "--transport", "http", "--port", "0", "--repo", str(ROOT)],
        env=_bare_env(tmp_path),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert line.startswith("pipeline-bot MCP server listening on http://127.0.0.1:"), line
        url = line.split()[5]
        assert url.endswith("/mcp")
        request = urllib.request.Request(url, headers={"Accept": "text/event-stream"})
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                status = answer.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        assert status in (200, 400, 405, 406)  # the MCP transport answered, on that port
    finally:
        stop_process(proc)


def test_an_empty_repository_says_it_has_no_commits(cli, tmp_path):
    empty = tmp_path / "empty"
    subprocess.run(["git", "init", "-q", str(empty)], check=True)
    result = cli("analyze", "--repo", str(empty))
    assert result.exit_code == 2
    assert "has no commits yet" in result.stderr
    assert "git fetch" not in result.stderr


@pytest.mark.parametrize(
    ("how", "named"),
    [
        ("env", "($KUBECONFIG)"),
        ("flag", "(--kubeconfig)"),
        ("default", "~/.kube/config (the default"),
    ],
)
def test_a_missing_kubeconfig_says_where_it_looked(
    cli, base_repo, monkeypatch, tmp_path, how, named
):
    missing = tmp_path / "nowhere" / "kubeconfig"
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    args = ["status", "-e", "production", "--app", "shop", "--repo", str(base_repo.root)]
    if how == "env":
        monkeypatch.setenv("KUBECONFIG", str(missing))
    elif how == "flag":
        args += ["--kubeconfig", str(missing)]
    result = cli(*args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "no kubeconfig found: looked at" in result.stderr
    assert named in result.stderr


@pytest.mark.parametrize(
    ("yaml_text", "says", "never"),
    [
        (
            "version: 1\nenvironments:\n  - {name: prod, strategy: yolo}\n",
            "environments[0].strategy: Input should be one of 'none', 'rolling', 'blue-green', "
            "'canary', 'auto', got 'yolo'",
            "literal[",
        ),
        (
            "version: 1\nservices:\n  - {name: shop, paths: src}\n",
            "services[0].paths: Input should be a valid list",
            "list[",
        ),
    ],
)
def test_config_errors_name_the_keys_a_user_wrote(yaml_text, says, never):
    """Issue 16, point 5: union branch tags (`strategy.literal['auto']`) leaked into messages,
    one line per branch."""
    from pipeline_bot.errors import ConfigError
    from pipeline_bot.repo_config import parse_repo_config

    with pytest.raises(ConfigError) as caught:
        parse_repo_config(yaml_text)
    lines = [p.render("cfg.yml") for p in caught.value.problems]
    assert any(says in line for line in lines), lines
    assert not any(never in line for line in lines), lines
    assert len(lines) == 1, lines
