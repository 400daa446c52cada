"""Deploy, promote, abort and roll back, with one lock per environment and a record of each step.

    deploy ──lock──► build objects ─► apply ─► watch ─► (canary: steps and gates)
                                               │
                                     failed ───┴──► roll back (unless disabled) ─► watch ─► record

A record is written before anything is applied and after every step, so a crash leaves a record
that says where it stopped; the lock expires on its own (its TTL is the deploy's timeout).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from pipeline_bot.core.canary import seconds as duration_seconds
from pipeline_bot.core.rollout import RolloutState, assess
from pipeline_bot.core.variants import (
    COLOR_LABEL,
    canary_split,
    canary_variant,
    color_variant,
    images_of,
    other_color,
    selector_of,
)
from pipeline_bot.deploy.gates import Gate, PauseGate, StepContext
from pipeline_bot.deploy.lock import DEFAULT_LEASE_SECONDS, HeldLock
from pipeline_bot.deploy.workload import APP, Workload, build_workload
from pipeline_bot.errors import DeployError, PipelineBotError
from pipeline_bot.integrations.ports import ClusterPort, StorePort
from pipeline_bot.models import (
    DeploymentStatus,
    DeployRecord,
    DeployRequest,
    DeployResult,
    DeployStep,
    Strategy,
    WorkloadStatus,
)
from pipeline_bot.observability import DEPLOY_SECONDS, DEPLOYS, ROLLBACKS
from pipeline_bot.repo_config import Environment

Obj = dict[str, Any]
Progress = Callable[[str], None]


def _now() -> datetime:
    return datetime.now(UTC)


class Run:
    """One engine operation: its record, its steps, its clock."""

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
        r.finished_at = _now()
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
            started_at=_now(),
        )
        run = Run(record, self.store, self.progress)
        run.objects = workload.objects
        run.reasons = strategy.reasons
        run.env = env
        if name in ("canary", "blue-green") and req.dry_run == "none":
            self.gate.prepare(workload.namespace, req.app)  # a broken gate stops us before we start
        with self._locked(
            req.environment, deploy_id, f"deploy {req.app} {req.image}", req.timeout_seconds
        ):
            self.store.save(record)
            with self._recorded(run):
                if req.dry_run == "server":
                    return self._server_dry_run(run, workload)
                self._expire_pause(req.environment, req.app)
                self._tidy(req.environment, req.app)
                self.cluster.ensure_namespace(workload.namespace)
                for obj in workload.others:
                    self.cluster.apply(obj)
                runner = {
                    "rolling": self._rolling,
                    "blue-green": self._blue_green,
                    "canary": self._canary,
                }[name]
                return runner(run, req, strategy, workload)

    def _server_dry_run(self, run: Run, workload: Workload) -> DeployResult:
        run.objects = [self.cluster.apply(o, dry_run=True) for o in workload.objects]
        run.step("dry-run", "succeeded", f"{len(run.objects)} object(s) accepted by the API server")
        return run.finish("planned", "server dry run: the API server accepted every object")

    # ------------------------------------------------------------------ the live Deployment

    def _live(self, namespace: str, app: str, w: Workload) -> Obj:
        """The workload's Deployment as the one that serves now: after a blue-green deploy that
        is the colour the Service selects, so rolling and canary deploys update that colour."""
        service = self.cluster.get("v1", "Service", namespace, app)
        color = ((service or {}).get("spec") or {}).get("selector", {}).get(COLOR_LABEL)
        return color_variant(w.deployment, app, color) if color else w.deployment

    # ------------------------------------------------------------------ rolling

    def _rolling(
        self, run: Run, req: DeployRequest, strategy: Strategy, w: Workload
    ) -> DeployResult:
        dep = self._live(w.namespace, req.app, w)
        name = dep["metadata"]["name"]
        before = self.cluster.get("apps/v1", "Deployment", w.namespace, name)
        run.record.state = {
            "kind": "rolling",
            "deployment": name,
            "previous_template": (before or {}).get("spec", {}).get("template"),
            "template": dep["spec"]["template"],
        }
        if strategy.parameters.max_surge and "strategy" not in dep["spec"]:
            dep["spec"]["strategy"] = {
                "type": "RollingUpdate",
                "rollingUpdate": {
                    "maxSurge": strategy.parameters.max_surge,
                    "maxUnavailable": _int_or_str(strategy.parameters.max_unavailable or "25%"),
                },
            }
        if w.service is not None and dep is w.deployment:
            self.cluster.apply(w.service)
        state = self._apply_and_watch(run, dep, req.timeout_seconds, "rollout")
        if state.phase == "succeeded":
            return run.finish("succeeded", state.message)
        return self._undo_rolling(run, req, w.namespace, name, before, state)

    def _undo_rolling(
        self,
        run: Run,
        req: DeployRequest,
        namespace: str,
        name: str,
        before: Obj | None,
        failure: RolloutState,
    ) -> DeployResult:
        why = self._explain(namespace, failure)
        if not req.auto_rollback:
            return run.finish(
                "failed", f"rollout failed: {why}; automatic rollback is off", reason=why
            )
        if before is None:
            self.cluster.delete("apps/v1", "Deployment", namespace, name)
            run.step("rollback", "succeeded", "first deploy: the failed Deployment was removed")
            return run.finish(
                "rolled_back", f"rollout failed: {why}; removed", rolled_back=True, reason=why
            )
        restored = self.cluster.patch(
            "apps/v1",
            "Deployment",
            namespace,
            name,
            {"spec": {"template": before["spec"]["template"]}},
        )
        state = self._watch(run, restored, req.timeout_seconds, "rollback")
        if state.phase != "succeeded":
            return run.finish(
                "failed",
                f"rollout failed: {why}; the rollback failed too: {state.message}",
                reason=why,
            )
        images = ", ".join(sorted(images_of(restored)))
        return run.finish(
            "rolled_back",
            f"rollout failed: {why}; rolled back to {images}",
            rolled_back=True,
            reason=why,
        )

    # ------------------------------------------------------------------ blue-green

    def _blue_green(
        self, run: Run, req: DeployRequest, strategy: Strategy, w: Workload
    ) -> DeployResult:
        app = req.app
        service = w.service or _service_for(w.deployment, app)
        current = self.cluster.get("v1", "Service", w.namespace, app)
        old_selector = ((current or {}).get("spec") or {}).get("selector")
        live_color = (old_selector or {}).get(COLOR_LABEL)
        color = other_color(live_color)
        new = color_variant(w.deployment, app, color)
        previous = (
            f"{app}-{live_color}"
            if live_color
            else (app if self.cluster.get("apps/v1", "Deployment", w.namespace, app) else None)
        )
        run.record.state = {
            "kind": "blue-green",
            "color": color,
            "service": app,
            "deployment": new["metadata"]["name"],
            "previous_deployment": previous,
            "previous_selector": old_selector,
            "selector": {**selector_of_service(service), COLOR_LABEL: color},
            "keep_seconds": strategy.parameters.keep_previous_seconds or 0,
        }
        state = self._apply_and_watch(run, new, req.timeout_seconds, f"{color} rollout")
        if state.phase != "succeeded":
            why = self._explain(w.namespace, state)
            self.cluster.delete("apps/v1", "Deployment", w.namespace, new["metadata"]["name"])
            run.step(
                "cleanup",
                "succeeded",
                f"removed {new['metadata']['name']}; {previous or 'nothing'} keeps serving",
            )
            return run.finish(
                "rolled_back", f"{color} never took traffic: {why}", rolled_back=True, reason=why
            )
        verdict = self.gate.evaluate(
            StepContext(
                req.environment,
                w.namespace,
                app,
                1,
                100,
                0,
                new,
                self.cluster.get("apps/v1", "Deployment", w.namespace, previous)
                if previous
                else None,
            )
        )
        run.step(
            "gate",
            "succeeded" if verdict.decision == "continue" else "failed",
            verdict.reason,
            details=verdict.measurements,
        )
        if verdict.decision == "rollback":
            self.cluster.delete("apps/v1", "Deployment", w.namespace, new["metadata"]["name"])
            return run.finish(
                "rolled_back",
                f"{color} failed its gates before taking traffic: {verdict.reason}",
                rolled_back=True,
                reason=verdict.reason,
            )
        if verdict.decision == "inconclusive":
            if run.env is not None and run.env.on_inconclusive == "fail":
                self.cluster.delete("apps/v1", "Deployment", w.namespace, new["metadata"]["name"])
                why = (
                    f"gates inconclusive and the environment's policy is to fail: {verdict.reason}"
                )
                return run.finish("rolled_back", why, rolled_back=True, reason=why)
            self._pause_expires(run)
            return run.finish(
                "paused",
                f"{color} is ready but its gates are inconclusive: "
                f"{verdict.reason}; promote or abort",
            )
        if strategy.parameters.manual_promotion and previous:
            run.step(
                "switch", "paused", f"{color} is ready; promote switches traffic from {previous}"
            )
            return run.finish("paused", f"{color} is ready beside {previous}; waiting for promote")
        return self._switch(run, w.namespace, service)

    def _switch(self, run: Run, namespace: str, service: Obj) -> DeployResult:
        """Point the Service at the new Deployment; keep the previous one up for a while."""
        st = run.record.state
        started = time.monotonic()
        svc = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": st["service"],
                "namespace": namespace,
                # everything pipeline-bot set before, or server-side apply would drop it
                "labels": (service.get("metadata") or {}).get("labels") or {},
                "annotations": {
                    k: v
                    for k, v in ((service.get("metadata") or {}).get("annotations") or {}).items()
                    if k.startswith("pipeline-bot.dev/")
                },
            },
            "spec": {
                k: v
                for k, v in (service.get("spec") or {}).items()
                if k in ("ports", "type", "sessionAffinity")
            }
            | {"selector": st["selector"]},
        }
        self.cluster.apply(svc)
        run.step(
            "switch",
            "succeeded",
            f"service {st['service']} now routes to {st['deployment']}",
            time.monotonic() - started,
        )
        previous = st.get("previous_deployment")
        if not previous:
            return run.finish("succeeded", f"{st['deployment']} is live")
        st["scale_down_at"] = time.time() + st.get("keep_seconds", 0)
        return run.finish(
            "succeeded",
            f"{st['deployment']} is live; {previous} stays up "
            f"{st.get('keep_seconds', 0)}s for instant rollback",
        )

    def _pause_expires(self, run: Run) -> None:
        timeout = duration_seconds(run.env.inconclusive_timeout) if run.env else 3600.0
        run.record.state["expires_at"] = time.time() + timeout

    def _expire_pause(self, environment: str, app: str) -> None:
        """A pause older than the environment's inconclusive_timeout is aborted now."""
        latest = next(iter(self.store.history(environment, app, limit=1)), None)
        if latest is None or latest.status != "paused":
            return
        expires = latest.state.get("expires_at")
        if expires is None or time.time() < expires:
            return
        run = Run(latest, self.store, self.progress)
        why = "the gates stayed inconclusive past the environment's inconclusive_timeout"
        st = latest.state
        if st.get("kind") == "canary":
            self._abort_canary(run, latest.namespace, st["deployment"], st["total"], why, "aborted")
        else:
            self.cluster.delete("apps/v1", "Deployment", latest.namespace, st["deployment"])
            run.finish("aborted", why, rolled_back=True, reason=why)
        self.progress(f"aborted paused deploy {latest.id}: {why}")

    def _tidy(self, environment: str, app: str) -> None:
        """Scale down the Deployment a blue-green switch left up, once its window has passed."""
        last = next(iter(self.store.history(environment, app, limit=1, status="succeeded")), None)
        st = last.state if last else {}
        previous = st.get("previous_deployment")
        if not (last and previous and st.get("scale_down_at") and not st.get("scaled_down")):
            return
        if time.time() < st["scale_down_at"]:
            return
        dep = self.cluster.get("apps/v1", "Deployment", last.namespace, previous)
        if dep is not None:
            st["previous_replicas"] = dep["spec"].get("replicas", 1)
            self.cluster.patch(
                "apps/v1", "Deployment", last.namespace, previous, {"spec": {"replicas": 0}}
            )
            self.progress(f"scaled down {previous}: its rollback window has passed")
        st["scaled_down"] = True
        self.store.save(last)

    # ------------------------------------------------------------------ canary

    def _canary(
        self, run: Run, req: DeployRequest, strategy: Strategy, w: Workload
    ) -> DeployResult:
        live = self._live(w.namespace, req.app, w)
        name = live["metadata"]["name"]
        stable = self.cluster.get("apps/v1", "Deployment", w.namespace, name)
        if stable is None:
            run.step(
                "canary", "skipped", "first deploy: no stable version to compare with; rolling"
            )
            return self._rolling(run, req, strategy, w)
        if w.service is not None and live is w.deployment:
            self.cluster.apply(w.service)
        total = int(stable["spec"].get("replicas", 1))
        steps = strategy.parameters.steps
        run.record.state = {
            "kind": "canary",
            "deployment": name,
            "canary": f"{req.app}-canary",
            "total": total,
            "weights": [s.weight for s in steps],
            "step": 0,
            "template": live["spec"]["template"],
            "stable_template": stable["spec"]["template"],
        }
        for index, step in enumerate(steps):
            canary_n, stable_n = canary_split(total, step.weight)
            canary = canary_variant(live, req.app, canary_n)
            state = self._apply_and_watch(
                run, canary, req.timeout_seconds, f"canary {step.weight}% ({canary_n}/{total})"
            )
            if state.phase != "succeeded":
                return self._abort_canary(
                    run, w.namespace, name, total, self._explain(w.namespace, state)
                )
            self.cluster.patch(
                "apps/v1", "Deployment", w.namespace, name, {"spec": {"replicas": stable_n}}
            )
            run.record.state["step"] = index + 1
            verdict = self.gate.evaluate(
                StepContext(
                    req.environment,
                    w.namespace,
                    req.app,
                    index + 1,
                    step.weight,
                    step.pause_seconds,
                    canary,
                    stable,
                )
            )
            run.step(
                f"gate {step.weight}%",
                "succeeded" if verdict.decision == "continue" else "failed",
                verdict.reason,
                details=verdict.measurements,
            )
            if verdict.decision == "rollback":
                return self._abort_canary(run, w.namespace, name, total, verdict.reason)
            if verdict.decision == "inconclusive":
                if run.env is not None and run.env.on_inconclusive == "fail":
                    why = (
                        "gates inconclusive and the environment's policy is to fail: "
                        + verdict.reason
                    )
                    return self._abort_canary(run, w.namespace, name, total, why)
                self._pause_expires(run)
                run.step("canary", "paused", "inconclusive: waiting for promote or abort")
                return run.finish(
                    "paused",
                    f"canary at {step.weight}% is inconclusive: {verdict.reason}; promote or abort",
                )
        if strategy.parameters.manual_promotion:
            run.step("promotion", "paused", "waiting for a person to promote")
            return run.finish("paused", "canary passed every step; waiting for promote")
        return self._promote_canary(run, w.namespace, name, total, req.timeout_seconds)

    def _promote_canary(
        self, run: Run, namespace: str, name: str, total: int, timeout: float
    ) -> DeployResult:
        st = run.record.state
        stable = self.cluster.patch(
            "apps/v1",
            "Deployment",
            namespace,
            name,
            {"spec": {"replicas": total, "template": st["template"]}},
        )
        state = self._watch(run, stable, timeout, "promote")
        if state.phase != "succeeded":
            why = self._explain(namespace, state)
            restored = self.cluster.patch(
                "apps/v1",
                "Deployment",
                namespace,
                name,
                {"spec": {"template": st["stable_template"]}},
            )
            self._watch(run, restored, timeout, "restore stable")
            self.cluster.delete("apps/v1", "Deployment", namespace, st["canary"])
            return run.finish(
                "rolled_back",
                f"promotion failed: {why}; stable restored",
                rolled_back=True,
                reason=why,
            )
        self.cluster.delete("apps/v1", "Deployment", namespace, st["canary"])
        run.step("cleanup", "succeeded", f"removed {st['canary']}")
        return run.finish("succeeded", f"canary promoted: {state.message}")

    def _abort_canary(
        self,
        run: Run,
        namespace: str,
        name: str,
        total: int,
        why: str,
        status: str = "rolled_back",
    ) -> DeployResult:
        self.cluster.delete("apps/v1", "Deployment", namespace, run.record.state["canary"])
        self.cluster.patch("apps/v1", "Deployment", namespace, name, {"spec": {"replicas": total}})
        run.step("abort", "succeeded", f"removed the canary; stable back to {total} replicas")
        return run.finish(status, f"canary aborted: {why}", rolled_back=True, reason=why)

    # ------------------------------------------------------------------ promote, abort, rollback

    def _paused(self, environment: str, app: str) -> DeployRecord:
        latest = next(iter(self.store.history(environment, app, limit=1)), None)
        if latest is None or latest.status != "paused":
            now = f"its last deploy is {latest.status}" if latest else "it has no deploys"
            raise DeployError(
                f"nothing to promote or abort for {app} in {environment}: {now}",
                environment=environment,
                app=app,
            )
        return latest

    def promote(self, environment: str, app: str, *, timeout: float = 300) -> DeployResult:
        self._expire_pause(environment, app)  # an expired pause is aborted, not promoted
        record = self._paused(environment, app)
        with self._locked(environment, record.id, f"promote {app}", timeout):
            run = Run(record, self.store, self.progress)
            record.status = "running"
            st = record.state
            with self._recorded(run):
                if st.get("kind") == "canary":
                    return self._promote_canary(
                        run, record.namespace, st["deployment"], st["total"], timeout
                    )
                service = self.cluster.get("v1", "Service", record.namespace, st["service"]) or {}
                return self._switch(run, record.namespace, service)

    def abort(self, environment: str, app: str) -> DeployResult:
        record = self._paused(environment, app)
        with self._locked(environment, record.id, f"abort {app}", 120):
            run = Run(record, self.store, self.progress)
            st = record.state
            with self._recorded(run):
                if st.get("kind") == "canary":
                    return self._abort_canary(
                        run,
                        record.namespace,
                        st["deployment"],
                        st["total"],
                        "aborted by request",
                        "aborted",
                    )
                self.cluster.delete("apps/v1", "Deployment", record.namespace, st["deployment"])
                run.step(
                    "abort",
                    "succeeded",
                    f"removed {st['deployment']}; "
                    f"{st.get('previous_deployment') or 'nothing'} keeps serving",
                )
                return run.finish(
                    "aborted", "aborted by request", rolled_back=True, reason="aborted by request"
                )

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
            started_at=_now(),
            state={"rollback_of": current.id},
        )
        with self._locked(environment, record.id, f"rollback {app}", timeout):
            run = Run(record, self.store, self.progress)
            self.store.save(record)
            with self._recorded(run):
                st = current.state
                if st.get("kind") == "blue-green" and st.get("previous_selector"):
                    return self._switch_back(run, current, timeout)
                template = (target.state.get("template") if target else None) or st.get(
                    "previous_template"
                )
                if template is None:
                    raise DeployError(
                        f"no earlier version of {app} to roll back to",
                        environment=environment,
                        app=app,
                    )
                name = st.get("deployment", app)
                restored = self.cluster.patch(
                    "apps/v1",
                    "Deployment",
                    current.namespace,
                    name,
                    {"spec": {"template": template}},
                )
                record.state = {
                    "kind": "rolling",
                    "deployment": name,
                    "template": template,
                    "rollback_of": current.id,
                }
                state = self._watch(run, restored, timeout, "rollback")
                if state.phase != "succeeded":
                    why = self._explain(current.namespace, state)
                    return run.finish("failed", f"rollback failed: {why}", reason=why)
                return run.finish(
                    "succeeded", f"rolled back to {', '.join(sorted(images_of(restored)))}"
                )

    def _rollback_revision(
        self, environment: str, app: str, namespace: str, timeout: float
    ) -> DeployResult:
        """No record: take the pod template of the Deployment's previous ReplicaSet revision."""
        dep = self.cluster.get("apps/v1", "Deployment", namespace, app)
        if dep is None:
            raise DeployError(
                f"no Deployment {app} in namespace {namespace}", environment=environment, app=app
            )
        revision = "deployment.kubernetes.io/revision"
        owned = [
            rs
            for rs in self.cluster.list_objects("apps/v1", "ReplicaSet", namespace)
            if any(
                ref.get("uid") == dep["metadata"]["uid"]
                for ref in rs["metadata"].get("ownerReferences") or []
            )
        ]
        owned.sort(key=lambda rs: int((rs["metadata"].get("annotations") or {}).get(revision, 0)))
        if len(owned) < 2:
            raise DeployError(
                f"{app} has no earlier revision to roll back to", environment=environment, app=app
            )
        template = owned[-2]["spec"]["template"]
        template["metadata"]["labels"].pop("pod-template-hash", None)
        record = DeployRecord(
            id=uuid.uuid4().hex[:12],
            environment=environment,
            app=app,
            namespace=namespace,
            image=", ".join(sorted(images_of({"spec": {"template": template}}))),
            strategy="rolling",
            status="running",
            started_at=_now(),
            state={"kind": "rolling", "deployment": app, "template": template},
        )
        with self._locked(environment, record.id, f"rollback {app}", timeout):
            run = Run(record, self.store, self.progress)
            self.store.save(record)
            with self._recorded(run):
                restored = self.cluster.patch(
                    "apps/v1", "Deployment", namespace, app, {"spec": {"template": template}}
                )
                state = self._watch(run, restored, timeout, "rollback")
                if state.phase != "succeeded":
                    why = self._explain(namespace, state)
                    return run.finish("failed", f"rollback failed: {why}", reason=why)
                return run.finish(
                    "succeeded",
                    f"rolled back to revision "
                    f"{owned[-2]['metadata']['annotations'][revision]} ({record.image})",
                )

    def _switch_back(self, run: Run, current: DeployRecord, timeout: float) -> DeployResult:
        st = current.state
        previous = st["previous_deployment"]
        dep = self.cluster.get("apps/v1", "Deployment", current.namespace, previous)
        if dep is None:
            raise DeployError(
                f"{previous} is gone; deploy the previous image again",
                environment=current.environment,
                app=current.app,
            )
        if st.get("scaled_down") or dep["spec"].get("replicas", 1) == 0:
            dep = self.cluster.patch(
                "apps/v1",
                "Deployment",
                current.namespace,
                previous,
                {"spec": {"replicas": st.get("previous_replicas", 1)}},
            )
            if self._watch(run, dep, timeout, f"{previous} ready").phase != "succeeded":
                return run.finish("failed", f"{previous} did not come back up")
        service = self.cluster.get("v1", "Service", current.namespace, st["service"]) or {}
        run.record.state = {
            **st,
            "deployment": previous,
            "previous_deployment": st["deployment"],
            "selector": st["previous_selector"],
            "previous_selector": st["selector"],
            "keep_seconds": 0,
            "scaled_down": False,
        }
        return self._switch(run, current.namespace, service)

    @contextmanager
    def _locked(self, environment: str, owner: str, reason: str, timeout: float) -> Iterator[None]:
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

    # ------------------------------------------------------------------ status

    def status(self, environment: str, app: str, namespace: str) -> DeploymentStatus:
        """What runs now (from the cluster) and the recent deploys (from the store)."""
        deployments = self.cluster.list_objects(
            "apps/v1", "Deployment", namespace, labels={APP: app}
        )
        workloads = [_workload_status(d) for d in deployments]
        service = self.cluster.get("v1", "Service", namespace, app)
        color = ((service or {}).get("spec") or {}).get("selector", {}).get(COLOR_LABEL)
        history = self.store.history(environment, app, limit=5)
        return DeploymentStatus(
            environment=environment,
            app=app,
            namespace=namespace,
            workloads=workloads,
            live_color=color,
            lock=self.store.lock(environment),
            latest=history[0] if history else None,
            history=history,
        )

    # ------------------------------------------------------------------ watching

    def _apply_and_watch(
        self, run: Run, deployment: Obj, timeout: float, label: str
    ) -> RolloutState:
        started = time.monotonic()
        applied = self.cluster.apply(deployment)
        run.step(
            f"apply {deployment['metadata']['name']}",
            "succeeded",
            f"generation {applied['metadata'].get('generation')}",
            time.monotonic() - started,
        )
        return self._watch(run, applied, timeout, label)

    def _watch(self, run: Run, deployment: Obj, timeout: float, label: str) -> RolloutState:
        started = time.monotonic()
        meta = deployment["metadata"]
        generation = int(meta.get("generation") or 1)
        images = images_of(deployment)
        last = RolloutState("failed", "Timeout", f"{label}: no word from the cluster")
        for dep, pods in self.cluster.watch_rollout(
            meta["namespace"], meta["name"], selector_of(deployment), timeout=timeout
        ):
            state = assess(dep, pods, generation=generation, images=images)
            if state.message != last.message and not state.done:
                self.progress(f"{label}: {state.message}")
            last = state
            if state.done:
                run.step(
                    label,
                    "succeeded" if state.phase == "succeeded" else "failed",
                    state.message,
                    time.monotonic() - started,
                )
                return state
        timed_out = RolloutState(
            "failed",
            "Timeout",
            f"{label} did not finish within {timeout:g}s (last: {last.message})",
            failing_pods=last.failing_pods,
        )
        run.step(label, "failed", timed_out.message, time.monotonic() - started)
        return timed_out

    def _explain(self, namespace: str, state: RolloutState) -> str:
        events = (
            self.cluster.pod_events(namespace, state.failing_pods) if state.failing_pods else []
        )
        return state.message + (f" (events: {'; '.join(events[-3:])})" if events else "")


def render_only(req: DeployRequest, strategy: Strategy, env: Environment) -> DeployResult:
    """A client dry run: the objects a deploy would apply, with no cluster and no store."""
    replicas = req.replicas or strategy.parameters.replicas
    namespace = req.namespace or env.namespace or env.name
    name = strategy.name if strategy.name != "none" else "rolling"
    workload = build_workload(
        req, namespace=namespace, replicas=replicas, deploy_id="dry-run", strategy=name
    )
    now = _now()
    return DeployResult(
        deploy_id="dry-run",
        environment=req.environment,
        app=req.app,
        namespace=workload.namespace,
        image=req.image,
        strategy=name,
        status="planned",
        message=f"dry run: {len(workload.objects)} object(s) rendered, nothing sent to the cluster",
        reasons=strategy.reasons,
        objects=workload.objects,
        started_at=now,
        finished_at=now,
    )


def _workload_status(dep: Obj) -> WorkloadStatus:
    spec, status, meta = dep.get("spec") or {}, dep.get("status") or {}, dep["metadata"]
    conditions = [
        f"{c.get('type')}={c.get('status')} ({c.get('reason')})"
        for c in status.get("conditions") or []
    ]
    return WorkloadStatus(
        name=meta["name"],
        images=sorted(images_of(dep)),
        replicas=spec.get("replicas", 1),
        updated=status.get("updatedReplicas") or 0,
        ready=status.get("readyReplicas") or 0,
        available=status.get("availableReplicas") or 0,
        generation=meta.get("generation") or 1,
        observed_generation=status.get("observedGeneration") or 0,
        revision=(meta.get("annotations") or {}).get("deployment.kubernetes.io/revision"),
        conditions=conditions,
    )


def selector_of_service(service: Obj) -> dict[str, str]:
    return dict((service.get("spec") or {}).get("selector") or {})


def _service_for(deployment: Obj, app: str) -> Obj:
    ports = [
        {
            "name": p.get("name", f"p{p['containerPort']}"),
            "port": p["containerPort"],
            "targetPort": p["containerPort"],
        }
        for c in deployment["spec"]["template"]["spec"]["containers"]
        for p in c.get("ports", [])
    ]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": app,
            "namespace": deployment["metadata"]["namespace"],
            "labels": deployment["metadata"].get("labels", {}),
        },
        "spec": {"selector": selector_of(deployment), "ports": ports or [{"port": 80}]},
    }


def _int_or_str(value: str) -> int | str:
    return int(value) if value.isdigit() else value
