"""GitHub's REST API through githubkit. So far: recent workflow runs of a repository.

Errors carry GitHub's status and message; the token is never part of one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from githubkit import GitHub
from githubkit.exception import GitHubException, RequestFailed
from pydantic import BaseModel

from pipeline_bot.errors import IntegrationError


class WorkflowRun(BaseModel):
    id: int
    name: str | None
    status: str | None
    conclusion: str | None
    branch: str | None
    sha: str
    event: str
    created_at: datetime
    url: str


class GitHubActions:
    def __init__(self, token: str, *, api_url: str | None = None) -> None:
        self._gh = GitHub(token, base_url=api_url) if api_url else GitHub(token)

    def recent_runs(self, repository: str, *, limit: int = 10) -> list[WorkflowRun]:
        owner, _, name = repository.partition("/")
        if not owner or not name:
            raise IntegrationError(f"{repository!r} is not owner/name", service="github")
        try:
            response = self._gh.rest.actions.list_workflow_runs_for_repo(
                owner, name, per_page=limit
            )
        except RequestFailed as exc:
            message = _message(exc.response.json() if exc.response.content else {})
            raise IntegrationError(
                f"GitHub answered {exc.response.status_code} for the workflow "
                f"runs of {repository}: {message}",
                service="github",
            ) from None
        except GitHubException as exc:
            raise IntegrationError(
                f"GitHub could not be reached: {type(exc).__name__}", service="github"
            ) from None
        data: dict[str, Any] = response.parsed_data.model_dump(mode="json")
        return [
            WorkflowRun(
                id=run["id"],
                name=run.get("name"),
                status=run.get("status"),
                conclusion=run.get("conclusion"),
                branch=run.get("head_branch"),
                sha=run["head_sha"],
                event=run["event"],
                created_at=run["created_at"],
                url=run["html_url"],
            )
            for run in data.get("workflow_runs", [])[:limit]
        ]


def _message(body: Any) -> str:
    return str(body.get("message", "no message")) if isinstance(body, dict) else "no message"
