"""One engine operation (a deploy, promote, abort or rollback): its record, its steps, its clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from pipeline_bot.deploy.lock import HeldLock
from pipeline_bot.errors import DeployError
from pipeline_bot.integrations.ports import StorePort
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
    where it stopped; before each, the lock is checked (a lost lock ends the operation)."""

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
