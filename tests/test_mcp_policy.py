"""The MCP server's environment policy comes from configuration it trusts (issue 14, point 3): the
repository it was started for (or the App's installation repository), never a tool call's
`repository`; a repository path that does not exist is an error, never the defaults; a namespace
that belongs to another environment is refused, so `assistants: deny` cannot be got round."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request

import anyio
import pytest
from mcp_types import ElicitResult

from mcp import Client, StdioServerParameters
from tests.conftest import GitRepo, stop_process, wait_until_up
from tests.test_mcp import SCRIPT, _free_port


def _config(namespace: str, production: str = "deny") -> str:
    """staging in a namespace of its own; production, protected, in the test's namespace."""
    return (
        "version: 1\nenvironments:\n"
        f"  - {{name: staging, namespace: {namespace}-staging, order: 1}}\n"
        f"  - {{name: production, namespace: {namespace}, order: 2, assistants: {production}}}\n"
    )


@pytest.fixture
def protected(tmp_path, kube_api, namespace, base_repo):
    """base_repo protects production (the test's namespace) from assistants; the variables the
    server needs to reach the Kubernetes API test server and a store of its own."""
    base_repo.commit("config", {".github/pipeline-bot.yml": _config(namespace)})
    env = {
        **os.environ,
        "KUBECONFIG": str(kube_api.kubeconfig(tmp_path / "kubeconfig", namespace)),
        "PIPELINE_BOT_DATABASE_URL": f"sqlite:///{tmp_path / 'pb.db'}",
    }
    return base_repo, env


@pytest.fixture(params=["stdio", "http"])
def started(request, protected):
    """`pipeline-bot mcp` started in the protected repository, over stdio or streamable HTTP;
    an HTTP server is stopped by its own process id."""
    repo, env = protected
    if request.param == "stdio":
        yield StdioServerParameters(command=SCRIPT, args=["mcp"], env=env, cwd=str(repo.root))
        return
    port = _free_port()
    proc = subprocess.Popen(
        [SCRIPT, "mcp", "--transport", "http", "--port", str(port)],
        cwd=repo.root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import socket

    wait_until_up(proc, lambda: socket.create_connection(("127.0.0.1", port), timeout=0.5).close())
    yield f"http://127.0.0.1:{port}/mcp"
    stop_process(proc)


async def _call(server, tool, arguments):
    """Call a tool as a client whose user accepts every confirmation; what was asked, too."""
    asked: list[str] = []

    async def accept(_ctx, params):
        asked.append(params.message)
        return ElicitResult(action="accept", content={"confirm": True})

    async with Client(server, mode="legacy", elicitation_callback=accept) as client:
        result = await client.call_tool(tool, arguments)
    return result, asked


def _deploy(server, **arguments):
    base = {"app_name": "shop", "image_tag": "shop:1", "strategy": "rolling"}
    config = {"config": {"timeout_seconds": 30}}
    return anyio.run(_call, server, "deploy_application", {**base, **config, **arguments})


def _deployments(kube_api, namespace):
    url = f"{kube_api.url}/apis/apps/v1/namespaces/{namespace}/deployments"
    with urllib.request.urlopen(url, timeout=5) as answer:
        return [d["metadata"]["name"] for d in json.load(answer)["items"]]


def _text(result):
    return result.content[0].text


# ---------------------------------------------------------------- the bypasses, closed


def test_a_protected_namespace_cannot_be_reached_through_another_environment(
    started, kube_api, namespace
):
    result, asked = _deploy(started, environment="staging", namespace=namespace)
    assert result.is_error is True, _text(result)
    assert f"namespace {namespace!r} belongs to environment 'production'" in _text(result)
    assert asked == []  # refused before the user is asked
    assert _deployments(kube_api, namespace) == []


def test_a_repository_argument_does_not_bring_its_own_policy(
    started, tmp_path, kube_api, namespace
):
    lenient = GitRepo(tmp_path / "lenient")
    lenient.commit("config", {".github/pipeline-bot.yml": _config(namespace, "confirm")})
    result, asked = _deploy(started, environment="production", repository=str(lenient.root))
    assert result.is_error is True, _text(result)
    assert "the repository this MCP server was started for" in _text(result)
    assert asked == []
    assert _deployments(kube_api, namespace) == []


def test_a_repository_that_does_not_exist_is_an_error_not_the_defaults(
    started, tmp_path, kube_api, namespace
):
    missing = str(tmp_path / "no-such-repository")
    result, asked = _deploy(started, environment="production", repository=missing)
    assert result.is_error is True
    assert f"repository {missing!r} does not exist" in _text(result)
    assert asked == []
    status, _ = anyio.run(
        _call,
        started,
        "get_deployment_status",
        {"app_name": "shop", "environment": "staging", "repository": missing},
    )
    assert status.is_error is True
    assert f"repository {missing!r} does not exist" in _text(status)


def test_the_policy_is_read_when_the_server_starts_not_at_each_call(protected, kube_api, namespace):
    """An assistant that can edit files cannot lift `assistants: deny` by rewriting the config
    of a server that is already running."""
    repo, env = protected
    server = StdioServerParameters(command=SCRIPT, args=["mcp"], env=env, cwd=str(repo.root))
    asked: list[str] = []

    async def accept(_ctx, params):
        asked.append(params.message)
        return ElicitResult(action="accept", content={"confirm": True})

    async def edit_then_deploy():
        async with Client(server, mode="legacy", elicitation_callback=accept) as client:
            await client.list_tools()  # the server runs; now the file changes under it
            repo.write({".github/pipeline-bot.yml": _config(namespace, "confirm")})
            return await client.call_tool(
                "deploy_application",
                {
                    "app_name": "shop",
                    "environment": "production",
                    "image_tag": "shop:1",
                    "strategy": "rolling",
                    "config": {"timeout_seconds": 30},
                },
            )

    result = anyio.run(edit_then_deploy)
    assert result.is_error is True, _text(result)
    assert "environment 'production' is protected from AI assistants" in _text(result)
    assert asked == []
    assert _deployments(kube_api, namespace) == []


# ---------------------------------------------------------------- what still works


def test_a_relative_repository_is_the_servers_own_and_its_environments_deploy(
    started, kube_api, namespace
):
    result, asked = _deploy(started, environment="staging", repository=".")
    assert result.is_error is False, _text(result)
    assert result.structured_content["status"] == "succeeded"
    assert len(asked) == 1
    assert _deployments(kube_api, f"{namespace}-staging") == ["shop"]


def test_another_repository_is_analysed_under_the_servers_policy(started, tmp_path):
    other = GitRepo(tmp_path / "other")
    other.commit("one", {"app.py": "print(1)\n"})
    other.commit(
        "two",
        {
            "app.py": "print(2)\n",
            # its own config would name an environment the server's policy does not know
            ".github/pipeline-bot.yml": "version: 1\nenvironments:\n  - {name: edge}\n",
        },
    )
    result, _ = anyio.run(
        _call, started, "analyze_changes", {"repository": str(other.root), "environment": "edge"}
    )
    assert result.is_error is True
    assert "unknown environment 'edge'" in _text(result)
    result, _ = anyio.run(_call, started, "analyze_changes", {"repository": str(other.root)})
    assert result.is_error is False, _text(result)
    assert result.structured_content["stats"]["files"] == 2


def test_a_config_path_argument_is_not_offered_over_mcp(started):
    async def schema():
        async with Client(started, mode="legacy") as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
        return tools["analyze_changes"].input_schema["properties"]

    assert "config" not in anyio.run(schema)
