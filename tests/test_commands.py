"""Slash-command parsing and authorisation: the App's decisions, pure."""

from __future__ import annotations

import pytest

from pipeline_bot.core.authz import Requester, authorize
from pipeline_bot.core.commands import CommandSyntaxError, parse_command
from pipeline_bot.repo_config import Environment


@pytest.mark.parametrize(
    ("body", "name", "env", "extra"),
    [
        ("/deploy staging", "deploy", "staging", {}),
        (
            "/deploy production --strategy canary --image v1.2",
            "deploy",
            "production",
            {"strategy": "canary", "image": "v1.2"},
        ),
        (
            "/deploy staging --strategy=blue-green\nthanks!",
            "deploy",
            "staging",
            {"strategy": "blue-green"},
        ),
        ("  /rollback prod --app shop", "rollback", "prod", {"app": "shop"}),
        ("/promote staging", "promote", "staging", {}),
        ("/abort staging", "abort", "staging", {}),
        ("/approve production", "approve", "production", {"image": None}),
        ("/Approve production --image v1.2", "approve", "production", {"image": "v1.2"}),
        (
            "/approve production --image=v1.2\nlooks good",
            "approve",
            "production",
            {"image": "v1.2"},
        ),
        ("/status", "status", None, {}),
        ("/status production", "status", "production", {}),
        ("/analyze", "analyze", None, {}),
        (
            "/lock production release freeze until friday",
            "lock",
            "production",
            {"reason": "release freeze until friday"},
        ),
        ("/unlock production", "unlock", "production", {}),
        ("/HELP", "help", None, {}),
    ],
)
def test_commands_parse_from_the_first_line(body, name, env, extra):
    command = parse_command(body)
    assert command is not None
    assert command.name == name
    assert command.environment == env
    for key, value in extra.items():
        assert getattr(command, key) == value


@pytest.mark.parametrize("body", ["", "LGTM", "looks good\n/deploy staging", "   "])
def test_comments_that_are_not_commands_give_none(body):
    assert parse_command(body) is None


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("/deploy", "needs an environment"),
        ("/deploy --strategy canary", "needs an environment"),
        ("/deploy Staging!", "is not an environment name"),
        ("/deploy staging --strategy yolo", "unknown strategy `yolo`"),
        ("/deploy staging --image", "`--image` needs a value"),
        ("/deploy staging --image a --image b", "given twice"),
        ("/deploy staging --force", "unexpected `--force`"),
        ("/deploy staging --image $(id)", "is not an image tag"),
        ("/rollback staging --strategy canary", "unexpected"),
        ("/status a b", "at most one environment"),
        ("/analyze now", "takes no arguments"),
        ("/unlock staging please", "takes only an environment"),
        ("/launch staging", "is not a pipeline-bot command"),
        ("/approve", "needs an environment"),
        ("/approve --image v1", "needs an environment"),
        ("/approve Production!", "is not an environment name"),
        ("/approve production --app shop", "unexpected `--app`"),
        ("/approve production --strategy canary", "unexpected `--strategy`"),
        ("/approve production --image", "`--image` needs a value"),
        ("/approve production --image $(id)", "is not an image tag"),
    ],
)
def test_malformed_commands_say_what_is_wrong_and_show_usage(body, says):
    with pytest.raises(CommandSyntaxError) as info:
        parse_command(body)
    assert says in str(info.value)
    assert "Usage: `/" in str(info.value) or "Commands:" in str(info.value)


STAGING = Environment(name="staging", order=1)
PRODUCTION = Environment(
    name="production", order=2, required_permission="maintain", requires=["staging"]
)


def _deploy(env: str):
    return parse_command(f"/deploy {env}")


def test_write_permission_deploys_to_staging_read_does_not():
    assert authorize(_deploy("staging"), STAGING, Requester("w", "write")).allowed
    refused = authorize(_deploy("staging"), STAGING, Requester("r", "read"))
    assert not refused.allowed
    assert "needs write permission" in refused.reason


def test_reading_commands_need_only_read():
    assert authorize(parse_command("/status"), None, Requester("r", "read")).allowed
    assert not authorize(parse_command("/status"), None, Requester("x", "none")).allowed


def test_production_needs_maintain_and_the_commit_in_staging():
    assert not authorize(_deploy("production"), PRODUCTION, Requester("w", "write")).allowed
    first = authorize(_deploy("production"), PRODUCTION, Requester("m", "maintain"))
    assert "deployed to staging first" in first.reason
    assert authorize(
        _deploy("production"), PRODUCTION, Requester("m", "admin"), deployed_to={"staging"}
    ).allowed
    # rollback is not held back by the order: it is how production is repaired
    rollback = parse_command("/rollback production")
    assert authorize(rollback, PRODUCTION, Requester("m", "maintain")).allowed


def test_allowed_users_and_teams_narrow_who_may_act():
    env = Environment(name="staging", allowed_users=["Alice"], allowed_teams=["acme/sre"])
    assert authorize(_deploy("staging"), env, Requester("alice", "write")).allowed
    assert authorize(
        _deploy("staging"), env, Requester("bob", "write", teams=frozenset({"acme/sre"}))
    ).allowed
    refused = authorize(_deploy("staging"), env, Requester("bob", "admin"))
    assert "only @Alice, @acme/sre may change staging" in refused.reason


def test_forks_deploy_only_where_allowed():
    fork = Requester("w", "admin", from_fork=True)
    assert "from a fork" in authorize(_deploy("staging"), STAGING, fork).reason
    open_env = Environment(name="staging", allow_forks=True)
    assert authorize(_deploy("staging"), open_env, fork).allowed


@pytest.mark.parametrize(
    ("env", "permission", "allowed", "says"),
    [
        (Environment(name="production", requires_approval=True), "write", True, ""),
        (Environment(name="production", requires_approval=True), "read", False, "needs write"),
        (
            Environment(name="production", requires_approval=True, required_permission="admin"),
            "maintain",
            False,
            "needs admin permission",
        ),
        (STAGING, "admin", False, "staging does not require approval"),
        (None, "admin", False, "needs an environment"),
    ],
)
def test_approve_needs_the_environments_permission_and_an_environment_that_asks_for_it(
    env, permission, allowed, says
):
    decision = authorize(parse_command("/approve production"), env, Requester("a", permission))
    assert decision.allowed is allowed
    assert says in decision.reason


def test_help_lists_approve():
    from pipeline_bot.core.commands import HELP

    assert "`/approve <environment> [--image TAG]`" in HELP
