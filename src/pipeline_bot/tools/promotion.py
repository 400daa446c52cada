"""Promotion tools: promote_plan (a deploy plan through the environments in promotion order,
stopping before one that requires approval until a person approves) and approve_promotion.

An approval is a ConfigMap `pipeline-bot-approval` in the environment's namespace, so every
front end and every job sees it; it holds the commit, the plan's digest, who approved and until
when.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline_bot.core.durations import parse_duration
from pipeline_bot.core.plan import MAX_PARALLEL_DEFAULT
from pipeline_bot.core.promotion import (
    Approval,
    ApprovalCheck,
    EnvironmentStep,
    PromotionResult,
    check_approval,
    plan_digest,
    promotion_order,
)
from pipeline_bot.errors import ToolError
from pipeline_bot.repo_config import Environment, RepoConfig, default_config
from pipeline_bot.tools.deploy import CHANGES_CLUSTER
from pipeline_bot.tools.plans import DeployPlanInput, deploy_plan, plan_for, plan_images
from pipeline_bot.tools.registry import ToolContext, ToolRegistry

APPROVAL = "pipeline-bot-approval"
Commit = Field(pattern=r"^[0-9a-f]{7,40}$", description="The commit being promoted")


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PromoteInput(_Input):
    image_tag: str = Field(description="The tag every service deploys (as deploy_plan)")
    commit_sha: str = Commit
    images: dict[str, str] = Field(default_factory=dict)
    to: str | None = Field(None, description="Last environment. Default: the last in order.")
    strategy: Literal["auto", "rolling", "blue-green", "canary"] = "auto"
    repository: str = "."
    max_parallel: int = Field(MAX_PARALLEL_DEFAULT, ge=1, le=32)
    timeout_seconds: float = Field(300, gt=0)


class ApproveInput(_Input):
    environment: str
    image_tag: str
    commit_sha: str = Commit
    images: dict[str, str] = Field(default_factory=dict)
    repository: str = "."
    approved_by: str | None = Field(None, description="Who approves. Default: the caller")


def _environments(config: RepoConfig, to: str | None) -> list[Environment]:
    envs = config.environments or default_config().environments
    names = promotion_order([(e.name, e.order) for e in envs])
    if to is not None:
        config.environment(to)  # an unknown name is an error naming the known ones
        names = names[: names.index(to) + 1]
    return [config.environment(n) for n in names]


def _digest(config: RepoConfig, env: Environment, args: PromoteInput | ApproveInput) -> str:
    plan = plan_for(config, env.name, MAX_PARALLEL_DEFAULT)
    images = plan_images(config, plan, args.image_tag, args.images)
    return plan_digest(plan, env.name, args.commit_sha, images)


def _namespace(env: Environment) -> str:
    return env.namespace or env.name


def read_approval(ctx: ToolContext, env: Environment) -> tuple[Approval | None, Any]:
    """The environment's approval (None when there is none or it cannot be read) and its
    ConfigMap (for a replace at its version)."""
    cluster = ctx.require_cluster("promote_plan", env)
    obj = cluster.get("v1", "ConfigMap", _namespace(env), APPROVAL)
    if obj is None:
        return None, None
    try:
        return Approval.model_validate(json.loads((obj.get("data") or {})["approval"])), obj
    except (KeyError, ValueError, ValidationError):
        return None, obj


def deploy_approval(
    ctx: ToolContext, config: RepoConfig, env: Environment, commit_sha: str, image_tag: str
) -> ApprovalCheck:
    """Whether `env`'s approval lets `commit_sha`'s plan (each service's image tagged
    `image_tag`) in now: what a deploy into an environment that requires approval needs, as a
    promotion does (the App's /deploy)."""
    args = ApproveInput(environment=env.name, image_tag=image_tag, commit_sha=commit_sha)
    approval, _ = read_approval(ctx, env)
    return check_approval(
        approval,
        environment=env.name,
        commit_sha=commit_sha,
        digest=_digest(config, env, args),
        now=datetime.now(UTC),
    )


def approve_promotion(args: ApproveInput, ctx: ToolContext) -> Approval:
    """Approve one commit's deploy plan into an environment that requires approval; the approval
    expires after the environment's approval_expires and holds for this commit and plan only."""
    config = ctx.repo_config(args.repository)
    env = config.environment(args.environment)
    if not env.requires_approval:
        raise ToolError(
            f"{env.name} does not require approval (requires_approval in the config)",
            tool="approve_promotion",
        )
    now = datetime.now(UTC)
    approval = Approval(
        environment=env.name,
        commit_sha=args.commit_sha,
        plan_digest=_digest(config, env, args),
        approved_by=args.approved_by or ctx.actor or "unknown",
        approved_at=now,
        expires_at=now + timedelta(seconds=parse_duration(env.approval_expires)),
    )
    cluster = ctx.require_cluster("approve_promotion", env)
    _, current = read_approval(ctx, env)
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": APPROVAL,
            "namespace": _namespace(env),
            "labels": {"app.kubernetes.io/managed-by": "pipeline-bot"},
        },
        "data": {"approval": approval.model_dump_json()},
    }
    cluster.ensure_namespace(_namespace(env))
    if current is None:
        done = cluster.create(body)
    else:
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        done = cluster.replace(body)
    if done is None:
        raise ToolError(
            "someone changed the approval at the same time: look at it and approve again",
            tool="approve_promotion",
        )
    return approval


def _already_deployed(
    ctx: ToolContext, config: RepoConfig, env: Environment, args: PromoteInput
) -> bool:
    """Every service's last successful deploy here is this commit with its image."""
    plan = plan_for(config, env.name, args.max_parallel)
    images = plan_images(config, plan, args.image_tag, args.images)
    store = ctx.require_store("promote_plan", config)
    for name, image in images.items():
        last = next(iter(store.history(env.name, name, limit=1, status="succeeded")), None)
        if last is None or last.image != image or last.commit_sha != args.commit_sha:
            return False
    return True


def promote_plan(args: PromoteInput, ctx: ToolContext) -> PromotionResult:
    """Take one commit's deploy plan through the environments in promotion order: each
    environment's plan must succeed before the next starts, and the promotion stops before an
    environment that requires approval until a person approves this commit and plan
    (approve_promotion). Environments where this commit already runs are skipped. Changes
    the cluster."""
    config = ctx.repo_config(args.repository)
    envs = _environments(config, args.to)
    steps: list[EnvironmentStep] = []

    def stop(status: Literal["failed", "waiting_for_approval"], message: str) -> PromotionResult:
        rest = [EnvironmentStep(environment=e.name, status="not_reached") for e in envs]
        return PromotionResult(
            status=status,
            message=message,
            commit_sha=args.commit_sha,
            environments=steps + rest[len(steps) :],
        )

    for env in envs:
        digest = _digest(config, env, args)
        if _already_deployed(ctx, config, env, args):
            steps.append(
                EnvironmentStep(
                    environment=env.name,
                    status="succeeded",
                    message="this commit already runs here",
                    plan_digest=digest,
                )
            )
            continue
        if env.requires_approval:
            approval, _ = read_approval(ctx, env)
            check = check_approval(
                approval,
                environment=env.name,
                commit_sha=args.commit_sha,
                digest=digest,
                now=datetime.now(UTC),
            )
            if check.verdict != "approved":
                steps.append(
                    EnvironmentStep(
                        environment=env.name,
                        status="waiting_for_approval",
                        message=check.reason,
                        plan_digest=digest,
                    )
                )
                return stop("waiting_for_approval", check.reason)
        result = deploy_plan(
            DeployPlanInput(
                environment=env.name,
                image_tag=args.image_tag,
                images=args.images,
                strategy=args.strategy,
                repository=args.repository,
                max_parallel=args.max_parallel,
                timeout_seconds=args.timeout_seconds,
                commit_sha=args.commit_sha,
            ),
            ctx,
        )
        ok = result.status == "succeeded"
        steps.append(
            EnvironmentStep(
                environment=env.name,
                status="succeeded" if ok else "failed",
                message=result.message,
                plan_id=result.plan_id,
                plan_digest=digest,
            )
        )
        if not ok:
            return stop("failed", f"{env.name}: {result.message}")
    return PromotionResult(
        status="succeeded",
        message=f"{args.commit_sha[:12]} runs in {', '.join(e.name for e in envs)}",
        commit_sha=args.commit_sha,
        environments=steps,
    )


def register(registry: ToolRegistry) -> None:
    registry.tool(
        name="promote_plan",
        title="Promote a plan through the environments",
        input_model=PromoteInput,
        output_model=PromotionResult,
        annotations=CHANGES_CLUSTER,
    )(promote_plan)
    registry.tool(
        name="approve_promotion",
        title="Approve a promotion",
        input_model=ApproveInput,
        output_model=Approval,
        annotations=CHANGES_CLUSTER,
    )(approve_promotion)
