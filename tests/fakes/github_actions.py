"""Test double for GitHub Actions' REST API (dispatch a workflow, read runs and jobs), served to
githubkit through respx. Every request is checked against GitHub's REST description (npm
@octokit/openapi): its path and method must be an operation there, its query parameters ones the
operation declares, its JSON body valid against the operation's request schema. Every answer is
an example from the same description with only the test's fields set (ids, SHAs, states).

A dispatched run moves one state per look at it: queued, in_progress, then completed with the
conclusion the test asked for, so a follower sees it change without any clock.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import jsonschema

from tests.conftest import npm_file

REPO = "octo-org/octo-repo"
SHA = "c0ffee" + "0" * 34


@functools.cache
def description() -> dict[str, Any]:
    path = npm_file(
        "@octokit", "openapi", "generated", "api.github.com.json", what="GitHub's description"
    )
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def _resolve(node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        target: Any = description()
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def _operation(method: str, path: str) -> tuple[str, dict[str, Any]]:
    """The description's operation for a concrete path, with its template."""
    for template, item in description()["paths"].items():
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path) and method.lower() in item:
            return template, item[method.lower()]
    raise AssertionError(f"{method} {path} is not an operation of GitHub's REST description")


def check_request(method: str, path: str, query: dict[str, str], body: Any) -> str:
    """Assert the request is one GitHub's description allows; give the operation's template."""
    template, op = _operation(method, path)
    declared = {
        _resolve(p)["name"] for p in op.get("parameters", []) if _resolve(p)["in"] == "query"
    }
    unknown = set(query) - declared
    assert not unknown, f"{template}: query parameters {unknown} are not in the description"
    schema = (
        ((op.get("requestBody") or {}).get("content") or {}).get("application/json") or {}
    ).get("schema")
    if schema is not None:
        jsonschema.validate(body, _resolve(schema))
    else:
        assert body is None, f"{template} takes no body"
    return template


def _example(name: str) -> Any:
    return copy.deepcopy(description()["components"]["examples"][name]["value"])


LIFECYCLE = ("queued", "in_progress", "completed")


@dataclass
class ActionsDouble:
    conclusion: str = "success"  # how dispatched runs end: success, failure, cancelled
    run_details: bool = True  # github.com: 200 with the run's id when asked for it
    refuses_key: bool = False  # without run_details: 422 for the key instead of 204
    now: datetime = field(default_factory=lambda: datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC))
    runs: dict[int, dict[str, Any]] = field(default_factory=dict)
    looks: dict[int, int] = field(default_factory=dict)
    calls: list[tuple[str, str, dict[str, str], Any]] = field(default_factory=list)
    _next: int = 7000
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        # runs GitHub already has: one dispatched an hour ago, one on another branch
        self._add_run(branch="main", created=self.now - timedelta(hours=1), state="completed")
        self._add_run(branch="other", created=self.now, state="queued")

    def _add_run(self, *, branch: str, created: datetime, state: str) -> dict[str, Any]:
        self._next += 1
        run = _example("workflow-run")
        stamp = created.strftime("%Y-%m-%dT%H:%M:%SZ")
        run.update(
            id=self._next,
            head_branch=branch,
            head_sha=SHA,
            event="workflow_dispatch",
            status=state,
            conclusion="success" if state == "completed" else None,
            created_at=stamp,
            run_started_at=stamp,
            updated_at=stamp,
            html_url=f"https://github.com/{REPO}/actions/runs/{self._next}",
            logs_url=f"https://api.github.com/repos/{REPO}/actions/runs/{self._next}/logs",
        )
        self.runs[self._next] = run
        return run

    # ---------------------------------------------------------------- answers

    def answer(self, method: str, path: str, query: dict[str, str], body: Any) -> Any:
        import httpx

        with self._lock:
            self.calls.append((method, path, query, body))
            template = check_request(method, path, query, body)
            status, data = self._route(method, template, path, query, body)
        headers = {"date": format_datetime(self.now, usegmt=True)}
        if data is None:
            return httpx.Response(status, headers=headers)
        return httpx.Response(status, json=data, headers=headers)

    def _route(
        self, method: str, template: str, path: str, query: dict[str, str], body: Any
    ) -> tuple[int, Any]:
        ids = [int(x) for x in re.findall(r"/runs/(\d+)", path)]
        if template.endswith("/dispatches"):
            return self._dispatch(body)
        if template == "/repos/{owner}/{repo}/commits/{ref}":
            commit = _example("commit")
            commit["sha"] = SHA
            return 200, commit
        if template.endswith("/runs"):
            listed = [
                r
                for r in sorted(self.runs.values(), key=lambda r: r["created_at"], reverse=True)
                if r["head_branch"] == query.get("branch", r["head_branch"])
                and r["event"] == query.get("event", r["event"])
            ]
            return 200, {"total_count": len(listed), "workflow_runs": listed}
        if template == "/repos/{owner}/{repo}/actions/runs/{run_id}" and ids[0] in self.runs:
            return 200, self._look(ids[0])
        if template.endswith("/runs/{run_id}/jobs") and ids[0] in self.runs:
            return 200, self._jobs(self.runs[ids[0]])
        return 404, {"message": "Not Found"}

    def _dispatch(self, body: dict[str, Any]) -> tuple[int, Any]:
        asked = body.get("return_run_details")
        if asked is not None and not self.run_details and self.refuses_key:
            return 422, {
                "message": 'Invalid request.\n\n"return_run_details" is not a permitted key.'
            }
        run = self._add_run(branch=body["ref"], created=self.now, state="queued")
        run["display_title"] = json.dumps(body.get("inputs") or {})
        if asked and self.run_details:
            details = _example("workflow-dispatch-response")
            details.update(workflow_run_id=run["id"], html_url=run["html_url"])
            return 200, details
        return 204, None

    def _look(self, run_id: int) -> dict[str, Any]:
        """The run, one state further on than the last look (dispatched runs only)."""
        run = self.runs[run_id]
        if run["status"] != "completed":
            n = self.looks.get(run_id, 0)
            self.looks[run_id] = n + 1
            run["status"] = LIFECYCLE[min(n, len(LIFECYCLE) - 1)]
            if run["status"] == "completed":
                run["conclusion"] = self.conclusion
                run["updated_at"] = (self.now + timedelta(seconds=95)).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                )
        return copy.deepcopy(run)

    def _jobs(self, run: dict[str, Any]) -> dict[str, Any]:
        page = _example("job-paginated")
        job = page["jobs"][0]
        job.update(id=run["id"] * 10, run_id=run["id"], head_sha=run["head_sha"], name="deploy")
        job["status"] = run["status"]
        job["conclusion"] = run["conclusion"]
        if run["status"] != "completed":
            job["completed_at"] = None
            for step in job["steps"]:
                step.update(status="queued", conclusion=None)
        elif run["conclusion"] != "success":
            last = job["steps"][-1]
            last["conclusion"] = run["conclusion"]
        return page

    def serve(self) -> tuple[str, ThreadingHTTPServer]:
        """The double on a free port of 127.0.0.1, for a process of its own (the Action):
        (its URL, the server to shut down)."""
        double = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                path, _, qs = self.path.partition("?")
                response = double.answer(
                    self.command, path, dict(parse_qsl(qs)), json.loads(raw) if raw else None
                )
                self.send_response(response.status_code)
                if "content-type" in response.headers:
                    self.send_header("Content-Type", response.headers["content-type"])
                self.send_header("Content-Length", str(len(response.content)))
                self.end_headers()
                self.wfile.write(response.content)

            do_GET = do_POST = _any

            def date_time_string(self, timestamp: float | None = None) -> str:
                return format_datetime(double.now, usegmt=True)  # the double's clock

            def log_message(self, *args: Any) -> None:
                return

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{server.server_address[1]}", server

    def made(self, method: str, pattern: str) -> list[tuple[str, str, dict[str, str], Any]]:
        return [c for c in self.calls if c[0] == method and re.search(pattern, c[1])]
