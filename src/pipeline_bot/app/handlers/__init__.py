"""One module per webhook event; `HANDLERS` maps an event name to its module's `handle`."""

from __future__ import annotations

from collections.abc import Callable

from pipeline_bot.app.context import EventContext
from pipeline_bot.app.handlers import (
    api_jobs,
    check_run,
    installation,
    issue_comment,
    pull_request,
    push,
)

Handler = Callable[[EventContext], str]

# event -> (actions handled, or None for all) and the handler
HANDLERS: dict[str, tuple[frozenset[str] | None, Handler]] = {
    "pull_request": (pull_request.ACTIONS, pull_request.handle),
    "check_run": (check_run.ACTIONS, check_run.handle),
    "issue_comment": (issue_comment.ACTIONS, issue_comment.handle),
    "push": (None, push.handle),
    "installation": (None, installation.handle),
    "installation_repositories": (None, installation.handle),
    "ping": (None, installation.handle_ping),
    # jobs from the REST API share the queue; GitHub never sends these names (no dots)
    "api.deploy": (None, api_jobs.handle_deploy),
    "api.pipeline": (None, api_jobs.handle_pipeline),
    "api.workflow": (None, api_jobs.handle_workflow),
}


def handled(event: str, action: str | None) -> bool:
    entry = HANDLERS.get(event)
    if entry is None:
        return False
    actions, _ = entry
    return actions is None or action in actions
