"""The App's /mcp holds every call to its installation repository's config, read from that
repository's default branch through GitHub (issue 14, point 3), never to whatever config sits in
the App process's working directory."""

from __future__ import annotations

import threading
import time

import anyio
import httpx2
import pytest
import respx
import uvicorn
from mcp.client.streamable_http import streamable_http_client
from mcp_types import ElicitResult

from mcp import Client
from pipeline_bot.app.context import AppServices
from pipeline_bot.app.server import create_app
from pipeline_bot.integrations.deliveries import DeliveryStore
from pipeline_bot.integrations.github_app import GitHubApp
from pipeline_bot.integrations.store import SqlStore
from tests.app_harness import API, API_TOKEN, SECRET, gh_fixture, private_key
from tests.conftest import GitRepo
from tests.fakes.github_api import REPO
from tests.test_mcp import _free_port

__all__ = ["gh_fixture"]  # the `gh` fixture (GitHub's API double), for pytest to find


def _config(production: str) -> str:
    return (
        "version: 1\nenvironments:\n"
        "  - {name: staging, namespace: shop-staging, order: 1}\n"
        f"  - {{name: production, namespace: shop, order: 2, assistants: {production}}}\n"
    )


@pytest.fixture
def serve_app(tmp_path, gh, monkeypatch):
    """Start the App (with /mcp) on uvicorn in this process, GitHub's API answered by the
    double through respx; the working directory is a repository whose config lets assistants
    deploy to production, which /mcp must not use. Yields a function of the installation
    repository that starts one and gives its /mcp URL."""
    lenient = GitRepo(tmp_path / "app-cwd")
    lenient.commit("config", {".github/pipeline-bot.yml": _config("confirm")})
    monkeypatch.chdir(lenient.root)
    running: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(repository: str | None) -> str:
        url = f"sqlite:///{tmp_path / f'app{len(running)}.db'}"
        services = AppServices(
            deliveries=DeliveryStore(url),
            github=GitHubApp("1", private_key(), api_url=API),
            store=SqlStore(url),
        )
        app = create_app(
            services, SECRET, api_token=API_TOKEN, repository=repository, start_worker=False
        )
        port = _free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        running.append((server, thread))
        deadline = time.monotonic() + 30
        while not server.started:  # a server in another thread, waited on with a deadline
            assert thread.is_alive(), "the App stopped while starting"
            assert time.monotonic() < deadline, "the App did not start within 30 s"
            time.sleep(0.02)
        return f"http://127.0.0.1:{port}/mcp"

    with respx.mock(assert_all_called=False) as mock:
        mock.route(url__startswith=API).mock(side_effect=gh.respx_side_effect)
        yield start
        for server, thread in running:
            server.should_exit = True
            thread.join(timeout=10)


def _call(url: str, tool: str, arguments: dict[str, object]) -> tuple[object, list[str]]:
    """Call a tool over the App's /mcp with the API token; a user who declines every
    confirmation (nothing is ever deployed here), and what they were asked."""
    asked: list[str] = []

    async def decline(_ctx, params):
        asked.append(params.message)
        return ElicitResult(action="decline")

    async def run():
        headers = {"Authorization": f"Bearer {API_TOKEN}"}
        async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
            transport = streamable_http_client(url, http_client=http)
            async with Client(transport, mode="legacy", elicitation_callback=decline) as client:
                return await client.call_tool(tool, arguments)

    return anyio.run(run), asked


DEPLOY = {
    "app_name": "shop",
    "environment": "production",
    "image_tag": "shop:1",
    "strategy": "rolling",
}


def test_mcp_on_the_app_refuses_what_the_installation_repositorys_config_protects(serve_app, gh):
    gh.config = _config("deny")  # on the default branch of the installation repository
    url = serve_app(REPO)
    result, asked = _call(url, "deploy_application", DEPLOY)
    assert result.is_error is True, result.content[0].text
    assert "environment 'production' is protected from AI assistants" in result.content[0].text
    assert asked == []  # refused before anyone is asked
    # the installation, found with the App's JWT before any installation token; the config,
    # read from the default branch the repository names
    paths = [c.path.removeprefix("/api/v3") for c in gh.calls]
    lookup = paths.index(f"/repos/{REPO}/installation")
    assert lookup < paths.index("/app/installations/1/access_tokens")
    reads = gh.made("GET", r"/contents/\.github/pipeline-bot\.yml$")
    assert reads
    assert {c.query.get("ref") for c in reads} == {"master"}

    aimed, _ = _call(
        url,
        "get_deployment_status",
        {"app_name": "shop", "environment": "staging", "namespace": "shop"},
    )
    assert aimed.is_error is True
    assert "namespace 'shop' belongs to environment 'production'" in aimed.content[0].text


def test_mcp_on_the_app_follows_the_default_branch_at_each_call(serve_app, gh):
    gh.config = _config("confirm")
    url = serve_app(REPO)
    _, asked = _call(url, "deploy_application", DEPLOY)
    assert len(asked) == 1  # allowed with confirmation (and declined here)
    gh.config = _config("deny")  # a change merged to the default branch
    result, asked = _call(url, "deploy_application", DEPLOY)
    assert result.is_error is True
    assert "protected from AI assistants" in result.content[0].text
    assert asked == []


def test_mcp_on_the_app_refuses_when_the_app_is_not_installed_on_the_repository(serve_app, gh):
    gh.config = _config("confirm")
    url = serve_app("acme/elsewhere")
    result, asked = _call(url, "deploy_application", DEPLOY)
    assert result.is_error is True
    assert "not installed on acme/elsewhere" in result.content[0].text
    assert asked == []
    assert not gh.made("GET", r"/contents/")


def test_mcp_on_the_app_without_an_installation_repository_refuses_and_says_what_to_set(
    serve_app, gh
):
    gh.config = _config("confirm")
    result, asked = _call(serve_app(None), "deploy_application", DEPLOY)
    assert result.is_error is True
    assert "set GITHUB_REPOSITORY (owner/name)" in result.content[0].text
    assert asked == []
