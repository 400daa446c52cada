"""Rolling: update the serving Deployment in place and watch it; on failure put the previous pod
template back (or remove a first deploy). Also how a rollback restores an earlier template."""

from __future__ import annotations

from collections.abc import Callable

from pipeline_bot.core.rollout import RolloutState
from pipeline_bot.core.variants import images_of
from pipeline_bot.deploy.ops import Ops
from pipeline_bot.deploy.run import Obj, Run
from pipeline_bot.deploy.workload import Workload
from pipeline_bot.errors import DeployError, IntegrationError
from pipeline_bot.models import DeployRequest, DeployResult, RollingState, Strategy

REVISION = "deployment.kubernetes.io/revision"


class Rolling:
    def __init__(self, ops: Ops) -> None:
        self.ops = ops

    def deploy(self, run: Run, req: DeployRequest, strategy: Strategy, w: Workload) -> DeployResult:
        ops = self.ops
        dep = ops.live(w.namespace, req.app, w)
        name = dep["metadata"]["name"]
        before = ops.deployment(w.namespace, name)
        run.record.strategy_state = RollingState(
            deployment=name,
            previous_template=(before or {}).get("spec", {}).get("template"),
            template=dep["spec"]["template"],
        )
        if strategy.parameters.max_surge and "strategy" not in dep["spec"]:
            dep["spec"]["strategy"] = {
                "type": "RollingUpdate",
                "rollingUpdate": {
                    "maxSurge": strategy.parameters.max_surge,
                    "maxUnavailable": _int_or_str(strategy.parameters.max_unavailable or "25%"),
                },
            }
        # from here on the cluster changes: an API that fails past its retries rolls back
        run.undo = lambda why: self._undo(
            run, req, w.namespace, name, before, RolloutState("failed", "ApiError", why)
        )
        if w.service is not None and dep is w.deployment:
            ops.cluster.apply(w.service)
        state = ops.apply_and_watch(run, dep, req.timeout_seconds, "rollout")
        if state.phase == "succeeded":
            run.undo = None  # done: a record that cannot be written now undoes nothing
            return run.finish("succeeded", state.message)
        return self._undo(run, req, w.namespace, name, before, state)

    def _undo(
        self,
        run: Run,
        req: DeployRequest,
        namespace: str,
        name: str,
        before: Obj | None,
        failure: RolloutState,
    ) -> DeployResult:
        run.undo = None  # undoing: a failure from here on is the rollback's
        why = self.ops.explain(namespace, failure)
        if not req.auto_rollback:
            return run.finish(
                "failed", f"rollout failed: {why}; automatic rollback is off", reason=why
            )
        try:
            if before is None:
                with run.phase(req.timeout_seconds):
                    self.ops.cluster.delete("apps/v1", "Deployment", namespace, name)
                run.step("rollback", "succeeded", "first deploy: the failed Deployment was removed")
                return run.finish(
                    "rolled_back", f"rollout failed: {why}; removed", rolled_back=True, reason=why
                )
            restored, state = self.ops.restore(
                run, namespace, name, before["spec"]["template"], req.timeout_seconds, "rollback"
            )
        except IntegrationError as exc:
            if not run.steps or run.steps[-1].name != "rollback":  # (a watch records its own)
                run.step("rollback", "failed", exc.message)
            return run.finish(
                "failed",
                f"rollout failed: {why}; the rollback failed too: {exc.message}",
                reason=f"{why}; the automatic rollback failed too: {exc.message}",
            )
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

    def roll_back(
        self,
        run: Run,
        name: str,
        template: Obj,
        timeout: float,
        done: Callable[[Obj], str],
    ) -> DeployResult:
        """A rollback as a rolling deploy of an earlier pod template; `done` words success."""
        namespace = run.record.namespace
        run.record.strategy_state = RollingState(deployment=name, template=template)
        restored, state = self.ops.restore(run, namespace, name, template, timeout, "rollback")
        if state.phase != "succeeded":
            why = self.ops.explain(namespace, state)
            return run.finish("failed", f"rollback failed: {why}", reason=why)
        return run.finish("succeeded", done(restored))

    def previous_revision(self, environment: str, app: str, namespace: str) -> tuple[Obj, str]:
        """The pod template of Deployment `app`'s previous ReplicaSet revision, and its number
        (for a rollback with no record to go by)."""
        cluster = self.ops.cluster
        dep = self.ops.deployment(namespace, app)
        if dep is None:
            raise DeployError(
                f"no Deployment {app} in namespace {namespace}", environment=environment, app=app
            )
        owned = [
            rs
            for rs in cluster.list_objects("apps/v1", "ReplicaSet", namespace)
            if any(
                ref.get("uid") == dep["metadata"]["uid"]
                for ref in rs["metadata"].get("ownerReferences") or []
            )
        ]
        owned.sort(key=lambda rs: int((rs["metadata"].get("annotations") or {}).get(REVISION, 0)))
        if len(owned) < 2:
            raise DeployError(
                f"{app} has no earlier revision to roll back to", environment=environment, app=app
            )
        template = owned[-2]["spec"]["template"]
        template["metadata"]["labels"].pop("pod-template-hash", None)
        return template, str(owned[-2]["metadata"]["annotations"][REVISION])


def _int_or_str(value: str) -> int | str:
    return int(value) if value.isdigit() else value
