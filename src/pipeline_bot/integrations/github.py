"""GitHub's REST API through githubkit: workflow runs (listed, dispatched, followed) and the
compare API.

Errors carry GitHub's status and message; the token is never part of one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from githubkit import GitHub
from githubkit.exception import GitHubException, RequestFailed
from pydantic import BaseModel

from pipeline_bot.core.diffparse import STATUS_BY_LETTER, RawEntry, marker_positions, scan_file
from pipeline_bot.core.pipeline import Dispatched, PipelineRun, run_state
from pipeline_bot.errors import IntegrationError
from pipeline_bot.integrations.ports import ChangeSource
from pipeline_bot.models import ChangeSet, Commit, FileChange

T = TypeVar("T")


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
    """WorkflowsPort over a token (the CLI, the Action, MCP) or a client of the App's own
    installation (`client`)."""

    def __init__(
        self, token: str | None = None, *, api_url: str | None = None, client: Any = None
    ) -> None:
        if client is not None:
            self._gh: Any = client
        elif token is None:
            raise IntegrationError("GitHub's API needs a token", service="github")
        else:
            self._gh = GitHub(token, base_url=api_url) if api_url else GitHub(token)

    def recent_runs(self, repository: str, *, limit: int = 10) -> list[WorkflowRun]:
        owner, name = _split(repository)
        data = _call(
            lambda: self._gh.rest.actions.list_workflow_runs_for_repo(owner, name, per_page=limit),
            f"for the workflow runs of {repository}",
        )
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

    # ---------------------------------------------------------------- dispatch and follow

    def dispatch(
        self, repository: str, workflow: str, ref: str, inputs: dict[str, str]
    ) -> Dispatched:
        """Start `workflow` on `ref` (workflow_dispatch), asking GitHub for the run's details;
        where GitHub does not give them (GitHub Enterprise Server answers 204, or refuses the
        key), the dispatch's time (GitHub's Date header) and the ref's head identify the run."""
        owner, name = _split(repository)
        sha = self._head(owner, name, ref)
        url = f"/repos/{owner}/{name}/actions/workflows/{quote(workflow, safe='')}/dispatches"
        body: dict[str, Any] = {"ref": ref, **({"inputs": inputs} if inputs else {})}
        what = f"dispatching {workflow} on {ref} of {repository}"
        try:
            response = send(
                lambda: self._gh.request("POST", url, json={**body, "return_run_details": True}),
                what,
            )
        except IntegrationError as exc:
            if exc.status != 422 or "return_run_details" not in exc.message:
                raise
            response = send(lambda: self._gh.request("POST", url, json=body), what)
        at = _date(response.headers.get("date"))
        details: Any = {}
        if response.status_code == 200 and response.content:
            with contextlib.suppress(ValueError):
                details = response.json()
        run_id = details.get("workflow_run_id") if isinstance(details, dict) else None
        return Dispatched(
            run_id=int(run_id) if run_id else None, dispatched_at=at, sha=sha, ref=ref
        )

    def _head(self, owner: str, name: str, ref: str) -> str:
        path = f"/repos/{owner}/{name}/commits/{quote(ref, safe='')}"
        data = _json(send(lambda: self._gh.request("GET", path), f"for the head of {ref}"))
        sha = data.get("sha")
        if not isinstance(sha, str):
            raise IntegrationError(f"GitHub gave no commit for {ref}", service="github")
        return sha

    def runs(
        self,
        repository: str,
        *,
        workflow: str | None = None,
        branch: str | None = None,
        event: str | None = None,
        limit: int = 20,
    ) -> list[dict[str, Any]]:
        """Workflow runs, newest first, as GitHub's JSON."""
        owner, name = _split(repository)
        params: dict[str, Any] = {"per_page": min(max(limit, 1), 100)}
        if branch:
            params["branch"] = branch
        if event:
            params["event"] = event
        path = f"/repos/{owner}/{name}/actions"
        path += f"/workflows/{quote(workflow, safe='')}/runs" if workflow else "/runs"
        data = _json(send(lambda: self._gh.request("GET", path, params=params), "for runs"))
        return list(data.get("workflow_runs") or [])[:limit]

    def run(self, repository: str, run_id: int) -> PipelineRun:
        """A run with its jobs and their steps (the latest attempt's)."""
        owner, name = _split(repository)
        base = f"/repos/{owner}/{name}/actions/runs/{int(run_id)}"
        what = f"for workflow run {run_id} of {repository}"
        run = _json(send(lambda: self._gh.request("GET", base), what))
        jobs = _json(
            send(lambda: self._gh.request("GET", f"{base}/jobs", params={"per_page": 100}), what)
        )
        return run_state(repository, run, list(jobs.get("jobs") or []))


def _split(repository: str) -> tuple[str, str]:
    owner, _, name = repository.partition("/")
    if not owner or not name or "/" in name:
        raise IntegrationError(f"{repository!r} is not owner/name", service="github")
    return owner, name


def _json(response: Any) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise IntegrationError("GitHub answered with something that is not JSON", service="github")
    return data


def _date(header: str | None) -> datetime:
    """GitHub's clock (the Date header), so a run's created_at compares with the same clock."""
    if header:
        with contextlib.suppress(TypeError, ValueError):
            return parsedate_to_datetime(header).astimezone(UTC)
    return datetime.now(UTC)


def send(request: Callable[[], T], what: str) -> T:
    """One GitHub request; its failure as IntegrationError with GitHub's status and message
    (every GitHub call of pipeline-bot goes through here)."""
    try:
        return request()
    except RequestFailed as exc:
        status = exc.response.status_code
        try:
            body = exc.response.json() if exc.response.content else {}
        except ValueError:
            body = {}
        message = body.get("message", "no message") if isinstance(body, dict) else "no message"
        raise IntegrationError(
            f"GitHub answered {status} {what}: {message}", service="github", status=status
        ) from None
    except GitHubException as exc:
        raise IntegrationError(
            f"GitHub could not be reached {what}: {type(exc).__name__}", service="github"
        ) from None


def _call(request: Callable[[], Any], what: str) -> dict[str, Any]:
    """One typed GitHub request: its validated data as JSON."""
    data: dict[str, Any] = send(request, what).parsed_data.model_dump(mode="json")
    return data


_STATUS_LETTER = {
    "added": "A",
    "removed": "D",
    "modified": "M",
    "renamed": "R",
    "copied": "C",
    "changed": "T",
    "unchanged": "M",
}


class GitHubCompareSource:
    """SourcePort over GitHub's compare API, for a shallow clone that cannot fetch its base.

    GitHub gives each file's patch (without headers) and status; the same parser as for git turns
    them into FileChange models. No history comes with it, so history metrics are unavailable.
    """

    def __init__(
        self, token: str, repository: str, root: str, *, api_url: str | None = None
    ) -> None:
        self._gh = GitHub(token, base_url=api_url) if api_url else GitHub(token)
        self.repository = repository
        self.root = root

    def read_change(self, repository: str, base: str | None, head: str) -> ChangeSource:
        if not base:
            raise IntegrationError("the compare API needs a base commit", service="github")
        owner, _, name = self.repository.partition("/")
        data = _call(
            lambda: self._gh.rest.repos.compare_commits(owner, name, f"{base}...{head}"),
            f"comparing {base[:12]}...{head[:12]}",
        )
        commits = [
            Commit(
                sha=c["sha"],
                author=(c["commit"].get("author") or {}).get("name", ""),
                email=(c["commit"].get("author") or {}).get("email", ""),
                timestamp=(c["commit"].get("author") or {}).get("date") or "1970-01-01T00:00:00Z",
                message=c["commit"]["message"],
            )
            for c in reversed(data.get("commits") or [])
        ]
        entries = data.get("files") or []
        files = [_file_change(f) for f in entries]
        changes = ChangeSet(
            repository=repository, base=base, head=head, commits=commits, files=files
        )
        patches = {f["filename"]: f["patch"] for f in entries if f.get("patch")}
        return ChangeSource(root=Path(self.root), changes=changes, patches=patches)

    def excerpts(self, repository: str, base: str, head: str, paths: list[str]) -> dict[str, str]:
        """The AI review reads the patches the compare API returned (ChangeSource.patches)."""
        return {}


def _file_change(f: dict[str, Any]) -> FileChange:
    letter = _STATUS_LETTER.get(f.get("status", "modified"), "M")
    old = f.get("previous_filename")
    entry = RawEntry(
        STATUS_BY_LETTER[letter], f["filename"], old if letter in "RC" else None, "100644", "100644"
    )
    patch = f.get("patch")
    if not patch:  # a binary file, or one too large for GitHub to include a patch for
        return FileChange(
            path=entry.path,
            old_path=entry.old_path,
            status=entry.status,
            additions=f.get("additions", 0),
            deletions=f.get("deletions", 0),
            binary=f.get("changes", 0) == 0 and f.get("status") != "renamed",
        )
    text = bytearray(b"diff --git a b\n" + patch.encode("utf-8", "replace"))
    return scan_file(entry, text, 0, len(text), marker_positions(text, len(text)))
