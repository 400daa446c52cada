"""Deploy plan tools: get_deploy_plan (reads only) and deploy_plan (every service of the
repository, in dependency order, each from its own manifests and image)."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline_bot.core.images import is_pinned
from pipeline_bot.core.manifests import image_reference
from pipeline_bot.core.plan import (
    MAX_PARALLEL_DEFAULT,
    DeployPlan,
    PlanResult,
    PlanService,
    ServiceOutcome,
    build_plan,
    plan_status,
    summary,
)
from pipeline_bot.deploy.plans import note_plan, run_plan
from pipeline_bot.errors import PipelineBotError, ToolError
from pipeline_bot.integrations.ports import StorePort
from pipeline_bot.models import DeployRecord, DeployResult
from pipeline_bot.repo_config import RepoConfig
from pipeline_bot.tools.deploy import (
    CHANGES_CLUSTER,
    READS_CLUSTER,
    AppInput,
    DeployConfig,
    DeployInput,
    deploy_application,
    rollback_deployment,
)
from pipeline_bot.tools.registry import ToolAnnotations, ToolContext, ToolRegistry

READS_CONFIG = ToolAnnotations(read_only=True, destructive=False, idempotent=True, open_world=False)


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PlanInput(_Input):
    environment: str | None = Field(
        None, description="Environment the plan is for. Default: the last in promotion order."
    )
    repository: str = Field(".", description="Repository whose config lists the services")
    max_parallel: int = Field(
        MAX_PARALLEL_DEFAULT, ge=1, le=32, description="Services deployed at once"
    )


class DeployPlanInput(_Input):
    environment: str = Field(description="Environment from .github/pipeline-bot.yml")
    image_tag: str = Field(
        description="The tag every service deploys (on its configured image), or a full image "
        "reference when the plan has one service"
    )
    images: dict[str, str] = Field(
        default_factory=dict,
        description="Per service: a tag or full image reference, instead of image_tag",
    )
    strategy: Literal["auto", "rolling", "blue-green", "canary"] = "auto"
    repository: str = Field(".", description="Repository whose config lists the services")
    max_parallel: int = Field(
        MAX_PARALLEL_DEFAULT, ge=1, le=32, description="Services deployed at once"
    )
    timeout_seconds: float = Field(300, gt=0, description="Each service's rollout timeout")
    auto_rollback: bool = Field(True, description="Roll a failed service back")
    dry_run: Literal["none", "client", "server"] = "none"
    commit_sha: str | None = None
    requested_by: str | None = Field(None, description="Who asked, for the deploy records")


def plan_for(config: RepoConfig, environment: str | None, max_parallel: int) -> DeployPlan:
    """The config's services as a plan (the config loader has checked their dependencies)."""
    if not config.services:
        raise ToolError(
            "the config has no services, so there is nothing to plan: list them under "
            "`services:` in .github/pipeline-bot.yml",
            tool="deploy_plan",
        )
    env = config.environment(environment)
    services = [
        PlanService(
            name=s.name, stage=0, depends_on=s.depends_on, image=s.image, manifests=s.manifests
        )
        for s in config.services
    ]
    return build_plan(services, environment=env.name, max_parallel=max_parallel)


def get_deploy_plan(args: PlanInput, ctx: ToolContext) -> DeployPlan:
    """The repository's services in deploy order: stages of services that deploy in parallel,
    each after the services it depends on. Reads only the config."""
    return plan_for(ctx.repo_config(args.repository), args.environment, args.max_parallel)


def _images(args: DeployPlanInput, config: RepoConfig, plan: DeployPlan) -> dict[str, str]:
    return plan_images(config, plan, args.image_tag, args.images)


def plan_images(
    config: RepoConfig, plan: DeployPlan, image_tag: str, given: dict[str, str]
) -> dict[str, str]:
    """Each service's image: its entry in `given` (a tag or a full reference), else
    `image_tag` on its configured image."""
    unknown = sorted(set(given) - {s.name for s in plan.services})
    if unknown:
        raise ToolError(
            f"images names service(s) the config does not have: {', '.join(unknown)}",
            tool="deploy_plan",
        )
    images = {
        s.name: image_reference(config, s.name, given.get(s.name, image_tag)) for s in plan.services
    }
    missing = [name for name, image in images.items() if image is None]
    if missing:
        raise ToolError(
            f"image_tag {image_tag!r} is only a tag, and service(s) {', '.join(missing)} "
            "have no image in .github/pipeline-bot.yml: give them one, or pass their full "
            "image references in images",
            tool="deploy_plan",
        )
    return {name: image for name, image in images.items() if image is not None}


def _check_images(images: dict[str, str], ctx: ToolContext) -> None:
    """Each image a service will be pinned to must exist before any service is deployed: a
    missing tag stops the plan before anything is applied (each deploy pins its own after)."""
    if not ctx.pin_digest or ctx.images is None:
        return
    for image in sorted(set(images.values())):
        if not is_pinned(image):
            ctx.images.resolve(image)


def deploy_plan(args: DeployPlanInput, ctx: ToolContext) -> PlanResult:
    """Deploy every service of the repository to an environment in dependency order: services
    that depend on nothing first, independent ones in parallel (at most max_parallel), each from
    its own manifests and image. A service that fails is rolled back and the services depending
    on it are skipped; the others' results are kept. Changes the cluster; holds the
    environment's lock for the whole plan."""
    config = ctx.repo_config(args.repository)
    env = config.environment(args.environment)
    plan = plan_for(config, env.name, args.max_parallel)
    images = _images(args, config, plan)
    if args.dry_run != "client":
        _check_images(images, ctx)
    store = None
    if args.dry_run != "client":  # a client dry run renders only: no cluster, no lock
        ctx.require_cluster("deploy_plan", env)  # say so before anything is locked
        store = ctx.require_store("deploy_plan", config)

    def deploy_one(service: PlanService, held: StorePort | None) -> DeployResult:
        say = ctx.progress
        scoped = dataclasses.replace(
            ctx,
            store=held,
            stores=None,
            config=config,
            progress=(lambda m: say(f"{service.name}: {m}")) if say else None,
        )
        request = DeployInput(
            app_name=service.name,
            environment=env.name,
            image_tag=images[service.name],
            strategy=args.strategy,
            repository=args.repository,
            requested_by=args.requested_by or ctx.actor,
            config=DeployConfig(
                timeout_seconds=args.timeout_seconds,
                auto_rollback=args.auto_rollback,
                dry_run=args.dry_run,
                commit_sha=args.commit_sha,
            ),
        )
        return deploy_application(request, scoped)

    result = run_plan(
        plan,
        env.name,
        deploy_one,
        store,
        progress=ctx.progress,
        lease_seconds=ctx.lock_lease_seconds,
        actor=args.requested_by or ctx.actor,
    )
    if result.status == "failed" and env.plan_failure == "roll_back" and store is not None:
        result = _roll_back_plan(result, env.name, args, ctx, store)
    return result


def _roll_back_plan(
    result: PlanResult, environment: str, args: DeployPlanInput, ctx: ToolContext, store: StorePort
) -> PlanResult:
    """The environment's plan_failure: roll_back. Every service the plan deployed goes back to
    what ran before, dependents first (the reverse of the plan's order); a rollback that fails
    is said, and that service keeps what it has."""
    failed = [o.name for o in result.services if o.status in ("failed", "rolled_back")]
    why = f"{', '.join(failed)} failed and {environment}'s plan_failure is roll_back"
    say = ctx.progress or (lambda _m: None)
    outcomes = {o.name: o for o in result.services}
    for o in sorted(result.services, key=lambda o: -o.stage):
        if o.status != "succeeded":
            continue
        say(f"{o.name}: rolling back ({why})")
        try:
            back = rollback_deployment(
                AppInput(
                    app_name=o.name,
                    environment=environment,
                    repository=args.repository,
                    timeout_seconds=args.timeout_seconds,
                ),
                ctx,
            )
        except PipelineBotError as exc:
            outcomes[o.name] = o.model_copy(
                update={"message": f"{why}; its rollback failed: {exc.message}"}
            )
            continue
        ok = back.status == "succeeded"
        outcomes[o.name] = o.model_copy(
            update={
                "status": "rolled_back" if ok else o.status,
                "message": f"rolled back: {why}"
                if ok
                else f"{why}; its rollback ended {back.status}: {back.message}",
            }
        )
    ordered = [outcomes[o.name] for o in result.services]
    note_plan(store, result.plan_id, ordered, [o.name for o in ordered], say)
    return result.model_copy(
        update={
            "services": ordered,
            "status": plan_status(ordered),
            "message": f"{len(ordered)} service(s): {summary(ordered)}; {why}",
        }
    )


class PlanStatusInput(_Input):
    environment: str = Field(description="Environment from .github/pipeline-bot.yml")
    repository: str = Field(".", description="Repository whose config lists the services")


class PlanStatus(BaseModel):
    """Where the services of a plan stand in an environment: the latest plan's outcome for each,
    and the deploys running now."""

    environment: str
    plan_id: str | None = Field(None, description="the latest plan that ran here")
    plan: DeployPlan
    services: list[ServiceOutcome]


def _note(record: DeployRecord | None) -> dict[str, Any] | None:
    note = record.state.get("plan") if record is not None else None
    return note if isinstance(note, dict) else None


def get_plan_status(args: PlanStatusInput, ctx: ToolContext) -> PlanStatus:
    """The deploy plan's progress in an environment, from the deploy records: a service
    deploying now is running; the others have how the latest plan left them (skipped ones too).
    Reads only."""
    config = ctx.repo_config(args.repository)
    env = config.environment(args.environment)
    plan = plan_for(config, env.name, MAX_PARALLEL_DEFAULT)
    store = ctx.require_store("get_plan_status", config)
    latest = {
        s.name: next(iter(store.history(env.name, s.name, limit=1)), None) for s in plan.services
    }
    noted = [
        (str(n.get("at") or r.started_at.isoformat()), n)
        for r in latest.values()
        if r and (n := _note(r))
    ]
    newest = max(noted, key=lambda pair: pair[0])[1] if noted else None
    ended: dict[str, str] = (newest or {}).get("services") or {}
    outcomes = []
    for s in plan.services:
        record = latest[s.name]
        status: str = "pending"
        if record is not None and record.status == "running":
            status = "running"
        elif s.name in ended:
            status = ended[s.name]
        elif record is not None:
            status = "rolled_back" if record.status == "aborted" else record.status
        note = _note(record)
        ours = record is not None and (
            status == "running" or (note is not None and note.get("id") == (newest or {}).get("id"))
        )
        outcomes.append(
            ServiceOutcome(
                name=s.name,
                stage=s.stage,
                status=status,
                image=record.image if ours and record else None,
                deploy_id=record.id if ours and record else None,
                message=(record.reason or record.step) if ours and record else "",
            )
        )
    return PlanStatus(
        environment=env.name,
        plan_id=str(newest["id"]) if newest else None,
        plan=plan,
        services=outcomes,
    )


def register(registry: ToolRegistry) -> None:
    registry.tool(
        name="get_plan_status",
        title="Deploy plan status",
        input_model=PlanStatusInput,
        output_model=PlanStatus,
        annotations=READS_CLUSTER,
    )(get_plan_status)
    registry.tool(
        name="get_deploy_plan",
        title="Deploy plan",
        input_model=PlanInput,
        output_model=DeployPlan,
        annotations=READS_CONFIG,
    )(get_deploy_plan)
    registry.tool(
        name="deploy_plan",
        title="Deploy plan: every service in dependency order",
        input_model=DeployPlanInput,
        output_model=PlanResult,
        annotations=CHANGES_CLUSTER,
    )(deploy_plan)
