"""One engine operation (a deploy, promote, abort or rollback): its record, its steps, its clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from typing import Any, TypeVar

from pipeline_bot.deploy.lock import HeldLock
from pipeline_bot.errors import DeployError, IntegrationError
from pipeline_bot.integrations.ports import StorePort, deadline
from pipeline_bot.models import DeployRecord, DeployResult, DeployStep
from pipeline_bot.observability import DEPLOY_SECONDS, DEPLOYS, ROLLBACKS
from pipeline_bot.repo_config import Environment

Obj = dict[str, Any]
Progress = Callable[[str], None]
S = TypeVar("S")


def now() -> datetime:
    return datetime.now(UTC)


class Run:
    """Each step is written to the record as it happens, so a crash leaves a record that says
    where it stopped; before each, the lock is checked (a lost lock ends the operation).

    `timeout` is the operation's own (a deploy's timeout_seconds): each phase of it (a rollout,
    a canary step, a rollback) may retry what fails at the cluster for that long (`phase`).
    `undo` is what puts the cluster back should the cluster's API fail half-way: a strategy sets
    it once it has changed something, and `guarded` calls it."""

    def __init__(self, record: DeployRecord, store: StorePort, progress: Progress) -> None:
        self.record = record
        self.store = store
        self.progress = progress
        self.steps: list[DeployStep] = []
        self.start = time.monotonic()
        self.objects: list[Obj] = []
        self.reasons: list[str] = []
        self.env: Environment | None = None
        self.guard: HeldLock | None = None
        self.timeout: float | None = None
        self.undo: Callable[[str], DeployResult] | None = None

    def phase(self, seconds: float | None = None) -> AbstractContextManager[Any]:
        """Calls to the cluster inside retry transient failures until `seconds` (else the
        operation's timeout) from now, and no longer (ports.deadline); with neither, a few
        quick retries."""
        seconds = seconds or self.timeout
        return deadline(seconds) if seconds else nullcontext()

    def guarded(self, work: Callable[[], DeployResult]) -> DeployResult:
        """`work()`; when the cluster's API fails under it past its retries, `undo` (if the
        strategy set one) puts back what was changed, and the result says both. If the undo
        fails too, the error names both failures (the record keeps it: see the engine)."""
        try:
            return work()
        except IntegrationError as exc:
            undo, self.undo = self.undo, None
            if undo is None:
                raise
            self.progress(f"{exc.message}: rolling back")
            self.record.step = "rollback"
            try:
                with self.phase():
                    return undo(exc.message)
            except IntegrationError as again:
                raise IntegrationError(
                    f"{exc.message}; the automatic rollback failed too: {again.message}",
                    service=again.service,
                    status=again.status,
                ) from None

    def state(self, kind: type[S]) -> S:
        """The record's strategy state, which must be of `kind`."""
        st = self.record.strategy_state
        if not isinstance(st, kind):
            raise DeployError(
                f"deploy {self.record.id} has no {kind.__name__} to act on",
                environment=self.record.environment,
                app=self.record.app,
            )
        return st

    def step(
        self,
        name: str,
        status: str,
        message: str = "",
        seconds: float = 0.0,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        self.steps.append(
            DeployStep(
                name=name,
                status=status,
                message=message,
                seconds=round(seconds, 3),
                details=details or [],
            )
        )
        self.record.step = name
        if self.guard is not None:
            self.guard.check()  # a lock lost (a lease taken over) ends the operation here
        self.store.save(self.record)
        self.progress(f"{name}: {message}" if message else name)

    def finish(
        self, status: str, message: str, *, rolled_back: bool = False, reason: str | None = None
    ) -> DeployResult:
        r = self.record
        r.status = status  # type: ignore[assignment]
        r.reason = reason or ("" if status == "succeeded" else message)
        r.finished_at = now()
        self.store.save(r)
        result_status = "rolled_back" if status in ("rolled_back", "aborted") else status
        seconds = round(time.monotonic() - self.start, 3)
        DEPLOYS.labels(r.strategy, result_status).inc()
        DEPLOY_SECONDS.labels(r.strategy).observe(seconds)
        if rolled_back:
            ROLLBACKS.labels(r.strategy).inc()
        return DeployResult(
            deploy_id=r.id,
            environment=r.environment,
            app=r.app,
            namespace=r.namespace,
            image=r.image,
            strategy=r.strategy,
            status=result_status,
            message=message,
            rolled_back=rolled_back,
            rollback_reason=reason,
            reasons=self.reasons,
            steps=self.steps,
            objects=self.objects,
            started_at=r.started_at,
            finished_at=r.finished_at,
            seconds=seconds,
        )
