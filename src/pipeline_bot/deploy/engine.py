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
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

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
from pipeline_bot.deploy.workload import Workload, build_workload
from pipeline_bot.errors import DeployError
from pipeline_bot.integrations.ports import ClusterPort, StorePort
from pipeline_bot.models import DeployRecord, DeployRequest, DeployResult, DeployStep, Strategy
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

    def step(self, name: str, status: str, message: str = "", seconds: float = 0.0) -> None:
        self.steps.append(
            DeployStep(name=name, status=status, message=message, seconds=round(seconds, 3))
        )
        self.record.step = name
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
            steps=self.steps,
            objects=self.objects,
            started_at=r.started_at,
            finished_at=r.finished_at,
            seconds=round(time.monotonic() - self.start, 3),
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
    ) -> None:
        self.cluster = cluster
        self.store = store
        self.gate = gate or PauseGate()
        self.progress = progress or (lambda _msg: None)
        self.lock_wait = lock_wait

    # ------------------------------------------------------------------ deploy

    def plan(self, req: DeployRequest, strategy: Strategy, env: Environment) -> Workload:
        """The objects a deploy would apply; needs no cluster."""
        replicas = req.replicas or strategy.parameters.replicas
        namespace = req.namespace or env.namespace or env.name
        return build_workload(
            req, namespace=namespace, replicas=replicas, deploy_id="planned", strategy=strategy.name
        )

    def deploy(self, req: DeployRequest, strategy: Strategy, env: Environment) -> DeployResult:
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
        if req.dry_run == "client":
            return run.finish(
                "planned",
                f"dry run: {len(workload.objects)} object(s) rendered, nothing sent to the cluster",
            )
        self.store.acquire(
            req.environment,
            deploy_id,
            f"deploy {req.app} {req.image}",
            ttl=req.timeout_seconds + 60,
            wait=self.lock_wait,
        )
        try:
            self.store.save(record)
            if req.dry_run == "server":
                return self._server_dry_run(run, workload)
            self.cluster.ensure_namespace(workload.namespace)
            for obj in workload.others:
                self.cluster.apply(obj)
            runner = {
                "rolling": self._rolling,
                "blue-green": self._blue_green,
                "canary": self._canary,
            }[name]
            return runner(run, req, strategy, workload)
        finally:
            self.store.release(req.environment, deploy_id)

    def _server_dry_run(self, run: Run, workload: Workload) -> DeployResult:
        run.objects = [self.cluster.apply(o, dry_run=True) for o in workload.objects]
        run.step("dry-run", "succeeded", f"{len(run.objects)} object(s) accepted by the API server")
        return run.finish("planned", "server dry run: the API server accepted every object")

    # ------------------------------------------------------------------ rolling

    def _rolling(
        self, run: Run, req: DeployRequest, strategy: Strategy, w: Workload
    ) -> DeployResult:
        dep = w.deployment
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
        if w.service is not None:
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
            return run.finish("failed", f"rollout failed: {why}; automatic rollback is off")
        if before is None:
            self.cluster.delete("apps/v1", "Deployment", namespace, name)
            run.step("rollback", "succeeded", "first deploy: the failed Deployment was removed")
            return run.finish(
                "rolled_back", f"rollout failed: {why}; removed", rolled_back=True, reason=why
            )
        template = before["spec"]["template"]
        restored = self.cluster.patch(
            "apps/v1", "Deployment", namespace, name, {"spec": {"template": template}}
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
        current = self.cluster.get("v1", "Service", w.namespace, service["metadata"]["name"])
        live = ((current or {}).get("spec") or {}).get("selector", {}).get(COLOR_LABEL)
        color = other_color(live)
        new = color_variant(w.deployment, app, color)
        run.record.state = {
            "kind": "blue-green",
            "color": color,
            "previous_color": live,
            "service": service["metadata"]["name"],
            "deployment": new["metadata"]["name"],
            "keep_seconds": strategy.parameters.keep_previous_seconds or 0,
        }
        state = self._apply_and_watch(run, new, req.timeout_seconds, f"{color} rollout")
        if state.phase != "succeeded":
            why = self._explain(w.namespace, state)
            self.cluster.delete("apps/v1", "Deployment", w.namespace, new["metadata"]["name"])
            run.step(
                "cleanup",
                "succeeded",
                f"removed {new['metadata']['name']}; {live or 'nothing'} keeps serving",
            )
            return run.finish(
                "rolled_back", f"{color} never took traffic: {why}", rolled_back=True, reason=why
            )
        if strategy.parameters.manual_promotion and live:
            run.step(
                "switch", "paused", f"{color} is ready; `promote` switches traffic from {live}"
            )
            return run.finish("paused", f"{color} is ready beside {live}; waiting for promote")
        return self._switch(run, w.namespace, service, color, live)

    def _switch(
        self, run: Run, namespace: str, service: Obj, color: str, live: str | None
    ) -> DeployResult:
        started = time.monotonic()
        selector = {**selector_of_service(service), COLOR_LABEL: color}
        svc = {**service, "spec": {**service.get("spec", {}), "selector": selector}}
        self.cluster.apply(svc)
        run.step(
            "switch",
            "succeeded",
            f"service {service['metadata']['name']} now selects {color}",
            time.monotonic() - started,
        )
        keep = run.record.state.get("keep_seconds", 0)
        if live:
            run.record.state["scale_down_at"] = time.time() + keep
            note = f"; {live} stays up {keep}s for instant rollback"
        else:
            note = ""
        return run.finish("succeeded", f"{color} is live{note}")

    # ------------------------------------------------------------------ canary

    def _canary(
        self, run: Run, req: DeployRequest, strategy: Strategy, w: Workload
    ) -> DeployResult:
        name = w.deployment["metadata"]["name"]
        stable = self.cluster.get("apps/v1", "Deployment", w.namespace, name)
        if stable is None:
            run.step(
                "canary", "skipped", "first deploy: no stable version to compare with; rolling"
            )
            return self._rolling(run, req, strategy, w)
        if w.service is not None:
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
            "template": w.deployment["spec"]["template"],
            "stable_template": stable["spec"]["template"],
        }
        for index, step in enumerate(steps):
            canary_n, stable_n = canary_split(total, step.weight)
            canary = canary_variant(w.deployment, req.app, canary_n)
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
            )
            if verdict.decision == "rollback":
                return self._abort_canary(run, w.namespace, name, total, verdict.reason)
            if verdict.decision == "inconclusive":
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
        state_ = run.record.state
        stable = self.cluster.patch(
            "apps/v1",
            "Deployment",
            namespace,
            name,
            {"spec": {"replicas": total, "template": state_["template"]}},
        )
        state = self._watch(run, stable, timeout, "promote")
        if state.phase != "succeeded":
            why = self._explain(namespace, state)
            restored = self.cluster.patch(
                "apps/v1",
                "Deployment",
                namespace,
                name,
                {"spec": {"template": state_["stable_template"]}},
            )
            self._watch(run, restored, timeout, "restore stable")
            self.cluster.delete("apps/v1", "Deployment", namespace, state_["canary"])
            return run.finish(
                "rolled_back",
                f"promotion failed: {why}; stable restored",
                rolled_back=True,
                reason=why,
            )
        self.cluster.delete("apps/v1", "Deployment", namespace, state_["canary"])
        run.step("cleanup", "succeeded", f"removed {state_['canary']}")
        return run.finish("succeeded", f"canary promoted: {state.message}")

    def _abort_canary(
        self, run: Run, namespace: str, name: str, total: int, why: str
    ) -> DeployResult:
        self.cluster.delete("apps/v1", "Deployment", namespace, run.record.state["canary"])
        self.cluster.patch("apps/v1", "Deployment", namespace, name, {"spec": {"replicas": total}})
        run.step("abort", "succeeded", f"removed the canary; stable back to {total} replicas")
        return run.finish("rolled_back", f"canary aborted: {why}", rolled_back=True, reason=why)

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
        record = self._paused(environment, app)
        self.store.acquire(
            environment, record.id, f"promote {app}", ttl=timeout + 60, wait=self.lock_wait
        )
        try:
            run = Run(record, self.store, self.progress)
            record.status = "running"
            st = record.state
            if st.get("kind") == "canary":
                return self._promote_canary(
                    run, record.namespace, st["deployment"], st["total"], timeout
                )
            if st.get("kind") == "blue-green":
                service = self.cluster.get("v1", "Service", record.namespace, st["service"])
                if service is None:
                    raise DeployError(
                        f"service {st['service']} is gone", environment=environment, app=app
                    )
                return self._switch(
                    run, record.namespace, service, st["color"], st["previous_color"]
                )
            raise DeployError(
                f"a {record.strategy} deploy cannot be promoted", environment=environment, app=app
            )
        finally:
            self.store.release(environment, record.id)

    def abort(self, environment: str, app: str) -> DeployResult:
        record = self._paused(environment, app)
        self.store.acquire(environment, record.id, f"abort {app}", ttl=120, wait=self.lock_wait)
        try:
            run = Run(record, self.store, self.progress)
            st = record.state
            if st.get("kind") == "canary":
                return self._abort_canary(
                    run, record.namespace, st["deployment"], st["total"], "aborted by request"
                )
            self.cluster.delete("apps/v1", "Deployment", record.namespace, st["deployment"])
            run.step(
                "abort",
                "succeeded",
                f"removed {st['deployment']}; "
                f"{st.get('previous_color') or 'nothing'} keeps serving",
            )
            return run.finish(
                "aborted", "aborted by request", rolled_back=True, reason="aborted by request"
            )
        finally:
            self.store.release(environment, record.id)

    def rollback(self, environment: str, app: str, *, timeout: float = 300) -> DeployResult:
        """Back to the last successful deploy before the latest one."""
        history = self.store.history(environment, app, limit=50)
        if not history:
            raise DeployError(
                f"no deploys of {app} in {environment} are recorded",
                environment=environment,
                app=app,
            )
        latest = history[0]
        target = next((r for r in history[1:] if r.status == "succeeded"), None)
        record = DeployRecord(
            id=uuid.uuid4().hex[:12],
            environment=environment,
            app=app,
            namespace=latest.namespace,
            image=target.image if target else "(previous revision)",
            strategy=latest.strategy,
            status="running",
            started_at=_now(),
            state={"rollback_of": latest.id},
        )
        self.store.acquire(
            environment, record.id, f"rollback {app}", ttl=timeout + 60, wait=self.lock_wait
        )
        try:
            run = Run(record, self.store, self.progress)
            self.store.save(record)
            st = latest.state
            if st.get("kind") == "blue-green" and st.get("previous_color"):
                return self._rollback_colors(run, latest, timeout)
            name = st.get("deployment", app)
            template = (target.state.get("template") if target else None) or st.get(
                "previous_template"
            )
            if template is None:
                raise DeployError(
                    f"no earlier version of {app} to roll back to", environment=environment, app=app
                )
            if st.get("kind") == "canary":
                self.cluster.delete("apps/v1", "Deployment", latest.namespace, st["canary"])
            restored = self.cluster.patch(
                "apps/v1", "Deployment", latest.namespace, name, {"spec": {"template": template}}
            )
            record.state = {
                "kind": "rolling",
                "deployment": name,
                "template": template,
                "rollback_of": latest.id,
            }
            state = self._watch(run, restored, timeout, "rollback")
            if state.phase != "succeeded":
                return run.finish(
                    "failed", f"rollback failed: {self._explain(latest.namespace, state)}"
                )
            return run.finish(
                "succeeded", f"rolled back to {', '.join(sorted(images_of(restored)))}"
            )
        finally:
            self.store.release(environment, record.id)

    def _rollback_colors(self, run: Run, latest: DeployRecord, timeout: float) -> DeployResult:
        st = latest.state
        back = st["previous_color"]
        name = f"{latest.app}-{back}"
        dep = self.cluster.get("apps/v1", "Deployment", latest.namespace, name)
        if dep is None:
            raise DeployError(
                f"{name} is gone; deploy the previous image again",
                environment=latest.environment,
                app=latest.app,
            )
        service = self.cluster.get("v1", "Service", latest.namespace, st["service"])
        if service is None:
            raise DeployError(
                f"service {st['service']} is gone", environment=latest.environment, app=latest.app
            )
        run.record.state = {**st, "color": back, "previous_color": st["color"], "keep_seconds": 0}
        if (dep.get("status") or {}).get("availableReplicas", 0) < dep["spec"].get("replicas", 1):
            self._watch(run, dep, timeout, f"{back} ready")
        return self._switch(run, latest.namespace, service, back, st["color"])

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
