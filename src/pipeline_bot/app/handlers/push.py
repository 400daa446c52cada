"""push to the default branch: deploy to every environment whose `auto_deploy` names it."""

from __future__ import annotations

from pipeline_bot.app.context import EventContext
from pipeline_bot.app.deploys import deploy_through

ZERO = "0" * 40


def handle(ctx: EventContext) -> str:
    ref = str(ctx.payload.get("ref", ""))
    branch = ref.removeprefix("refs/heads/")
    after = str(ctx.payload.get("after") or ZERO)
    if ctx.payload.get("deleted") or after == ZERO or not ref.startswith("refs/heads/"):
        return "ignored: not a push of commits to a branch"
    if branch != ctx.default_branch:
        return f"ignored: {branch} is not the default branch"
    config = ctx.config()
    envs = [
        e for e in sorted(config.environments, key=lambda e: e.order) if branch in e.auto_deploy
    ]
    if not envs:
        return f"no environment deploys {branch} automatically"
    before = str(ctx.payload.get("before") or ZERO)
    actor = str((ctx.payload.get("sender") or {}).get("login") or "push")
    return deploy_through(
        ctx, config, envs, sha=after, base=None if before == ZERO else before, actor=actor
    )
