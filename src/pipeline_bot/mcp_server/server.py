"""The registry's tools as MCP tools, with the same policy: read-only selection, and a person's
confirmation before any destructive tool runs (elicitation on 2025-11-25 clients, input_required
on 2026-07-28 ones; the SDK's resolvers pick the right one). Without a way to ask, it refuses.

Environment policy (`assistants: deny`, namespaces) comes from a TrustedPolicy (trust.py), never
from a tool call's arguments: every call is admitted against it before anything runs or is asked.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
from collections.abc import Callable
from typing import Annotated, Any

import anyio.to_thread
from mcp.server.elicitation import AcceptedElicitation, ElicitationResult
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError as McpToolError
from mcp.server.mcpserver.resolve import Elicit, Resolve
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from pipeline_bot import __version__
from pipeline_bot.errors import PipelineBotError
from pipeline_bot.mcp_server.resources import add_resources
from pipeline_bot.mcp_server.trust import TrustedPolicy
from pipeline_bot.redaction import redact_data
from pipeline_bot.repo_config import RepoConfig
from pipeline_bot.tools import Tool, ToolContext, ToolRegistry
from pipeline_bot.tools.registry import audit

INSTRUCTIONS = (
    "pipeline-bot analyses changes and deploys them to Kubernetes safely. Read-only tools "
    "(analyze_changes, get_deployment_status, monitor_infrastructure, query_metrics) need no "
    "confirmation; tools that change a cluster ask the user to confirm first."
)


class Confirmation(BaseModel):
    confirm: bool = Field(description="Carry out this change now?")


def select_tools(
    registry: ToolRegistry, *, read_only: bool, include: list[str] | None, exclude: list[str] | None
) -> list[Tool[Any, Any]]:
    tools = registry.list()
    known = {t.name for t in tools}
    for name in [*(include or []), *(exclude or [])]:
        if name not in known:
            raise PipelineBotError(
                f"unknown tool {name!r}; known tools: {', '.join(sorted(known))}"
            )
    return [
        t
        for t in tools
        if (not read_only or t.annotations.read_only)
        and (not include or t.name in include)
        and t.name not in (exclude or [])
    ]


def build_server(
    registry: ToolRegistry,
    context: Callable[[], ToolContext],
    *,
    policy: TrustedPolicy | None = None,
    read_only: bool = False,
    include: list[str] | None = None,
    exclude: list[str] | None = None,
) -> MCPServer:
    """The MCP server; `policy` is the config every call is held to (default: the working
    directory's repository, read now)."""
    policy = policy or TrustedPolicy.from_repository()
    server = MCPServer(
        name="pipeline-bot", title="pipeline-bot", version=__version__, instructions=INSTRUCTIONS
    )
    for tool in select_tools(registry, read_only=read_only, include=include, exclude=exclude):
        server.add_tool(
            _function_for(tool, registry, context, policy),
            name=tool.name,
            title=tool.title,
            description=tool.description,
            structured_output=True,
            annotations=ToolAnnotations(
                read_only_hint=tool.annotations.read_only,
                destructive_hint=tool.annotations.destructive,
                idempotent_hint=tool.annotations.idempotent,
                open_world_hint=tool.annotations.open_world,
            ),
        )
    add_resources(server, registry, context, policy)
    add_prompts(server)
    return server


REVIEW_STEPS = """

How to review a change with pipeline-bot's tools:
1. Call analyze_changes with repository={repository!r}, base={base!r} (empty: the default base)
   and head={head!r}. Its risk factors, findings and strategy are the rule-based floor.
2. Where it helps, read get_deployment_status for the target environment, query_metrics and
   monitor_infrastructure: they read only.
3. Answer with: a summary; the risks, each with its evidence (file and lines); a strategy (none,
   rolling, blue-green or canary) with parameters and the reason; resources (replicas, cpu,
   memory); monitoring checkpoints (metric, condition, when); and your confidence from 0 to 1.
You may raise the risk or propose a more careful strategy than the analysis, never less. Do not
call deploy_application, promote_deployment, abort_deployment or rollback_deployment as part of
a review: changing a cluster is the user's decision, which they confirm themselves."""


def add_prompts(server: MCPServer) -> None:
    from pipeline_bot.core.prompt import REVIEW_SYSTEM

    @server.prompt(
        name="review-change",
        title="Review a change",
        description="Review a range of commits the way pipeline-bot's AI review does: the "
        "rule-based analysis as the floor, read-only tools, a structured recommendation.",
    )
    def review_change(repository: str = ".", base: str = "", head: str = "HEAD") -> str:
        return REVIEW_SYSTEM + REVIEW_STEPS.format(repository=repository, base=base, head=head)


NO_CONFIRMATION = (
    "{tool} changes a cluster, so it needs your confirmation, and this client cannot ask for it "
    "(it does not support elicitation). Nothing was changed. Use a client that supports "
    "elicitation, or run `pipeline-bot {verb}` from a terminal."
)


def _ask(
    tool: str, policy: TrustedPolicy, context: Callable[[], ToolContext]
) -> Callable[..., Elicit[Confirmation]]:
    def ask(ctx: Context[Any, Any], **arguments: Any) -> Elicit[Confirmation]:
        try:
            _admit(policy, tool, arguments, changes_cluster=True)  # refused before anyone asks
            caps = ctx.client_capabilities
            if caps is None or caps.elicitation is None:  # fail closed, and say how to proceed
                verb = tool.split("_")[0].replace("get", "status")
                raise McpToolError(NO_CONFIRMATION.format(tool=tool, verb=verb))
        except McpToolError as exc:
            _audit_refusal(context, tool, arguments, str(exc))
            raise
        shown = {
            k: (v.model_dump(exclude_defaults=True) if isinstance(v, BaseModel) else v)
            for k, v in arguments.items()
            if v is not None
        }
        summary = json.dumps(shown, default=str)
        return Elicit(
            f"pipeline-bot wants to run {tool} with {summary}. This changes a cluster. Confirm?",
            Confirmation,
        )

    return ask


# a config path chosen by the caller: over MCP the server's trusted config applies instead
CALLER_CONFIG = {"analyze_changes": {"config"}}


def _admit(
    policy: TrustedPolicy, tool: str, arguments: dict[str, Any], *, changes_cluster: bool
) -> RepoConfig | None:
    try:
        return policy.admit(tool, arguments, changes_cluster=changes_cluster)
    except PipelineBotError as exc:
        raise McpToolError(exc.message) from None


def _without_default(info: FieldInfo) -> FieldInfo:
    """The field's description and constraints; its default goes on the parameter instead."""
    out = copy.copy(info)
    out.default = PydanticUndefined
    out.default_factory = None
    return out


def _audit_refusal(
    context: Callable[[], ToolContext], tool: str, arguments: dict[str, Any], reason: str
) -> None:
    plain = {k: (v.model_dump() if isinstance(v, BaseModel) else v) for k, v in arguments.items()}
    audit(context(), tool, plain, "refused", reason, decision=f"refused: {reason}")


def _redacted(result: Any) -> Any:
    """A tool's result with every registered secret masked, before it reaches the client."""
    if not isinstance(result, BaseModel):
        return result
    data = redact_data(result.model_dump(mode="json"))
    try:
        return type(result).model_validate(data)
    except ValidationError:  # a masked value no longer fits its field: keep the mask anyway
        return type(result).model_construct(**data)


def _function_for(
    tool: Tool[Any, Any],
    registry: ToolRegistry,
    context: Callable[[], ToolContext],
    policy: TrustedPolicy,
) -> Callable[..., Any]:
    """A function whose signature is the tool's input model, so the SDK derives the same schema;
    destructive tools get one more parameter that the SDK fills by asking the user."""
    hidden = CALLER_CONFIG.get(tool.name, set())
    fields = {n: i for n, i in tool.input_model.model_fields.items() if n not in hidden}
    params = [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Annotated[info.annotation, _without_default(info)],
            default=inspect.Parameter.empty
            if info.is_required()
            else info.get_default(call_default_factory=True),
        )
        for name, info in fields.items()
    ]
    destructive = tool.annotations.destructive

    def call(confirmation: Any, kwargs: dict[str, Any]) -> Any:
        try:
            config = _admit(policy, tool.name, kwargs, changes_cluster=destructive)
            if destructive and not (
                isinstance(confirmation, AcceptedElicitation) and confirmation.data.confirm
            ):
                raise McpToolError(f"{tool.name} was not confirmed, so nothing was changed")
        except McpToolError as exc:  # the policy's refusals go to the audit trail too
            _audit_refusal(context, tool.name, kwargs, str(exc))
            raise
        arguments = {
            k: (v.model_dump() if isinstance(v, BaseModel) else v) for k, v in kwargs.items()
        }
        try:
            # the trusted config: a tool never falls back to a repository's own file
            ctx = context() if config is None else dataclasses.replace(context(), config=config)
            return _redacted(registry.call(tool.name, arguments, ctx))
        except PipelineBotError as exc:
            raise McpToolError(exc.message) from None

    async def run(**kwargs: Any) -> Any:
        confirmation = kwargs.pop("confirmation", None)
        return await anyio.to_thread.run_sync(lambda: call(confirmation, kwargs))

    if destructive:
        ask = _ask(tool.name, policy, context)
        ask.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Context)]
            + [
                inspect.Parameter(
                    p.name, inspect.Parameter.KEYWORD_ONLY, annotation=Any, default=None
                )
                for p in params
            ]
        )
        params.append(
            inspect.Parameter(
                "confirmation",
                inspect.Parameter.KEYWORD_ONLY,
                annotation=Annotated[ElicitationResult[Confirmation], Resolve(ask)],
            )
        )
    run.__signature__ = inspect.Signature(params, return_annotation=tool.output_model)  # type: ignore[attr-defined]
    run.__name__ = tool.name
    run.__annotations__ = {p.name: p.annotation for p in params} | {"return": tool.output_model}
    return run
