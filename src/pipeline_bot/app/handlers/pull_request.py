"""pull_request opened / synchronize / reopened / ready_for_review: the analysis check run."""

from __future__ import annotations

from pipeline_bot.app.checks import analyse_pull_request
from pipeline_bot.app.context import EventContext

ACTIONS = frozenset({"opened", "synchronize", "reopened", "ready_for_review"})


def handle(ctx: EventContext) -> str:
    pr = ctx.payload["pull_request"]
    return analyse_pull_request(
        ctx,
        number=int(pr["number"]),
        base_sha=pr["base"]["sha"],
        head_sha=pr["head"]["sha"],
        changed_files=pr.get("changed_files"),
    )
