"""The tool registry: the same tools for the CLI, the Action, the App and the MCP server."""

from __future__ import annotations

from pipeline_bot.tools.registry import (
    AILimits,
    Tool,
    ToolAnnotations,
    ToolContext,
    ToolRegistry,
)


def build_registry() -> ToolRegistry:
    """A registry holding every tool pipeline-bot has."""
    from pipeline_bot.tools import analyze, deploy, monitor, pipelines, plans, pods, review

    registry = ToolRegistry()
    analyze.register(registry)
    deploy.register(registry)
    monitor.register(registry)
    pipelines.register(registry)
    plans.register(registry)
    pods.register(registry)
    review.register(registry)
    return registry


__all__ = ["AILimits", "Tool", "ToolAnnotations", "ToolContext", "ToolRegistry", "build_registry"]
