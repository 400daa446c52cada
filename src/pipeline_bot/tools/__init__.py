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
    """A registry holding every tool pipeline-bot has. Each module of tools is imported when a
    tool is first asked for that an earlier module does not hold (or the list), so calling
    analyze_changes imports neither the deploy engine nor the cluster's tools."""
    registry = ToolRegistry()
    for register in (_analyze, _deploy, _monitor, _pipelines, _plans, _pods, _promotion, _review):
        registry.defer(register)
    return registry


def _analyze(registry: ToolRegistry) -> None:
    from pipeline_bot.tools import analyze

    analyze.register(registry)


def _deploy(registry: ToolRegistry) -> None:
    from pipeline_bot.tools import deploy

    deploy.register(registry)


def _monitor(registry: ToolRegistry) -> None:
    from pipeline_bot.tools import monitor

    monitor.register(registry)


def _pipelines(registry: ToolRegistry) -> None:
    from pipeline_bot.tools import pipelines

    pipelines.register(registry)


def _plans(registry: ToolRegistry) -> None:
    from pipeline_bot.tools import plans

    plans.register(registry)


def _pods(registry: ToolRegistry) -> None:
    from pipeline_bot.tools import pods

    pods.register(registry)


def _promotion(registry: ToolRegistry) -> None:
    from pipeline_bot.tools import promotion

    promotion.register(registry)


def _review(registry: ToolRegistry) -> None:
    from pipeline_bot.tools import review

    review.register(registry)


__all__ = ["AILimits", "Tool", "ToolAnnotations", "ToolContext", "ToolRegistry", "build_registry"]
