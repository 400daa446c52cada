"""Jobs queued by the REST API (`POST /deploy`, `POST /pipeline/execute`), worked like webhooks."""

from __future__ import annotations

from pipeline_bot.app.context import EventContext
from pipeline_bot.app.deploys import deploy_through


def handle_deploy(ctx: EventContext) -> str:
    job = ctx.payload["job"]
    config = ctx.config()
    env = config.environment(job["environment"])
    return deploy_through(
        ctx,
        config,
        [env],
        sha=job["sha"],
        base=job.get("base"),
        actor=job["actor"],
        apps=[job["app"]] if job.get("app") else None,
    )


def handle_pipeline(ctx: EventContext) -> str:
    """The original design's execute_pipeline: the commit through the environments in order."""
    job = ctx.payload["job"]
    config = ctx.config()
    names = job.get("environments") or [e.name for e in config.environments]
    envs = sorted((config.environment(n) for n in names), key=lambda e: e.order)
    return deploy_through(
        ctx, config, envs, sha=job["sha"], base=job.get("base"), actor=job["actor"]
    )
