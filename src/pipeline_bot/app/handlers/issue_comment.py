"""issue_comment created on a pull request: a slash-command on its first line.

Edited comments are not handled (the delivery is ignored at intake), and comments by bots,
this App included, are never read as commands.
"""

from __future__ import annotations

from pipeline_bot.app.commands import run_command
from pipeline_bot.app.context import EventContext
from pipeline_bot.core.commands import CommandSyntaxError, parse_command

ACTIONS = frozenset({"created"})


def handle(ctx: EventContext) -> str:
    issue, comment = ctx.payload["issue"], ctx.payload["comment"]
    if not issue.get("pull_request"):
        return "ignored: a comment on an issue, not a pull request"
    user = comment.get("user") or {}
    if user.get("type") == "Bot" or str(user.get("login", "")).endswith("[bot]"):
        return "ignored: a bot's comment"
    try:
        command = parse_command(comment.get("body") or "")
    except CommandSyntaxError as exc:
        return run_command(
            ctx,
            None,
            number=int(issue["number"]),
            actor=user["login"],
            comment_id=int(comment["id"]),
            syntax_error=exc,
        )
    if command is None:
        return "ignored: not a command"
    return run_command(
        ctx,
        command,
        number=int(issue["number"]),
        actor=user["login"],
        comment_id=int(comment["id"]),
    )
