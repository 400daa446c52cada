"""Tools with typed input and output, kept in one registry (shaped like the MCP SDK's ToolManager).

A tool is a function `(input_model, ToolContext) -> output_model`. Its JSON Schemas come from the
pydantic models, so MCP's `inputSchema` and `outputSchema` are free. Every tool states all four MCP
annotations, which policy uses: only read-only tools are offered to an LLM, destructive ones need a
person's confirmation.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, cast

from pydantic import BaseModel, ValidationError

from pipeline_bot.errors import (
    NotARepositoryError,
    PipelineBotError,
    ToolError,
    ToolInputError,
    UnknownToolError,
)
from pipeline_bot.integrations.ports import (
    AuditPort,
    ClusterPort,
    ImagePort,
    LLMPort,
    MetricsPort,
    RiskPort,
    SourcePort,
    StorePort,
    WorkflowsPort,
)
from pipeline_bot.models import AuditEntry
from pipeline_bot.repo_config import Environment, RepoConfig, default_config, load_repo_config

if TYPE_CHECKING:  # the deploy engine's gates: imported by the tools that deploy, when asked for
    from pipeline_bot.deploy.gates import Gate

In = TypeVar("In", bound=BaseModel)
Out = TypeVar("Out", bound=BaseModel)


@dataclass(frozen=True)
class ToolAnnotations:
    """MCP tool annotations; every tool states all four."""

    read_only: bool
    destructive: bool
    idempotent: bool
    open_world: bool

    def as_mcp(self) -> dict[str, bool]:
        return {
            "readOnlyHint": self.read_only,
            "destructiveHint": self.destructive,
            "idempotentHint": self.idempotent,
            "openWorldHint": self.open_world,
        }


@dataclass(frozen=True)
class AILimits:
    """How much one AI review or investigation may ask of the model."""

    max_steps: int = 6
    prompt_tokens: int = 8000


@dataclass
class ToolContext:
    """The collaborators a tool may use; a front end builds them, a tool never does."""

    source: SourcePort | None = None
    cluster: Callable[[Environment], ClusterPort] | None = None
    store: StorePort | None = None
    # the store for a repository's config (the cluster store: each environment's namespace)
    stores: Callable[[RepoConfig], StorePort] | None = None
    lock_lease_seconds: float = 60
    progress: Callable[[str], None] | None = None
    gate: Gate | None = None
    metrics: MetricsPort | None = None
    risk: RiskPort | None = None  # None: fixed rule weights score changes
    llm: LLMPort | None = None  # None: AI reviews and investigations are off
    audit: AuditPort | None = None  # every call is recorded here
    front_end: str = ""
    actor: str | None = None
    ai: AILimits = AILimits()
    workflows: WorkflowsPort | None = None
    github_repository: str | None = None
    # the repository's config when the front end read it itself (the App reads it from the
    # default branch through GitHub's API); tools then use it instead of a local file
    config: RepoConfig | None = None
    images: ImagePort | None = None  # registries and image builds (resolve_image, build_image)
    pin_digest: bool = True  # deploy repo@sha256:... unless a deploy says pin_digest: false

    def repo_config(self, repository: str) -> RepoConfig:
        """The front end's config when it read one, else the repository folder's own file (or
        the defaults when it has none); a folder that does not exist is an error, never the
        defaults."""
        if self.config is not None:
            return self.config
        root = Path(repository)
        if not root.is_dir():
            what = "does not exist" if not root.exists() else "is not a folder"
            raise NotARepositoryError(f"repository {repository!r} {what}", repo=repository)
        return load_repo_config(None, repo_root=root)

    def require_source(self, tool: str) -> SourcePort:
        if self.source is None:
            raise ToolError(f"{tool} needs a repository reader, and none is configured", tool=tool)
        return self.source

    def require_cluster(self, tool: str, env: Environment) -> ClusterPort:
        if self.cluster is None:
            raise ToolError(
                f"{tool} needs a Kubernetes cluster, and none is configured "
                "(set KUBECONFIG or pass --kubeconfig)",
                tool=tool,
            )
        return self.cluster(env)

    def require_store(self, tool: str, config: RepoConfig | None = None) -> StorePort:
        """The deploy store: the one configured, else the cluster store for `config`'s
        environments (the front end's config, else the defaults)."""
        if self.store is not None:
            return self.store
        if self.stores is not None:
            return self.stores(config or self.config or default_config())
        raise ToolError(f"{tool} needs the deploy store, and none is configured", tool=tool)


@dataclass(frozen=True)
class Tool(Generic[In, Out]):
    name: str
    title: str
    description: str
    input_model: type[In]
    output_model: type[Out]
    annotations: ToolAnnotations
    fn: Callable[[In, ToolContext], Out]

    def input_schema(self) -> dict[str, Any]:
        return self.input_model.model_json_schema()

    def output_schema(self) -> dict[str, Any]:
        return self.output_model.model_json_schema()

    def parse(self, arguments: Mapping[str, Any]) -> In:
        try:
            return self.input_model.model_validate(dict(arguments))
        except ValidationError as exc:
            problems = [
                f"{'.'.join(str(p) for p in err['loc']) or '(arguments)'}: {err['msg']}"
                for err in exc.errors(include_url=False)
            ]
            raise ToolInputError(
                f"invalid arguments for {self.name}: " + "; ".join(problems),
                tool=self.name,
                problems=problems,
            ) from None


class ToolRegistry:
    """Name -> Tool, with `add`, a `tool` decorator, `list`, `get` and `call`."""

    def __init__(self) -> None:
        self._tools: dict[str, Tool[Any, Any]] = {}
        self._deferred: list[Callable[[ToolRegistry], None]] = []

    def defer(self, register: Callable[[ToolRegistry], None]) -> None:
        """Run `register` (which imports a module of tools and adds them) only when a tool is
        asked for that is not here yet, or the list: a command that calls one tool does not
        import every other tool's modules (the deploy engine's, for an analysis)."""
        self._deferred.append(register)

    def _load(self, name: str | None = None) -> None:
        """Run deferred registrations, in order, until `name` is here (None: all of them)."""
        while self._deferred and (name is None or name not in self._tools):
            self._deferred.pop(0)(self)

    def add(self, tool: Tool[Any, Any]) -> Tool[Any, Any]:
        if tool.name in self._tools:
            raise ValueError(f"a tool named {tool.name!r} is already registered")
        self._tools[tool.name] = tool
        return tool

    def tool(
        self,
        *,
        name: str,
        title: str,
        input_model: type[In],
        output_model: type[Out],
        annotations: ToolAnnotations,
    ) -> Callable[[Callable[[In, ToolContext], Out]], Callable[[In, ToolContext], Out]]:
        """Register the decorated function; its docstring is the tool's description."""

        def decorate(fn: Callable[[In, ToolContext], Out]) -> Callable[[In, ToolContext], Out]:
            description = " ".join((fn.__doc__ or title).split())
            self.add(Tool(name, title, description, input_model, output_model, annotations, fn))
            return fn

        return decorate

    def list(self) -> list[Tool[Any, Any]]:
        self._load()
        return list(self._tools.values())

    def get(self, name: str) -> Tool[Any, Any]:
        self._load(name)
        try:
            return self._tools[name]
        except KeyError:
            known = ", ".join(sorted(self._tools)) or "none"
            raise UnknownToolError(
                f"unknown tool {name!r}; known tools: {known}", tool=name
            ) from None

    def call(self, name: str, arguments: Mapping[str, Any], ctx: ToolContext) -> BaseModel:
        """Validate `arguments` against the tool's input model, run it, check its output; the
        call goes to the audit trail whatever its outcome."""
        started = time.monotonic()
        try:
            tool = self.get(name)
            result = tool.fn(tool.parse(arguments), ctx)
            if not isinstance(result, tool.output_model):
                raise ToolError(
                    f"{name} returned {type(result).__name__}, not {tool.output_model.__name__}",
                    tool=name,
                )
        except PipelineBotError as exc:
            audit(ctx, name, arguments, "error", exc.message, started)
            raise
        audit(ctx, name, arguments, "ok", _summary(result), started)
        return cast(BaseModel, result)


def audit(
    ctx: ToolContext,
    tool: str,
    arguments: Mapping[str, Any],
    outcome: Literal["ok", "error", "refused"],
    result: str,
    started: float | None = None,
    *,
    decision: str = "allowed",
) -> None:
    """Record one call in the context's audit trail (a front end records its refusals too)."""
    if ctx.audit is None:
        return
    entry = AuditEntry(
        at=datetime.now(UTC),
        front_end=ctx.front_end,
        actor=ctx.actor,
        tool=tool,
        inputs=dict(arguments),
        decision=decision,
        outcome=outcome,
        result=result[:500],
        seconds=round(time.monotonic() - started, 3) if started is not None else 0.0,
    )
    with contextlib.suppress(OSError):  # a full disk must not stop a deploy or its rollback
        ctx.audit.record(entry)


def _summary(result: BaseModel) -> str:
    """A line saying what a tool gave back: a status, a risk, a count."""
    data = result.model_dump(mode="json")
    for key in ("status", "strategy", "verdict"):
        value = data.get(key)
        if isinstance(value, str):
            return f"{key} {value}"
    risk = data.get("risk")
    if isinstance(risk, dict) and "level" in risk:
        return f"risk {risk['level']} ({risk.get('score')}/100)"
    return type(result).__name__
