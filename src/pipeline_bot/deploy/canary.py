"""Canary: a second Deployment with the new version takes a growing share of the replicas, step
by step, each step gated; then the stable Deployment takes the new version (at once, or on
promote), or the canary is removed and stable gets its replicas back."""

from __future__ import annotations

from pipeline_bot.core.variants import canary_split, canary_variant
from pipeline_bot.deploy.gates import StepContext
from pipeline_bot.deploy.ops import Ops
from pipeline_bot.deploy.rolling import Rolling
from pipeline_bot.deploy.run import Run
from pipeline_bot.deploy.workload import Workload
from pipeline_bot.errors import IntegrationError
from pipeline_bot.models import CanaryState, DeployRequest, DeployResult, Strategy


class Canary:
    def __init__(self, ops: Ops) -> None:
        self.ops = ops

    def deploy(self, run: Run, req: DeployRequest, strategy: Strategy, w: Workload) -> DeployResult:
        ops = self.ops
        live = ops.live(w.namespace, req.app, w)
        name = live["metadata"]["name"]
        stable = ops.deployment(w.namespace, name)
        if stable is None:
            run.step(
                "canary", "skipped", "first deploy: no stable version to compare with; rolling"
            )
            return Rolling(ops).deploy(run, req, strategy, w)
        if w.service is not None and live is w.deployment:
            ops.cluster.apply(w.service)
        total = int(stable["spec"].get("replicas", 1))
        steps = strategy.parameters.steps
        run.record.strategy_state = st = CanaryState(
            deployment=name,
            canary=f"{req.app}-canary",
            total=total,
            weights=[s.weight for s in steps],
            step=0,
            template=live["spec"]["template"],
            stable_template=stable["spec"]["template"],
        )
        # from here on the cluster changes: an API that fails past its retries aborts the canary
        run.undo = lambda why: self.abort(run, why)
        for index, step in enumerate(steps):
            canary_n, stable_n = canary_split(total, step.weight)
            canary = canary_variant(live, req.app, canary_n)
            with run.phase(req.timeout_seconds):  # the step's deadline, stable's scale included
                state = ops.apply_and_watch(
                    run, canary, req.timeout_seconds, f"canary {step.weight}% ({canary_n}/{total})"
                )
                if state.phase != "succeeded":
                    return self.abort(run, ops.explain(w.namespace, state))
                ops.cluster.patch(
                    "apps/v1", "Deployment", w.namespace, name, {"spec": {"replicas": stable_n}}
                )
            st.step = index + 1
            verdict = ops.gate.evaluate(
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
                return self.abort(run, verdict.reason)
            if verdict.decision == "inconclusive":
                if run.env is not None and run.env.on_inconclusive == "fail":
                    why = (
                        "gates inconclusive and the environment's policy is to fail: "
                        + verdict.reason
                    )
                    return self.abort(run, why)
                st.pause_expires_at = ops.pause_expires(run)
                run.undo = None  # paused on purpose: promote or abort decides
                run.step("canary", "paused", "inconclusive: waiting for promote or abort")
                return run.finish(
                    "paused",
                    f"canary at {step.weight}% is inconclusive: {verdict.reason}; promote or abort",
                )
        if strategy.parameters.manual_promotion:
            run.undo = None
            run.step("promotion", "paused", "waiting for a person to promote")
            return run.finish("paused", "canary passed every step; waiting for promote")
        return self.promote(run, req.timeout_seconds)

    def promote(self, run: Run, timeout: float) -> DeployResult:
        """Stable takes the new version at its full size; the canary goes. If stable's rollout
        fails, or the API fails past its retries on the way, its old version is put back."""
        ops, st, namespace = self.ops, run.state(CanaryState), run.record.namespace
        run.undo = lambda why: self._restore_stable(run, timeout, why)
        with run.phase(timeout):
            stable = ops.cluster.patch(
                "apps/v1",
                "Deployment",
                namespace,
                st.deployment,
                {"spec": {"replicas": st.total, "template": st.template}},
            )
        state = ops.watch(run, stable, timeout, "promote")
        if state.phase != "succeeded":
            return self._restore_stable(run, timeout, ops.explain(namespace, state))
        run.undo = None  # promoted: what follows is tidying up
        try:
            with run.phase(timeout):
                ops.cluster.delete("apps/v1", "Deployment", namespace, st.canary)
        except IntegrationError as exc:
            run.step("cleanup", "failed", f"{st.canary} is still there: {exc.message}")
            return run.finish(
                "succeeded", f"canary promoted: {state.message}; removing {st.canary} failed"
            )
        run.step("cleanup", "succeeded", f"removed {st.canary}")
        return run.finish("succeeded", f"canary promoted: {state.message}")

    def _restore_stable(self, run: Run, timeout: float, why: str) -> DeployResult:
        """A promotion that failed: stable back to its old version at its full size, the
        canary removed."""
        run.undo = None
        ops, st, namespace = self.ops, run.state(CanaryState), run.record.namespace
        try:
            ops.restore(
                run,
                namespace,
                st.deployment,
                st.stable_template,
                timeout,
                "restore stable",
                replicas=st.total,
            )
            with run.phase(timeout):
                ops.cluster.delete("apps/v1", "Deployment", namespace, st.canary)
        except IntegrationError as exc:
            return run.finish(
                "failed",
                f"promotion failed: {why}; restoring stable failed too: {exc.message}",
                reason=f"{why}; the automatic rollback failed too: {exc.message}",
            )
        return run.finish(
            "rolled_back",
            f"promotion failed: {why}; stable restored",
            rolled_back=True,
            reason=why,
        )

    def abort(self, run: Run, why: str, status: str = "rolled_back") -> DeployResult:
        """Remove the canary; stable gets back the replicas it had."""
        run.undo = None
        st, namespace = run.state(CanaryState), run.record.namespace
        try:
            with run.phase():
                self.ops.cluster.delete("apps/v1", "Deployment", namespace, st.canary)
                self.ops.cluster.patch(
                    "apps/v1",
                    "Deployment",
                    namespace,
                    st.deployment,
                    {"spec": {"replicas": st.total}},
                )
        except IntegrationError as exc:
            run.step("abort", "failed", exc.message)
            return run.finish(
                "failed",
                f"canary aborted: {why}; the abort failed too: {exc.message}",
                reason=f"{why}; the automatic rollback failed too: {exc.message}",
            )
        run.step("abort", "succeeded", f"removed the canary; stable back to {st.total} replicas")
        return run.finish(status, f"canary aborted: {why}", rolled_back=True, reason=why)
