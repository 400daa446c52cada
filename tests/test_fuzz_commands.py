"""Fuzzing the slash-command parser (issue 15, deliverable 5): any comment body gives a Command,
None (not a command) or a CommandSyntaxError with the usage; never another exception. A command
that parses holds only names the grammar allows, and the authorisation decision on it never
raises either. Deterministic: derandomized, no example database."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pipeline_bot.core.authz import Requester, authorize
from pipeline_bot.core.commands import (
    STRATEGIES,
    USAGE,
    Command,
    CommandSyntaxError,
    parse_command,
)
from pipeline_bot.repo_config import Environment

FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
NAME = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")
# characters str.split / str.splitlines / str.strip treat specially, and look-alikes
ODD = "\ufeff\u200b\u00a0\u2028\u2029\x85\x1c\x1d\x1e\x1f\x0b\x0c\r\t\u3000\x00/-=`"
WORDS = [
    *(f"/{name}" for name in USAGE),
    "/DEPLOY",
    "/Deploy",
    "/",
    "//deploy",
    "staging",
    "production",
    "Prod",
    "a",
    "-x",
    "a" * 64,
    "a" * 63,
    "../etc",
    "--strategy",
    "--strategy=canary",
    "--strategy=",
    "--image",
    "--image=v1.2",
    "--image=registry.local/shop@sha256:" + "0" * 64,
    "--app",
    "--app=shop",
    "--unknown",
    "--",
    "=",
    *STRATEGIES,
    "CANARY",
    "\u0441taging",  # a Cyrillic "s"
]
words = st.lists(
    st.one_of(st.sampled_from(WORDS), st.text(alphabet=st.characters(), max_size=12)),
    max_size=8,
)
separators = st.text(alphabet=" \t" + ODD, min_size=1, max_size=2)


@st.composite
def command_like(draw: st.DrawFn) -> str:
    """Bodies shaped like commands: grammar words and odd ones, odd separators, more lines."""
    parts = draw(words)
    seps = draw(st.lists(separators, min_size=len(parts), max_size=len(parts)))
    first = "".join(w + s for w, s in zip(parts, seps, strict=True))
    prefix = draw(st.sampled_from(["", " ", "\ufeff", "\n", "\r\n", "\ufeff\n", "\u2028"]))
    rest = draw(st.sampled_from(["", "\nthanks!", "\n/deploy production", "\r\n\r\n"]))
    return prefix + first + rest


def _parse(body: str) -> Command | None:
    try:
        return parse_command(body)
    except CommandSyntaxError as exc:
        error = exc
    text = str(error)
    assert "Usage: `" in text or "Commands:" in text, text
    assert error.command is None or error.command in USAGE
    return None


def _check(command: Command | None) -> None:
    if command is None:
        return
    assert command.name in USAGE
    assert command.environment is None or NAME.match(command.environment)
    assert command.strategy in STRATEGIES
    assert command.app is None or NAME.match(command.app)
    assert "\n" not in command.reason
    assert len(command.reason) <= 200
    if command.changes_environment:
        assert command.environment is not None


@FUZZ
@given(st.text())
@example("\ufeff")
@example("\ufeff ")
@example("/lock production \u2028reason")
def test_any_text_parses_to_a_command_none_or_a_syntax_error(body):
    _check(_parse(body))


@FUZZ
@given(command_like())
def test_command_shaped_text_parses_to_a_command_none_or_a_syntax_error(body):
    _check(_parse(body))


@FUZZ
@given(
    name=st.sampled_from(["deploy", "rollback", "promote", "abort"]),
    env=st.from_regex(NAME, fullmatch=True),
    app=st.none() | st.from_regex(r"[a-z0-9]{1,20}", fullmatch=True),
    strategy=st.sampled_from(STRATEGIES),
)
def test_a_well_formed_command_parses_to_exactly_what_it_says(name, env, app, strategy):
    options = f" --strategy {strategy}" if name == "deploy" else ""
    options += f" --app={app}" if app else ""
    command = parse_command(f"/{name} {env}{options}\nmore text")
    assert command is not None
    assert (command.name, command.environment, command.app) == (name, env, app)
    assert command.strategy == (strategy if name == "deploy" else "auto")


def test_a_comment_that_is_only_a_byte_order_mark_is_no_command():
    # found by the fuzzer: an IndexError, so the delivery was retried five times and failed
    assert parse_command("\ufeff") is None
    assert parse_command("\ufeff \n ") is None


PERMISSIONS = ["none", "read", "triage", "write", "maintain", "admin", "", "ADMIN", "owner"]


@FUZZ
@given(
    body=command_like(),
    permission=st.sampled_from(PERMISSIONS),
    login=st.text(max_size=20),
    teams=st.frozensets(st.sampled_from(["acme/ops", "ACME/Ops", "acme/dev", "x"])),
    from_fork=st.booleans(),
    users=st.lists(st.sampled_from(["alice", "ALICE", "bob", ""]), max_size=3),
    required=st.sampled_from(["read", "triage", "write", "maintain", "admin"]),
    requires=st.lists(st.sampled_from(["staging", "qa"]), max_size=2, unique=True),
    deployed_to=st.frozensets(st.sampled_from(["staging", "qa", "prod"])),
)
@pytest.mark.parametrize("has_env", [True, False])
def test_authorising_any_parsed_command_gives_a_decision(
    has_env, body, permission, login, teams, from_fork, users, required, requires, deployed_to
):
    command = _parse(body)
    if command is None:
        return
    env = (
        Environment(
            name="production",
            required_permission=required,
            allowed_users=users,
            allowed_teams=sorted(teams),
            requires=requires,
        )
        if has_env
        else None
    )
    who = Requester(login, permission, teams, from_fork)
    decision = authorize(command, env, who, deployed_to=deployed_to)
    assert decision.allowed or decision.reason
    if decision.allowed and command.changes_environment:
        assert env is not None
        assert env.allow_forks or not from_fork
