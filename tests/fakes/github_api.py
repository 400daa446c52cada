"""Test double for GitHub's REST API as the App uses it. Every answer is an example from GitHub's
own OpenAPI description (npm @octokit/openapi), with only the fields a test is about (ids, SHAs,
bodies) set to the test's values. It records every call; `respx_side_effect` serves it to
githubkit in-process, `serve()` on a loopback port for a server running in its own process.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REPO = "Codertocat/Hello-World"


@dataclass
class Call:
    method: str
    path: str
    body: Any
    query: dict[str, str] = field(default_factory=dict)


@dataclass
class PullRequest:
    number: int
    head: str
    base: str
    head_repo: str = REPO
    changed_files: int = 1
    moves_to: str | None = None  # the head after the first time it is read (a push meanwhile)
    author: str = "octocat"  # who opened it (GitHub's example's user)
    # its commits' (author, committer) logins; None for a commit whose email has no account
    commits: list[tuple[str | None, str | None]] = field(
        default_factory=lambda: [("octocat", "web-flow")]
    )


@dataclass
class GitHubApiDouble:
    examples: dict[str, Any]
    config: str | None = None  # .github/pipeline-bot.yml on the default branch
    permissions: dict[str, str] = field(default_factory=dict)  # login -> permission
    pulls: dict[int, PullRequest] = field(default_factory=dict)
    files: list[dict[str, Any]] = field(default_factory=list)  # compare: GitHub's file entries
    calls: list[Call] = field(default_factory=list)
    comments: dict[int, str] = field(default_factory=dict)
    # comment id -> (login, type) of its author; comments the App makes are its bot user's
    authors: dict[int, tuple[str, str]] = field(default_factory=dict)
    teams: dict[str, set[str]] = field(default_factory=dict)  # "org/slug" -> member logins
    members_permission: bool = True  # the installation holds organization Members: read
    fail: dict[str, int] = field(default_factory=dict)  # path regex -> status to answer with
    _next_id: int = 1000
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def example(self, name: str) -> Any:
        return copy.deepcopy(self.examples[name]["value"])

    def made(self, method: str, pattern: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and re.search(pattern, c.path)]

    @property
    def bot(self) -> str:
        """The App's bot user: its slug (from GET /app) and `[bot]`."""
        return f"{self.example('integration')['slug']}[bot]"

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    # ------------------------------------------------------------------ routing

    def answer(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        with self._lock:
            self.calls.append(Call(method, path, body, query))
            for pattern, status in self.fail.items():
                if re.search(pattern, path):
                    return status, {"message": "Server Error (test double)"}
            return self._route(method, path.removeprefix("/api/v3"), query, body)

    def _route(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        r = f"/repos/{REPO}"
        if method == "POST" and re.fullmatch(r"/app/installations/\d+/access_tokens", path):
            token = self.example("installation-token")
            token["expires_at"] = "2099-01-01T00:00:00Z"
            return 201, token
        if method == "GET" and path == "/app":
            return 200, self.example("integration")
        if method == "GET" and path == r:
            return 200, self.example("full-repository")
        if m := re.fullmatch(r"/repos/([^/]+/[^/]+)/installation", path):
            if m[1] != REPO:  # the App is installed on the test repository only
                return 404, {"message": "Not Found"}
            return 200, self.example("installation")
        if method == "GET" and path.startswith(f"{r}/contents/"):
            name = path.removeprefix(f"{r}/contents/")
            if self.config is None or name != ".github/pipeline-bot.yml":
                return 404, {"message": "Not Found"}
            content = self.example("content-file-response-if-content-is-a-file")
            content.update(
                path=name,
                content=base64.b64encode(self.config.encode()).decode(),
                sha=f"blob{abs(hash(self.config)):x}",
            )
            return 200, content
        if m := re.fullmatch(rf"{r}/pulls/(\d+)", path):
            pr = self.pulls.get(int(m[1]))
            if pr is None:
                return 404, {"message": "Not Found"}
            data = self.example("pull-request")
            data["number"] = pr.number
            data["head"]["sha"], data["base"]["sha"] = pr.head, pr.base
            data["head"]["repo"]["full_name"] = pr.head_repo
            data["base"]["repo"]["full_name"] = REPO
            data["changed_files"] = pr.changed_files
            data["user"]["login"] = pr.author
            data["commits"] = len(pr.commits)
            if pr.moves_to:
                pr.head, pr.moves_to = pr.moves_to, None
            return 200, data
        if m := re.fullmatch(rf"{r}/pulls/(\d+)/commits", path):
            pr = self.pulls.get(int(m[1]))
            if pr is None:
                return 404, {"message": "Not Found"}
            page, size = int(query.get("page", 1)), int(query.get("per_page", 30))
            items = []
            # GitHub lists a pull request's first 250 commits only
            for i, (author, committer) in enumerate(pr.commits[:250]):
                item = self.example("commit-items")[0]
                item["sha"] = f"{i + 1:040x}"
                for role, login in (("author", author), ("committer", committer)):
                    if login is None:
                        item[role] = None
                    else:
                        item[role]["login"] = login
                items.append(item)
            return 200, items[(page - 1) * size : page * size]
        if m := re.fullmatch(rf"{r}/collaborators/([^/]+)/permission", path):
            data = self.example(
                "repository-collaborator-permission-response-if-user-has-admin-permissions"
            )
            data["permission"] = data["role_name"] = self.permissions.get(m[1], "read")
            data["user"]["login"] = m[1]
            return 200, data
        if m := re.fullmatch(rf"{r}/commits/([0-9a-f]{{40}})", path):
            data = self.example("commit")
            data["sha"] = m[1]
            data["parents"] = [{"sha": "b" * 40, "url": "", "html_url": ""}]
            return 200, data
        if re.fullmatch(rf"{r}/compare/[0-9a-f]+\.\.\.[0-9a-f]+", path):
            data = self.example("commit-comparison")
            if self.files:
                data["files"] = self.files
            return 200, data
        if method == "POST" and path == f"{r}/check-runs":
            data = self.example("check-run")
            data["id"] = self._id()
            data["head_sha"] = body["head_sha"]
            return 201, data
        if method == "PATCH" and re.fullmatch(rf"{r}/check-runs/\d+", path):
            return 200, self.example("check-run")
        if method == "POST" and re.fullmatch(rf"{r}/issues/comments/\d+/reactions", path):
            data = self.example("reaction")
            data["content"] = body["content"]
            return 201, data
        if m := re.fullmatch(rf"{r}/issues/(\d+)/comments", path):
            if method == "GET":
                items = []
                for cid, text in self.comments.items():
                    item = self.example("issue-comment")
                    item.update(id=cid, body=text)
                    if cid in self.authors:
                        item["user"]["login"], item["user"]["type"] = self.authors[cid]
                    items.append(item)
                return 200, items
            data = self.example("issue-comment")
            data.update(id=self._id(), body=body["body"])
            data["user"]["login"], data["user"]["type"] = self.bot, "Bot"
            self.comments[data["id"]] = body["body"]
            self.authors[data["id"]] = (self.bot, "Bot")
            return 201, data
        if m := re.fullmatch(rf"{r}/issues/comments/(\d+)", path):
            cid = int(m[1])
            if cid not in self.comments:
                return 404, {"message": "Not Found"}
            self.comments[cid] = body["body"]
            data = self.example("issue-comment")
            data.update(id=cid, body=body["body"])
            return 200, data
        if method == "POST" and path == f"{r}/deployments":
            data = self.example("deployment")
            data.update(id=self._id(), sha=body["ref"], ref=body["ref"])
            data["environment"] = body["environment"]
            return 201, data
        if method == "POST" and re.fullmatch(rf"{r}/deployments/\d+/statuses", path):
            data = self.example("deployment-status")
            data["state"] = body["state"]
            return 201, data
        if m := re.fullmatch(r"/orgs/([^/]+)/teams/([^/]+)/memberships/([^/]+)", path):
            if not self.members_permission:
                return 403, {"message": "Resource not accessible by integration"}
            if m[3] not in self.teams.get(f"{m[1]}/{m[2]}", set()):
                return 404, {"message": "Not Found"}
            data = self.example("team-membership-response-if-user-is-a-team-maintainer")
            data.update(role="member", state="active")
            return 200, data
        if method == "POST" and re.fullmatch(r"/app-manifests/[^/]+/conversions", path):
            return 201, self.example("integration-from-manifest")
        return 404, {"message": f"the test double has no route for {method} {path}"}

    # ------------------------------------------------------------------ serving

    def respx_side_effect(self, request: Any) -> Any:
        import httpx

        body = json.loads(request.content) if request.content else None
        query = dict(request.url.params)
        status, data = self.answer(request.method, request.url.path, query, body)
        return httpx.Response(status, json=data)

    def serve(self) -> tuple[str, ThreadingHTTPServer]:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                path, _, qs = self.path.partition("?")
                query = dict(p.split("=", 1) for p in qs.split("&") if "=" in p)
                status, data = double.answer(
                    self.command, path, query, json.loads(raw) if raw else None
                )
                out = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _any

            def log_message(self, *args: Any) -> None:
                return

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{server.server_address[1]}/api/v3", server
