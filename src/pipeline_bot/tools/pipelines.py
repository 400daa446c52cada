"""GitHub Actions pipeline tools: execute_pipeline (dispatch a workflow and follow its run),
list_workflow_runs and get_workflow_run (read only)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline_bot.core.pipeline import (
    FOUND_BY_NOTE,
    Dispatched,
    PipelineRun,
    RunList,
    pick_dispatched_run,
    run_state,
    verdict,
)
from pipeline_bot.errors import ToolError
from pipeline_bot.integrations.ports import WorkflowsPort
from pipeline_bot.tools.registry import ToolAnnotations, ToolContext, ToolRegistry, audit

STARTS_WORKFLOW = ToolAnnotations(
    read_only=False, destructive=True, idempotent=False, open_world=True
)
READS_GITHUB = ToolAnnotations(read_only=True, destructive=False, idempotent=True, open_world=True)
Progress = Callable[[str], None]
FIND_SECONDS = 120.0
"""How long a dispatch without run details looks for the run it started."""


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _repository() -> Any:
    return Field(
        None,
        pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$",
        description="owner/name on GitHub. Default: GITHUB_REPOSITORY",
    )


class ExecuteInput(_Input):
    repository: str | None = _repository()
    branch: str = Field(min_length=1, description="Branch (or tag) the workflow runs on")
    workflow: str | None = Field(None, description="The workflow's file name (deploy.yml) or id")
    pipeline_config: str | None = Field(
        None,
        description="The workflow file, e.g. .github/workflows/deploy.yml (the original "
        "design's name for it); `workflow` wins when both are given",
    )
    inputs: dict[str, str] = Field(
        default_factory=dict, max_length=25, description="The workflow's inputs"
    )
    wait: bool = Field(True, description="Follow the run until it completes")
    timeout_seconds: float = Field(1800, gt=0, description="How long to follow it")
    poll_seconds: float = Field(
        10, ge=0.05, le=300, description="Longest wait between looks at the run"
    )


class RunsInput(_Input):
    repository: str | None = _repository()
    workflow: str | None = Field(None, description="Only this workflow's runs (file or id)")
    branch: str | None = None
    limit: int = Field(10, ge=1, le=100)


class RunInput(_Input):
    repository: str | None = _repository()
    run_id: int = Field(ge=1)


class PipelineExecution(BaseModel):
    status: Literal["succeeded", "failed", "cancelled", "running", "timed_out"] = Field(
        description="running: not followed to the end (wait false); timed_out: still running "
        "when timeout_seconds ran out"
    )
    message: str
    run: PipelineRun


def _github(ctx: ToolContext, tool: str, given: str | None) -> tuple[WorkflowsPort, str]:
    if ctx.workflows is None:
        raise ToolError(
            f"{tool} needs GitHub's API: set GITHUB_TOKEN (a token that may run workflows)",
            tool=tool,
        )
    repository = given or ctx.github_repository
    if not repository:
        raise ToolError(
            f"{tool} needs a repository: pass owner/name or set GITHUB_REPOSITORY", tool=tool
        )
    if given and ctx.github_repository and given.lower() != ctx.github_repository.lower():
        raise ToolError(
            f"{tool} acts on {ctx.github_repository} (GITHUB_REPOSITORY), not {given}",
            tool=tool,
        )
    return ctx.workflows, repository


def _find(
    gh: WorkflowsPort, repository: str, workflow: str, sent: Dispatched, poll: float
) -> PipelineRun:
    deadline = time.monotonic() + FIND_SECONDS
    while True:
        runs = gh.runs(
            repository, workflow=workflow, branch=sent.ref, event="workflow_dispatch", limit=20
        )
        found = pick_dispatched_run(
            runs, dispatched_at=sent.dispatched_at, sha=sent.sha, branch=sent.ref
        )
        if found is not None:
            run = run_state(repository, found)
            note = FOUND_BY_NOTE.format(
                branch=sent.ref, sha=sent.sha[:12], at=f"{sent.dispatched_at:%Y-%m-%dT%H:%M:%SZ}"
            )
            return run.model_copy(update={"found_by": "dispatch time and head", "note": note})
        if time.monotonic() >= deadline:
            raise ToolError(
                f"the workflow was dispatched on {sent.ref}, and no run of it appeared within "
                f"{FIND_SECONDS:g}s (GitHub did not return the run's id): look at the "
                "repository's Actions tab",
                tool="execute_pipeline",
            )
        time.sleep(poll)


def execute_pipeline(args: ExecuteInput, ctx: ToolContext) -> PipelineExecution:
    """Run a GitHub Actions workflow (workflow_dispatch) on a branch with inputs, and follow the
    run to completion: its jobs, steps, conclusion, duration and logs URL. Starts a workflow, so
    it asks for confirmation; the dispatch is recorded in the audit trail with the run's id."""
    tool = "execute_pipeline"
    gh, repository = _github(ctx, tool, args.repository)
    workflow = args.workflow or (args.pipeline_config or "").rsplit("/", 1)[-1]
    if not workflow:
        raise ToolError("name the workflow (workflow: deploy.yml, or pipeline_config)", tool=tool)
    sent = gh.dispatch(repository, workflow, args.branch, args.inputs)
    if sent.run_id is not None:
        run = gh.run(repository, sent.run_id).model_copy(update={"found_by": "run details"})
    else:
        run = _find(gh, repository, workflow, sent, args.poll_seconds)
    say = ctx.progress or (lambda _m: None)
    say(f"dispatched {workflow} on {args.branch}: run {run.id} {run.html_url}")
    arguments = {"repository": repository, "workflow": workflow, "branch": args.branch}
    audit(ctx, tool, arguments, "ok", f"dispatched run {run.id} at {sent.sha[:12]}")
    return _follow(gh, run, args, say) if args.wait else _outcome(run, timed_out=False)


def _follow(
    gh: WorkflowsPort, run: PipelineRun, args: ExecuteInput, say: Progress
) -> PipelineExecution:
    deadline = time.monotonic() + args.timeout_seconds
    seen = ""
    wait = min(0.5, args.poll_seconds)  # a quick run is reported quickly: 0.5, 1, 2 ... poll
    while True:
        fresh = gh.run(run.repository, run.id)
        run = fresh.model_copy(update={"found_by": run.found_by, "note": run.note})
        line = f"run {run.id}: {run.status}" + "".join(
            f", {j.name} {j.conclusion or j.status}" for j in run.jobs
        )
        if line != seen:
            say(line)
            seen = line
        if run.completed:
            return _outcome(run, timed_out=False)
        if time.monotonic() >= deadline:
            return _outcome(run, timed_out=True)
        time.sleep(wait)
        wait = min(wait * 2, args.poll_seconds)


def _outcome(run: PipelineRun, *, timed_out: bool) -> PipelineExecution:
    status = verdict(run)
    if timed_out and status == "running":
        message = f"run {run.id} is still {run.status}; stopped following it"
        return PipelineExecution(status="timed_out", message=message, run=run)
    failed = [j.name for j in run.jobs if j.conclusion not in (None, "success", "skipped")]
    message = {
        "succeeded": f"run {run.id} succeeded",
        "failed": f"run {run.id} ended {run.conclusion}"
        + (f" (jobs: {', '.join(failed)})" if failed else ""),
        "cancelled": f"run {run.id} was {run.conclusion}",
        "running": f"run {run.id} is {run.status}",
    }[status]
    if run.seconds is not None:
        message += f" in {run.seconds:g}s"
    return PipelineExecution(status=status, message=message, run=run)


def list_workflow_runs(args: RunsInput, ctx: ToolContext) -> RunList:
    """Recent GitHub Actions runs of the repository (or one workflow), newest first, with their
    status and conclusion. Reads only."""
    gh, repository = _github(ctx, "list_workflow_runs", args.repository)
    runs = gh.runs(repository, workflow=args.workflow, branch=args.branch, limit=args.limit)
    return RunList(
        repository=repository,
        workflow=args.workflow,
        runs=[run_state(repository, r) for r in runs],
    )


def get_workflow_run(args: RunInput, ctx: ToolContext) -> PipelineRun:
    """One GitHub Actions run: status, conclusion, duration, logs URL, and its jobs with their
    steps. Reads only."""
    gh, repository = _github(ctx, "get_workflow_run", args.repository)
    return gh.run(repository, args.run_id)


def register(registry: ToolRegistry) -> None:
    for fn, title, input_model, output_model, hints in (
        (execute_pipeline, "Run a pipeline", ExecuteInput, PipelineExecution, STARTS_WORKFLOW),
        (list_workflow_runs, "Workflow runs", RunsInput, RunList, READS_GITHUB),
        (get_workflow_run, "Workflow run", RunInput, PipelineRun, READS_GITHUB),
    ):
        registry.tool(
            name=fn.__name__,
            title=title,
            input_model=input_model,
            output_model=output_model,
            annotations=hints,
        )(fn)  # type: ignore[arg-type]
