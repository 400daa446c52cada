"""get_pod_events: an app's pods as the cluster reports them (phase, readiness, restarts, why a
container waits or died), their events and the last lines of their logs; what an investigation
reads after a failed rollout."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pipeline_bot.core.render import APP_LABEL
from pipeline_bot.tools.registry import ToolAnnotations, ToolContext, ToolRegistry

READS_CLUSTER = ToolAnnotations(read_only=True, destructive=False, idempotent=True, open_world=True)
MAX_PODS = 20
MAX_LOGS = 3
LOG_LINES = 30


class PodEventsInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    app_name: str
    environment: str
    repository: str = "."
    namespace: str | None = None


class PodState(BaseModel):
    name: str
    phase: str | None = None
    ready: bool = False
    restarts: int = 0
    images: list[str] = Field(default_factory=list)
    waiting: list[str] = Field(default_factory=list, description="reason: message")
    terminated: list[str] = Field(default_factory=list, description="reason (exit code)")


class PodEvents(BaseModel):
    namespace: str
    pods: list[PodState]
    events: list[str]
    logs: dict[str, str] = Field(
        default_factory=dict, description="the last lines of the first pods' logs, by pod"
    )


def get_pod_events(args: PodEventsInput, ctx: ToolContext) -> PodEvents:
    """The app's pods in an environment (phase, readiness, restarts, waiting and terminated
    reasons), their recent events, and the last log lines of the pods in trouble, from the
    cluster. Reads only."""
    env = ctx.repo_config(args.repository).environment(args.environment)
    namespace = args.namespace or env.namespace or env.name
    cluster = ctx.require_cluster("get_pod_events", env)
    pods = cluster.list_objects("v1", "Pod", namespace, labels={APP_LABEL: args.app_name})
    states = [_state(p) for p in pods[:MAX_PODS]]
    events = cluster.pod_events(namespace, [s.name for s in states]) if states else []
    # the pods in trouble first: their logs say why
    troubled = sorted(states, key=lambda s: (s.ready, -s.restarts))[:MAX_LOGS]
    logs = {s.name: cluster.pod_logs(namespace, s.name, tail_lines=LOG_LINES) for s in troubled}
    return PodEvents(namespace=namespace, pods=states, events=events[-50:], logs=logs)


def _state(pod: dict[str, Any]) -> PodState:
    status = pod.get("status") or {}
    containers = status.get("containerStatuses") or []
    waiting, terminated = [], []
    for c in containers:
        state = c.get("state") or {}
        if "waiting" in state:
            w = state["waiting"] or {}
            waiting.append(f"{w.get('reason', '')}: {w.get('message', '')}".strip(": "))
        last = (c.get("lastState") or {}).get("terminated") or state.get("terminated")
        if last:
            terminated.append(f"{last.get('reason', '')} (exit {last.get('exitCode')})")
    return PodState(
        name=pod["metadata"]["name"],
        phase=status.get("phase"),
        ready=bool(containers) and all(c.get("ready") for c in containers),
        restarts=sum(int(c.get("restartCount") or 0) for c in containers),
        images=[c.get("image", "") for c in containers],
        waiting=waiting,
        terminated=terminated,
    )


def register(registry: ToolRegistry) -> None:
    registry.tool(
        name="get_pod_events",
        title="Pod states and events",
        input_model=PodEventsInput,
        output_model=PodEvents,
        annotations=READS_CLUSTER,
    )(get_pod_events)
