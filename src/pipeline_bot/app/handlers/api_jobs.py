"""Jobs queued by the REST API (`POST /deploy`, `POST /pipeline/execute`), worked like webhooks."""

from __future__ import annotations

import dataclasses
from typing import Any

from pipeline_bot.app.context import EventContext
from pipeline_bot.app.deploys import deploy_through
from pipeline_bot.core.pipeline import Dispatched, PipelineRun
from pipeline_bot.integrations.ports import WorkflowsPort


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
    sent = ctx.state.get("workflow_dispatched")
    if sent is not None:  # GitHub took the dispatch, then the run could not be read: not again
        if sent.get("run_id"):
            ctx.save(workflow_run_id=sent["run_id"])
            return f"dispatched run {sent['run_id']}"
        ctx.fail(
            f"the workflow was dispatched on {sent.get('ref')} (head {str(sent.get('sha'))[:12]}) "
            "and its run was not found; it is not dispatched again: look at the repository's "
            "Actions tab"
        )
        return "dispatched; its run was not found"
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
    tools = ctx.tools(ctx.config())
    if tools.workflows is not None:
        tools = dataclasses.replace(tools, workflows=_Recorded(tools.workflows, ctx))
    result = ctx.services.registry.call("execute_pipeline", arguments, tools)
    run = result.model_dump(mode="json")["run"]
    ctx.save(workflow_run_id=run["id"], workflow_run_url=run.get("html_url"))
    return f"dispatched run {run['id']}: {run.get('html_url')}"


class _Recorded:
    """The installation's Actions, with each dispatch GitHub accepted saved in the job's row at
    once: a failure after it (reading the run, finding it) retries the job, which must not
    dispatch again."""

    def __init__(self, port: WorkflowsPort, ctx: EventContext) -> None:
        self._port, self._ctx = port, ctx

    def dispatch(
        self, repository: str, workflow: str, ref: str, inputs: dict[str, str]
    ) -> Dispatched:
        sent = self._port.dispatch(repository, workflow, ref, inputs)
        self._ctx.save(workflow_dispatched={"run_id": sent.run_id, "ref": ref, "sha": sent.sha})
        return sent

    def recent_runs(self, repository: str, *, limit: int = 10) -> list[Any]:
        return self._port.recent_runs(repository, limit=limit)

    def runs(
        self,
        repository: str,
        *,
        workflow: str | None = None,
        branch: str | None = None,
        event: str | None = None,
        limit: int = 20,
    ) -> list[dict[str, Any]]:
        return self._port.runs(
            repository, workflow=workflow, branch=branch, event=event, limit=limit
        )

    def run(self, repository: str, run_id: int) -> PipelineRun:
        return self._port.run(repository, run_id)
