"""Slash-commands (and check run buttons) carried out: authorise, fix the head SHA, act, report.

The decisions are the core's (`core/commands.py` parses, `core/authz.py` authorises); this module
fetches the facts they need from GitHub, calls the tools, and writes the one status comment.
Progress is saved in the delivery's row, so a retried delivery never acts twice. A deploy that
fails is answered, then fails its delivery (`retries.py` says what a retry may repeat).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pipeline_bot.app import replies
from pipeline_bot.app.checks import analyse_pull_request
from pipeline_bot.app.context import STATUS_MARKER, EventContext
from pipeline_bot.app.deploys import deploy_commit, deploy_plan_commit
from pipeline_bot.app.retries import repeat_refusal
from pipeline_bot.core.authz import Requester, authorize
from pipeline_bot.core.checkrun import SUMMARY_LIMIT
from pipeline_bot.core.commands import HELP, Command, CommandSyntaxError
from pipeline_bot.core.escape import md_cell, md_code, md_text
from pipeline_bot.core.manifests import AppChoiceError, default_app
from pipeline_bot.core.plan import MAX_PARALLEL_DEFAULT
from pipeline_bot.core.plan_render import result_markdown
from pipeline_bot.core.promotion import Approval
from pipeline_bot.errors import ConfigError, LockedError, PipelineBotError
from pipeline_bot.models import AIReview, DeploymentStatus, DeployResult
from pipeline_bot.repo_config import Environment, RepoConfig
from pipeline_bot.tools.plans import plan_for
from pipeline_bot.tools.promotion import deploy_approval

LOCK_TTL = 7 * 24 * 3600.0  # a /lock holds for a week unless /unlock ends it sooner
PEOPLE_LISTED = 250  # GitHub lists a pull request's first 250 commits, no more


def run_command(
    ctx: EventContext,
    command: Command | None,
    *,
    number: int,
    actor: str,
    comment_id: int | None = None,
    syntax_error: CommandSyntaxError | None = None,
    sha: str | None = None,
) -> str:
    """`sha`: the commit the command acts on (a check run's button: the check run's head; a
    deploy of it is refused once the pull request's head is another); None: the pull request's
    head."""
    if comment_id is not None and not ctx.state.get("eyes"):
        ctx.gh.react(ctx.repo, comment_id, "eyes")
        ctx.save(eyes=True)
    try:
        ok, text = _outcome(ctx, command, number, actor, syntax_error, sha)
    except CommandSyntaxError as exc:  # e.g. no --app where the repository has several services
        ok, text = False, replies.syntax(actor, str(exc))
    except PipelineBotError as exc:
        ok, text = False, replies.failed(actor, command, exc.message)
    _report(ctx, number, text)
    if comment_id is not None and not ctx.state.get("reacted"):
        ctx.gh.react(ctx.repo, comment_id, "rocket" if ok else "confused")
        ctx.save(reacted=True)
    name = command.name if command else "unknown"
    return f"/{name} by @{actor}: {'done' if ok else 'refused or failed'}"


def _outcome(
    ctx: EventContext,
    command: Command | None,
    number: int,
    actor: str,
    syntax_error: CommandSyntaxError | None,
    sha: str | None = None,
) -> tuple[bool, str]:
    if syntax_error is not None or command is None:
        return False, replies.syntax(actor, str(syntax_error))
    if command.name == "help":
        return True, f"pipeline-bot commands:\n{HELP}"
    try:
        config = ctx.config()
    except ConfigError as exc:
        return False, replies.config_error(exc)
    env = config.environment(command.environment) if command.environment else None
    pr = ctx.gh.pull_request(ctx.repo, number)
    head_sha = str(ctx.state.get("accepted_sha") or sha or pr["head"]["sha"])
    who = _requester(ctx, env, actor, pr, number, command, head_sha)
    deployed_to = _deployed_to(ctx, env, head_sha) if command.name == "deploy" else set()
    decision = authorize(command, env, who, deployed_to=deployed_to)
    if decision.allowed and command.name == "deploy" and env is not None and env.requires_approval:
        # read from the cluster only for someone otherwise allowed to deploy
        check = deploy_approval(ctx.tools(config), config, env, head_sha, command.image or head_sha)
        if check.verdict != "approved":
            decision = authorize(
                command, env, who, deployed_to=deployed_to, unapproved=check.reason
            )
    if not decision.allowed:
        return False, replies.refused(actor, command, decision.reason)
    if "accepted_sha" not in ctx.state:
        ctx.save(accepted_sha=head_sha)
    if command.name == "analyze":
        analyse_pull_request(
            ctx,
            number=number,
            base_sha=pr["base"]["sha"],
            head_sha=head_sha,
            changed_files=pr.get("changed_files"),
        )
        return (
            True,
            f"Analysed `{head_sha[:12]}` again: see the check run **pipeline-bot / analysis**.",
        )
    if command.name == "status":
        return True, _status(ctx, config, env)
    if env is None:  # parse_command gives these commands an environment
        raise CommandSyntaxError(f"`/{command.name}` needs an environment.", command.name)
    if command.name == "lock":
        return _lock(ctx, env, actor, command.reason)
    if command.name == "unlock":
        return _unlock(ctx, env, actor)
    if command.name == "approve":
        return _approve(ctx, config, env, command, actor, head_sha)
    if command.name == "deploy":
        return _deploy(ctx, config, env, command, number, actor, pr, head_sha)
    result = ctx.services.registry.call(
        f"{command.name}_deployment",
        {"app_name": _app(config, command, ctx.repo), "environment": env.name},
        ctx.tools(config),
    )
    if not isinstance(result, DeployResult):  # the registry checked it; this narrows the type
        raise TypeError("expected DeployResult")
    return result.status in ("succeeded", "paused"), replies.deploy_result(actor, command, result)


def _requester(
    ctx: EventContext,
    env: Environment | None,
    actor: str,
    pr: dict[str, Any],
    number: int,
    command: Command,
    head_sha: str,
) -> Requester:
    permission = ctx.gh.permission(ctx.repo, actor)
    teams: set[str] = set()
    for team in env.allowed_teams if env else []:
        org, _, slug = team.partition("/")
        if slug and ctx.gh.in_team(org, slug, actor):
            teams.add(team)
    head_repo = ((pr.get("head") or {}).get("repo") or {}).get("full_name")
    wrote: bool | None = False
    if command.name == "approve" and env is not None and env.prevent_self_approval:
        opener = str((pr.get("user") or {}).get("login") or "").lower()
        wrote = actor.lower() == opener or actor.lower() in ctx.gh.pull_request_people(
            ctx.repo, number
        )
        # the people are those of the pull request's commits as GitHub lists them now (its
        # first PEOPLE_LISTED): they vouch for its head only, and only when that is all of them
        unlisted = int(pr.get("commits") or 0) > PEOPLE_LISTED
        moved = head_sha != pr["head"]["sha"] and "approval" not in ctx.state
        if not wrote and (unlisted or moved):
            wrote = None
    return Requester(
        actor, permission, frozenset(teams), from_fork=head_repo != ctx.repo, wrote_change=wrote
    )


def _deployed_to(ctx: EventContext, env: Environment | None, sha: str) -> set[str]:
    done = set()
    for required in env.requires if env else []:
        records = ctx.deploy_store().history(required, limit=50, status="succeeded")
        if any(r.commit_sha == sha for r in records):
            done.add(required)
    return done


def _app(config: RepoConfig, command: Command, repo: str) -> str:
    """The app a command acts on: the rule every front end shares (core.manifests.default_app)."""
    services = [s.name for s in config.services]
    try:
        return default_app(command.app, services, [], repo.rsplit("/", 1)[-1].lower())
    except AppChoiceError as exc:
        raise CommandSyntaxError(f"{exc}: add --app NAME", command.name) from None


def _deploy(
    ctx: EventContext,
    config: RepoConfig,
    env: Environment,
    command: Command,
    number: int,
    actor: str,
    pr: dict[str, Any],
    head_sha: str,
) -> tuple[bool, str]:
    gh, repo = ctx.gh, ctx.repo
    if command.app is None and command.image is None and len(config.services) > 1:
        return _deploy_plan(ctx, config, env, command, number, actor, head_sha)
    if "acted" in ctx.state:  # a retried delivery: the deploy ran; report it, do not repeat it
        record = ctx.deploy_store().get(str(ctx.state["acted"]))
        status = record.status if record else "unknown"
        return status == "succeeded", replies.resumed(actor, command, status)
    app = _app(config, command, repo)
    refusal = repeat_refusal(ctx, env.name, app)  # this delivery's deploy failed before
    if refusal is not None:
        ctx.fail(refusal)
        return False, replies.not_repeated(actor, command, refusal)
    _report(ctx, number, replies.deploying(actor, env.name, app, head_sha))
    current = gh.pull_request(repo, number)["head"]["sha"]
    if current != head_sha:
        return False, replies.head_moved(actor, command, head_sha, current)
    try:
        result = deploy_commit(
            ctx,
            config,
            env,
            app=app,
            sha=head_sha,
            base=pr["base"]["sha"],
            strategy=command.strategy,
            image=command.image,
            actor=actor,
            pull_request=number,
        )
    except LockedError:
        raise  # a refusal the lock's holder explains; the delivery is done
    except PipelineBotError as exc:
        # the user is told it failed; the queue must not deploy later behind that reply
        if ctx.failure is None:
            ctx.fail(exc.message)
        raise
    ok = result.status in ("succeeded", "paused")
    text = replies.deploy_result(actor, command, result)
    if result.rolled_back and ctx.services.llm is not None:
        text += replies.investigation(_investigate(ctx, config, env.name, app))
    return ok, text


def _deploy_plan(
    ctx: EventContext,
    config: RepoConfig,
    env: Environment,
    command: Command,
    number: int,
    actor: str,
    head_sha: str,
) -> tuple[bool, str]:
    """`/deploy ENV` where the config has several services and no --app: the deploy plan, every
    service's image tagged with the head commit; the reply is the plan's graph and table."""
    services = ", ".join(s.name for s in config.services)
    if f"plan:{env.name}" not in ctx.state:
        _report(ctx, number, replies.deploying(actor, env.name, f"plan: {services}", head_sha))
        current = ctx.gh.pull_request(ctx.repo, number)["head"]["sha"]
        if current != head_sha:
            return False, replies.head_moved(actor, command, head_sha, current)
    check = _plan_check_run(ctx, env, head_sha)
    title = f"Deploying the plan to {env.name}"

    def write(text: str) -> None:  # the status comment and the plan's check run, live
        _report(ctx, number, text)
        ctx.gh.update_check_run(
            ctx.repo, check, {"output": {"title": title, "summary": text[:SUMMARY_LIMIT]}}
        )

    live = PlanProgress(
        write,
        f"🚀 @{actor}: deploying the plan at `{head_sha[:12]}` to **{md_text(env.name)}**…",
        [s.name for s in config.services],
    )
    try:
        result = deploy_plan_commit(
            ctx, config, env, sha=head_sha, actor=actor, pull_request=number, progress=live
        )
    except PipelineBotError as exc:
        ctx.gh.update_check_run(
            ctx.repo,
            check,
            {
                "status": "completed",
                "conclusion": "failure",
                "output": {
                    "title": f"The plan to {env.name} did not start",
                    "summary": exc.message,
                },
            },
        )
        if isinstance(exc, LockedError):
            raise
        if ctx.failure is None:
            ctx.fail(exc.message)
        raise
    plan = plan_for(config, env.name, MAX_PARALLEL_DEFAULT)
    ok = result.status == "succeeded"
    report = result_markdown(plan, result)
    ctx.gh.update_check_run(
        ctx.repo,
        check,
        {
            "status": "completed",
            "conclusion": "success" if ok else "failure",
            "output": {"title": f"Deploy plan to {env.name}: {result.status}",
                       "summary": report[:SUMMARY_LIMIT]},
        },
    )  # fmt: skip
    return ok, f"@{actor} {report}"


def _plan_check_run(ctx: EventContext, env: Environment, head_sha: str) -> int:
    """This delivery's "pipeline-bot / deploy plan: ENV" check run on the head, created once."""
    key = f"plan_check_run:{env.name}"
    known = ctx.state.get(key)
    if known is not None:
        return int(known)
    check = ctx.gh.create_check_run(
        ctx.repo,
        {
            "name": f"pipeline-bot / deploy plan: {env.name}"[:100],
            "head_sha": head_sha,
            "status": "in_progress",
            "external_id": ctx.delivery.id,
            "output": {"title": f"Deploying the plan to {env.name}", "summary": "Starting."},
        },
    )
    ctx.save(**{key: check})
    return int(check)


PLAN_PROGRESS_SECONDS = 3.0


class PlanProgress:
    """The status comment while a plan runs: each service's latest line, rewritten at most every
    PLAN_PROGRESS_SECONDS (GitHub's secondary limits frown on rapid edits of one comment)."""

    def __init__(self, write: Callable[[str], None], title: str, services: list[str]) -> None:
        self._write, self._title = write, title
        self._latest = dict.fromkeys(services, "waiting")
        self._last = 0.0

    def __call__(self, message: str) -> None:
        name, _, text = message.partition(": ")
        if name not in self._latest or not text:
            return  # the plan's own lines (its id, stages)
        self._latest[name] = text
        if time.monotonic() - self._last >= PLAN_PROGRESS_SECONDS:
            self._last = time.monotonic()
            self._write(self.render())

    def render(self) -> str:
        rows = [f"| {md_code(n)} | {md_cell(t[:200])} |" for n, t in self._latest.items()]
        return "\n".join([self._title, "", "| service | now |", "|---|---|", *rows])


def _investigate(ctx: EventContext, config: RepoConfig, environment: str, app: str) -> AIReview:
    """After an automatic rollback: the model's likely cause (the registry's investigate_deploy)."""
    try:
        review = ctx.services.registry.call(
            "investigate_deploy", {"app_name": app, "environment": environment}, ctx.tools(config)
        )
    except PipelineBotError as exc:
        return AIReview(status="fallback", error=exc.message)
    if not isinstance(review, AIReview):  # the registry checked it; this narrows the type
        raise TypeError("expected AIReview")
    return review


def _status(ctx: EventContext, config: RepoConfig, env: Environment | None) -> str:
    envs = [env] if env else sorted(config.environments, key=lambda e: e.order)
    apps = [s.name for s in config.services] or [ctx.repo.rsplit("/", 1)[-1].lower()]
    statuses: list[DeploymentStatus] = []
    for e in envs:
        for app in apps:
            status = ctx.services.registry.call(
                "get_deployment_status",
                {"app_name": app, "environment": e.name},
                ctx.tools(config),
            )
            if not isinstance(
                status, DeploymentStatus
            ):  # the registry checked it; this narrows the type
                raise TypeError("expected DeploymentStatus")
            statuses.append(status)
    return replies.status_table(statuses)


def _lock(ctx: EventContext, env: Environment, actor: str, reason: str) -> tuple[bool, str]:
    lock = ctx.deploy_store().acquire(
        env.name, f"@{actor}", reason or f"locked by @{actor}", ttl=LOCK_TTL
    )
    return True, replies.locked(actor, env.name, lock.reason)


def _unlock(ctx: EventContext, env: Environment, actor: str) -> tuple[bool, str]:
    lock = ctx.deploy_store().lock(env.name)
    if lock is None:
        return True, f"@{actor}: `{env.name}` was not locked."
    if not lock.owner.startswith("@"):
        return False, (
            f"@{actor}: `{env.name}` is held by a running deploy ({lock.owner}, {lock.reason}); "
            "it is released when that deploy ends."
        )
    ctx.deploy_store().release(env.name, lock.owner)
    return True, f"@{actor} unlocked `{env.name}` (it was locked by {lock.owner})."


def _approve(
    ctx: EventContext,
    config: RepoConfig,
    env: Environment,
    command: Command,
    actor: str,
    head_sha: str,
) -> tuple[bool, str]:
    """Approve `head_sha`'s deploy plan into `env` through the registry's approve_promotion:
    the plan of the config on the default branch, each service's image tagged with the commit
    (what the App deploys) unless `--image` names the tag. A retried delivery reports the
    approval it made instead of approving again."""
    if "approval" in ctx.state:
        return True, replies.approved(actor, Approval.model_validate(ctx.state["approval"]))
    approval = ctx.services.registry.call(
        "approve_promotion",
        {
            "environment": env.name,
            "image_tag": command.image or head_sha,
            "commit_sha": head_sha,
            "repository": ctx.repo,
            "approved_by": f"@{actor}",
        },
        ctx.tools(config),
    )
    if not isinstance(approval, Approval):  # the registry checked it; this narrows the type
        raise TypeError("expected Approval")
    ctx.save(approval=approval.model_dump(mode="json"))
    return True, replies.approved(actor, approval)


def _report(ctx: EventContext, number: int, text: str) -> None:
    """Write `text` into the PR's one status comment, creating it the first time."""
    gh, repo = ctx.gh, ctx.repo
    key = f"{repo}#{number}"
    body = f"{STATUS_MARKER}\n{text}"
    known = ctx.services.deliveries.status_comment(key)
    if known is None:
        known = gh.find_comment(repo, number, STATUS_MARKER, author=ctx.services.github.bot_login())
    if known is not None and gh.edit_comment(repo, known, body):
        ctx.services.deliveries.set_status_comment(key, known)
        return
    ctx.services.deliveries.set_status_comment(key, gh.comment(repo, number, body))
