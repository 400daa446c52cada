"""The AI review and the AI investigation: the agent loop run against the registry's read-only
tools, its answer validated, and the policy applied. Every failure ends in `fallback` with the
reason and the rule-based result untouched; with no model nothing here runs at all."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline_bot.core.agent import (
    AgentState,
    Finish,
    RunTools,
    Stop,
    advance,
    ask_for_repair,
    record_result,
    strict_schema,
)
from pipeline_bot.core.diffparse import redact
from pipeline_bot.core.policy import apply_policy
from pipeline_bot.core.prompt import investigation_messages, relevance_order, review_messages
from pipeline_bot.errors import PipelineBotError
from pipeline_bot.integrations.ports import ChangeSource, LLMPort
from pipeline_bot.models import (
    AIReview,
    Analysis,
    DeployRecord,
    FileChange,
    Investigation,
    Recommendation,
)
from pipeline_bot.repo_config import Environment
from pipeline_bot.tools.analyze import AnalyzeInput, analyze_source, source_config
from pipeline_bot.tools.registry import ToolAnnotations, ToolContext, ToolRegistry

T = TypeVar("T", bound=BaseModel)
TOOL_RESULT_LIMIT = 6000  # characters of one tool result the model reads
Excerpts = Callable[[list[str]], dict[str, str]]


class _Fallback(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Timing:
    """Seconds spent outside the model (prompt building, tools, validation), for the benchmark."""

    def __init__(self) -> None:
        self.outside = 0.0
        self.requests = 0


def tool_specs(registry: ToolRegistry) -> tuple[list[dict[str, Any]], frozenset[str]]:
    read_only = [t for t in registry.list() if t.annotations.read_only and t.name not in AI_TOOLS]
    specs = [
        {
            "type": "function",
            "function": {
                "name": t.name,
                "description": t.description,
                "parameters": t.input_schema(),
            },
        }
        for t in read_only
    ]
    return specs, frozenset(t.name for t in read_only)


def run_agent(
    llm: LLMPort,
    registry: ToolRegistry,
    ctx: ToolContext,
    messages: list[dict[str, Any]],
    answer: type[T],
    *,
    max_steps: int,
    timing: Timing | None = None,
) -> tuple[T | None, AgentState, str | None]:
    """The loop: (answer or None, the state with calls and refusals, why there is no answer)."""
    timing = timing or Timing()
    specs, offered = tool_specs(registry)
    state = AgentState(
        messages,
        offered=offered,
        known=frozenset(t.name for t in registry.list()),
        max_steps=max_steps,
    )
    schema = strict_schema(answer)
    try:
        return _loop(llm, registry, ctx, state, answer, specs, schema, timing), state, None
    except _Fallback as exc:
        return None, state, exc.reason


def _loop(
    llm: LLMPort,
    registry: ToolRegistry,
    ctx: ToolContext,
    state: AgentState,
    answer: type[T],
    specs: list[dict[str, Any]],
    schema: dict[str, Any],
    timing: Timing,
) -> T:
    while True:
        if state.steps >= state.max_steps:
            raise _Fallback(f"no valid answer within the step limit ({state.max_steps} steps)")
        try:
            turn = llm.complete(
                state.messages, tools=specs, schema=schema, schema_name=answer.__name__.lower()
            )
        except PipelineBotError as exc:
            raise _Fallback(exc.message) from None
        finally:
            timing.requests += 1
        after_model = time.perf_counter()
        step = advance(state, turn)
        if isinstance(step, Stop):
            raise _Fallback(step.reason)
        if isinstance(step, RunTools):
            for call, arguments in step.calls:
                _run_tool(registry, ctx, state, call, arguments)
            timing.outside += time.perf_counter() - after_model
            continue
        assert isinstance(step, Finish)  # noqa: S101 - advance returns one of three kinds
        try:
            result = answer.model_validate_json(step.content)
        except ValidationError as exc:
            if state.repairs >= 1:
                raise _Fallback(
                    f"the model's answer did not match the schema after one repair request "
                    f"({exc.error_count()} problems)"
                ) from None
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(answer)'}: {e['msg']}"
                for e in exc.errors(include_url=False)[:10]
            )
            ask_for_repair(state, problems)
            timing.outside += time.perf_counter() - after_model
            continue
        timing.outside += time.perf_counter() - after_model
        return result


def _run_tool(
    registry: ToolRegistry,
    ctx: ToolContext,
    state: AgentState,
    call: Any,
    arguments: dict[str, Any],
) -> None:
    try:
        output = registry.call(call.name, arguments, ctx)
    except PipelineBotError as exc:
        record_result(state, call, ok=False, text=f"error: {exc.message}")
        return
    text = redact(output.model_dump_json())
    if len(text) > TOOL_RESULT_LIMIT:
        text = text[:TOOL_RESULT_LIMIT] + " [... cut]"
    record_result(state, call, ok=True, text=text)


def review_change(
    analysis: Analysis,
    *,
    llm: LLMPort | None,
    registry: ToolRegistry,
    ctx: ToolContext,
    env: Environment,
    files: list[FileChange],
    excerpts: Excerpts | None,
    max_steps: int = 6,
    budget: int = 8000,
    pr_body: str | None = None,
    timing: Timing | None = None,
) -> Analysis:
    """The analysis with its `ai` review; risk and strategy are the policy's decision."""
    if llm is None:
        return analysis.model_copy(update={"ai": AIReview(status="off")})
    timing = timing or Timing()
    started = time.perf_counter()
    order, _ = relevance_order(analysis, files)
    texts = excerpts(order[:60]) if excerpts else {}
    messages, _ = review_messages(analysis, texts, budget=budget, order=order, pr_body=pr_body)
    timing.outside += time.perf_counter() - started
    rec, state, reason = run_agent(
        llm, registry, ctx, messages, Recommendation, max_steps=max_steps, timing=timing
    )
    common: dict[str, Any] = {
        "tool_calls": state.tool_calls,
        "usage": state.usage,
    }
    if rec is None:
        ai = AIReview(status="fallback", error=reason, refused=state.refused, **common)
        return analysis.model_copy(update={"ai": ai})
    decided, refused = apply_policy(analysis, rec, env)
    decided.ai = AIReview(
        status="ok",
        summary=rec.summary,
        risks=rec.risks,
        strategy=rec.strategy,
        resources=rec.resources,
        checkpoints=rec.checkpoints,
        confidence=rec.confidence,
        refused=[*state.refused, *refused],
        **common,
    )
    return decided


def investigate(
    *,
    llm: LLMPort,
    registry: ToolRegistry,
    ctx: ToolContext,
    record: DeployRecord | None,
    status: dict[str, Any],
    max_steps: int = 6,
    budget: int = 8000,
) -> AIReview:
    """Why a deploy or gate failed, found with the read-only tools."""
    messages = investigation_messages(record, status, budget=budget)
    found, state, reason = run_agent(
        llm, registry, ctx, messages, Investigation, max_steps=max_steps
    )
    return AIReview(
        status="ok" if found else "fallback",
        error=reason,
        summary=found.summary if found else None,
        investigation=found,
        confidence=found.confidence if found else None,
        tool_calls=state.tool_calls,
        refused=state.refused,
        usage=state.usage,
    )


def investigate_deploy(
    *,
    llm: LLMPort,
    registry: ToolRegistry,
    ctx: ToolContext,
    environment: str,
    app: str,
    repository: str = ".",
    max_steps: int = 6,
    budget: int = 8000,
) -> AIReview:
    """Investigate the app's latest deploy in the environment, and keep the finding in its
    record (state.investigation), where `status` and the App's reports show it."""
    store = ctx.require_store("investigate", ctx.repo_config(repository))
    latest = store.history(environment, app, limit=1)
    record = latest[0] if latest else None
    try:
        status = registry.call(
            "get_deployment_status",
            {"app_name": app, "environment": environment, "repository": repository},
            ctx,
        ).model_dump(mode="json")
    except PipelineBotError as exc:
        status = {"error": exc.message}
    review = investigate(
        llm=llm,
        registry=registry,
        ctx=ctx,
        record=record,
        status=status,
        max_steps=max_steps,
        budget=budget,
    )
    if record is not None:
        record.state["investigation"] = review.model_dump(mode="json")
        store.save(record)
    return review


# --------------------------------------------------------------------------- as registry tools

AI_TOOLS = frozenset({"review_change", "investigate_deploy"})
"""The tools that ask the model themselves: never offered to the model in turn."""


class ReviewInput(AnalyzeInput):
    pr_body: str | None = Field(
        None, description="The pull request's description, shown to the model as data."
    )


class InvestigateInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    app_name: str = Field(description="Application (Deployment) name")
    environment: str = Field(description="Environment from .github/pipeline-bot.yml")
    repository: str = Field(".", description="Repository whose config to use")


def review_change_tool(args: ReviewInput, ctx: ToolContext) -> Analysis:
    """Analyse a change, then ask the configured model (any OpenAI-compatible endpoint) to
    review it with the read-only tools; the model can only add caution (policy decides), and
    `ai.status` says `off` when no model is configured. Changes nothing."""
    from pipeline_bot.tools import build_registry

    source = ctx.require_source("review_change").read_change(args.repository, args.base, args.head)
    analysis = analyze_source(args, ctx, source)
    env = source_config(args, ctx, source).environment(args.environment)
    if ctx.llm is None:
        return analysis.model_copy(update={"ai": AIReview(status="off")})
    if ctx.progress:
        ctx.progress("AI review…")
    return review_change(
        analysis,
        llm=ctx.llm,
        registry=build_registry(),
        ctx=ctx,
        env=env,
        files=source.changes.files,
        excerpts=_excerpts(ctx, source, args.repository, analysis),
        max_steps=ctx.ai.max_steps,
        budget=ctx.ai.prompt_tokens,
        pr_body=args.pr_body,
    )


def investigate_tool(args: InvestigateInput, ctx: ToolContext) -> AIReview:
    """Ask the configured model why the app's latest deploy or gate failed: it reads the deploy
    record, status, metrics and pods with the read-only tools; the finding is kept in the
    deploy record. `status` is `off` when no model is configured."""
    from pipeline_bot.tools import build_registry

    if ctx.llm is None:
        return AIReview(status="off")
    return investigate_deploy(
        llm=ctx.llm,
        registry=build_registry(),
        ctx=ctx,
        environment=args.environment,
        app=args.app_name,
        repository=args.repository,
        max_steps=ctx.ai.max_steps,
        budget=ctx.ai.prompt_tokens,
    )


def _excerpts(
    ctx: ToolContext, source: ChangeSource, repository: str, analysis: Analysis
) -> Excerpts | None:
    patches = source.patches
    if patches is not None:
        return lambda paths: {p: patches[p] for p in paths if p in patches}
    reader = ctx.source
    if reader is None:
        return None
    return lambda paths: reader.excerpts(repository, analysis.base, analysis.head, paths)


def register(registry: ToolRegistry) -> None:
    registry.tool(
        name="review_change",
        title="AI review of a change",
        input_model=ReviewInput,
        output_model=Analysis,
        annotations=ToolAnnotations(
            read_only=True, destructive=False, idempotent=False, open_world=True
        ),
    )(review_change_tool)
    registry.tool(
        name="investigate_deploy",
        title="AI investigation of a failed deploy",
        input_model=InvestigateInput,
        output_model=AIReview,
        annotations=ToolAnnotations(
            read_only=False, destructive=False, idempotent=False, open_world=True
        ),
    )(investigate_tool)
