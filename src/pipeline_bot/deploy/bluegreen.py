"""Blue-green: roll the other colour out beside the live one, gate it, then switch the Service
(at once, or on promote); the previous colour stays up for the rollback window, and the next
deploy scales it down once that has passed."""

from __future__ import annotations

import time
from datetime import timedelta

from pipeline_bot.core.variants import COLOR_LABEL, color_variant, other_color, selector_of
from pipeline_bot.deploy.gates import StepContext
from pipeline_bot.deploy.ops import Ops
from pipeline_bot.deploy.run import Obj, Run, now
from pipeline_bot.deploy.workload import Workload
from pipeline_bot.errors import DeployError
from pipeline_bot.models import BlueGreenState, DeployRecord, DeployRequest, DeployResult, Strategy


class BlueGreen:
    def __init__(self, ops: Ops) -> None:
        self.ops = ops

    def deploy(self, run: Run, req: DeployRequest, strategy: Strategy, w: Workload) -> DeployResult:
        ops, app = self.ops, req.app
        service = w.service or _service_for(w.deployment, app)
        current = ops.cluster.get("v1", "Service", w.namespace, app)
        old_selector = ((current or {}).get("spec") or {}).get("selector")
        live_color = (old_selector or {}).get(COLOR_LABEL)
        color = other_color(live_color)
        new = color_variant(w.deployment, app, color)
        previous = (
            f"{app}-{live_color}"
            if live_color
            else (app if ops.deployment(w.namespace, app) else None)
        )
        run.record.strategy_state = st = BlueGreenState(
            color=color,
            service=app,
            deployment=new["metadata"]["name"],
            previous_deployment=previous,
            previous_selector=old_selector,
            selector={**selector_of_service(service), COLOR_LABEL: color},
            keep_seconds=strategy.parameters.keep_previous_seconds or 0,
        )
        # until the switch, an API that fails past its retries removes the new colour again
        run.undo = lambda why: self._undo_new(run, st, w.namespace, why)
        state = ops.apply_and_watch(run, new, req.timeout_seconds, f"{color} rollout")
        if state.phase != "succeeded":
            why = ops.explain(w.namespace, state)
            run.undo = None
            self._remove_new(st, w.namespace)
            run.step(
                "cleanup",
                "succeeded",
                f"removed {st.deployment}; {previous or 'nothing'} keeps serving",
            )
            return run.finish(
                "rolled_back", f"{color} never took traffic: {why}", rolled_back=True, reason=why
            )
        verdict = ops.gate.evaluate(
            StepContext(
                req.environment,
                w.namespace,
                app,
                1,
                100,
                0,
                new,
                ops.deployment(w.namespace, previous) if previous else None,
            )
        )
        run.step(
            "gate",
            "succeeded" if verdict.decision == "continue" else "failed",
            verdict.reason,
            details=verdict.measurements,
        )
        run.undo = None  # what follows removes, pauses or switches on its own terms
        if verdict.decision == "rollback":
            self._remove_new(st, w.namespace)
            return run.finish(
                "rolled_back",
                f"{color} failed its gates before taking traffic: {verdict.reason}",
                rolled_back=True,
                reason=verdict.reason,
            )
        if verdict.decision == "inconclusive":
            if run.env is not None and run.env.on_inconclusive == "fail":
                self._remove_new(st, w.namespace)
                why = (
                    f"gates inconclusive and the environment's policy is to fail: {verdict.reason}"
                )
                return run.finish("rolled_back", why, rolled_back=True, reason=why)
            st.pause_expires_at = ops.pause_expires(run)
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
        return self.switch(run, service)

    def promote(self, run: Run, timeout: float) -> DeployResult:
        st = run.state(BlueGreenState)
        service = self.ops.cluster.get("v1", "Service", run.record.namespace, st.service) or {}
        return self.switch(run, service)

    def abort(self, run: Run, why: str) -> DeployResult:
        """Remove the colour that never took traffic; the previous one keeps serving."""
        st = run.state(BlueGreenState)
        self._remove_new(st, run.record.namespace)
        run.step(
            "abort",
            "succeeded",
            f"removed {st.deployment}; {st.previous_deployment or 'nothing'} keeps serving",
        )
        return run.finish("aborted", why, rolled_back=True, reason=why)

    def switch(self, run: Run, service: Obj) -> DeployResult:
        """Point the Service at the new Deployment; keep the previous one up for a while."""
        st = run.state(BlueGreenState)
        started = time.monotonic()
        svc = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": st.service,
                "namespace": run.record.namespace,
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
            | {"selector": st.selector},
        }
        self.ops.cluster.apply(svc)
        run.step(
            "switch",
            "succeeded",
            f"service {st.service} now routes to {st.deployment}",
            time.monotonic() - started,
        )
        if not st.previous_deployment:
            return run.finish("succeeded", f"{st.deployment} is live")
        st.scale_down_at = now() + timedelta(seconds=st.keep_seconds)
        return run.finish(
            "succeeded",
            f"{st.deployment} is live; {st.previous_deployment} stays up "
            f"{st.keep_seconds}s for instant rollback",
        )

    def switch_back(self, run: Run, current: DeployRecord, timeout: float) -> DeployResult:
        """A rollback: the Service back to the colour `current` switched away from."""
        st = current.strategy_state
        if not isinstance(st, BlueGreenState) or not st.previous_deployment:
            raise DeployError(
                f"{current.id} did not switch from another colour",
                environment=current.environment,
                app=current.app,
            )
        previous, namespace = st.previous_deployment, current.namespace
        dep = self.ops.deployment(namespace, previous)
        if dep is None:
            raise DeployError(
                f"{previous} is gone; deploy the previous image again",
                environment=current.environment,
                app=current.app,
            )
        if st.scaled_down or dep["spec"].get("replicas", 1) == 0:
            dep = self.ops.cluster.patch(
                "apps/v1",
                "Deployment",
                namespace,
                previous,
                {"spec": {"replicas": 1 if st.previous_replicas is None else st.previous_replicas}},
            )
            if self.ops.watch(run, dep, timeout, f"{previous} ready").phase != "succeeded":
                return run.finish("failed", f"{previous} did not come back up")
        service = self.ops.cluster.get("v1", "Service", namespace, st.service) or {}
        run.record.strategy_state = st.model_copy(
            update={
                "deployment": previous,
                "previous_deployment": st.deployment,
                "selector": st.previous_selector or {},
                "previous_selector": st.selector,
                "keep_seconds": 0,
                "scaled_down": False,
            }
        )
        return self.switch(run, service)

    def tidy(self, last: DeployRecord) -> bool:
        """Scale down the Deployment a switch left up, once its window has passed; True when
        `last`'s state changed (and should be saved)."""
        st = last.strategy_state
        if not isinstance(st, BlueGreenState) or not st.previous_deployment:
            return False
        if st.scale_down_at is None or st.scaled_down or now() < st.scale_down_at:
            return False
        previous = st.previous_deployment
        dep = self.ops.deployment(last.namespace, previous)
        if dep is not None:
            st.previous_replicas = dep["spec"].get("replicas", 1)
            self.ops.cluster.patch(
                "apps/v1", "Deployment", last.namespace, previous, {"spec": {"replicas": 0}}
            )
            self.ops.progress(f"scaled down {previous}: its rollback window has passed")
        st.scaled_down = True
        return True

    def _undo_new(self, run: Run, st: BlueGreenState, namespace: str, why: str) -> DeployResult:
        """The API failed before the switch: the new colour goes, the Service never moved."""
        run.undo = None
        with run.phase():
            self._remove_new(st, namespace)
        kept = st.previous_deployment or "nothing"
        run.step("cleanup", "succeeded", f"removed {st.deployment}; {kept} keeps serving")
        return run.finish(
            "rolled_back", f"{st.color} never took traffic: {why}", rolled_back=True, reason=why
        )

    def _remove_new(self, st: BlueGreenState, namespace: str) -> None:
        self.ops.cluster.delete("apps/v1", "Deployment", namespace, st.deployment)


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
