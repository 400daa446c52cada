"""What needs no cluster: the objects a client dry run shows, a Deployment's status in brief."""

from __future__ import annotations

from pipeline_bot.core.variants import images_of
from pipeline_bot.deploy.run import Obj, now
from pipeline_bot.deploy.workload import build_workload
from pipeline_bot.models import DeployRequest, DeployResult, Strategy, WorkloadStatus
from pipeline_bot.repo_config import Environment


def render_only(req: DeployRequest, strategy: Strategy, env: Environment) -> DeployResult:
    """A client dry run: the objects a deploy would apply, with no cluster and no store."""
    replicas = req.replicas or strategy.parameters.replicas
    namespace = req.namespace or env.namespace or env.name
    name = strategy.name if strategy.name != "none" else "rolling"
    workload = build_workload(
        req, namespace=namespace, replicas=replicas, deploy_id="dry-run", strategy=name
    )
    at = now()
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
        started_at=at,
        finished_at=at,
    )


def workload_status(dep: Obj) -> WorkloadStatus:
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
