"""pipeline-bot as a GitHub App through githubkit: the App's JWT, installation tokens (githubkit
caches each until a minute before it expires), and the calls the App's handlers make.

Every call goes through `_request`, which turns GitHub's errors into IntegrationError with the
status and GitHub's message; no token, key or JWT is ever part of one. An answer over a rate
limit (403/429 with GitHub's headers) is RateLimited, and the installation sends nothing more
until the time GitHub gave (github_limits.py).

Per replica: installation tokens (githubkit's cache, one client per installation) and parsed
configs (by blob SHA, app/context.py) are cached in each process. Both stay correct however many
replicas run: a token is valid wherever it was minted, and a blob SHA names its content.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from datetime import datetime
from typing import Any

from githubkit import AppAuthStrategy, AppInstallationAuthStrategy, GitHub
from githubkit.cache import MemCacheStrategy
from githubkit.exception import RequestFailed

from pipeline_bot.errors import IntegrationError
from pipeline_bot.integrations.github import GitHubActions, _file_change, send
from pipeline_bot.integrations.github_limits import (
    Backoff,
    RateLimited,
    SharedHolds,
    retry_at,
)
from pipeline_bot.integrations.ports import ChangeSource
from pipeline_bot.models import ChangeSet, Commit, FileChange
from pipeline_bot.redaction import redact_data

MEMBERS_PERMISSION = (
    "cannot tell whether @{user} is in team {org}/{team}: the App's installation on {org} lacks "
    "the organization permission Members (read), which `allowed_teams` needs. An owner of {org} "
    "grants it by accepting the App's updated permissions in the installation's settings "
    "(app.yml requests `members: read`)"
)
NOT_INSTALLED = (
    "the App is not installed on {repo}, so it cannot read that repository's "
    ".github/pipeline-bot.yml: install the App on {repo}, or set GITHUB_REPOSITORY to a "
    "repository it is installed on"
)
_REPO = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
MAX_COMPARE_PAGES = 30  # 100 files a page: GitHub lists at most 3,000 files of a comparison
_NEXT = re.compile(r'<([^>]+)>;\s*rel="next"')


class GitHubApp:
    """The App: one githubkit client per installation, so each caches its own token."""

    def __init__(
        self,
        app_id: str,
        private_key: str,
        *,
        api_url: str | None = None,
        holds: SharedHolds | None = None,
    ) -> None:
        self.app_id = app_id
        self._key = private_key
        self._api_url = api_url
        self._clients: dict[int, Installation] = {}
        self._bot: str | None = None
        self._read_tokens: dict[tuple[int, str], tuple[str, float]] = {}
        self._lock = threading.Lock()
        # this App's own token cache (githubkit's default one is shared by the whole process)
        self._cache = MemCacheStrategy()
        self._holds = holds  # rate-limit holds every replica shares (None: this process only)
        self._backoff = Backoff(holds, "app")  # the App's own (JWT) requests

    def _github(self, auth: Any) -> GitHub[Any]:
        # auto_retry off: the App's queue retries a failed delivery with its own backoff, and a
        # handler must not sit in githubkit's retry sleeps meanwhile
        options: dict[str, Any] = {"cache_strategy": self._cache, "auto_retry": False}
        if self._api_url:
            options["base_url"] = self._api_url.rstrip("/") + "/"
        return GitHub(auth, **options)

    def installation(self, installation_id: int) -> Installation:
        with self._lock:
            client = self._clients.get(installation_id)
            if client is None:
                auth = AppInstallationAuthStrategy(self.app_id, self._key, installation_id)
                backoff = Backoff(self._holds, f"installation:{installation_id}")
                client = Installation(self._github(auth), backoff)
                self._clients[installation_id] = client
            return client

    def installation_for(self, repo: str) -> Installation:
        """The App's installation on `repo` (owner/name), found with the App's JWT."""
        if not _REPO.fullmatch(repo):
            raise IntegrationError(f"{repo!r} is not a repository's owner/name", service="github")
        gh = self._github(AppAuthStrategy(self.app_id, self._key))
        try:
            data, _ = _request(
                gh,
                "GET",
                f"/repos/{repo}/installation",
                f"for the App's installation on {repo}",
                backoff=self._backoff,
            )
        except IntegrationError as exc:
            if exc.status == 404:
                message = NOT_INSTALLED.format(repo=repo)
                raise IntegrationError(message, service="github", status=404) from None
            raise
        return self.installation(int(data["id"]))

    def app_info(self) -> dict[str, Any]:
        """GET /app with the App's JWT: checks the id and key belong together."""
        gh = self._github(AppAuthStrategy(self.app_id, self._key))
        data, _ = _request(
            gh,
            "GET",
            "/app",
            "for the App (check GITHUB_APP_ID and the key)",
            backoff=self._backoff,
        )
        return data  # type: ignore[no-any-return]

    def read_token(self, installation_id: int, repo: str) -> str:
        """A token that can only read this one repository's contents (for its history mirror),
        kept until five minutes before it expires."""
        key = (installation_id, repo)
        now = time.time()
        with self._lock:
            cached = self._read_tokens.get(key)
        if cached and cached[1] - 300 > now:
            return cached[0]
        gh = self._github(AppAuthStrategy(self.app_id, self._key))
        data, _ = _request(
            gh,
            "POST",
            f"/app/installations/{installation_id}/access_tokens",
            f"for a read-only token of {repo}",
            json={"repositories": [repo.split("/", 1)[1]], "permissions": {"contents": "read"}},
            backoff=self._backoff,
        )
        token = str(data["token"])
        expires = _epoch(data.get("expires_at")) or now + 3000
        with self._lock:
            self._read_tokens[key] = (token, expires)
        return token

    def bot_login(self) -> str:
        """The login of the App's bot user, `<app-slug>[bot]`, which writes its comments."""
        with self._lock:
            known = self._bot
        if known is None:
            known = f"{self.app_info()['slug']}[bot]"
            with self._lock:
                self._bot = known
        return known


def convert_manifest_code(code: str, *, api_url: str | None = None) -> dict[str, Any]:
    """POST /app-manifests/{code}/conversions: the new App's id, key and webhook secret."""
    from githubkit import UnauthAuthStrategy

    auth = UnauthAuthStrategy()
    gh = GitHub(auth, base_url=api_url.rstrip("/") + "/") if api_url else GitHub(auth)
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,100}", code):
        raise IntegrationError("the manifest code GitHub returned is malformed", service="github")
    data, _ = _request(gh, "POST", f"/app-manifests/{code}/conversions", "converting the manifest")
    return data  # type: ignore[no-any-return]


class Installation:
    """The calls handlers make as one installation of the App."""

    def __init__(self, gh: GitHub[Any], backoff: Backoff | None = None) -> None:
        self._gh = gh
        self._backoff = backoff or Backoff()

    def _do(self, method: str, path: str, what: str, **kw: Any) -> Any:
        return _request(self._gh, method, path, what, backoff=self._backoff, **kw)[0]

    def actions(self) -> GitHubActions:
        """GitHub Actions (dispatch, runs) as this installation (its Actions permission)."""
        return GitHubActions(client=self._gh)

    # ------------------------------------------------------------- repository and config

    def repository(self, repo: str) -> dict[str, Any]:
        return self._do("GET", f"/repos/{repo}", f"for {repo}")  # type: ignore[no-any-return]

    def default_branch(self, repo: str) -> str:
        """The repository's default branch (its config is read from there, never a PR's)."""
        return str(self.repository(repo)["default_branch"])

    def file(self, repo: str, path: str, ref: str) -> tuple[str, str] | None:
        """(blob sha, text) of a file at `ref`, None when it does not exist."""
        try:
            data = self._do(
                "GET", f"/repos/{repo}/contents/{path}", f"for {path}", params={"ref": ref}
            )
        except IntegrationError as exc:
            if exc.status == 404:
                return None
            raise
        if not isinstance(data, dict) or data.get("type") != "file":
            return None
        text = base64.b64decode(data.get("content") or "").decode("utf-8", "replace")
        return str(data["sha"]), text

    def pull_request(self, repo: str, number: int) -> dict[str, Any]:
        return self._do(  # type: ignore[no-any-return]
            "GET", f"/repos/{repo}/pulls/{number}", f"for pull request #{number}"
        )

    def pull_request_people(self, repo: str, number: int) -> set[str]:
        """The logins (lower case) that authored or committed the pull request's commits; GitHub
        lists at most 250 of them. A commit whose email matches no account has no login here."""
        people: set[str] = set()
        for page in range(1, 4):
            data = self._do(
                "GET",
                f"/repos/{repo}/pulls/{number}/commits",
                f"for pull request #{number}'s commits",
                params={"per_page": 100, "page": page},
            )
            if not isinstance(data, list):
                break
            for commit in data:
                for role in ("author", "committer"):
                    login = ((commit or {}).get(role) or {}).get("login")
                    if login and login != "web-flow":  # GitHub's committer of web-UI commits
                        people.add(str(login).lower())
            if len(data) < 100:
                break
        return people

    def parent(self, repo: str, sha: str) -> str | None:
        """The commit's first parent, None for a root commit."""
        data = self._do("GET", f"/repos/{repo}/commits/{sha}", f"for commit {sha[:12]}")
        parents = data.get("parents") or []
        return str(parents[0]["sha"]) if parents else None

    def permission(self, repo: str, user: str) -> str:
        """The user's permission on the repository: admin, maintain, write, triage, read, none."""
        data = self._do(
            "GET",
            f"/repos/{repo}/collaborators/{user}/permission",
            f"for @{user}'s permission",
        )
        role = str(data.get("role_name") or "")
        return role if role in ("maintain", "triage") else str(data.get("permission", "none"))

    def in_team(self, org: str, team: str, user: str) -> bool:
        try:
            data = self._do(
                "GET", f"/orgs/{org}/teams/{team}/memberships/{user}", f"for team {org}/{team}"
            )
        except IntegrationError as exc:
            if exc.status == 404:
                return False
            if exc.status == 403:  # "Resource not accessible by integration"
                raise IntegrationError(
                    MEMBERS_PERMISSION.format(user=user, org=org, team=team),
                    service="github",
                    status=403,
                ) from None
            raise
        return bool(data.get("state") == "active")

    def compare(self, repo: str, base: str, head: str) -> tuple[ChangeSource, bool]:
        """The change base...head from the compare API, paged; True when it was cut short."""
        commits: list[Commit] = []
        files: list[FileChange] = []
        patches: dict[str, str] = {}
        page, truncated = 1, False
        while True:
            data, response = _request(
                self._gh,
                "GET",
                f"/repos/{repo}/compare/{base}...{head}",
                f"comparing {base[:12]}...{head[:12]}",
                params={"per_page": 100, "page": page},
                backoff=self._backoff,
            )
            commits.extend(_commit(c) for c in data.get("commits") or [])
            for f in data.get("files") or []:
                files.append(_file_change(f))
                if f.get("patch"):
                    patches[f["filename"]] = str(f["patch"])[:20_000]
            if not _NEXT.search(response.headers.get("link", "")):
                break
            if page >= MAX_COMPARE_PAGES:
                truncated = True
                break
            page += 1
        changes = ChangeSet(repository=repo, base=base, head=head, commits=commits, files=files)
        source = ChangeSource(root=None, changes=changes, patches=patches)
        return source, truncated

    # ------------------------------------------------------------- checks

    def create_check_run(self, repo: str, body: dict[str, Any]) -> int:
        data = self._do("POST", f"/repos/{repo}/check-runs", "creating a check run", json=body)
        return int(data["id"])

    def update_check_run(self, repo: str, check_run_id: int, body: dict[str, Any]) -> None:
        self._do(
            "PATCH",
            f"/repos/{repo}/check-runs/{check_run_id}",
            "updating the check run",
            json=body,
        )

    # ------------------------------------------------------------- comments and reactions

    def react(self, repo: str, comment_id: int, content: str) -> None:
        self._do(
            "POST",
            f"/repos/{repo}/issues/comments/{comment_id}/reactions",
            "adding a reaction",
            json={"content": content},
        )

    def comment(self, repo: str, number: int, body: str) -> int:
        data = self._do(
            "POST", f"/repos/{repo}/issues/{number}/comments", "commenting", json={"body": body}
        )
        return int(data["id"])

    def edit_comment(self, repo: str, comment_id: int, body: str) -> bool:
        """False when the comment is gone (someone deleted it)."""
        try:
            self._do(
                "PATCH",
                f"/repos/{repo}/issues/comments/{comment_id}",
                "editing the status comment",
                json={"body": body},
            )
        except IntegrationError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def find_comment(self, repo: str, number: int, marker: str, *, author: str) -> int | None:
        """The id of the first comment on the PR whose body holds `marker` and that the bot user
        `author` wrote: anyone can paste the marker into a comment of their own."""
        page = 1
        while page <= 10:
            data, response = _request(
                self._gh,
                "GET",
                f"/repos/{repo}/issues/{number}/comments",
                "listing comments",
                params={"per_page": 100, "page": page},
                backoff=self._backoff,
            )
            for comment in data:
                user = comment.get("user") or {}
                mine = user.get("type") == "Bot" and user.get("login") == author
                if mine and marker in (comment.get("body") or ""):
                    return int(comment["id"])
            if not _NEXT.search(response.headers.get("link", "")):
                return None
            page += 1
        return None

    # ------------------------------------------------------------- deployments

    def create_deployment(self, repo: str, body: dict[str, Any]) -> int:
        data = self._do("POST", f"/repos/{repo}/deployments", "creating a deployment", json=body)
        if "id" not in data:  # 202: GitHub merged the default branch first, nothing created
            raise IntegrationError(
                f"GitHub created no deployment: {data.get('message', 'no reason given')}",
                service="github",
            )
        return int(data["id"])

    def deployment_status(
        self, repo: str, deployment_id: int, state: str, description: str, **extra: Any
    ) -> None:
        body = {"state": state, "description": description[:140], **extra}
        self._do(
            "POST",
            f"/repos/{repo}/deployments/{deployment_id}/statuses",
            f"setting deployment {deployment_id} to {state}",
            json=body,
        )


def _commit(c: dict[str, Any]) -> Commit:
    author = c["commit"].get("author") or {}
    return Commit(
        sha=c["sha"],
        author=author.get("name", ""),
        email=author.get("email", ""),
        timestamp=author.get("date") or "1970-01-01T00:00:00Z",
        message=c["commit"]["message"],
    )


def _epoch(stamp: Any) -> float | None:
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _request(
    gh: GitHub[Any], method: str, path: str, what: str, *, backoff: Backoff | None = None, **kw: Any
) -> tuple[Any, Any]:
    """(JSON body, raw response) of one request; errors as `send` words them, an answer over a
    rate limit as RateLimited (and `backoff` holds further requests until GitHub's time). What
    the App writes to GitHub (comments, check runs, deployments) never carries a registered
    secret."""
    if backoff is not None:
        backoff.check(what)
    if "json" in kw:
        kw["json"] = redact_data(kw["json"])

    def call() -> Any:
        try:
            return gh.request(method, path, **kw)
        except RequestFailed as exc:
            limited = _limited(exc.response, what)
            if limited is None:
                raise
            if backoff is not None:
                backoff.hold(limited.retry_at)
            raise limited from None

    raw = send(call, what).raw_response
    data = raw.json() if raw.content else {}
    return data, raw


def _limited(response: Any, what: str) -> RateLimited | None:
    """The answer as RateLimited when it is GitHub's rate limit, else None."""
    try:
        body = response.json() if response.content else {}
    except ValueError:
        body = {}
    message = str(body.get("message", "")) if isinstance(body, dict) else ""
    now = time.time()
    headers = {k.lower(): v for k, v in response.headers.items()}
    until = retry_at(response.status_code, headers, message, now)
    return RateLimited(what, until, now) if until is not None else None
