"""Deploy, promote, abort and roll back: a driver over the strategies (rolling.py, bluegreen.py,
canary.py), with the environment's lock held throughout and a record of each step.

    deploy ──lock──► build objects ─► apply ─► strategy: watch (canary: steps and gates)
                                               │
                                     failed ───┴──► roll back (unless disabled) ─► watch ─► record

A record is written before anything is applied and after every step, so a crash leaves a record
that says where it stopped. The lock is a lease renewed while the operation runs (lock.py), so a
long canary keeps it and a holder that dies loses it one lease later. What a strategy needs after
a pause (promote, abort) or for a rollback is typed state on the record (models.StrategyState).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pipeline_bot.core.variants import COLOR_LABEL, images_of
from pipeline_bot.deploy.bluegreen import BlueGreen
from pipeline_bot.deploy.canary import Canary
from pipeline_bot.deploy.gates import Gate, PauseGate
from pipeline_bot.deploy.lock import DEFAULT_LEASE_SECONDS, HeldLock
from pipeline_bot.deploy.ops import Ops
from pipeline_bot.deploy.render import render_only, workload_status
from pipeline_bot.deploy.rolling import Rolling
from pipeline_bot.deploy.run import Progress, Run, now
from pipeline_bot.deploy.workload import APP, Workload, build_workload
from pipeline_bot.errors import DeployError, PausedDeployError, PipelineBotError
from pipeline_bot.integrations.ports import ClusterPort, StorePort
from pipeline_bot.models import (
    BlueGreenState,
    CanaryState,
    DeploymentStatus,
    DeployRecord,
    DeployRequest,
    DeployResult,
    RollingState,
    Strategy,
)
from pipeline_bot.repo_config import Environment

__all__ = ["DeployEngine", "render_only"]


class DeployEngine:
    def __init__(
        self,
        cluster: ClusterPort,
        store: StorePort,
        *,
        gate: Gate | None = None,
        progress: Progress | None = None,
        lock_wait: float = 0.0,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> None:
        self.cluster = cluster
        self.store = store
        self.gate = gate or PauseGate()
        self.progress = progress or (lambda _msg: None)
        self.lock_wait = lock_wait
        self.lease_seconds = lease_seconds
        self.held: HeldLock | None = None  # the lock of the operation running now
        ops = Ops(cluster, store, self.gate, self.progress)
        self.rolling, self.blue_green, self.canary = Rolling(ops), BlueGreen(ops), Canary(ops)

    # ------------------------------------------------------------------ deploy

    def deploy(self, req: DeployRequest, strategy: Strategy, env: Environment) -> DeployResult:
        if req.dry_run == "client":
            return render_only(req, strategy, env)
        deploy_id = uuid.uuid4().hex[:12]
        replicas = req.replicas or strategy.parameters.replicas
        namespace = req.namespace or env.namespace or env.name
        name = strategy.name if strategy.name != "none" else "rolling"
        workload = build_workload(
            req, namespace=namespace, replicas=replicas, deploy_id=deploy_id, strategy=name
        )
        record = DeployRecord(
            id=deploy_id,
            environment=req.environment,
            app=req.app,
            namespace=workload.namespace,
            image=req.image,
            commit_sha=req.commit_sha,
            strategy=name,
            status="running",
            actor=req.requested_by,
            started_at=now(),
        )
        run = Run(record, self.store, self.progress)
        run.objects = workload.objects
        run.reasons = strategy.reasons
        run.env = env
        run.timeout = req.timeout_seconds
        if name in ("canary", "blue-green") and req.dry_run == "none":
            self.gate.prepare(workload.namespace, req.app)  # a broken gate stops us before we start
        with (
            run.phase(),  # what fails at the cluster is retried for up to the deploy's timeout
            self._locked(req.environment, deploy_id, f"deploy {req.app} {req.image}"),
        ):
            if req.dry_run == "none":
                # a paused deploy is never silently replaced: its waiting colour or canary would
                # keep running and promote could no longer find it
                self._expire_pause(req.environment, req.app)
                self._paused_in_the_way(req, deploy_id)
            self.store.save(record)
            with self._recorded(run):
                if req.dry_run == "server":
                    return self._server_dry_run(run, workload)
                self._tidy(req.environment, req.app)
                self.cluster.ensure_namespace(workload.namespace)
                for obj in workload.others:
                    self.cluster.apply(obj)
                runners: dict[str, Rolling | BlueGreen | Canary] = {
                    "rolling": self.rolling,
                    "blue-green": self.blue_green,
                    "canary": self.canary,
                }
                # the API failing half-way puts back what the strategy changed (Run.guarded)
                return run.guarded(lambda: runners[name].deploy(run, req, strategy, workload))

    def _paused_in_the_way(self, req: DeployRequest, deploy_id: str) -> None:
        """Refuse to deploy over a paused deploy of the app, or, told to supersede it, abort it
        properly first (its canary or waiting colour removed, its record `aborted`)."""
        latest = next(iter(self.store.history(req.environment, req.app, limit=1)), None)
        if latest is None or latest.status != "paused":
            return
        if not req.supersede:
            what = f"{latest.strategy} of {latest.image}"
            raise PausedDeployError(req.environment, req.app, latest.id, what)
        run = Run(latest, self.store, self.progress)
        run.guard = self.held
        self._abort(run, f"superseded by deploy {deploy_id} of {req.image}")
        self.progress(f"aborted paused deploy {latest.id}: superseded by {deploy_id}")

    def _server_dry_run(self, run: Run, workload: Workload) -> DeployResult:
        run.objects = [self.cluster.apply(o, dry_run=True) for o in workload.objects]
        run.step("dry-run", "succeeded", f"{len(run.objects)} object(s) accepted by the API server")
        return run.finish("planned", "server dry run: the API server accepted every object")

    def _tidy(self, environment: str, app: str) -> None:
        """Scale down what the last blue-green switch left up, once its window has passed."""
        last = next(iter(self.store.history(environment, app, limit=1, status="succeeded")), None)
        if last is not None and self.blue_green.tidy(last):
            self.store.save(last)

    # ------------------------------------------------------------------ paused deploys

    def promote(self, environment: str, app: str, *, timeout: float = 300) -> DeployResult:
        first = self._paused(environment, app)
        with self._locked(environment, first.id, f"promote {app}"):
            self._expire_pause(environment, app)  # an expired pause is aborted, not promoted
            record = self._paused(environment, app)  # as it is now that the lock is ours
            run = Run(record, self.store, self.progress)
            run.timeout = timeout
            record.status = "running"
            with self._recorded(run):
                if isinstance(record.strategy_state, CanaryState):
                    return run.guarded(lambda: self.canary.promote(run, timeout))
                return self.blue_green.promote(run, timeout)

    def abort(self, environment: str, app: str) -> DeployResult:
        first = self._paused(environment, app)
        with self._locked(environment, first.id, f"abort {app}"):
            run = Run(self._paused(environment, app), self.store, self.progress)
            with self._recorded(run):
                return self._abort(run, "aborted by request")

    def _abort(self, run: Run, why: str) -> DeployResult:
        if isinstance(run.record.strategy_state, CanaryState):
            return self.canary.abort(run, why, "aborted")
        return self.blue_green.abort(run, why)

    def _paused(self, environment: str, app: str) -> DeployRecord:
        latest = next(iter(self.store.history(environment, app, limit=1)), None)
        if latest is None or latest.status != "paused":
            now_is = f"its last deploy is {latest.status}" if latest else "it has no deploys"
            raise DeployError(
                f"nothing to promote or abort for {app} in {environment}: {now_is}",
                environment=environment,
                app=app,
            )
        return latest

    def _expire_pause(self, environment: str, app: str) -> None:
        """A pause older than the environment's inconclusive_timeout is aborted now."""
        latest = next(iter(self.store.history(environment, app, limit=1)), None)
        if latest is None or latest.status != "paused":
            return
        st = latest.strategy_state
        expires = st.pause_expires_at if isinstance(st, CanaryState | BlueGreenState) else None
        if expires is None or now() < expires:
            return
        run = Run(latest, self.store, self.progress)
        run.guard = self.held
        why = "the gates stayed inconclusive past the environment's inconclusive_timeout"
        self._abort(run, why)
        self.progress(f"aborted paused deploy {latest.id}: {why}")

    # ------------------------------------------------------------------ rollback

    def rollback(
        self, environment: str, app: str, *, namespace: str | None = None, timeout: float = 300
    ) -> DeployResult:
        """From what serves now (the latest successful deploy) back to the one before it; with no
        record of it, back to the Deployment's previous revision."""
        done = self.store.history(environment, app, limit=50, status="succeeded")
        if not done:
            if namespace is None:
                raise DeployError(
                    f"no successful deploy of {app} in {environment} is recorded",
                    environment=environment,
                    app=app,
                )
            return self._rollback_revision(environment, app, namespace, timeout)
        current, target = done[0], (done[1] if len(done) > 1 else None)
        record = DeployRecord(
            id=uuid.uuid4().hex[:12],
            environment=environment,
            app=app,
            namespace=current.namespace,
            image=target.image if target else "(previous revision)",
            strategy=current.strategy,
            status="running",
            started_at=now(),
            rollback_of=current.id,
        )
        with self._locked(environment, record.id, f"rollback {app}"):
            run = Run(record, self.store, self.progress)
            self.store.save(record)
            with self._recorded(run):
                st = current.strategy_state
                if isinstance(st, BlueGreenState) and st.previous_selector:
                    return self.blue_green.switch_back(run, current, timeout)
                template = _template(target) or (
                    st.previous_template if isinstance(st, RollingState) else None
                )
                if template is None:
                    raise DeployError(
                        f"no earlier version of {app} to roll back to",
                        environment=environment,
                        app=app,
                    )
                return self.rolling.roll_back(
                    run,
                    st.deployment if st else app,
                    template,
                    timeout,
                    lambda restored: f"rolled back to {', '.join(sorted(images_of(restored)))}",
                )

    def _rollback_revision(
        self, environment: str, app: str, namespace: str, timeout: float
    ) -> DeployResult:
        """No record: take the pod template of the Deployment's previous ReplicaSet revision."""
        template, number = self.rolling.previous_revision(environment, app, namespace)
        record = DeployRecord(
            id=uuid.uuid4().hex[:12],
            environment=environment,
            app=app,
            namespace=namespace,
            image=", ".join(sorted(images_of({"spec": {"template": template}}))),
            strategy="rolling",
            status="running",
            started_at=now(),
            strategy_state=RollingState(deployment=app, template=template),
        )
        with self._locked(environment, record.id, f"rollback {app}"):
            run = Run(record, self.store, self.progress)
            self.store.save(record)
            with self._recorded(run):
                return self.rolling.roll_back(
                    run,
                    app,
                    template,
                    timeout,
                    lambda _: f"rolled back to revision {number} ({record.image})",
                )

    # ------------------------------------------------------------------ status

    def status(self, environment: str, app: str, namespace: str) -> DeploymentStatus:
        """What runs now (from the cluster) and the recent deploys (from the store)."""
        deployments = self.cluster.list_objects(
            "apps/v1", "Deployment", namespace, labels={APP: app}
        )
        service = self.cluster.get("v1", "Service", namespace, app)
        color = ((service or {}).get("spec") or {}).get("selector", {}).get(COLOR_LABEL)
        history = self.store.history(environment, app, limit=5)
        return DeploymentStatus(
            environment=environment,
            app=app,
            namespace=namespace,
            workloads=[workload_status(d) for d in deployments],
            live_color=color,
            lock=self.store.lock(environment),
            latest=history[0] if history else None,
            history=history,
        )

    # ------------------------------------------------------------------ lock and record

    @contextmanager
    def _locked(self, environment: str, owner: str, reason: str) -> Iterator[None]:
        """Hold the environment's lock for as long as the block runs, however long its pauses:
        a lease renewed in the background, not a deadline guessed from the rollout timeout."""
        held = HeldLock(
            self.store, environment, owner, reason, lease=self.lease_seconds, wait=self.lock_wait
        )
        with held:
            self.held = held
            try:
                yield
            finally:
                self.held = None

    @contextmanager
    def _recorded(self, run: Run) -> Iterator[None]:
        """An error half-way is written to the record (with where it stopped), then raised."""
        run.guard = self.held
        try:
            yield
        except PipelineBotError as exc:
            run.finish(
                "failed",
                f"stopped at {run.record.step or 'start'}: {exc.message}",
                reason=exc.message,
            )
            raise


def _template(record: DeployRecord | None) -> dict[str, Any] | None:
    """The pod template a deploy rolled out, where its strategy keeps one."""
    st = record.strategy_state if record else None
    return st.template if isinstance(st, RollingState | CanaryState) else None
