"""The analyze_changes tool: a local repository's commit range -> risk, findings, strategy."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from pipeline_bot.core.analysis import analyze
from pipeline_bot.core.predict import PREDICTIONS, findings_for, query_for
from pipeline_bot.core.riskmodel import RiskInputs
from pipeline_bot.errors import GitError, IntegrationError
from pipeline_bot.integrations.ports import ChangeSource, MetricsPort
from pipeline_bot.models import Analysis, Finding
from pipeline_bot.repo_config import RepoConfig, load_repo_config
from pipeline_bot.tools.registry import ToolAnnotations, ToolContext, ToolRegistry


class AnalyzeInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    repository: str = Field(".", description="Path of a local git repository (any folder in it).")
    base: str | None = Field(
        None,
        description="Base ref (exclusive). Default: merge-base with the default branch, "
        "else the parent of head.",
    )
    head: str = Field("HEAD", description="Head ref (inclusive).")
    config: str | None = Field(
        None,
        description="Path of a pipeline-bot.yml; default: the repository's "
        ".github/pipeline-bot.yml, or built-in defaults when it has none.",
    )
    predict_hours: float = Field(
        4, gt=0, le=168, description="Horizon of the trend warnings (with a Prometheus configured)."
    )
    environment: str | None = Field(
        None,
        description="Environment to fit the strategy to; default: the last in promotion "
        "order (production).",
    )


ANNOTATIONS = ToolAnnotations(read_only=True, destructive=False, idempotent=True, open_world=False)


def analyze_changes(args: AnalyzeInput, ctx: ToolContext) -> Analysis:
    """Analyse the commits from base to head in a local git repository: risk score and level with
    the factors behind them, findings with file and line ranges, affected services, change
    metrics, and the deployment strategy that fits the risk. Reads only; needs no credentials."""
    source = ctx.require_source("analyze_changes").read_change(
        args.repository, args.base, args.head
    )
    return analyze_source(args, ctx, source)


def analyze_source(args: AnalyzeInput, ctx: ToolContext, source: ChangeSource) -> Analysis:
    """The analysis of a change already read (analyze_changes, and the AI review before it asks
    the model)."""
    config = source_config(args, ctx, source)
    result = analyze(
        source.changes, config, risk=risk_inputs(ctx, source), environment=args.environment
    )
    if ctx.metrics is not None:
        env = config.environment(args.environment)
        result.findings += predictive_findings(
            ctx.metrics, env.namespace or env.name, hours=args.predict_hours
        )
    return result


def source_config(args: AnalyzeInput, ctx: ToolContext, source: ChangeSource) -> RepoConfig:
    """The front end's config, else `config`, else the repository's own file, else defaults."""
    return ctx.config or load_repo_config(
        Path(args.config) if args.config else None, repo_root=source.root
    )


def risk_inputs(ctx: ToolContext, source: ChangeSource) -> RiskInputs | None:
    """What history says about the change, from the context's risk port; when history cannot be
    read, the prior alone scores and the model's note says why."""
    if ctx.risk is None:
        return None
    try:
        return ctx.risk.assess(source.root, source.changes)
    except (GitError, IntegrationError) as exc:
        if ctx.progress:
            ctx.progress(f"history could not be read for the risk model: {exc.message}")
        try:
            return ctx.risk.assess(None, source.changes)
        except IntegrationError:
            return None


def predictive_findings(metrics: MetricsPort, namespace: str, *, hours: float) -> list[Finding]:
    """Trend warnings for the environment's namespace; a prediction Prometheus cannot answer, or
    whose input is missing (no memory limit metric), becomes a finding that says so (it is never
    silently skipped)."""
    from pipeline_bot.core.predict import could_not_check, requirement_for

    out: list[Finding] = []
    for p in PREDICTIONS:
        required = requirement_for(p, namespace=namespace)
        try:
            if required and not metrics.query(required[0]):
                out.append(could_not_check(p, required[1]))
                continue
            samples = metrics.query(query_for(p, namespace=namespace, hours=hours))
        except IntegrationError as exc:
            out.append(could_not_check(p, exc.message))
            continue
        out += findings_for(p, samples, namespace=namespace, hours=hours)
    return out


def register(registry: ToolRegistry) -> None:
    registry.tool(
        name="analyze_changes",
        title="Analyze changes",
        input_model=AnalyzeInput,
        output_model=Analysis,
        annotations=ANNOTATIONS,
    )(analyze_changes)
