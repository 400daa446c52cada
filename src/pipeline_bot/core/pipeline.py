"""GitHub Actions workflow runs as pipeline-bot reports them: GitHub's run and job JSON -> a typed
run with its jobs, steps, conclusion and duration, and the rule that finds a dispatched run when
GitHub did not say which one it started.

Sans-I/O: the adapter fetches the JSON (integrations/github.py), these functions read it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field

FoundBy = Literal["run details", "dispatch time and head"]
FOUND_BY_NOTE = (
    "GitHub did not return the run's id with the dispatch (return_run_details is not supported "
    "there): the run was found as the first workflow_dispatch run of the workflow on {branch} at "
    "{sha} created at or after the dispatch ({at})"
)
CLOCK_SLACK = timedelta(seconds=2)
"""GitHub's created_at has whole seconds, and the dispatch time comes from GitHub's Date header:
a run may look up to a second older than the dispatch that started it."""


class StepState(BaseModel):
    number: int
    name: str
    status: str
    conclusion: str | None = None
    seconds: float | None = None


class JobState(BaseModel):
    id: int
    name: str
    status: str
    conclusion: str | None = None
    seconds: float | None = None
    url: str | None = None
    steps: list[StepState] = Field(default_factory=list)


class PipelineRun(BaseModel):
    """A workflow run, its jobs and steps, as GitHub reports it now."""

    id: int
    repository: str
    workflow: str | None = Field(None, description="the workflow's name")
    workflow_path: str | None = None
    branch: str | None = None
    sha: str
    event: str
    status: str = Field(description="queued, in_progress, waiting, completed ...")
    conclusion: str | None = Field(
        None, description="success, failure, cancelled, timed_out ... once completed"
    )
    run_number: int | None = None
    attempt: int | None = None
    created_at: datetime
    updated_at: datetime | None = None
    seconds: float | None = Field(None, description="from the run's start to its last update")
    html_url: str
    logs_url: str | None = None
    jobs: list[JobState] = Field(default_factory=list)
    found_by: FoundBy | None = Field(
        None, description="how the run of a dispatch was found (None: not dispatched here)"
    )
    note: str | None = None

    @property
    def completed(self) -> bool:
        return self.status == "completed"


class Dispatched(BaseModel):
    """What a dispatch gave back: the run's id when GitHub said it, and what finds it if not."""

    run_id: int | None = None
    dispatched_at: datetime = Field(description="GitHub's time of the dispatch")
    sha: str = Field(description="the ref's head when it was dispatched")
    ref: str


class RunList(BaseModel):
    repository: str
    workflow: str | None = None
    runs: list[PipelineRun]


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _seconds(start: Any, end: Any) -> float | None:
    a, b = _time(start), _time(end)
    return round((b - a).total_seconds(), 3) if a and b else None


def job_state(job: Mapping[str, Any]) -> JobState:
    return JobState(
        id=int(job["id"]),
        name=str(job.get("name") or job["id"]),
        status=str(job.get("status") or "unknown"),
        conclusion=job.get("conclusion"),
        seconds=_seconds(job.get("started_at"), job.get("completed_at")),
        url=job.get("html_url"),
        steps=[
            StepState(
                number=int(s.get("number") or 0),
                name=str(s.get("name") or ""),
                status=str(s.get("status") or "unknown"),
                conclusion=s.get("conclusion"),
                seconds=_seconds(s.get("started_at"), s.get("completed_at")),
            )
            for s in job.get("steps") or []
        ],
    )


def run_state(
    repository: str,
    run: Mapping[str, Any],
    jobs: Sequence[Mapping[str, Any]] = (),
) -> PipelineRun:
    """GitHub's workflow run (and its jobs) as a PipelineRun. The duration runs from the run's
    start to its last update once it has completed, as GitHub's own run page counts it."""
    started = run.get("run_started_at") or run.get("created_at")
    done = run.get("status") == "completed"
    return PipelineRun(
        id=int(run["id"]),
        repository=repository,
        workflow=run.get("name"),
        workflow_path=run.get("path"),
        branch=run.get("head_branch"),
        sha=str(run.get("head_sha") or ""),
        event=str(run.get("event") or ""),
        status=str(run.get("status") or "unknown"),
        conclusion=run.get("conclusion"),
        run_number=run.get("run_number"),
        attempt=run.get("run_attempt"),
        created_at=run["created_at"],
        updated_at=run.get("updated_at"),
        seconds=_seconds(started, run.get("updated_at")) if done else None,
        html_url=str(run.get("html_url") or ""),
        logs_url=run.get("logs_url"),
        jobs=[job_state(j) for j in jobs],
    )


def pick_dispatched_run(
    runs: Sequence[Mapping[str, Any]],
    *,
    dispatched_at: datetime,
    sha: str,
    branch: str,
    taken: Sequence[int] = (),
) -> Mapping[str, Any] | None:
    """The run a dispatch started, when GitHub did not say: the oldest workflow_dispatch run on
    `branch` at `sha` created at or after the dispatch (less the clock slack), and not one an
    earlier dispatch already claimed (`taken`). None while GitHub has not created it yet."""
    since = dispatched_at - CLOCK_SLACK
    fits = [
        r
        for r in runs
        if r.get("event") == "workflow_dispatch"
        and r.get("head_sha") == sha
        and r.get("head_branch") == branch
        and int(r["id"]) not in taken
        and (_time(r.get("created_at")) or since) >= since
    ]
    return min(fits, key=lambda r: (str(r.get("created_at")), int(r["id"])), default=None)


def verdict(run: PipelineRun) -> Literal["succeeded", "failed", "cancelled", "running"]:
    """What a run's state means for whoever waits on it."""
    if not run.completed:
        return "running"
    if run.conclusion == "success":
        return "succeeded"
    if run.conclusion in ("cancelled", "skipped"):
        return "cancelled"
    return "failed"
