"""One deploy of a commit from the App, mirrored as a GitHub deployment with its statuses."""

from __future__ import annotations

from typing import Any

from pipeline_bot.app.context import EventContext
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
    commit SHA) to `env`; GitHub's environment view follows through a deployment and statuses."""
    gh, repo = ctx.gh, ctx.repo
    key = f"github_deployment:{env.name}:{app}"
    github_id = ctx.state.get(key)
    if github_id is None:
        payload: dict[str, Any] = {"app": app, "strategy": strategy}
        if pull_request is not None:
            payload["pull_request"] = pull_request
        github_id = gh.create_deployment(
            repo,
            {
                "ref": sha,
                "environment": env.name,
                "auto_merge": False,
                "required_contexts": [],
                "production_environment": env.is_production,
                "description": f"{app} by @{actor} via pipeline-bot"[:140],
                "payload": payload,
            },
        )
        ctx.save(**{key: github_id})
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
                "image_tag": image or sha,
                "strategy": strategy,
                "repository": repo,
                "requested_by": f"@{actor}",
                "config": {"commit_sha": sha},
            },
            ctx.tools(config, source),
        )
    except PipelineBotError as exc:
        gh.deployment_status(repo, github_id, "error", exc.message)
        raise
    if not isinstance(result, DeployResult):  # the registry checked it; this narrows the type
        raise TypeError("expected DeployResult")
    ctx.save(**{f"acted:{env.name}:{app}": result.deploy_id, "acted": result.deploy_id})
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
    succeed; a retried delivery skips what it already did."""
    apps = apps or [s.name for s in config.services] or [ctx.repo.rsplit("/", 1)[-1].lower()]
    outcomes = []
    for env in envs:
        for app in apps:
            done = ctx.state.get(f"acted:{env.name}:{app}")
            if done is not None:
                outcomes.append(f"{app}@{env.name}: already done by this delivery ({done})")
                continue
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
                ctx.save(**{f"acted:{env.name}:{app}": "error"})
                return "; ".join([*outcomes, f"{app}@{env.name}: {exc.message}"]) + (
                    " (later environments skipped)"
                )
            outcomes.append(f"{app}@{env.name}: {result.status}")
            if result.status != "succeeded":
                return "; ".join(outcomes) + " (later environments skipped)"
    return "; ".join(outcomes)
