"""Hostile or broken configuration gets a one-line error, never a traceback, and is never read
from outside the repository (issue 15, point 6 and the config parts of 7)."""

from __future__ import annotations

import pytest

from tests.test_action import _payload, _run


def _config(repo, text: str) -> None:
    repo.commit("config", {".github/pipeline-bot.yml": text})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version: 1\nenvironments: " + "[" * 500 + "]" * 500 + "\n", "nested deeper than 32"),
        (
            "version: 1\nrisk:\n  rules:\n"
            + "    - {id: r, paths: [x], weight: 1, message: m}\n" * 8000,
            "a config may have 262,144",
        ),
    ],
)
def test_a_hostile_config_is_one_error_line(base_repo, cli, text, expected):
    _config(base_repo, text)
    result = cli("analyze", "--repo", str(base_repo.root))
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert expected in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_a_config_symlinked_out_of_the_repository_is_refused_unread(base_repo, cli, tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text("version: 1\nenvironments: [{name: 'top-secret-value-123'}]\n")
    (base_repo.root / ".github").mkdir(exist_ok=True)
    (base_repo.root / ".github" / "pipeline-bot.yml").symlink_to(outside)
    result = cli("analyze", "--repo", str(base_repo.root))
    assert result.exit_code == 2
    assert "symlink to a file outside the repository" in result.stderr
    assert "top-secret-value-123" not in result.stderr + result.stdout


@pytest.mark.integration
@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        ({"TIMEOUT": "abc"}, "timeout: 'abc' is not a duration"),
        ({"GATES": "- " * 400 + "x"}, "nested deeper than 32"),
    ],
)
def test_bad_action_inputs_are_an_error_line_not_a_traceback(base_repo, tmp_path, inputs, expected):
    payload = _payload("push")
    proc, _, _ = _run(
        base_repo,
        tmp_path,
        "workflow_dispatch",
        payload,
        COMMAND="deploy",
        ENVIRONMENT="production",
        IMAGE="registry.local/shop:1",
        **inputs,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    assert any(
        line.startswith("::error title=pipeline-bot::") and expected in line
        for line in proc.stdout.splitlines()
    ), proc.stdout


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("90s", 90),
        ("5m", 300),
        ("1h30m", 5400),
        ("0.5s", 0.5),
        ("abc", None),
        ("", None),
        ("5x", None),
    ],
)
def test_durations(text, seconds):
    from pipeline_bot.core.durations import parse_duration

    if seconds is None:
        with pytest.raises(ValueError, match="is not a duration"):
            parse_duration(text)
    else:
        assert parse_duration(text) == seconds
