"""A Deployment, its pods and their events -> is the rollout done, still going, or failed, and why.

The same rules `kubectl rollout status` applies, plus pod-level failures that Kubernetes itself only
reports once the progress deadline has passed (an image that cannot be pulled, a container that
keeps crashing), so a broken rollout is known within seconds instead of minutes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]
# waiting reasons that do not fix themselves
FATAL_WAITING = frozenset(
    {
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
CRASH_RESTARTS = 2  # CrashLoopBackOff counts as failed after this many restarts


@dataclass(frozen=True)
class RolloutState:
    phase: str  # "progressing" | "succeeded" | "failed"
    reason: str
    message: str
    desired: int = 0
    updated: int = 0
    ready: int = 0
    available: int = 0
    failing_pods: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.phase != "progressing"


def assess(deployment: Obj, pods: list[Obj], *, generation: int, images: set[str]) -> RolloutState:
    """Judge one observation. `images` are the new pod template's images: pods running other
    images belong to the old version and do not count against the new one."""
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    name = (deployment.get("metadata") or {}).get("name", "?")
    counts = {
        "desired": spec.get("replicas", 1),
        "updated": status.get("updatedReplicas", 0),
        "ready": status.get("readyReplicas", 0),
        "available": status.get("availableReplicas", 0),
    }
    failing = [(p, why) for p in pods if _is_new(p, images) and (why := _pod_failure(p))]
    if failing:
        pod, why = failing[0]
        names = [p["metadata"]["name"] for p, _ in failing]
        return RolloutState(
            "failed",
            why[0],
            f"pod {pod['metadata']['name']}: {why[1]}",
            failing_pods=names,
            **counts,
        )
    if status.get("observedGeneration", 0) < generation:
        return RolloutState(
            "progressing",
            "waiting",
            f"waiting for {name} generation {generation} to be observed",
            **counts,
        )
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return RolloutState(
                "failed",
                "ProgressDeadlineExceeded",
                f"deployment {name} exceeded its progress deadline: "
                f"{cond.get('message', '')}".rstrip(": "),
                **counts,
            )
    desired, updated = counts["desired"], counts["updated"]
    if updated < desired:
        return RolloutState(
            "progressing", "updating", f"{updated} of {desired} new replicas updated", **counts
        )
    old = status.get("replicas", 0) - updated
    if old > 0:
        return RolloutState(
            "progressing", "terminating", f"{old} old replicas are pending termination", **counts
        )
    if counts["available"] < updated:
        return RolloutState(
            "progressing",
            "starting",
            f"{counts['available']} of {updated} updated replicas are available",
            **counts,
        )
    return RolloutState(
        "succeeded",
        "available",
        f"deployment {name}: {desired} of {desired} replicas available",
        **counts,
    )


def _is_new(pod: Obj, images: set[str]) -> bool:
    containers = (pod.get("spec") or {}).get("containers") or []
    return bool(images) and {c.get("image") for c in containers} <= images


def _pod_failure(pod: Obj) -> tuple[str, str] | None:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason", "")
        detail = waiting.get("message") or reason
        if reason in FATAL_WAITING:
            return reason, f"{cs.get('name')} {reason}: {detail}"
        if reason == "CrashLoopBackOff" and cs.get("restartCount", 0) >= CRASH_RESTARTS:
            return reason, f"{cs.get('name')} keeps crashing ({cs['restartCount']} restarts)"
    return None
