"""MCP resources with real content, or a plain statement of why there is none."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anyio.to_thread
from mcp.server.mcpserver import MCPServer

from pipeline_bot.core.canary import DEFAULT_GATES
from pipeline_bot.errors import PipelineBotError
from pipeline_bot.mcp_server.trust import TrustedPolicy
from pipeline_bot.tools import ToolContext, ToolRegistry


def add_resources(
    server: MCPServer,
    registry: ToolRegistry,
    context: Callable[[], ToolContext],
    policy: TrustedPolicy,
) -> None:
    def call(tool: str, arguments: dict[str, Any]) -> str:
        try:
            result = registry.call(tool, arguments, context())
            return result.model_dump_json(indent=2)
        except PipelineBotError as exc:
            return json.dumps({"unavailable": exc.message}, indent=2)

    @server.resource(
        "devops://clusters/{name}",
        mime_type="application/json",
        description="Cluster summary: nodes ready, pods by phase, restarts, and CPU "
        "and memory from Prometheus where configured. `current` is the default "
        "kubeconfig context.",
    )
    async def cluster(name: str) -> str:
        return await anyio.to_thread.run_sync(
            lambda: call("monitor_infrastructure", {"cluster_name": name})
        )

    @server.resource(
        "devops://audit",
        mime_type="application/json",
        description="The newest 100 tool calls from every front end: who, which tool, inputs "
        "(redacted), the policy's decision, the outcome and how long it took.",
    )
    async def audit_trail() -> str:
        def read() -> str:
            ctx = context()
            if ctx.audit is None:
                return json.dumps({"unavailable": "no audit trail is configured"})
            entries = ctx.audit.entries(limit=100)
            return json.dumps([e.model_dump(mode="json") for e in entries], indent=2)

        return await anyio.to_thread.run_sync(read)

    @server.resource(
        "devops://deployments/{environment}",
        mime_type="application/json",
        description="Recent deploys to an environment, from the deploy store.",
    )
    async def deployments(environment: str) -> str:
        def read() -> str:
            ctx = context()
            if ctx.store is None and ctx.stores is None:
                return json.dumps({"unavailable": "no deploy store is configured"})
            store = ctx.require_store("devops://deployments", policy.load())
            records = store.history(environment, limit=20)
            return json.dumps(
                {
                    "environment": environment,
                    "lock": _dump(store.lock(environment)),
                    "deploys": [r.model_dump(mode="json", exclude={"state"}) for r in records],
                },
                indent=2,
            )

        return await anyio.to_thread.run_sync(read)

    @server.resource(
        "devops://metrics/prometheus",
        mime_type="application/json",
        description="The configured Prometheus and the gates canaries are held to.",
    )
    async def prometheus() -> str:
        def read() -> str:
            ctx = context()
            try:
                gates = policy.config().gates
            except PipelineBotError as exc:
                return json.dumps({"unavailable": exc.message})
            chosen = gates or list(DEFAULT_GATES)
            url = ctx.metrics.url if ctx.metrics is not None else None
            return json.dumps(
                {
                    "prometheus": url or None,
                    "note": None
                    if url
                    else "no Prometheus is configured: set "
                    "PIPELINE_BOT_PROMETHEUS_URL; canary steps then only pause",
                    "gates_source": "repository config" if gates else "defaults",
                    "gates": [g.model_dump(mode="json") for g in chosen],
                },
                indent=2,
            )

        return await anyio.to_thread.run_sync(read)

    @server.resource(
        "devops://pipelines/github-actions",
        mime_type="application/json",
        description="Recent GitHub Actions workflow runs of the repository "
        "(needs GITHUB_TOKEN and GITHUB_REPOSITORY).",
    )
    async def pipelines() -> str:
        def read() -> str:
            ctx = context()
            if ctx.workflows is None or not ctx.github_repository:
                missing = [
                    n
                    for n, v in (
                        ("GITHUB_TOKEN", ctx.workflows),
                        ("GITHUB_REPOSITORY", ctx.github_repository),
                    )
                    if not v
                ]
                return json.dumps(
                    {"unavailable": f"set {' and '.join(missing)} to read workflow runs"}
                )
            try:
                runs = ctx.workflows.recent_runs(ctx.github_repository, limit=10)
            except PipelineBotError as exc:
                return json.dumps({"unavailable": exc.message})
            return json.dumps(
                {
                    "repository": ctx.github_repository,
                    "runs": [r.model_dump(mode="json") for r in runs],
                },
                indent=2,
            )

        return await anyio.to_thread.run_sync(read)


def _dump(model: Any) -> Any:
    return model.model_dump(mode="json") if model is not None else None
