"""The authorisation matrix (issue 15, deliverable 7), table-driven.

Part one asks `core/authz.py` directly about every slash-command x repository permission x
environment (none; the defaults; `required_permission` at each level; `allowed_users` and
`allowed_teams` with the requester listed or not; `requires` met or not; `allow_forks`) x a pull
request from a fork or not. Each environment row says which gate it sets; the expected decision
follows the rules in authz's docstring, checked in its order (permission, listing, fork,
requires, approval), and a refusal must say why.

Part two is the MCP transport over HTTP, in process: `mcp_server.http.http_app` (what
`pipeline-bot mcp --transport http` serves) and the App's /mcp, each asked an MCP `initialize`
with a bad Host, a bad Origin, no token, a wrong token, loopback, and an allowed remote host.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pipeline_bot.core.authz import PERMISSION_RANK, Requester, authorize
from pipeline_bot.core.commands import CHANGES_ENVIRONMENT, USAGE, parse_command
from pipeline_bot.repo_config import Environment

# ------------------------------------------------------------------ part one: core/authz.py

COMMANDS = {
    "deploy": "/deploy production",
    "rollback": "/rollback production",
    "promote": "/promote production",
    "abort": "/abort production",
    "approve": "/approve production",
    "lock": "/lock production freeze",
    "unlock": "/unlock production",
    "status": "/status production",
    "analyze": "/analyze",
    "help": "/help",
}
assert set(COMMANDS) == set(USAGE), "a command was added: give it a row here"
# GitHub's five repository roles, and "none" (an outside collaborator on a public repository)
PERMISSIONS = ["none", "read", "triage", "write", "maintain", "admin"]


@dataclass(frozen=True)
class EnvRow:
    """An environment, who is asking, and what that means for a command that changes it."""

    case: str
    env: dict[str, Any] | None  # Environment fields; None: the command names no environment
    need: str = "write"  # least permission the row requires
    listed: bool = True  # the requester is allowed by allowed_users / allowed_teams
    forks: bool = False  # allow_forks
    requires_met: bool = True  # for /deploy: `requires` environments already deployed to
    approval: bool = True  # for /approve: the environment requires approval
    # the requester opened the pull request or wrote one of its commits; None: cannot be told
    wrote: bool | None = False
    # for /deploy into an environment that requires approval: why there is no current approval
    unapproved: str | None = None
    login: str = "alice"
    teams: frozenset[str] = field(default_factory=frozenset)
    deployed_to: frozenset[str] = field(default_factory=frozenset)


ENVIRONMENTS = [
    EnvRow("no environment", None),
    EnvRow("defaults", {}),
    *(
        EnvRow(f"required_permission {p}", {"required_permission": p}, need=p)
        for p in ("read", "triage", "write", "maintain", "admin")
    ),
    EnvRow("allowed_users, listed", {"allowed_users": ["Alice", "bob"]}),
    EnvRow("allowed_users, not listed", {"allowed_users": ["bob"]}, listed=False),
    EnvRow(
        "allowed_teams, a member",
        {"allowed_teams": ["acme/ops"]},
        teams=frozenset({"ACME/Ops"}),
    ),
    EnvRow(
        "allowed_teams, not a member",
        {"allowed_teams": ["acme/ops"]},
        listed=False,
        teams=frozenset({"acme/dev"}),
    ),
    EnvRow(
        "allowed_users and allowed_teams, listed as a user only",
        {"allowed_users": ["alice"], "allowed_teams": ["acme/ops"]},
    ),
    EnvRow(
        "required_permission maintain and allowed_users, listed",
        {"required_permission": "maintain", "allowed_users": ["alice"]},
        need="maintain",
    ),
    EnvRow(
        "requires staging, deployed there",
        {"requires": ["staging"]},
        deployed_to=frozenset({"staging"}),
    ),
    EnvRow(
        "requires staging and qa, deployed to staging only",
        {"requires": ["staging", "qa"]},
        requires_met=False,
        deployed_to=frozenset({"staging"}),
    ),
    EnvRow("requires staging, never deployed", {"requires": ["staging"]}, requires_met=False),
    EnvRow("allow_forks", {"allow_forks": True}, forks=True),
    EnvRow("requires_approval, this commit and plan approved", {"requires_approval": True}),
    EnvRow(
        "requires_approval, not approved",
        {"requires_approval": True},
        unapproved="the approval is for commit cccccccccccc",
    ),
    EnvRow("requires_approval false", {"requires_approval": False}, approval=False),
    EnvRow("prevent_self_approval, the author asks", {"prevent_self_approval": True}, wrote=True),
    EnvRow("prevent_self_approval, someone else asks", {"prevent_self_approval": True}),
    EnvRow("self-approval allowed (the default), the author asks", {}, wrote=True),
    # who wrote the commit to approve is unknown (an older head's button, a pull request with
    # more commits than GitHub lists): refused where self-approval is, allowed where it is not
    EnvRow(
        "prevent_self_approval, who wrote it unknown", {"prevent_self_approval": True}, wrote=None
    ),
    EnvRow("self-approval allowed (the default), who wrote it unknown", {}, wrote=None),
    EnvRow(
        "everything set, all met",
        {
            "required_permission": "admin",
            "allowed_teams": ["acme/ops"],
            "requires": ["staging"],
            "allow_forks": True,
        },
        need="admin",
        forks=True,
        teams=frozenset({"acme/ops"}),
        deployed_to=frozenset({"staging"}),
    ),
]


def expected(command: str, row: EnvRow, permission: str, fork: bool) -> str | None:
    """None when the command is allowed, else a phrase the refusal must contain."""
    rank = PERMISSION_RANK[permission]
    if command not in CHANGES_ENVIRONMENT:
        return None if rank >= PERMISSION_RANK["read"] else "cannot read"
    if row.env is None:
        return "needs an environment"
    if rank < PERMISSION_RANK[row.need]:
        return f"needs {row.need} permission"
    if not row.listed:
        return "is not listed"
    if fork and not row.forks:
        return "comes from a fork"
    if command == "deploy" and not row.requires_met:
        return "requires this commit to be deployed"
    if command == "deploy" and row.env.get("requires_approval") and row.unapproved:
        return "requires approval"
    if command == "approve" and not row.approval:
        return "does not require approval"
    if command == "approve" and row.wrote is None and row.env.get("prevent_self_approval"):
        return "cannot tell who wrote"
    if command == "approve" and row.wrote and row.env.get("prevent_self_approval"):
        return "prevents self-approval"
    return None


def environment(command: str, row: EnvRow) -> Environment | None:
    """The row's environment; for /approve one that requires approval unless the row says."""
    if row.env is None:
        return None
    fields = {"requires_approval": True} if command == "approve" else {}
    return Environment(name="production", **{**fields, **row.env})


MATRIX = [
    (command, row, permission, fork)
    for command in COMMANDS
    for row in ENVIRONMENTS
    for permission in PERMISSIONS
    for fork in (False, True)
]


@pytest.mark.parametrize(
    ("command", "row"),
    [(c, r) for c in COMMANDS for r in ENVIRONMENTS],
    ids=[f"{c}-{r.case}" for c in COMMANDS for r in ENVIRONMENTS],
)
def test_every_command_permission_environment_and_fork(command, row):
    parsed = parse_command(COMMANDS[command])
    assert parsed is not None
    assert parsed.name == command
    env = environment(command, row)
    wrong = []
    for permission in PERMISSIONS:
        for fork in (False, True):
            who = Requester(
                row.login, permission, row.teams, from_fork=fork, wrote_change=row.wrote
            )
            decision = authorize(
                parsed, env, who, deployed_to=row.deployed_to, unapproved=row.unapproved
            )
            want = expected(command, row, permission, fork)
            if want is None and not decision.allowed:
                wrong.append(f"{permission}, fork={fork}: refused ({decision.reason})")
            elif want is not None and (decision.allowed or want not in decision.reason):
                wrong.append(
                    f"{permission}, fork={fork}: {decision.allowed=} {decision.reason!r}, "
                    f"expected a refusal saying {want!r}"
                )
    assert not wrong, "\n".join(wrong)


def test_the_matrix_covers_every_cell_and_both_outcomes():
    outcomes = [expected(*cell) is None for cell in MATRIX]
    assert len(MATRIX) == len(COMMANDS) * len(ENVIRONMENTS) * len(PERMISSIONS) * 2
    assert any(outcomes)
    assert not all(outcomes)


def test_a_refusal_names_the_requester_and_never_an_empty_reason():
    for command, row, permission, fork in MATRIX:
        parsed = parse_command(COMMANDS[command])
        assert parsed is not None
        env = environment(command, row)
        who = Requester(row.login, permission, row.teams, from_fork=fork, wrote_change=row.wrote)
        decision = authorize(
            parsed, env, who, deployed_to=row.deployed_to, unapproved=row.unapproved
        )
        if not decision.allowed:
            assert decision.reason.strip()
            assert "\n" not in decision.reason


# ------------------------------------------------------------------ part two: MCP over HTTP

TOKEN = "matrix-token-5f0c2a9e41d7"
PORT = 8765  # the port the server believes it binds; TestClient needs no socket
REMOTE = "mcp.example.test"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "authz-matrix", "version": "1"},
    },
}
LOOPBACK = f"127.0.0.1:{PORT}"
# (case, Host, Origin or None, Authorization or None, expected status)
TRANSPORT = [
    ("loopback with the token", LOOPBACK, None, f"Bearer {TOKEN}", 200),
    ("localhost with its origin", f"localhost:{PORT}", f"http://localhost:{PORT}", "ok", 200),
    ("a bad Host", "evil.example", None, "ok", 421),
    ("a rebinding name on the port", f"evil.example:{PORT}", None, "ok", 421),
    ("a bad Origin", LOOPBACK, "http://evil.example", "ok", 403),
    ("no token", LOOPBACK, None, None, 401),
    ("a wrong token", LOOPBACK, None, "Bearer " + "w" * len(TOKEN), 401),
    ("a token without Bearer", LOOPBACK, None, TOKEN, 401),
    ("no token and a bad Host", "evil.example", None, None, 401),
]


def _post(client: TestClient, host: str, origin: str | None, auth: str | None) -> int:
    headers = {
        "Host": host,
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
    }
    if origin:
        headers["Origin"] = origin
    if auth:
        headers["Authorization"] = f"Bearer {TOKEN}" if auth == "ok" else auth
    return client.post("/mcp", json=INITIALIZE, headers=headers).status_code


def _mcp_server(tmp_path):
    from pipeline_bot.mcp_server.server import build_server
    from pipeline_bot.mcp_server.trust import TrustedPolicy
    from pipeline_bot.repo_config import default_config
    from pipeline_bot.tools import ToolContext, build_registry

    policy = TrustedPolicy.from_config(default_config(), source="the matrix's defaults")
    return build_server(build_registry(), ToolContext, policy=policy)


def _remote_hosts_supported() -> bool:
    """Whether the MCP HTTP transport applies PIPELINE_BOT_MCP_ALLOWED_HOSTS (issue 15, point 5,
    landing separately): http_app takes the hosts, or its module reads the setting."""
    from pipeline_bot.mcp_server import http

    return "allowed_hosts" in inspect.signature(http.http_app).parameters or (
        "mcp_allowed_hosts" in inspect.getsource(http)
    )


def _standalone(tmp_path, monkeypatch, allowed_hosts: str | None = None) -> TestClient:
    from pipeline_bot.mcp_server import http
    from pipeline_bot.settings import get_settings

    if allowed_hosts:
        monkeypatch.setenv("PIPELINE_BOT_MCP_ALLOWED_HOSTS", allowed_hosts)
    get_settings.cache_clear()
    kwargs: dict[str, Any] = {"host": "127.0.0.1", "port": PORT, "token": TOKEN}
    if allowed_hosts and "allowed_hosts" in inspect.signature(http.http_app).parameters:
        kwargs["allowed_hosts"] = allowed_hosts
    return TestClient(http.http_app(_mcp_server(tmp_path), **kwargs))


@pytest.mark.parametrize(
    ("case", "host", "origin", "auth", "status"), TRANSPORT, ids=[t[0] for t in TRANSPORT]
)
def test_the_mcp_http_transport_matrix(tmp_path, monkeypatch, case, host, origin, auth, status):
    with _standalone(tmp_path, monkeypatch) as client:
        assert _post(client, host, origin, auth) == status, case


def test_the_mcp_http_transport_refuses_a_remote_bind_without_a_token(tmp_path):
    from pipeline_bot.errors import PipelineBotError
    from pipeline_bot.mcp_server.http import http_app

    with pytest.raises(PipelineBotError, match="PIPELINE_BOT_MCP_TOKEN"):
        http_app(_mcp_server(tmp_path), host="0.0.0.0", port=PORT, token=None)  # noqa: S104


REMOTE_ROWS = [
    ("an allowed remote host", REMOTE, None, "ok", 200),
    ("an allowed remote host with its https origin", REMOTE, f"https://{REMOTE}", "ok", 200),
    ("an allowed remote host without the token", REMOTE, None, None, 401),
    ("an allowed remote host, a foreign origin", REMOTE, "https://evil.example", "ok", 403),
    ("another remote host", "other.example.test", None, "ok", 421),
]


@pytest.mark.parametrize(
    ("case", "host", "origin", "auth", "status"), REMOTE_ROWS, ids=[t[0] for t in REMOTE_ROWS]
)
def test_the_mcp_http_transport_serves_an_allowed_remote_host(
    tmp_path, monkeypatch, case, host, origin, auth, status
):
    if not _remote_hosts_supported():
        pytest.skip(
            "PIPELINE_BOT_MCP_ALLOWED_HOSTS is not applied by mcp_server/http.py yet "
            "(issue 15, point 5): no remote host can be allowed"
        )
    with _standalone(tmp_path, monkeypatch, allowed_hosts=REMOTE) as client:
        assert _post(client, host, origin, auth) == status, case


# the App's /mcp: behind PIPELINE_BOT_API_TOKEN; without a token configured it is closed
APP_ROWS = [
    ("loopback with the token", LOOPBACK, None, "ok", 200),
    ("a bad Host", "evil.example", None, "ok", 421),
    ("a bad Origin", LOOPBACK, "http://evil.example", "ok", 403),
    ("no token", LOOPBACK, None, None, 401),
    ("a wrong token", LOOPBACK, None, "Bearer " + "w" * len(TOKEN), 401),
]


def _app(tmp_path, api_token: str | None, public_url: str | None = None) -> Any:
    """The App as `pipeline-bot serve` builds it: its HTTP options from the settings."""
    from pipeline_bot.app.context import AppServices
    from pipeline_bot.app.server import create_app
    from pipeline_bot.integrations.deliveries import DeliveryStore
    from pipeline_bot.integrations.github_app import GitHubApp
    from pipeline_bot.integrations.store import SqlStore
    from pipeline_bot.settings import Settings
    from tests.app_harness import API, SECRET, private_key

    url = f"sqlite:///{tmp_path / 'app.db'}"
    services = AppServices(
        deliveries=DeliveryStore(url),
        github=GitHubApp("1", private_key(), api_url=API),
        store=SqlStore(url),
    )
    extra: dict[str, Any] = {}
    if _app_remote_hosts_supported():
        from pipeline_bot.mcp_server.http import HttpOptions

        extra["http"] = HttpOptions.from_settings(Settings(public_url=public_url))
    return create_app(
        services, SECRET, api_token=api_token, repository=None, start_worker=False, **extra
    )


def _app_remote_hosts_supported() -> bool:
    """Whether the App's /mcp takes allowed hosts (PIPELINE_BOT_PUBLIC_URL, issue 15 point 5)."""
    from pipeline_bot.app.server import create_app

    return "http" in inspect.signature(create_app).parameters


@pytest.mark.parametrize(
    ("case", "host", "origin", "auth", "status"), APP_ROWS, ids=[t[0] for t in APP_ROWS]
)
def test_the_apps_mcp_matrix(tmp_path, case, host, origin, auth, status):
    with TestClient(_app(tmp_path, TOKEN)) as client:
        assert _post(client, host, origin, auth) == status, case


def test_the_apps_mcp_is_closed_without_an_api_token(tmp_path):
    with TestClient(_app(tmp_path, None)) as client:
        assert _post(client, LOOPBACK, None, "ok") == 401
        assert _post(client, LOOPBACK, None, None) == 401


APP_REMOTE = "bot.example.test"
APP_REMOTE_ROWS = [
    ("its public host", APP_REMOTE, None, "ok", 200),
    ("its public host and origin", APP_REMOTE, f"https://{APP_REMOTE}", "ok", 200),
    ("its public host without the token", APP_REMOTE, None, None, 401),
    ("its public host, a foreign origin", APP_REMOTE, "https://evil.example", "ok", 403),
    ("another remote host", "other.example.test", None, "ok", 421),
]


@pytest.mark.parametrize(
    ("case", "host", "origin", "auth", "status"),
    APP_REMOTE_ROWS,
    ids=[t[0] for t in APP_REMOTE_ROWS],
)
def test_the_apps_mcp_serves_its_public_host(tmp_path, case, host, origin, auth, status):
    if not _app_remote_hosts_supported():
        pytest.skip(
            "create_app takes no allowed hosts yet (PIPELINE_BOT_PUBLIC_URL on /mcp, issue 15, "
            "point 5): the App's public host cannot be allowed"
        )
    app = _app(tmp_path, TOKEN, public_url=f"https://{APP_REMOTE}")
    with TestClient(app) as client:
        assert _post(client, host, origin, auth) == status, case
