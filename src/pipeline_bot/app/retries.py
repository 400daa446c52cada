"""What a retry of a delivery whose deploy failed may repeat.

A deploy the App makes that does not succeed fails its delivery (`GET /deliveries?status=failed`),
and what it left behind decides what `POST /deliveries/{id}/retry` may do:

- nothing was applied (GitHub or the cluster unreachable, the environment locked): the handler
  raises, and the queue retries it with backoff like any handler failure;
- the rollout ran and was rolled back: the environment serves its previous version. The delivery
  fails at once (the queue does not push a failing version at the environment again on its own);
  a retry deploys again;
- the rollout failed and was not rolled back (rollback off or failed too, or an error part-way):
  the environment is as that deploy left it, and a retry does not deploy on top of it until
  something else has been deployed there (`/rollback`, or a fix).

A re-run that is not a retry (a process killed after the deploy failed) repeats nothing.
"""

from __future__ import annotations

from pipeline_bot.app.context import EventContext
from pipeline_bot.errors import LockedError, PipelineBotError

NOT_RETRIED = (
    "deploy {deploy} failed; a failed deploy is repeated only by a retry "
    "(POST /deliveries/{delivery}/retry)"
)
NOT_ROLLED_BACK = (
    "deploy {deploy} failed and was not rolled back, so {env} is as it left it; not deployed "
    "again on top of that: roll back first (`/rollback {env}`) or deploy another version, "
    "then retry"
)


def latest_deploy(ctx: EventContext, environment: str, app: str) -> str | None:
    """The id of the newest deploy record of `app` in `environment`."""
    latest = next(iter(ctx.deploy_store().history(environment, app, limit=1)), None)
    return latest.id if latest is not None else None


def began(
    ctx: EventContext,
    environment: str,
    app: str,
    before: str | None,
    sha: str,
    exc: PipelineBotError,
) -> str | None:
    """The deploy the engine recorded before `exc` stopped it (it writes a record before it
    applies anything), or None when it had not begun."""
    if isinstance(exc, LockedError):  # raised before the record is written
        return None
    try:
        latest = next(iter(ctx.deploy_store().history(environment, app, limit=1)), None)
    except PipelineBotError:  # the store is unreachable: the engine could not record either
        return None
    if latest is None or latest.id == before or latest.commit_sha != sha:
        return None
    return latest.id


def record_failure(
    ctx: EventContext, environment: str, app: str, deploy: str, *, rolled_back: bool, why: str
) -> None:
    ctx.save(
        **{
            f"failed:{environment}:{app}": {
                "deploy": deploy,
                "rolled_back": rolled_back,
                "retried": int(ctx.state.get("retried", 0)),
            }
        }
    )
    ctx.fail(why)


def repeat_refusal(ctx: EventContext, environment: str, app: str) -> str | None:
    """Why a deploy of `app` to `environment` that failed earlier in this delivery must not run
    again now; None when there was none or it may (a retry, and the environment was rolled back
    or has moved on since)."""
    key = f"failed:{environment}:{app}"
    failure = ctx.state.get(key)
    if failure is None:
        return None
    deploy = str(failure["deploy"])
    if int(failure.get("retried", 0)) == int(ctx.state.get("retried", 0)):
        return NOT_RETRIED.format(deploy=deploy, delivery=ctx.delivery.id)
    if not failure.get("rolled_back") and latest_deploy(ctx, environment, app) == deploy:
        return NOT_ROLLED_BACK.format(deploy=deploy, env=environment)
    earlier = [*ctx.state.get("failed_deploys", []), deploy]
    del ctx.state[key]
    ctx.save(failed_deploys=earlier)
    return None
