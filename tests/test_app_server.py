"""`pipeline-bot serve` as its own process on uvicorn: intake over real HTTP, the end-to-end path
against a recording GitHub API stand-in on loopback, and kill -9 with queued work."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.app_harness import (
    API_TOKEN,
    BASE,
    HEAD,
    SECRET,
    comment_payload,
    config,
    migration_files,
    private_key,
    pull_request_payload,
    signed,
)
from tests.conftest import github_examples, stop_process, wait_until_up, webhook_example
from tests.fakes.github_api import GitHubApiDouble, PullRequest

SCRIPT = str(Path(sys.executable).parent / "pipeline-bot")
pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _announce_body(port: int, length: int) -> bytes:
    """Send only the headers of a POST whose body would be `length` bytes; the answer's start."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(
            b"POST /webhooks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"X-GitHub-Event: ping\r\nX-GitHub-Delivery: big-1\r\n"
            b"Content-Length: " + str(length).encode() + b"\r\n\r\n"
        )
        return s.recv(200)


def _until(condition: Any, seconds: float = 30, what: str = "the condition") -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)  # polling a server in another process, with a deadline


class Server:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[str] | None = None
        self.logs = ""

    def start(self) -> Server:
        self.proc = subprocess.Popen(
            [SCRIPT, "serve", "--port", str(self.port)],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_until_up(self.proc, lambda: urllib.request.urlopen(f"{self.url}/health", timeout=2))
        return self

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.logs += self.proc.stderr.read() if self.proc.stderr else ""
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                stop_process(self.proc)
        if self.proc is not None and self.proc.stderr and not self.proc.stderr.closed:
            self.logs += self.proc.stderr.read()
            stop_process(self.proc)

    def deliver(self, event: str, payload: Any, delivery: str | None = None) -> tuple[int, Any]:
        body, headers = signed(event, payload, delivery)
        return _post(f"{self.url}/webhooks", body, headers)

    def get(self, path: str) -> Any:
        request = urllib.request.Request(
            f"{self.url}{path}", headers={"Authorization": f"Bearer {API_TOKEN}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())


@pytest.fixture
def stand_in():
    double = GitHubApiDouble(github_examples())
    url, server = double.serve()
    yield double, url
    server.shutdown()
    server.server_close()


@pytest.fixture
def server_env(tmp_path, stand_in, kube_api, namespace):
    double, url = stand_in
    double.config = config(namespace)
    double.permissions.update(writer="write", reader="read")
    double.pulls[7] = PullRequest(7, HEAD, BASE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "PIPELINE_BOT_"))}
    env.update(
        GITHUB_API_URL=url,
        GITHUB_APP_ID="1",
        GITHUB_APP_PRIVATE_KEY=private_key(),
        GITHUB_WEBHOOK_SECRET=SECRET.decode(),
        PIPELINE_BOT_API_TOKEN=API_TOKEN,
        PIPELINE_BOT_DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}",
        KUBECONFIG=str(kube_api.kubeconfig(tmp_path / "kubeconfig", namespace)),
        PIPELINE_BOT_PIN_DIGEST="false",  # registry.local/shop is on no registry: deploy the tag
    )
    return env


def test_serve_without_a_webhook_secret_exits_at_once_with_one_line(tmp_path):
    """Only the secret missing: one line. (With several missing, each gets a line of its own:
    tests/test_first_hour.py.)"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "PIPELINE_BOT_"))}
    env.update(GITHUB_APP_ID="1", GITHUB_APP_PRIVATE_KEY=private_key())
    done = subprocess.run(
        [SCRIPT, "serve", "--port", str(_free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "GITHUB_WEBHOOK_SECRET is not set" in done.stderr


def test_end_to_end_check_run_deploy_and_one_status_comment(server_env, stand_in):
    double, _ = stand_in
    double.files = migration_files(55)
    server = Server(server_env).start()
    try:
        payload = pull_request_payload(webhook_example("pull_request", action="opened"))
        status, body = server.deliver("pull_request", payload)
        assert (status, body["status"]) == (202, "queued")

        def completed() -> list[Any]:
            return [
                c
                for c in double.made("PATCH", r"/check-runs/\d+$")
                if c.body.get("status") == "completed"
            ]

        _until(completed, what="the check run to complete")
        assert double.made("POST", r"/check-runs$")[0].body["status"] == "in_progress"
        annotated = sum(
            len(c.body["output"]["annotations"]) for c in double.made("PATCH", r"/check-runs/\d+$")
        )
        assert annotated == 55

        comment = comment_payload(
            webhook_example("issue_comment", action="created"), "/deploy staging", login="writer"
        )
        assert server.deliver("issue_comment", comment)[0] == 202
        _until(
            lambda: [c for c in double.made("POST", r"/statuses$") if c.body["state"] == "success"],
            what="a successful deployment",
        )
        reader = comment_payload(
            webhook_example("issue_comment", action="created"),
            "/deploy staging",
            login="reader",
            comment_id=777,
        )
        server.deliver("issue_comment", reader)
        _until(lambda: any("refused" in b for b in double.comments.values()), what="the refusal")
        assert len(double.made("POST", r"/issues/7/comments$")) == 1
        assert len(double.made("PATCH", r"/issues/comments/\d+$")) >= 2
        text = next(iter(double.comments.values()))
        assert "needs write permission" in text
        assert len(double.made("POST", r"/deployments$")) == 1
    finally:
        server.stop()
    for secret in (SECRET.decode(), API_TOKEN, "BEGIN RSA PRIVATE KEY", "v1.1f699f1069f60xxx"):
        assert secret not in server.logs


def test_intake_over_http_signature_size_json_and_duplicates(server_env):
    server = Server(server_env).start()
    try:
        payload = {"zen": "Keep it logically awesome.", "hook_id": 1, "installation": {"id": 1}}
        body, headers = signed("ping", payload, "ping-1", secret=b"wrong")
        assert _post(f"{server.url}/webhooks", body, headers)[0] == 401
        assert _announce_body(server.port, 25 * 1024 * 1024 + 1).startswith(b"HTTP/1.1 413")
        body, headers = signed("ping", b"not json", "bad-1")
        assert _post(f"{server.url}/webhooks", body, headers)[0] == 400
        assert server.deliver("ping", payload, "ping-2")[1]["status"] == "queued"
        assert server.deliver("ping", payload, "ping-2")[1]["status"] == "duplicate"
        delivered = {d["id"]: d for d in server.get("/deliveries")}
        assert set(delivered) == {"ping-2"}
        # the MCP server's HTTP transport, under the API token
        initialize = json.dumps(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "test", "version": "1"},
                },
            }
        ).encode()
        mcp_headers = {
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
        }
        assert _post(f"{server.url}/mcp", initialize, mcp_headers)[0] == 401
        mcp_headers["Authorization"] = f"Bearer {API_TOKEN}"
        request = urllib.request.Request(
            f"{server.url}/mcp", data=initialize, headers=mcp_headers, method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
            assert b'"serverInfo"' in response.read()
    finally:
        server.stop()
    assert "Keep it logically awesome" not in server.logs


def test_queued_work_survives_kill_9_and_a_restart(server_env, stand_in):
    double, _ = stand_in
    double.fail[r"/check-runs"] = 503  # GitHub is down: the delivery stays queued for retry
    server = Server(server_env).start()
    try:
        payload = pull_request_payload(webhook_example("pull_request", action="opened"))
        assert server.deliver("pull_request", payload, "survivor")[0] == 202
        _until(
            lambda: server.get("/pipeline/status/survivor")["attempts"] >= 1, what="a first attempt"
        )
        server.kill9()
        double.fail.clear()  # GitHub is back
        server.start()
        _until(
            lambda: server.get("/pipeline/status/survivor")["status"] == "done",
            what="the delivery to be worked after the restart",
        )
        assert [c.body["status"] for c in double.made("PATCH", r"/check-runs/\d+$")][-1] == (
            "completed"
        )
    finally:
        server.stop()


def test_app_setup_registers_through_the_manifest_flow_and_saves_credentials_privately(
    tmp_path, stand_in
):
    double, url = stand_in
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "PIPELINE_BOT_"))}
    env["GITHUB_API_URL"] = url
    out = tmp_path / "app.env"
    proc = subprocess.Popen(
        [
            SCRIPT,
            "app",
            "setup",
            "--webhook-url",
            "https://bot.example.org/webhooks",
            "--port",
            "0",
            "--out",
            str(out),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        page_url = first.split("Open ", 1)[1].split(" ", 1)[0]
        page = urllib.request.urlopen(page_url, timeout=10).read().decode()
        assert 'action="https://github.com/settings/apps/new?state=' in page
        state = page.split("state=", 1)[1].split('"', 1)[0]
        import html as html_lib

        manifest = json.loads(
            html_lib.unescape(page.split('name="manifest" value="', 1)[1].split('"', 1)[0])
        )
        assert manifest["hook_attributes"]["url"] == "https://bot.example.org/webhooks"
        assert manifest["default_permissions"]["checks"] == "write"
        assert set(manifest["default_events"]) >= {"pull_request", "issue_comment", "push"}
        # a callback with another state is refused; GitHub's redirect with the right one works
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"{page_url}callback?code=abc&state=forged", timeout=10)
        done = urllib.request.urlopen(f"{page_url}callback?code=abc&state={state}", timeout=10)
        assert b"is registered" in done.read()
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            stop_process(proc)
    assert proc.returncode == 0, stderr
    example = double.example("integration-from-manifest")
    assert double.made("POST", r"/app-manifests/abc/conversions$")
    saved = out.read_text()
    assert f"GITHUB_APP_ID={example['id']}" in saved
    assert f"GITHUB_WEBHOOK_SECRET={example['webhook_secret']}" in saved
    key = Path(saved.split("GITHUB_APP_PRIVATE_KEY_PATH=", 1)[1].split("\n", 1)[0])
    assert key.read_text() == example["pem"]
    assert out.stat().st_mode & 0o777 == 0o600
    assert key.stat().st_mode & 0o777 == 0o600
    assert example["webhook_secret"] not in first + stdout + stderr
    assert "Install it:" in stdout
