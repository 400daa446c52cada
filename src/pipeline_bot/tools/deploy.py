"""Deploy tools: deploy_application, promote/abort/rollback_deployment, get_deployment_status."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline_bot.core.analysis import analyze
from pipeline_bot.core.canary import DEFAULT_GATES
from pipeline_bot.core.images import is_pinned, parse_reference
from pipeline_bot.core.manifests import (
    AppChoiceError,
    default_app,
    deployment_names,
    image_reference,
)
from pipeline_bot.core.strategy import strategy_named
from pipeline_bot.deploy.engine import DeployEngine, render_only
from pipeline_bot.deploy.gates import PrometheusGate
from pipeline_bot.deploy.workload import load_manifests
from pipeline_bot.errors import ToolError
from pipeline_bot.models import (
    ContainerResources,
    DeploymentStatus,
    DeployRequest,
    DeployResult,
    ReadinessProbe,
    Strategy,
)
from pipeline_bot.repo_config import Environment, MetricGate, RepoConfig
from pipeline_bot.tools.analyze import risk_inputs
from pipeline_bot.tools.registry import ToolAnnotations, ToolContext, ToolRegistry

CHANGES_CLUSTER = ToolAnnotations(
    read_only=False, destructive=True, idempotent=False, open_world=True
)
READS_CLUSTER = ToolAnnotations(read_only=True, destructive=False, idempotent=True, open_world=True)


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeployConfig(_Input):
    """Optional settings of a deploy (the original sketch's `config`)."""

    replicas: int | None = Field(None, ge=1)
    port: int = Field(8080, ge=1, le=65535)
    cpu_request: str | None = None
    cpu_limit: str | None = None
    memory_request: str | None = None
    memory_limit: str | None = None
    readiness_path: str | None = Field(None, description="HTTP path of a readiness probe")
    manifests: list[str] = Field(default_factory=list, description="Manifest files or globs")
    timeout_seconds: float = Field(300, gt=0)
    auto_rollback: bool = True
    supersede: bool = Field(
        False,
        description="Abort a paused deploy of the app first; without it a deploy over a paused "
        "one is refused",
    )
    dry_run: Literal["none", "client", "server"] = "none"
    canary_steps: list[int] | None = Field(None, description="Canary weights in percent")
    pause_seconds: int | None = Field(None, ge=0, description="Pause after each canary step")
    commit_sha: str | None = None
    pin_digest: bool | None = Field(
        None,
        description="Resolve the image's tag to its digest at the registry and deploy "
        "repo@sha256:... (the tag kept in the pipeline-bot.dev/image-tag annotation); a missing "
        "tag then fails before anything is applied. Default: true (PIPELINE_BOT_PIN_DIGEST)",
    )
    gates: list[MetricGate] | None = Field(
        None, description="Metric gates for this deploy, instead of the config's"
    )


class DeployInput(_Input):
    app_name: str | None = Field(
        None,
        description="Application (Deployment) name. Default: the one Deployment of the "
        "manifests given, else the config's one service, else the repository's name.",
    )
    environment: str = Field(description="Environment from .github/pipeline-bot.yml")
    image_tag: str = Field(
        description="Image reference (repo:tag or repo@digest), or only a tag "
        "when the service's image is configured"
    )
    config: DeployConfig = Field(default_factory=DeployConfig)
    strategy: Literal["auto", "rolling", "blue-green", "canary"] = "auto"
    namespace: str | None = None
    repository: str = Field(
        ".", description="Repository whose config (and, for auto, whose change) to use"
    )
    requested_by: str | None = Field(None, description="Who asked, for the deploy record")


class AppInput(_Input):
    app_name: str | None = Field(
        None,
        description="Application name. Default: the config's one service, else the "
        "repository's name.",
    )
    environment: str
    repository: str = "."
    namespace: str | None = None
    timeout_seconds: float = Field(300, gt=0)


def _engine(
    ctx: ToolContext, tool: str, env: Environment, config: RepoConfig | None = None
) -> DeployEngine:
    gate = ctx.gate
    if gate is None and ctx.metrics is not None:
        gate = PrometheusGate(ctx.metrics, (config.gates if config else None) or DEFAULT_GATES)
    return DeployEngine(
        ctx.require_cluster(tool, env),
        ctx.require_store(tool, config),
        gate=gate,
        progress=ctx.progress,
        lease_seconds=ctx.lock_lease_seconds,
    )


def _app_and_manifests(args: DeployInput, config: RepoConfig) -> tuple[str, list[str]]:
    """The app (the one rule every front end shares, core.manifests.default_app) and the
    manifests to apply: those given, else the service's own `manifests` from the config (files
    of the repository, read from its checkout), else none (a Deployment and Service rendered)."""
    given = args.config.manifests
    deployments = deployment_names(load_manifests(given)) if given else []
    app = choose_app(args.app_name, config, args.repository, deployments)
    if given:
        return app, given
    service = next((s for s in config.services if s.name == app), None)
    if service is None or not service.manifests:
        return app, []
    root = Path(args.repository)
    if not root.is_dir():
        raise ToolError(
            f"service {app!r} deploys its manifests ({', '.join(service.manifests)}), files of "
            "the repository, and there is no checkout of it here to read them from: deploy "
            "it from CI (the Action or the CLI)",
            tool="deploy_application",
        )
    return app, [str(root / pattern) for pattern in service.manifests]


def choose_app(
    explicit: str | None, config: RepoConfig, repository: str, deployments: list[str] | None = None
) -> str:
    """core.manifests.default_app, with the repository's name as the last resort."""
    root = Path(repository)
    fallback = (root.resolve().name if root.is_dir() else repository.rsplit("/", 1)[-1]).lower()
    try:
        return default_app(explicit, [s.name for s in config.services], deployments or [], fallback)
    except AppChoiceError as exc:
        raise ToolError(
            f"{exc}: name the app (app_name; --app on the command line, the Action's app input)",
            tool="deploy_application",
        ) from None


def _image(args: DeployInput, config: RepoConfig) -> str:
    assert args.app_name is not None  # noqa: S101 - deploy_application resolved it first
    image = image_reference(config, args.app_name, args.image_tag)
    if image is None:
        raise ToolError(
            f"image_tag {args.image_tag!r} is only a tag, and service {args.app_name!r} has no "
            "image in .github/pipeline-bot.yml; pass the full image reference",
            tool="deploy_application",
        )
    return image


def _pinned(args: DeployInput, ctx: ToolContext, image: str) -> tuple[str, str | None]:
    """The image to run and the tag it came from: `repo@sha256:...` as the registry resolves
    the tag now, unless pinning is off, the reference is pinned already, or there is no
    registry client (a context built without one: the tag is deployed as given)."""
    pin = ctx.pin_digest if args.config.pin_digest is None else args.config.pin_digest
    if not pin or is_pinned(image) or args.config.dry_run == "client":
        return image, None
    if ctx.images is None:
        if args.config.pin_digest:
            raise ToolError(
                "pin_digest needs a registry client, and none is configured",
                tool="deploy_application",
            )
        return image, None
    resolved = ctx.images.resolve(image)
    if ctx.progress:
        ctx.progress(f"image {image} is {resolved.digest}")
    return resolved.pinned, image_tag_of(image)


def image_tag_of(image: str) -> str:
    """The tag a reference names (`latest` when it names none)."""
    return parse_reference(image).tag or "latest"


def _strategy(
    args: DeployInput, ctx: ToolContext, env: Environment, config: RepoConfig
) -> Strategy:
    c = args.config
    if args.strategy != "auto":
        return strategy_named(
            args.strategy,
            env,
            reason=f"{args.strategy} was asked for",
            steps=c.canary_steps,
            pause_seconds=c.pause_seconds,
        )
    source = ctx.require_source("deploy_application").read_change(args.repository, None, "HEAD")
    strategy = analyze(
        source.changes, config, risk=risk_inputs(ctx, source), environment=env.name
    ).strategy
    if strategy.name == "none":
        return strategy_named(
            "rolling",
            env,
            reason="the change has nothing deployable; an "
            "explicit deploy still ships the image with a rolling update",
        )
    if strategy.name == "canary" and (c.canary_steps or c.pause_seconds is not None):
        tuned = strategy_named(
            "canary", env, reason="", steps=c.canary_steps, pause_seconds=c.pause_seconds
        )
        strategy.parameters.steps = tuned.parameters.steps
    return strategy


def deploy_application(args: DeployInput, ctx: ToolContext) -> DeployResult:
    """Deploy an image to an environment with a strategy fitted to the change's risk (or the one
    asked for): rolling, blue-green or canary. Watches the rollout and rolls back on failure.
    Changes the cluster; holds the environment's lock while it runs."""
    config = ctx.repo_config(args.repository)
    env = config.environment(args.environment)
    app, manifests = _app_and_manifests(args, config)
    args = args.model_copy(update={"app_name": app})
    image, tag = _pinned(args, ctx, _image(args, config))  # before any apply
    strategy = _strategy(args, ctx, env, config)
    c = args.config
    request = DeployRequest(
        app=app,
        environment=env.name,
        image=image,
        image_tag=tag,
        commit_sha=c.commit_sha,
        namespace=args.namespace,
        strategy=strategy.name,
        replicas=c.replicas,
        port=c.port,
        resources=ContainerResources(
            cpu_request=c.cpu_request,
            cpu_limit=c.cpu_limit,
            memory_request=c.memory_request,
            memory_limit=c.memory_limit,
        ),
        readiness=ReadinessProbe(path=c.readiness_path) if c.readiness_path else None,
        manifests=manifests,
        dry_run=c.dry_run,
        timeout_seconds=c.timeout_seconds,
        auto_rollback=c.auto_rollback,
        requested_by=args.requested_by,
        supersede=c.supersede,
    )
    if c.dry_run == "client":
        return render_only(request, strategy, env)
    if c.gates is not None:
        config = config.model_copy(update={"gates": c.gates})
    return _engine(ctx, "deploy_application", env, config).deploy(request, strategy, env)


def promote_deployment(args: AppInput, ctx: ToolContext) -> DeployResult:
    """Promote a paused canary to stable, or switch a waiting blue-green deploy's traffic."""
    config = ctx.repo_config(args.repository)
    env = config.environment(args.environment)
    app = choose_app(args.app_name, config, args.repository)
    return _engine(ctx, "promote_deployment", env, config).promote(
        env.name, app, timeout=args.timeout_seconds
    )


def abort_deployment(args: AppInput, ctx: ToolContext) -> DeployResult:
    """Abort a paused canary or blue-green deploy: remove the new version, keep stable serving."""
    config = ctx.repo_config(args.repository)
    env = config.environment(args.environment)
    app = choose_app(args.app_name, config, args.repository)
    return _engine(ctx, "abort_deployment", env, config).abort(env.name, app)


def rollback_deployment(args: AppInput, ctx: ToolContext) -> DeployResult:
    """Roll an app back to its last successful deploy before the latest (or switch blue-green
    traffic back), and watch until it is available."""
    config = ctx.repo_config(args.repository)
    env = config.environment(args.environment)
    app = choose_app(args.app_name, config, args.repository)
    namespace = args.namespace or env.namespace or env.name
    return _engine(ctx, "rollback_deployment", env, config).rollback(
        env.name, app, namespace=namespace, timeout=args.timeout_seconds
    )


def get_deployment_status(args: AppInput, ctx: ToolContext) -> DeploymentStatus:
    """What runs for an app in an environment (images, replicas ready, conditions, live colour)
    from the cluster, with the lock and the recent deploys from the store. Reads only."""
    config = ctx.repo_config(args.repository)
    env = config.environment(args.environment)
    app = choose_app(args.app_name, config, args.repository)
    namespace = args.namespace or env.namespace or env.name
    return _engine(ctx, "get_deployment_status", env, config).status(env.name, app, namespace)


def register(registry: ToolRegistry) -> None:
    from pipeline_bot.tools import images  # the image tools ride with deploy's (they share ports)

    images.register(registry)
    for fn, title, input_model, output_model, hints in (
        (deploy_application, "Deploy application", DeployInput, DeployResult, CHANGES_CLUSTER),
        (promote_deployment, "Promote deployment", AppInput, DeployResult, CHANGES_CLUSTER),
        (abort_deployment, "Abort deployment", AppInput, DeployResult, CHANGES_CLUSTER),
        (rollback_deployment, "Roll back deployment", AppInput, DeployResult, CHANGES_CLUSTER),
        (get_deployment_status, "Deployment status", AppInput, DeploymentStatus, READS_CLUSTER),
    ):
        registry.tool(
            name=fn.__name__,
            title=title,
            input_model=input_model,
            output_model=output_model,
            annotations=hints,
        )(fn)  # type: ignore[arg-type]
