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


def handle_workflow(ctx: EventContext) -> str:
    """`POST /pipeline/execute` with a workflow: execute_pipeline through the tool registry (its
    policy and audit trail), as the App's installation. The job only dispatches and records the
    run; `GET /pipeline/status/{job}` reads the run's state from GitHub whenever it is asked, so
    no worker waits the run out."""
    done = ctx.state.get("workflow_run_id")
    if done:  # a retry after the dispatch: never start the workflow twice
        return f"dispatched run {done}"
    job = ctx.payload["job"]
    arguments = {
        "repository": ctx.repo,
        "branch": job["branch"],
        "inputs": job.get("inputs") or {},
        "wait": False,
    }
    if job.get("workflow"):
        arguments["workflow"] = job["workflow"]
    if job.get("pipeline_config"):
        arguments["pipeline_config"] = job["pipeline_config"]
    result = ctx.services.registry.call("execute_pipeline", arguments, ctx.tools(ctx.config()))
    run = result.model_dump(mode="json")["run"]
    ctx.save(workflow_run_id=run["id"], workflow_run_url=run.get("html_url"))
    return f"dispatched run {run['id']}: {run.get('html_url')}"
