"""monitor_infrastructure and query_metrics: real figures from the cluster and Prometheus.

A figure that cannot be had is reported as unavailable, with the reason; nothing is estimated.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline_bot.errors import IntegrationError, ToolError
from pipeline_bot.models import MetricSample
from pipeline_bot.repo_config import Environment
from pipeline_bot.tools.registry import ToolAnnotations, ToolContext, ToolRegistry

READS = ToolAnnotations(read_only=True, destructive=False, idempotent=True, open_world=True)
Figure = Literal["nodes", "pods", "restarts", "cpu", "memory"]
ALL_FIGURES: list[Figure] = ["nodes", "pods", "restarts", "cpu", "memory"]
_PROMQL = {
    "cpu": ('sum(rate(container_cpu_usage_seconds_total{{container!=""{scope}}}[5m]))', "cores"),
    "memory": ('sum(container_memory_working_set_bytes{{container!=""{scope}}})', "bytes"),
}


class MonitorInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cluster_name: str = Field(
        "current", description="kubeconfig context; `current` for the default one"
    )
    namespace: str | None = Field(None, description="Limit pod figures to one namespace")
    metrics: list[Figure] = Field(
        default_factory=lambda: list(ALL_FIGURES),
        description="Which figures: nodes, pods, restarts, cpu, memory",
    )


class FigureValue(BaseModel):
    name: str
    value: float | None = Field(description="None when unavailable")
    unit: str = ""
    detail: dict[str, Any] = Field(default_factory=dict)
    source: Literal["cluster", "prometheus"]
    unavailable: str | None = Field(None, description="why there is no value")


class MonitorResult(BaseModel):
    cluster: str
    namespace: str | None
    figures: list[FigureValue]


class QueryInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, description="PromQL")
    time: datetime | None = Field(None, description="Evaluation time; default now")


class QueryResult(BaseModel):
    query: str
    samples: list[MetricSample]


def monitor_infrastructure(args: MonitorInput, ctx: ToolContext) -> MonitorResult:
    """Cluster health from the cluster itself (nodes ready, pods by phase, pending pods, container
    restarts) and from Prometheus where one is configured (CPU and memory in use). A figure that
    cannot be had says why instead of guessing. Reads only."""
    context = None if args.cluster_name == "current" else args.cluster_name
    figures: list[FigureValue] = []
    wanted = set(args.metrics)
    try:
        cluster = ctx.require_cluster(
            "monitor_infrastructure", Environment(name="monitor", kube_context=context)
        )
        if "nodes" in wanted:
            figures.append(_nodes(cluster.list_objects("v1", "Node", "")))
        if wanted & {"pods", "restarts"}:
            pods = cluster.list_objects("v1", "Pod", args.namespace or "")
            figures += [f for f in _pods(pods) if f.name in wanted]
    except IntegrationError as exc:
        figures += [
            FigureValue(name=n, value=None, source="cluster", unavailable=exc.message)
            for n in ("nodes", "pods", "restarts")
            if n in wanted
        ]
    for name in ("cpu", "memory"):
        if name in wanted:
            figures.append(_from_prometheus(ctx, name, args.namespace))
    return MonitorResult(cluster=args.cluster_name, namespace=args.namespace, figures=figures)


def _nodes(nodes: list[dict[str, Any]]) -> FigureValue:
    ready = sum(
        any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (n.get("status") or {}).get("conditions") or []
        )
        for n in nodes
    )
    not_ready = [
        n["metadata"]["name"]
        for n in nodes
        if not any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (n.get("status") or {}).get("conditions") or []
        )
    ]
    return FigureValue(
        name="nodes",
        value=ready,
        unit="ready",
        source="cluster",
        detail={"total": len(nodes), "not_ready": not_ready},
    )


def _pods(pods: list[dict[str, Any]]) -> list[FigureValue]:
    phases = Counter((p.get("status") or {}).get("phase", "Unknown") for p in pods)
    restarts = {
        p["metadata"]["name"]: sum(
            c.get("restartCount", 0) for c in (p.get("status") or {}).get("containerStatuses") or []
        )
        for p in pods
    }
    return [
        FigureValue(
            name="pods",
            value=len(pods),
            unit="pods",
            source="cluster",
            detail={"by_phase": dict(phases), "pending": phases.get("Pending", 0)},
        ),
        FigureValue(
            name="restarts",
            value=sum(restarts.values()),
            unit="restarts",
            source="cluster",
            detail={
                "top": dict(
                    sorted(((k, v) for k, v in restarts.items() if v), key=lambda kv: -kv[1])[:5]
                )
            },
        ),
    ]


def _from_prometheus(ctx: ToolContext, name: str, namespace: str | None) -> FigureValue:
    template, unit = _PROMQL[name]
    query = template.format(scope=f',namespace="{namespace}"' if namespace else "")
    if ctx.metrics is None:
        return FigureValue(
            name=name,
            value=None,
            unit=unit,
            source="prometheus",
            unavailable="no Prometheus is configured (PIPELINE_BOT_PROMETHEUS_URL)",
        )
    try:
        samples = ctx.metrics.query(query)
    except IntegrationError as exc:
        return FigureValue(
            name=name,
            value=None,
            unit=unit,
            source="prometheus",
            unavailable=exc.message,
            detail={"query": query},
        )
    if not samples:
        return FigureValue(
            name=name,
            value=None,
            unit=unit,
            source="prometheus",
            unavailable="Prometheus has no data for the query (is cAdvisor scraped?)",
            detail={"query": query},
        )
    return FigureValue(
        name=name, value=samples[0].value, unit=unit, source="prometheus", detail={"query": query}
    )


def query_metrics(args: QueryInput, ctx: ToolContext) -> QueryResult:
    """Run one PromQL instant query against the configured Prometheus. Reads only."""
    if ctx.metrics is None:
        raise ToolError(
            "query_metrics needs a Prometheus: set PIPELINE_BOT_PROMETHEUS_URL",
            tool="query_metrics",
        )
    return QueryResult(query=args.query, samples=ctx.metrics.query(args.query, at=args.time))


def register(registry: ToolRegistry) -> None:
    registry.tool(
        name="monitor_infrastructure",
        title="Monitor infrastructure",
        input_model=MonitorInput,
        output_model=MonitorResult,
        annotations=READS,
    )(monitor_infrastructure)
    registry.tool(
        name="query_metrics",
        title="Query metrics",
        input_model=QueryInput,
        output_model=QueryResult,
        annotations=READS,
    )(query_metrics)
