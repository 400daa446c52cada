"""The seams between tools and the outside world: one Protocol per kind of collaborator."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from pipeline_bot.core.agent import ModelTurn
from pipeline_bot.core.images import BuildSpec, ResolvedImage
from pipeline_bot.core.pipeline import Dispatched, PipelineRun
from pipeline_bot.core.riskmodel import RiskInputs
from pipeline_bot.models import (
    AuditEntry,
    ChangeSet,
    DeployRecord,
    EnvironmentLock,
    MetricSample,
    MetricSeries,
)


@dataclass(frozen=True)
class ChangeSource:
    """A change read from a repository (`root` is None when it was read through an API)."""

    root: Path | None
    changes: ChangeSet
    patches: dict[str, str] | None = None  # each file's patch text, when the source kept it


class SourcePort(Protocol):
    """Reads a range of commits from a repository."""

    def read_change(self, repository: str, base: str | None, head: str) -> ChangeSource:
        """Changes from `base` (default: merge-base with the default branch) to `head`."""
        ...

    def excerpts(self, repository: str, base: str, head: str, paths: list[str]) -> dict[str, str]:
        """Each path's patch text from base to head (cut short), for an AI review."""
        ...


class AuditPort(Protocol):
    """Where every tool call is recorded (integrations/audit.py)."""

    def record(self, entry: AuditEntry) -> None: ...

    def entries(
        self, *, limit: int = 100, tool: str | None = None, actor: str | None = None
    ) -> list[AuditEntry]: ...


class RiskPort(Protocol):
    """What history says about a change: the fitted risk model and the change's history
    features (core/riskmodel.py's RiskInputs)."""

    def assess(self, root: Path | None, changes: ChangeSet) -> RiskInputs: ...


_DEADLINE: ContextVar[float | None] = ContextVar("pipeline_bot_deadline", default=None)


@contextmanager
def deadline(seconds: float) -> Iterator[float]:
    """Calls a port makes inside the block (in this thread) may retry what fails for a while
    (a 5xx, a 429, a connection dropped or gone quiet) until `seconds` from now, and no longer:
    a wait that would end past it, or a Retry-After that asks for more, is an error at once.
    Outside any deadline, or once it has passed, a call gets a few quick retries only. Yields
    the deadline (time.monotonic())."""
    at = time.monotonic() + seconds
    token = _DEADLINE.set(at)
    try:
        yield at
    finally:
        _DEADLINE.reset(token)


def current_deadline() -> float | None:
    """The deadline (time.monotonic()) the caller set with `deadline`, if any."""
    return _DEADLINE.get()


class ClusterPort(Protocol):
    """A Kubernetes API server, objects as plain dicts. Its calls retry transient failures
    within the caller's `deadline` (above)."""

    def apply(self, obj: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]: ...

    def get(
        self, api_version: str, kind: str, namespace: str, name: str
    ) -> dict[str, Any] | None: ...

    def delete(
        self,
        api_version: str,
        kind: str,
        namespace: str,
        name: str,
        *,
        resource_version: str | None = None,
    ) -> bool:
        """False when absent, or when it changed since `resource_version` (if given)."""
        ...

    def create(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """None when an object of that name exists already."""
        ...

    def replace(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """Only if still at `metadata.resourceVersion`; None when it changed or is gone."""
        ...

    def patch(
        self, api_version: str, kind: str, namespace: str, name: str, body: dict[str, Any]
    ) -> dict[str, Any]: ...

    def list_objects(
        self,
        api_version: str,
        kind: str,
        namespace: str,
        *,
        labels: dict[str, str] | None = None,
        fields: str | None = None,
    ) -> list[dict[str, Any]]: ...

    def ensure_namespace(self, name: str) -> None: ...

    def pod_events(self, namespace: str, pod_names: list[str]) -> list[str]: ...

    def pod_logs(self, namespace: str, pod: str, *, tail_lines: int = 30) -> str: ...

    def watch_rollout(
        self, namespace: str, name: str, pod_labels: dict[str, str], *, timeout: float
    ) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]: ...


class StorePort(Protocol):
    """Deploy records and environment locks."""

    def save(self, record: DeployRecord) -> None: ...

    def get(self, deploy_id: str) -> DeployRecord | None: ...

    def history(
        self,
        environment: str,
        app: str | None = None,
        *,
        limit: int = 20,
        status: str | None = None,
    ) -> list[DeployRecord]: ...

    def last_successful(
        self, environment: str, app: str, *, before: str | None = None
    ) -> DeployRecord | None: ...

    def acquire(
        self, environment: str, owner: str, reason: str, *, ttl: float, wait: float = 0.0
    ) -> EnvironmentLock:
        """Take the environment's lock for `ttl` seconds, waiting up to `wait` for its holder
        (LockedError names the holder, its reason and when its lock runs out). Taking a lock
        one holds already renews it: a holder renews every so often while it works."""
        ...

    def release(self, environment: str, owner: str) -> bool:
        """Free the lock if `owner` holds it; False when it does not."""
        ...

    def lock(self, environment: str) -> EnvironmentLock | None:
        """The lock's holder now; None when nobody holds it (or the holder's lock ran out)."""
        ...


class MetricsPort(Protocol):
    """A Prometheus-compatible query API."""

    url: str

    def query(self, promql: str, *, at: datetime | None = None) -> list[MetricSample]: ...

    def query_range(
        self, promql: str, *, start: datetime, end: datetime, step: str = "30s"
    ) -> list[MetricSeries]: ...


class WorkflowsPort(Protocol):
    """CI workflow runs (GitHub Actions)."""

    def recent_runs(self, repository: str, *, limit: int = 10) -> list[Any]: ...

    def dispatch(
        self, repository: str, workflow: str, ref: str, inputs: dict[str, str]
    ) -> Dispatched:
        """Start a workflow_dispatch run; its id when GitHub gives it back."""
        ...

    def runs(
        self,
        repository: str,
        *,
        workflow: str | None = None,
        branch: str | None = None,
        event: str | None = None,
        limit: int = 20,
    ) -> list[dict[str, Any]]:
        """Workflow runs, newest first, as GitHub's JSON."""
        ...

    def run(self, repository: str, run_id: int) -> PipelineRun:
        """A run with its jobs and their steps."""
        ...


class LLMPort(Protocol):
    """A chat model: one request, one turn (content and/or tool calls)."""

    model: str

    def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]],
        schema: dict[str, Any],
        schema_name: str,
    ) -> ModelTurn: ...


class ImagePort(Protocol):
    """Container images: what a registry says a reference is now, and builds that push."""

    def resolve(self, reference: str) -> ResolvedImage:
        """`repo:tag` -> its digest (ImageError when the registry has no such repository or
        tag; IntegrationError when it cannot be reached or refuses the pull)."""
        ...

    def build(self, spec: BuildSpec, *, progress: Callable[[str], None] | None = None) -> str:
        """Build and tag an image locally; returns the builder used (docker or buildah)."""
        ...

    def push(
        self, reference: str, *, progress: Callable[[str], None] | None = None
    ) -> ResolvedImage: ...
