"""The REST API from the original design, behind `Authorization: Bearer $PIPELINE_BOT_API_TOKEN`.

`GET /health`, `/metrics` and the docs are open and tell nothing secret (`public`). Every other
request passes the server's Guard first: the token is checked before a byte of the body is read,
and the body is capped in size and time. Deploys and pipelines are queued like webhook deliveries
(durable, retried, visible in /deliveries) and reported by `GET /pipeline/status/{id}` from the
store; their environments are checked against the repository's config first (422). Without a
configured token every protected route answers 401: fail closed.
"""

from __future__ import annotations

import hmac
import json
import re
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.responses import Response

from pipeline_bot import __version__
from pipeline_bot.app import metrics
from pipeline_bot.errors import PipelineBotError
from pipeline_bot.integrations.deliveries import STATUSES, NewDelivery
from pipeline_bot.repo_config import default_config

_REPO = r"^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$"
_SHA = r"^[0-9a-f]{40}$"
_ENVIRONMENT = r"^[a-z0-9][a-z0-9._-]{0,62}$"
_WORKFLOW = r"^([0-9]{1,19}|[A-Za-z0-9_.-]{1,100}\.ya?ml)$"
EnvironmentName = Annotated[str, Field(pattern=_ENVIRONMENT)]
PUBLIC = frozenset(
    {"/health", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
)


def public(scope: Any) -> bool:
    """Routes anyone may read: no token, and no body."""
    return scope["method"] in ("GET", "HEAD") and scope.get("path") in PUBLIC


class DeployBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    repository: str = Field(pattern=_REPO, description="owner/name; the App must be installed")
    environment: str = Field(pattern=_ENVIRONMENT)
    sha: str = Field(pattern=_SHA, description="Commit to deploy (its image is tagged with it)")
    base: str | None = Field(None, pattern=_SHA, description="For the auto strategy's analysis")
    app: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")


class PipelineBody(BaseModel):
    """Either a commit through the environments (`sha`, optional `environments`), or a GitHub
    Actions workflow run (`workflow` or `pipeline_config`, with `branch` and `inputs`: the
    original design's execute_pipeline), dispatched as the App's installation."""

    model_config = ConfigDict(extra="forbid")

    repository: str = Field(pattern=_REPO)
    sha: str | None = Field(None, pattern=_SHA, description="The commit to take through")
    base: str | None = Field(None, pattern=_SHA)
    environments: list[EnvironmentName] | None = Field(
        None,
        min_length=1,
        max_length=32,
        description="Environments of the repository's config (run in promotion order); "
        "default: every configured environment",
    )
    workflow: str | None = Field(
        None, pattern=_WORKFLOW, description="A workflow to dispatch: its file name or id"
    )
    pipeline_config: str | None = Field(
        None,
        pattern=r"^(\.github/workflows/)?[A-Za-z0-9_.-]{1,100}\.ya?ml$",
        description="The workflow file, e.g. .github/workflows/deploy.yml (the original "
        "design's name); `workflow` wins when both are given",
    )
    branch: str | None = Field(
        None, pattern=r"^[A-Za-z0-9._/-]{1,255}$", description="Where the workflow runs"
    )
    inputs: dict[str, str] = Field(
        default_factory=dict, max_length=25, description="The workflow's inputs"
    )

    @model_validator(mode="after")
    def _one_kind(self) -> PipelineBody:
        if self.workflow or self.pipeline_config:
            if not self.branch:
                raise ValueError("a workflow run needs `branch` (where the workflow runs)")
            if self.sha or self.environments:
                raise ValueError(
                    "give either a workflow (workflow or pipeline_config, branch, inputs) or a "
                    "commit through the environments (sha, environments), not both"
                )
        elif not self.sha:
            raise ValueError(
                "give `sha` (a commit through the environments) or `workflow` with `branch` "
                "(a GitHub Actions run)"
            )
        elif self.branch or self.inputs:
            raise ValueError("`branch` and `inputs` go with `workflow` or `pipeline_config`")
        return self


class Queued(BaseModel):
    id: str
    status: Literal["queued"]
    status_url: str


def require_token(request: Request) -> None:
    token: str | None = request.app.state.api_token
    given = request.headers.get("authorization", "")
    if not token or not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        raise HTTPException(
            401,
            "a valid bearer token is required (PIPELINE_BOT_API_TOKEN)",
            headers={"WWW-Authenticate": 'Bearer realm="pipeline-bot"'},
        )


Protected = Annotated[None, Depends(require_token)]


def router() -> APIRouter:
    api = APIRouter()

    @api.get("/health", tags=["status"])
    def health(request: Request) -> dict[str, Any]:
        depth = request.app.state.deliveries.depth()
        return {"status": "ok", "version": __version__, "queue_depth": depth}

    @api.get("/metrics", include_in_schema=False)
    def prometheus_metrics(request: Request) -> Response:
        metrics.QUEUE_DEPTH.set(request.app.state.deliveries.depth())
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    @api.get("/pipeline/status/{job_id}", tags=["pipeline"])
    def pipeline_status(
        job_id: str,
        request: Request,
        _: Protected,
        repository: Annotated[
            str | None, Query(description="owner/name, for a GitHub Actions run (run-<id>)")
        ] = None,
    ) -> dict[str, Any]:
        """A deploy or pipeline job (or any delivery) with the deploys it made, from the store;
        `run-<id>` with `repository`: a GitHub Actions run as GitHub reports it now (jobs, steps,
        conclusion, duration, logs URL)."""
        if run := _WORKFLOW_RUN.fullmatch(job_id):
            return _workflow_run(request, int(run[1]), repository)
        state = request.app.state
        delivery = state.deliveries.get(job_id)
        if delivery is None:
            record = state.store.get(job_id)
            if record is None:
                raise HTTPException(404, f"no job, delivery or deploy has the id {job_id!r}")
            return {"id": job_id, "kind": "deploy", "deploy": record.model_dump(mode="json")}
        deploy_ids = sorted(_deploys_of(delivery.state))
        deploys = [state.store.get(d) for d in deploy_ids]
        answer = {
            **delivery.summary(),
            "kind": "job" if delivery.event.startswith("api.") else "delivery",
            "outcome": delivery.error,
            "deploys": [d.model_dump(mode="json") for d in deploys if d is not None],
        }
        if run_id := delivery.state.get("workflow_run_id"):  # as GitHub reports it now
            try:
                answer["run"] = _workflow_run(request, int(run_id), delivery.repository)["run"]
            except HTTPException as exc:  # the job's own state still answers
                answer["run"] = None
                answer["run_error"] = exc.detail
        return answer

    @api.post("/deploy", status_code=202, tags=["pipeline"])
    def deploy(body: DeployBody, request: Request, _: Protected) -> Queued:
        """Queue a deploy of a commit to one environment."""
        installation = _installation(request, body.repository)
        _check_environments(request, installation, body.repository, [body.environment])
        return _queue(request, installation, "api.deploy", body.repository, body.model_dump())

    @api.post("/pipeline/execute", status_code=202, tags=["pipeline"])
    def execute(body: PipelineBody, request: Request, _: Protected) -> Queued:
        """Queue a commit's way through the environments in promotion order, stopping at the
        first deploy that does not succeed; or, with `workflow` and `branch`, dispatch a GitHub
        Actions workflow as the App's installation (the run's id, jobs, steps and conclusion
        then come from GitHub in `GET /pipeline/status/{id}`)."""
        installation = _installation(request, body.repository)
        if body.workflow or body.pipeline_config:
            job = body.model_dump(exclude={"sha", "base", "environments"})
            return _queue(request, installation, "api.workflow", body.repository, job)
        if body.environments is not None:
            _check_environments(request, installation, body.repository, body.environments)
        return _queue(request, installation, "api.pipeline", body.repository, body.model_dump())

    @api.get("/deliveries", tags=["deliveries"])
    def deliveries(
        request: Request,
        _: Protected,
        status: Annotated[str | None, Query(description=", ".join(STATUSES))] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> list[dict[str, Any]]:
        if status is not None and status not in STATUSES:
            raise HTTPException(400, f"status must be one of {', '.join(STATUSES)}")
        return [d.summary() for d in request.app.state.deliveries.recent(status, limit=limit)]

    @api.post("/deliveries/{delivery_id}/retry", tags=["deliveries"])
    def retry(delivery_id: str, request: Request, _: Protected) -> dict[str, Any]:
        """Queue a failed delivery again."""
        state = request.app.state
        before = state.deliveries.get(delivery_id)
        if before is None:
            raise HTTPException(404, f"no delivery {delivery_id!r}")
        if before.status != "failed":
            raise HTTPException(409, f"delivery {delivery_id!r} is {before.status}, not failed")
        after = state.deliveries.retry(delivery_id)
        state.worker.wake.set()
        return after.summary() if after else {}

    return api


_WORKFLOW_RUN = re.compile(r"run-(\d{1,19})")


def _workflow_run(request: Request, run_id: int, repository: str | None) -> dict[str, Any]:
    if not repository:
        raise HTTPException(422, "a workflow run's status needs ?repository=owner/name")
    installation = _installation(request, repository)
    try:
        actions = request.app.state.services.github.installation(installation).actions()
        run = actions.run(repository, run_id)
    except PipelineBotError as exc:
        status = 404 if getattr(exc, "status", None) == 404 else 502
        raise HTTPException(status, exc.message) from None
    return {"id": f"run-{run_id}", "kind": "workflow_run", "run": run.model_dump(mode="json")}


def _deploys_of(state: dict[str, Any]) -> set[str]:
    """Every deploy a delivery made: done, failed, and failed before a retry."""
    ids = {str(v) for k, v in state.items() if k.startswith("acted:") and v != "error"}
    ids |= {str(v["deploy"]) for k, v in state.items() if k.startswith("failed:")}
    return ids | {str(d) for d in state.get("failed_deploys", [])}


def _installation(request: Request, repository: str) -> int:
    installation: int | None = request.app.state.deliveries.installation_for(repository)
    if installation is None:
        raise HTTPException(
            404,
            f"the App is not installed on {repository} (or its installation event was not "
            "received): install it there first",
        )
    return installation


def _check_environments(
    request: Request, installation: int, repository: str, names: list[str]
) -> None:
    """422 unless every name is an environment of the config on the default branch (the one the
    job will read); 502 when GitHub cannot tell."""
    services = request.app.state.services
    try:
        gh = services.github.installation(installation)
        branch = gh.default_branch(repository)
        config = services.configs.load(gh, repository, branch)
    except PipelineBotError as exc:
        raise HTTPException(
            502, f"cannot read {repository}'s config to check the environments: {exc.message}"
        ) from None
    known = [e.name for e in config.environments or default_config().environments]
    unknown = [n for n in dict.fromkeys(names) if n not in known]
    if unknown:
        raise HTTPException(
            422,
            f"{repository}'s config on {branch} defines no environment "
            f"{', '.join(repr(n) for n in unknown)}; it defines {', '.join(known) or 'none'}",
        )


def _queue(
    request: Request, installation: int, event: str, repository: str, job: dict[str, Any]
) -> Queued:
    state = request.app.state
    job_id = f"job-{uuid.uuid4()}"
    actor = "api"
    payload = {"repository": {"full_name": repository}, "job": {**job, "actor": actor}}
    state.deliveries.accept(
        NewDelivery(
            job_id,
            event,
            None,
            installation,
            repository,
            json.dumps(payload).encode(),
            True,
            f"{repository}@deploys",
        )
    )
    state.worker.wake.set()
    return Queued(id=job_id, status="queued", status_url=f"/pipeline/status/{job_id}")
