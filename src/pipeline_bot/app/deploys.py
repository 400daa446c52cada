"""One deploy of a commit from the App, mirrored as a GitHub deployment with its statuses
(which name the image). A deploy that does not succeed fails its delivery; `retries.py` says
what a retry of it may repeat."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from pipeline_bot.app.context import EventContext
from pipeline_bot.app.retries import began, latest_deploy, record_failure, repeat_refusal
from pipeline_bot.core.manifests import image_reference
from pipeline_bot.core.plan import PlanResult
from pipeline_bot.errors import PipelineBotError
from pipeline_bot.models import DeployResult
from pipeline_bot.repo_config import Environment, RepoConfig


def deploy_commit(
    ctx: EventContext,
    config: RepoConfig,
    env: Environment,
    *,
    app: str,
    sha: str,
    base: str | None,
    strategy: str,
    image: str | None,
    actor: str,
    pull_request: int | None = None,
) -> DeployResult:
    """Deploy `sha` of the repository (image `image`, or the service's image tagged with the
    commit SHA) to `env`; GitHub's environment view follows through a deployment and statuses.
    A deploy that began and did not succeed is recorded in the delivery's state and fails it."""
    gh, repo = ctx.gh, ctx.repo
    tag = image or sha
    before = latest_deploy(ctx, env.name, app)
    digest = _digest(ctx, config, app, tag)  # a missing tag stops here, before anything
    github_id = _github_deployment(
        ctx, config, env, app, sha, strategy, tag, actor, pull_request, digest
    )
    gh.deployment_status(repo, github_id, "in_progress", f"Deploying {app} to {env.name}")
    source = None
    if strategy == "auto":  # the strategy fits the change: from `base`, else the commit's parent
        base = base or gh.parent(repo, sha)
        source = gh.compare(repo, base, sha)[0] if base else None
    try:
        result = ctx.services.registry.call(
            "deploy_application",
            {
                "app_name": app,
                "environment": env.name,
                "image_tag": tag,
                "strategy": strategy,
                "repository": repo,
                "requested_by": f"@{actor}",
                "config": {"commit_sha": sha},
            },
            ctx.tools(config, source),
        )
    except PipelineBotError as exc:
        started = began(ctx, env.name, app, before, sha, exc)
        gh.deployment_status(
            repo, github_id, "error" if started is None else "failure", exc.message
        )
        if started is not None:  # the engine had begun: the environment may be half-changed
            record_failure(ctx, env.name, app, started, rolled_back=False, why=exc.message)
        raise
    if not isinstance(result, DeployResult):  # the registry checked it; this narrows the type
        raise TypeError("expected DeployResult")
    if result.status in ("succeeded", "paused"):
        ctx.save(**{f"acted:{env.name}:{app}": result.deploy_id, "acted": result.deploy_id})
    else:
        rolled_back = result.rolled_back or result.status == "rolled_back"
        record_failure(
            ctx, env.name, app, result.deploy_id, rolled_back=rolled_back, why=result.message
        )
    state = {"succeeded": "success", "paused": "in_progress"}.get(result.status, "failure")
    gh.deployment_status(repo, github_id, state, result.message, auto_inactive=False)
    if result.status == "succeeded":
        previous = ctx.services.deliveries.latest_github_deployment(repo, env.name)
        if previous is not None and previous != github_id:
            gh.deployment_status(repo, previous, "inactive", f"Replaced by deployment {github_id}")
        ctx.services.deliveries.remember_github_deployment(
            result.deploy_id, repo, env.name, github_id
        )
    return result


def _github_deployment(
    ctx: EventContext,
    config: RepoConfig,
    env: Environment,
    app: str,
    sha: str,
    strategy: str,
    tag: str,
    actor: str,
    pull_request: int | None,
    digest: str | None = None,
) -> int:
    """This delivery's GitHub deployment for `app` in `env`, created the first time. It names
    the image (and the digest its tag named), so deploys of one commit with different tags tell
    apart."""
    key = f"github_deployment:{env.name}:{app}"
    github_id = ctx.state.get(key)
    if github_id is not None:
        return int(github_id)
    image = image_reference(config, app, tag) or tag  # a bare tag, when it names no image
    payload: dict[str, Any] = {
        "app": app,
        "strategy": strategy,
        "image": image,
        "tag": image_tag(image),
    }
    if digest is not None:
        payload["digest"] = digest
    if pull_request is not None:
        payload["pull_request"] = pull_request
    github_id = ctx.gh.create_deployment(
        ctx.repo,
        {
            "ref": sha,
            "environment": env.name,
            "auto_merge": False,
            "required_contexts": [],
            "production_environment": env.is_production,
            "description": f"{app} {image} by @{actor}"[:140],
            "payload": payload,
        },
    )
    ctx.save(**{key: github_id})
    return int(github_id)


def _digest(ctx: EventContext, config: RepoConfig, app: str, tag: str) -> str | None:
    """The digest the deploy will run (the deploy tool pins the same tag again), or None when
    images are not pinned here."""
    images = ctx.services.images
    image = image_reference(config, app, tag)
    if images is None or not ctx.services.pin_digest or image is None or "@" in image:
        return None
    return images.resolve(image).digest


def image_tag(image: str) -> str:
    """`repo:tag` -> tag, `repo@sha256:...` -> the digest, a bare tag -> itself."""
    if "@" in image:
        return image.split("@", 1)[1]
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else last


def deploy_plan_commit(
    ctx: EventContext,
    config: RepoConfig,
    env: Environment,
    *,
    sha: str,
    actor: str,
    pull_request: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> PlanResult:
    """Deploy every service of the config to `env` as its deploy plan (the registry's
    deploy_plan: dependency order, independent services in parallel, a failed service rolled
    back and its dependents skipped, the others kept), each service's image tagged with `sha`.
    Each service gets its GitHub deployment, whose status follows the service's outcome; a
    retried delivery reports the plan it ran instead of running it again."""
    done = ctx.state.get(f"plan:{env.name}")
    if done is not None:
        return PlanResult.model_validate(done)
    gh, repo = ctx.gh, ctx.repo
    # every image's digest first: a missing tag stops the plan before anything, GitHub included
    digests = {s.name: _digest(ctx, config, s.name, sha) for s in config.services}
    ids = {
        name: _github_deployment(
            ctx, config, env, name, sha, env.strategy, sha, actor, pull_request, digest
        )
        for name, digest in digests.items()
    }
    for name, github_id in ids.items():
        gh.deployment_status(repo, github_id, "in_progress", f"Deploy plan: {name} to {env.name}")
    try:
        result = ctx.services.registry.call(
            "deploy_plan",
            {
                "environment": env.name,
                "image_tag": sha,
                "strategy": env.strategy,
                "commit_sha": sha,
                "requested_by": f"@{actor}",
            },
            dataclasses.replace(ctx.tools(config), progress=progress),
        )
    except PipelineBotError as exc:  # stopped before any service began (images, lock, config)
        for github_id in ids.values():
            gh.deployment_status(repo, github_id, "error", exc.message)
        raise
    if not isinstance(result, PlanResult):  # the registry checked it; this narrows the type
        raise TypeError("expected PlanResult")
    state = {"succeeded": "success", "paused": "in_progress", "skipped": "error"}
    for o in result.services:
        why = o.message or o.status
        gh.deployment_status(repo, ids[o.name], state.get(o.status, "failure"), why)
        if o.deploy_id and o.status == "succeeded":
            ctx.save(**{f"acted:{env.name}:{o.name}": o.deploy_id, "acted": o.deploy_id})
        elif o.deploy_id and o.status in ("failed", "rolled_back"):
            rolled_back = o.status == "rolled_back"
            record_failure(ctx, env.name, o.name, o.deploy_id, rolled_back=rolled_back, why=why)
    ctx.save(**{f"plan:{env.name}": result.model_dump(mode="json")})
    return result


def deploy_through(
    ctx: EventContext,
    config: RepoConfig,
    envs: list[Environment],
    *,
    sha: str,
    base: str | None,
    actor: str,
    apps: list[str] | None = None,
) -> str:
    """Deploy every app to each environment in turn, stopping at the first that does not
    succeed; a retried delivery skips what it already did. A config with several services
    (and no single app asked for) deploys each environment as its deploy plan."""
    if apps is None and len(config.services) > 1:
        return _plans_through(ctx, config, envs, sha=sha, actor=actor)
    apps = apps or [s.name for s in config.services] or [ctx.repo.rsplit("/", 1)[-1].lower()]
    outcomes: list[str] = []
    for env in envs:
        for app in apps:
            done = ctx.state.get(f"acted:{env.name}:{app}")
            if done is not None:
                outcomes.append(f"{app}@{env.name}: already done by this delivery ({done})")
                continue
            refusal = repeat_refusal(ctx, env.name, app)
            if refusal is not None:
                ctx.fail(refusal)
                return _stopped(outcomes, f"{app}@{env.name}: {refusal}")
            try:
                result = deploy_commit(
                    ctx,
                    config,
                    env,
                    app=app,
                    sha=sha,
                    base=base,
                    strategy=env.strategy,
                    image=None,
                    actor=actor,
                )
            except PipelineBotError as exc:
                if ctx.failure is None:
                    raise  # nothing was applied: the queue retries the delivery with backoff
                return _stopped(outcomes, f"{app}@{env.name}: {exc.message}")
            if result.status == "succeeded":
                outcomes.append(f"{app}@{env.name}: succeeded")
                continue
            return _stopped(outcomes, f"{app}@{env.name}: {result.status}: {result.message}")
    return "; ".join(outcomes)


def _plans_through(
    ctx: EventContext, config: RepoConfig, envs: list[Environment], *, sha: str, actor: str
) -> str:
    outcomes: list[str] = []
    for env in envs:
        try:
            result = deploy_plan_commit(ctx, config, env, sha=sha, actor=actor)
        except PipelineBotError as exc:
            if ctx.failure is None and not outcomes:
                raise  # nothing was applied: the queue retries the delivery with backoff
            return _stopped(outcomes, f"plan@{env.name}: {exc.message}")
        line = f"plan@{env.name}: {result.status}: {result.message}"
        if result.status != "succeeded":
            return _stopped(outcomes, line)
        outcomes.append(line)
    return "; ".join(outcomes)


def _stopped(outcomes: list[str], last: str) -> str:
    return "; ".join([*outcomes, last]) + " (later environments skipped)"
