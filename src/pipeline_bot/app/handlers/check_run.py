"""check_run rerequested (analyse again) and requested_action (the check run's buttons).

A button press is the same as the matching comment command, under the same authorisation; a
deploy or approve button names its environment exactly (see `core/checkrun.py`). An approve
button approves the check run's own commit (its head_sha), which the button was shown for; a
deploy button deploys that commit, and nothing once the pull request's head has moved on.
"""

from __future__ import annotations

from pipeline_bot.app.checks import analyse_pull_request
from pipeline_bot.app.commands import run_command
from pipeline_bot.app.context import CHECK_NAME, EventContext
from pipeline_bot.core.checkrun import APPROVE_BUTTON, DEPLOY_BUTTON, button_environment
from pipeline_bot.core.commands import CommandSyntaxError, parse_command
from pipeline_bot.errors import ConfigError

ACTIONS = frozenset({"rerequested", "requested_action"})


def handle(ctx: EventContext) -> str:
    run = ctx.payload["check_run"]
    if run.get("name") != CHECK_NAME:
        return "ignored: not pipeline-bot's check run"
    prs = run.get("pull_requests") or []
    if not prs:
        return "ignored: the check run belongs to no pull request of this repository"
    pr = prs[0]
    number = int(pr["number"])
    identifier = (ctx.payload.get("requested_action") or {}).get("identifier", "reanalyze")
    if ctx.payload.get("action") == "rerequested" or identifier == "reanalyze":
        full = ctx.gh.pull_request(ctx.repo, number)
        return analyse_pull_request(
            ctx,
            number=number,
            base_sha=full["base"]["sha"],
            head_sha=full["head"]["sha"],
            changed_files=full.get("changed_files"),
        )
    actor = ctx.payload["sender"]["login"]
    kind, _, target = identifier.partition(":")
    try:
        command = parse_command(f"/{kind} {_environment(ctx, kind, target)}")
    except CommandSyntaxError as exc:
        return run_command(ctx, None, number=number, actor=actor, syntax_error=exc)
    # the commit the button was shown for: an approval approves it, a deploy deploys it only
    # while it is still the pull request's head (never a head pushed since the analysis)
    sha = str(run["head_sha"]) if kind in ("approve", "deploy") and run.get("head_sha") else None
    return run_command(ctx, command, number=number, actor=actor, sha=sha)


_HASHED = {DEPLOY_BUTTON.rstrip(":"): DEPLOY_BUTTON, APPROVE_BUTTON.rstrip(":"): APPROVE_BUTTON}


def _environment(ctx: EventContext, kind: str, target: str) -> str:
    """The environment a button names, resolved against the configuration on the default
    branch (a deploy or approve button holds a hash of the name, not the name)."""
    prefix = _HASHED.get(kind)
    if prefix is None:
        return target
    try:
        config = ctx.config()
    except ConfigError:
        return target  # run_command reports the configuration's problems
    return button_environment(target, [e.name for e in config.environments], prefix)
