"""The audit trail (issue 15, deliverable 8): every tool call from any front end, with who asked,
the inputs (redacted), the policy's decision, the outcome and the time it took."""

from __future__ import annotations

import json
import multiprocessing
from datetime import UTC, datetime, timedelta

import anyio
import pytest

from pipeline_bot import redaction
from pipeline_bot.integrations.audit import AuditLog
from pipeline_bot.models import AuditEntry
from pipeline_bot.settings import get_settings
from tests.test_mcp_policy import _deploy, protected, started  # noqa: F401 - fixtures


@pytest.fixture
def trail(tmp_path, monkeypatch):
    path = tmp_path / "audit.jsonl"
    monkeypatch.setenv("PIPELINE_BOT_AUDIT_LOG", str(path))
    get_settings.cache_clear()
    return path


def _entries(cli, *args):
    result = cli("audit", "--format", "json", *args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_every_cli_call_is_recorded_with_its_outcome(cli, deploy_env, trail, monkeypatch):
    monkeypatch.setenv("GITHUB_ACTOR", "octo-dev")
    ok = cli(
        "deploy",
        "--repo",
        str(deploy_env.root),
        "-e",
        "production",
        "--image",
        "registry.local/shop:1",
        "--strategy",
        "rolling",
        "--timeout",
        "30s",
    )
    assert ok.exit_code == 0, ok.stderr
    bad = cli("deploy", "--repo", str(deploy_env.root), "-e", "nowhere", "--image", "x:1")
    assert bad.exit_code == 2
    entries = _entries(cli, "--tool", "deploy_application")
    assert [e["outcome"] for e in entries] == ["error", "ok"]  # newest first
    error, done = entries
    assert done["front_end"] == "cli"
    assert done["actor"] == "octo-dev"
    assert done["inputs"]["image_tag"] == "registry.local/shop:1"
    assert done["result"] == "status succeeded"
    assert done["seconds"] > 0
    assert "nowhere" in error["result"]
    text = cli("audit").stdout
    assert "deploy_application" in text
    assert "octo-dev" in text


def test_inputs_are_redacted_by_value(cli, base_repo, trail):
    redaction.register("token-in-an-argument-123456")
    try:
        cli(
            "analyze", "--repo", str(base_repo.root), "--environment", "token-in-an-argument-123456"
        )
        entries = _entries(cli)
        assert entries
        assert "token-in-an-argument-123456" not in trail.read_text()
        assert entries[0]["inputs"]["environment"] == "***"
    finally:
        redaction._reset_for_tests()


@pytest.mark.integration
def test_an_assistants_refused_call_is_recorded_with_the_policys_decision(
    trail,
    started,  # noqa: F811 - the fixture imported above; `trail` is set before it starts
):
    result, _ = _deploy(started, environment="production")
    assert result.is_error
    entries = [json.loads(line) for line in trail.read_text().splitlines()]
    refused = [e for e in entries if e["outcome"] == "refused"]
    assert refused
    assert refused[-1]["front_end"] == "mcp"
    assert refused[-1]["tool"] == "deploy_application"
    assert refused[-1]["decision"].startswith("refused: ")


def test_old_entries_are_dropped_past_the_retention(tmp_path):
    log = AuditLog(tmp_path / "a.jsonl", retention_days=30)
    now = datetime.now(UTC)
    for days in (40, 10, 0):
        log.record(AuditEntry(at=now - timedelta(days=days), front_end="cli", tool=f"t{days}"))
    assert log.compact() == 1
    assert [e.tool for e in log.entries()] == ["t0", "t10"]
    assert (tmp_path / "a.jsonl").stat().st_mode & 0o777 == 0o600


def _write_many(path: str, who: str) -> None:
    log = AuditLog(__import__("pathlib").Path(path))
    for i in range(200):
        log.record(AuditEntry(at=datetime.now(UTC), front_end="app", actor=who, tool=f"t{i}"))


def test_writers_in_several_processes_leave_whole_lines(tmp_path):
    path = str(tmp_path / "a.jsonl")
    procs = [multiprocessing.Process(target=_write_many, args=(path, w)) for w in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    lines = (tmp_path / "a.jsonl").read_text().splitlines()
    assert len(lines) == 400
    assert all(AuditEntry.model_validate_json(line) for line in lines)


def test_the_mcp_resource_lists_the_trail(tmp_path):
    from mcp import Client
    from pipeline_bot.mcp_server.server import build_server
    from pipeline_bot.mcp_server.trust import TrustedPolicy
    from pipeline_bot.repo_config import default_config
    from pipeline_bot.tools import ToolContext, build_registry

    log = AuditLog(tmp_path / "a.jsonl")
    log.record(AuditEntry(at=datetime.now(UTC), front_end="app", actor="alice", tool="x"))
    policy = TrustedPolicy.from_config(default_config(), source="test")
    server = build_server(build_registry(), lambda: ToolContext(audit=log), policy=policy)

    async def read():
        async with Client(server, mode="legacy") as client:
            return await client.read_resource("devops://audit")

    contents = anyio.run(read)
    data = json.loads(contents.contents[0].text)
    assert data[0]["actor"] == "alice"
