"""Who may run which command where: a pure decision from facts the App fetched from GitHub.

Reading needs nothing; anything that changes an environment needs the environment's
`required_permission` (write by default), membership of `allowed_users` / `allowed_teams` when
those are set, a pull request from the repository itself unless `allow_forks`, for a deploy,
a successful deploy of the same commit to every environment in `requires` and, where the
environment requires approval, a current approval of the commit and its plan, and, for an approval,
an environment that requires one (`requires_approval`) and, where it prevents self-approval
(`prevent_self_approval`), someone who did not write the change.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from pipeline_bot.core.commands import Command
from pipeline_bot.repo_config import Environment

PERMISSION_RANK = {"none": 0, "read": 1, "triage": 2, "write": 3, "maintain": 4, "admin": 5}


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


@dataclass(frozen=True)
class Requester:
    login: str
    permission: str  # the repository permission GitHub reports: admin, maintain, write, ...
    teams: frozenset[str] = frozenset()  # "org/slug", only fetched when an environment names teams
    from_fork: bool = False
    # opened the pull request, or authored or committed one of its commits (fetched only for
    # an approval into an environment with prevent_self_approval); None: cannot be told (the
    # commit is not the pull request's head, or GitHub does not list all of its commits)
    wrote_change: bool | None = False


def authorize(
    command: Command,
    env: Environment | None,
    who: Requester,
    *,
    deployed_to: Collection[str] = (),
    unapproved: str | None = None,
) -> Decision:
    """`deployed_to`: environments where this commit has a successful deploy; `unapproved`:
    for a deploy into an environment that requires approval, why this commit and plan have no
    current approval (None: they have one)."""
    if not command.changes_environment:
        if PERMISSION_RANK.get(who.permission, 0) < PERMISSION_RANK["read"]:
            return Decision(False, f"@{who.login} cannot read this repository")
        return Decision(True)
    if env is None:
        return Decision(False, f"`/{command.name}` needs an environment")
    have = PERMISSION_RANK.get(who.permission, 0)
    need = PERMISSION_RANK[env.required_permission]
    if have < need:
        return Decision(
            False,
            f"`/{command.name} {env.name}` needs {env.required_permission} permission on this "
            f"repository; @{who.login} has {who.permission}",
        )
    if env.allowed_users or env.allowed_teams:
        users = {u.lower() for u in env.allowed_users}
        teams = {t.lower() for t in env.allowed_teams}
        if who.login.lower() not in users and not teams & {t.lower() for t in who.teams}:
            named = [f"@{u}" for u in env.allowed_users] + [f"@{t}" for t in env.allowed_teams]
            return Decision(
                False, f"only {', '.join(named)} may change {env.name}; @{who.login} is not listed"
            )
    if who.from_fork and not env.allow_forks:
        return Decision(
            False,
            f"this pull request comes from a fork, and {env.name} does not allow deploys from "
            "forks (allow_forks in .github/pipeline-bot.yml)",
        )
    if command.name == "deploy":
        missing = [r for r in env.requires if r not in deployed_to]
        if missing:
            return Decision(
                False,
                f"{env.name} requires this commit to be deployed to {', '.join(missing)} first",
            )
    if command.name == "deploy" and env.requires_approval and unapproved is not None:
        return Decision(
            False,
            f"{env.name} requires approval (requires_approval in .github/pipeline-bot.yml) of "
            f"this commit and plan before a deploy: {unapproved}",
        )
    if command.name == "approve" and not env.requires_approval:
        return Decision(
            False,
            f"{env.name} does not require approval (requires_approval in "
            ".github/pipeline-bot.yml), so there is nothing to approve",
        )
    if command.name == "approve" and env.prevent_self_approval and who.wrote_change is None:
        return Decision(
            False,
            f"{env.name} prevents self-approval (prevent_self_approval in "
            ".github/pipeline-bot.yml), and pipeline-bot cannot tell who wrote this commit (it "
            "is not the pull request's head, or the pull request has more commits than GitHub "
            "lists): approve the current head, in a pull request of at most 250 commits",
        )
    if command.name == "approve" and env.prevent_self_approval and who.wrote_change:
        return Decision(
            False,
            f"@{who.login} wrote this change (opened the pull request or authored or committed "
            f"one of its commits), and {env.name} prevents self-approval "
            "(prevent_self_approval in .github/pipeline-bot.yml): someone else must approve",
        )
    return Decision(True)
