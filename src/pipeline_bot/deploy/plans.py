"""Run a deploy plan (core/plan.py): each service deployed by the engine as soon as everything it
depends on has succeeded, at most `max_parallel` at once, under one lock on the environment.

The plan holds the environment's lock from its first deploy to its last; each service's deploy
runs under it (`PlanLockStore` answers the engine's own acquire, renew and release for that
environment from the plan's lock), so nobody else deploys to the environment half-way through
a plan, and the services of a stage do not queue behind each other's locks.

A service that fails is rolled back by its own deploy (the engine's `auto_rollback`); its
dependents are skipped and the other services' results are kept.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import timedelta
from typing import Any

from pipeline_bot.core.plan import (
    DeployPlan,
    PlanResult,
    PlanService,
    ServiceOutcome,
    ServiceStatus,
    blocked,
    plan_status,
    ready,
    summary,
)
from pipeline_bot.deploy.lock import DEFAULT_LEASE_SECONDS, HeldLock
from pipeline_bot.deploy.run import Progress, now
from pipeline_bot.errors import PipelineBotError
from pipeline_bot.integrations.ports import StorePort
from pipeline_bot.models import DeployRecord, DeployResult, EnvironmentLock

DeployOne = Callable[[PlanService, StorePort | None], DeployResult]


class PlanLockStore:
    """The deploy store, with the environment's lock held by the plan: a service's deploy
    "takes" it only while the plan's lock is still the plan's, and never releases it."""

    def __init__(self, store: StorePort, held: HeldLock) -> None:
        self._store, self._held = store, held

    def acquire(
        self, environment: str, owner: str, reason: str, *, ttl: float, wait: float = 0.0
    ) -> EnvironmentLock:
        if environment != self._held.environment:
            return self._store.acquire(environment, owner, reason, ttl=ttl, wait=wait)
        self._held.check()  # the plan's lock lost: no service may go on under it
        at = now()
        return EnvironmentLock(
            environment=environment,
            owner=self._held.owner,
            reason=self._held.reason,
            acquired_at=at,
            expires_at=at + timedelta(seconds=self._held.lease),
        )

    def release(self, environment: str, owner: str) -> bool:
        if environment != self._held.environment:
            return self._store.release(environment, owner)
        return True  # the plan releases it when its last service is done

    def save(self, record: DeployRecord) -> None:
        self._store.save(record)

    def get(self, deploy_id: str) -> DeployRecord | None:
        return self._store.get(deploy_id)

    def history(
        self,
        environment: str,
        app: str | None = None,
        *,
        limit: int = 20,
        status: str | None = None,
    ) -> list[DeployRecord]:
        return self._store.history(environment, app, limit=limit, status=status)

    def last_successful(
        self, environment: str, app: str, *, before: str | None = None
    ) -> DeployRecord | None:
        return self._store.last_successful(environment, app, before=before)

    def lock(self, environment: str) -> EnvironmentLock | None:
        return self._store.lock(environment)


def run_plan(
    plan: DeployPlan,
    environment: str,
    deploy_one: DeployOne,
    store: StorePort | None,
    *,
    progress: Progress | None = None,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    actor: str | None = None,
) -> PlanResult:
    """Deploy every service of `plan` to `environment`; the result says how each one ended.
    `store` None: a dry run that renders only (no lock, no records)."""
    say = progress or (lambda _msg: None)
    plan_id = "plan-" + uuid.uuid4().hex[:8]
    started, clock = now(), time.monotonic()
    who = f" for {actor}" if actor else ""
    outcomes: dict[str, ServiceOutcome] = {
        s.name: ServiceOutcome(name=s.name, stage=s.stage, status="pending", image=s.image)
        for s in plan.services
    }
    say(f"{plan_id}: {len(plan.services)} service(s) in {len(plan.stages)} stage(s)")
    if store is None:
        _schedule(plan, outcomes, None, deploy_one, say, lambda _names: None)
    else:
        reason = f"deploy plan of {len(plan.services)} service(s){who}"

        def noted(names: list[str]) -> None:  # live: `status --plan` reads these notes
            note_plan(store, plan_id, list(outcomes.values()), names, say)

        with HeldLock(store, environment, plan_id, reason, lease=lease_seconds) as held:
            _schedule(plan, outcomes, PlanLockStore(store, held), deploy_one, say, noted)
    ordered = [outcomes[n] for stage in plan.stages for n in stage]
    status = plan_status(ordered)
    result = PlanResult(
        plan_id=plan_id,
        environment=environment,
        status=status,
        message=f"{len(ordered)} service(s): {summary(ordered)}",
        stages=plan.stages,
        services=ordered,
        started_at=started,
        finished_at=now(),
        seconds=round(time.monotonic() - clock, 3),
    )
    if store is not None:
        note_plan(store, plan_id, ordered, [o.name for o in ordered], say)
    return result


def _schedule(
    plan: DeployPlan,
    outcomes: dict[str, ServiceOutcome],
    store: StorePort | None,
    deploy_one: DeployOne,
    say: Progress,
    noted: Callable[[list[str]], None],
) -> None:
    def status() -> dict[str, ServiceStatus]:
        return {n: o.status for n, o in outcomes.items()}

    running: dict[Future[DeployResult], str] = {}
    finished: list[str] = []
    with ThreadPoolExecutor(plan.max_parallel, thread_name_prefix="plan") as pool:
        while True:
            for name, cause in blocked(plan, status()).items():
                outcomes[name] = outcomes[name].model_copy(
                    update={
                        "status": "skipped",
                        "blocked_by": cause,
                        "message": f"not deployed: {cause} did not succeed "
                        f"({outcomes[cause].status.replace('_', ' ')})",
                    }
                )
                say(f"{name}: skipped ({cause} did not succeed)")
            if finished:  # once what their outcome stops is marked
                noted(finished)
                finished = []
            free = plan.max_parallel - len(running)
            for name in ready(plan, status())[: max(free, 0)]:
                outcomes[name] = outcomes[name].model_copy(update={"status": "running"})
                say(f"{name}: deploying (stage {plan.service(name).stage + 1})")
                running[pool.submit(deploy_one, plan.service(name), store)] = name
            if not running:
                return
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                name = running.pop(future)
                outcomes[name] = _outcome(outcomes[name], future)
                say(f"{name}: {outcomes[name].status.replace('_', ' ')}")
                finished.append(name)


def _outcome(pending: ServiceOutcome, future: Future[DeployResult]) -> ServiceOutcome:
    try:
        result = future.result()
    except PipelineBotError as exc:  # refused before or during its deploy: the record says where
        return pending.model_copy(update={"status": "failed", "message": exc.message})
    return pending.model_copy(
        update={
            "status": result.status,
            "message": result.message,
            "image": result.image,
            "deploy_id": result.deploy_id,
            "seconds": result.seconds,
        }
    )


def note_plan(
    store: StorePort,
    plan_id: str,
    outcomes: list[ServiceOutcome],
    names: list[str],
    say: Progress,
) -> None:
    """The records of `names` say which plan they were part of and where every service of it
    stands (so a record of a failed service names the services its failure stopped), as of now:
    after each service ends, and when the plan ends."""
    where: dict[str, Any] = {o.name: o.status for o in outcomes}
    at = now().isoformat()
    for o in (o for o in outcomes if o.name in names and o.deploy_id is not None):
        try:
            record = store.get(str(o.deploy_id))
            if record is None:
                continue
            stopped = [s.name for s in outcomes if s.blocked_by == o.name]
            note = {"id": plan_id, "at": at, "stage": o.stage, "services": where}
            record.state["plan"] = note | ({"stopped": stopped} if stopped else {})
            store.save(record)
        except PipelineBotError as exc:  # the deploys are done; a missing note is not a failure
            say(f"could not note the plan on {o.deploy_id}: {exc.message}")
