"""The MCP transport over HTTP (issue 15, point 5 and the MCP rows of deliverable 7), for both
servers that speak it: the App's /mcp (`pipeline-bot serve`) and `pipeline-bot mcp --transport
http`, each in its own process on 127.0.0.1. A remote host that is configured is served, to the
official SDK's Client too; a Host that is not is 421, a foreign Origin 403, no token or a wrong
one 401; DNS-rebinding protection stays on for loopback. Sessions expire and are bounded."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp.client.streamable_http import streamable_http_client

from mcp import Client
from tests.app_harness import private_key
from tests.conftest import stop_process, wait_until_up

SCRIPT = str(Path(sys.executable).parent / "pipeline-bot")
TOKEN = "transport-test-token-3b8d41f0"
pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _base_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "PIPELINE_BOT_"))}
    env.update(HOME=str(tmp_path), PIPELINE_BOT_DATABASE_URL=f"sqlite:///{tmp_path / 'pb.db'}")
    return env


class Served:
    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, port: int) -> None:
        self.port = port
        self.proc = subprocess.Popen(
            [SCRIPT, *args, "--port", str(port)],
            env=env,
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_until_up(
            self.proc, lambda: socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        )

    def post(self, headers: dict[str, str], body: dict[str, object] | None = None) -> tuple:
        """A raw JSON-RPC POST to /mcp (an initialize unless `body`): (status, headers)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        message = body or {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "matrix", "version": "1"},
            },
        }
        sent = {
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            **headers,
        }
        # http.client adds its own Host unless the caller gives one
        conn.putrequest("POST", "/mcp", skip_host="Host" in sent)
        data = json.dumps(message).encode()
        for k, v in {**sent, "Content-Length": str(len(data))}.items():
            conn.putheader(k, v)
        conn.endheaders(data)
        response = conn.getresponse()
        response.read()
        conn.close()
        return response.status, dict(response.getheaders())

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.fixture
def servers(tmp_path, base_repo):
    """Both servers: the App with its public URL https://bot.example.test, and the MCP server
    allowing the host mcp.example.test; each with its token."""
    env = _base_env(tmp_path)
    app_env = {
        **env,
        "GITHUB_API_URL": f"http://127.0.0.1:{_free_port()}/api/v3",
        "GITHUB_APP_ID": "1",
        "GITHUB_APP_PRIVATE_KEY": private_key(),
        "GITHUB_WEBHOOK_SECRET": "transport-webhook-secret",
        "PIPELINE_BOT_API_TOKEN": TOKEN,
        "PIPELINE_BOT_PUBLIC_URL": "https://bot.example.test",
    }
    mcp_env = {
        **env,
        "PIPELINE_BOT_MCP_TOKEN": TOKEN,
        "PIPELINE_BOT_MCP_ALLOWED_HOSTS": "mcp.example.test",
    }
    running = {
        "app": Served(["serve"], app_env, base_repo.root, _free_port()),
        "mcp": Served(["mcp", "--transport", "http"], mcp_env, base_repo.root, _free_port()),
    }
    yield running
    for served in running.values():
        served.stop()


REMOTE = {"app": "bot.example.test", "mcp": "mcp.example.test"}
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# (case, headers but the token, token?, expected status); {remote} is the server's allowed host
MATRIX = [
    ("an allowed remote host", {"Host": "{remote}"}, True, 200),
    ("an allowed remote host with a port", {"Host": "{remote}:443"}, True, 200),
    (
        "an allowed remote host and its https origin",
        {"Host": "{remote}", "Origin": "https://{remote}"},
        True,
        200,
    ),
    ("loopback", {}, True, 200),
    ("a host that is not allowed", {"Host": "evil.example"}, True, 421),
    ("a rebinding name on loopback's port", {"Host": "evil.example:{port}"}, True, 421),
    ("a foreign origin", {"Host": "{remote}", "Origin": "https://evil.example"}, True, 403),
    ("a foreign origin on loopback", {"Origin": "http://evil.example"}, True, 403),
    ("no token", {"Host": "{remote}"}, False, 401),
    ("a wrong token", {"Host": "{remote}", "Authorization": "Bearer " + "w" * 29}, False, 401),
]


@pytest.mark.parametrize("server", ["app", "mcp"])
def test_the_transport_authorisation_matrix(servers, server):
    served = servers[server]
    answers = {}
    for case, headers, with_token, _ in MATRIX:
        given = {k: v.format(remote=REMOTE[server], port=served.port) for k, v in headers.items()}
        answers[case] = served.post({**(AUTH if with_token else {}), **given})[0]
    assert answers == {case: expected for case, _, _, expected in MATRIX}


async def _tools_through(url: str, host: str, token: str) -> set[str]:
    headers = {"Authorization": f"Bearer {token}", "Host": host}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http_client:
        transport = streamable_http_client(url, http_client=http_client)
        async with Client(transport, mode="legacy") as client:
            return {t.name for t in (await client.list_tools()).tools}


@pytest.mark.parametrize("server", ["app", "mcp"])
def test_the_sdks_client_is_served_through_an_allowed_remote_host(servers, server):
    served = servers[server]
    url = f"http://127.0.0.1:{served.port}/mcp"
    tools = anyio.run(_tools_through, url, REMOTE[server], TOKEN)
    assert {"analyze_changes", "deploy_application"} <= tools


def test_sessions_expire_when_idle_and_their_number_is_bounded(tmp_path, base_repo):
    env = {
        **_base_env(tmp_path),
        "PIPELINE_BOT_MCP_MAX_SESSIONS": "2",
        "PIPELINE_BOT_MCP_SESSION_IDLE_TIMEOUT": "1",
    }
    served = Served(["mcp", "--transport", "http"], env, base_repo.root, _free_port())
    try:
        first = served.post({})
        second = served.post({})
        assert (first[0], second[0]) == (200, 200)
        assert served.post({})[0] == 503  # a third while two are open
        session = first[1]["mcp-session-id"]
        ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
        deadline = time.monotonic() + 20
        again = {"mcp-session-id": session, "mcp-protocol-version": "2025-06-18"}
        assert served.post(again, ping)[0] == 200  # it lives while it is used
        # asking for a new session does not touch the idle ones
        while (opened := served.post({})[0]) == 503:
            assert time.monotonic() < deadline, "idle sessions were still open after 20 s"
            time.sleep(0.2)  # polling the server in another process, with a deadline
        assert opened == 200  # room again: the idle ones were closed
        assert served.post(again, ping)[0] == 404
    finally:
        served.stop()


def test_a_weak_mcp_token_stops_the_http_server_at_once_with_one_line(tmp_path, base_repo):
    for weak in ("x", "let-me-in", "abababababababababab"):
        env = {**_base_env(tmp_path), "PIPELINE_BOT_MCP_TOKEN": weak}
        proc = subprocess.Popen(
            [SCRIPT, "mcp", "--transport", "http", "--port", str(_free_port())],
            env=env,
            cwd=base_repo.root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            stop_process(proc)
            pytest.fail(f"the MCP server started with the token {weak!r}")
        stderr = proc.stderr.read() if proc.stderr else ""
        stop_process(proc)
        assert code == 2
        assert stderr.strip().count("\n") == 0, stderr
        assert "PIPELINE_BOT_MCP_TOKEN" in stderr
        assert len(weak) < 5 or weak not in stderr
