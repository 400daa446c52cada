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
from pydantic import BaseModel

from mcp import Client, StdioServerParameters
from pipeline_bot.core.policy import assistant_refusal
from pipeline_bot.errors import ConfigError, NotARepositoryError
from pipeline_bot.mcp_server.server import build_server
from pipeline_bot.mcp_server.trust import TrustedPolicy, installation_policy
from pipeline_bot.repo_config import Environment, RepoConfig, parse_repo_config
from pipeline_bot.tools import ToolContext, ToolRegistry
from pipeline_bot.tools.registry import ToolAnnotations
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


def test_a_server_started_in_a_repository_with_a_broken_config_does_not_start(protected):
    repo, env = protected
    repo.write({".github/pipeline-bot.yml": "version: 1\nenvironments: [{name: Prod}]\n"})
    proc = subprocess.run(
        [SCRIPT, "mcp"],
        cwd=repo.root,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "error: invalid configuration: " in proc.stderr
    assert "pipeline-bot.yml" in proc.stderr


# ------------------------------------------- --repo and --config: for clients without a cwd


def _started_elsewhere(tmp_path, env, *args):
    """`pipeline-bot mcp ARGS` over stdio from a folder outside any repository, as Claude
    Desktop starts it."""
    elsewhere = tmp_path / "desktop"
    elsewhere.mkdir(exist_ok=True)
    return StdioServerParameters(
        command=SCRIPT, args=["mcp", *map(str, args)], env=env, cwd=str(elsewhere)
    )


def test_a_client_that_cannot_set_the_working_directory_names_the_repository(
    protected, tmp_path, kube_api, namespace
):
    repo, env = protected
    server = _started_elsewhere(tmp_path, env, "--repo", repo.root)
    refused, asked = _deploy(server, environment="production")
    assert refused.is_error is True, _text(refused)
    assert "environment 'production' is protected from AI assistants" in _text(refused)
    assert asked == []
    assert _deployments(kube_api, namespace) == []
    # "." is the --repo repository, and its staging environment deploys
    result, asked = _deploy(server, environment="staging", repository=".")
    assert result.is_error is False, _text(result)
    assert len(asked) == 1
    assert _deployments(kube_api, f"{namespace}-staging") == ["shop"]


def test_a_config_file_given_at_start_is_the_policy_not_the_repositorys_own(
    protected, tmp_path, kube_api, namespace
):
    repo, env = protected
    repo.write({".github/pipeline-bot.yml": _config(namespace, "confirm")})  # lenient
    strict = tmp_path / "policy.yml"
    strict.write_text(_config(namespace))
    server = _started_elsewhere(tmp_path, env, "--repo", repo.root, "--config", strict)
    result, asked = _deploy(server, environment="production")
    assert result.is_error is True, _text(result)
    assert "environment 'production' is protected from AI assistants" in _text(result)
    assert asked == []
    assert _deployments(kube_api, namespace) == []


@pytest.mark.parametrize(
    ("where", "config", "said"),
    [
        ("nowhere", None, "the MCP server's repository '{tmp}/nowhere' does not exist"),
        ("plain", None, "--repo '{tmp}/plain' is not in a git repository"),
        ("repo", "missing.yml", "file not found"),
        ("repo", "broken.yml", "invalid configuration: {tmp}/broken.yml"),
    ],
)
def test_a_bad_repo_or_config_is_one_error_line_and_the_server_never_starts(
    protected, tmp_path, where, config, said
):
    base, env = protected
    (tmp_path / "plain").mkdir()
    (tmp_path / "broken.yml").write_text("version: 1\nenvironments: [{name: Prod}]\n")
    args = ["--repo", str(base.root if where == "repo" else tmp_path / where)]
    if config:
        args += ["--config", str(tmp_path / config)]
    proc = subprocess.run(
        [SCRIPT, "mcp", *args],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""  # no MCP message: the server did not start
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error: "), proc.stderr
    assert said.format(tmp=tmp_path) in proc.stderr


# ---------------------------------------------------- the rule, environment by environment

ENVIRONMENTS = RepoConfig(
    version=1,
    environments=[
        Environment(name="staging", namespace="shop-staging"),
        Environment(name="preview", kube_context="preview"),  # namespace: its name
        Environment(name="production", namespace="shop", assistants="deny", order=2),
        Environment(name="canary", namespace="shop", kube_context="other-cluster"),
        Environment(name="mirror", namespace="shop"),  # production's namespace, same context
    ],
)


@pytest.mark.parametrize(
    ("environment", "namespace", "changes_cluster", "refused"),
    [
        ("staging", None, True, None),
        ("staging", "shop-staging", True, None),
        ("staging", "scratch", True, None),  # no environment's namespace
        ("staging", "shop", True, "namespace 'shop' belongs to environment 'production'"),
        ("staging", " Shop ", True, "belongs to environment 'production'"),
        ("staging", "preview", True, "belongs to environment 'preview', not 'staging'"),
        ("staging", "shop", False, "belongs to environment 'production'"),
        ("preview", "shop-staging", False, "belongs to environment 'staging'"),
        ("production", None, True, "environment 'production' is protected"),
        ("production", "scratch", True, "environment 'production' is protected"),
        ("production", None, False, None),  # reading is allowed
        ("canary", None, True, None),  # the same name on another cluster
        ("mirror", None, True, "which protected environment 'production'"),
        ("mirror", None, False, None),
    ],
)
def test_an_assistant_reaches_an_environment_only_as_the_config_defines_it(
    environment, namespace, changes_cluster, refused
):
    reason = assistant_refusal(
        ENVIRONMENTS, environment, namespace, changes_cluster=changes_cluster
    )
    if refused is None:
        assert reason is None
    else:
        assert reason is not None
        assert refused in reason


def test_without_environments_the_defaults_namespaces_are_guarded_too():
    config = RepoConfig(version=1)
    reason = assistant_refusal(config, "staging", "production", changes_cluster=True)
    assert reason is not None
    assert "belongs to environment 'production'" in reason


def test_the_servers_repository_must_exist_and_its_config_file_too(tmp_path, base_repo):
    with pytest.raises(NotARepositoryError, match="does not exist"):
        TrustedPolicy.from_repository(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="file not found"):
        TrustedPolicy.from_repository(base_repo.root, tmp_path / "missing.yml")
    inside = TrustedPolicy.from_repository(base_repo.root / "src" / "shop")
    assert inside.root == base_repo.root.resolve()
    assert "has no .github/pipeline-bot.yml" in inside.source


def test_a_tool_context_without_a_config_refuses_a_repository_that_does_not_exist(tmp_path):
    with pytest.raises(NotARepositoryError, match="does not exist"):
        ToolContext().repo_config(str(tmp_path / "gone"))


# ---------------------------------------------------- a config the front end read (the App)


class Probe(BaseModel):
    repository: str = "."
    environment: str
    namespace: str | None = None


class Seen(BaseModel):
    repository: str
    environments: list[str]


def _probe_registry():
    """One read-only tool that reports the config it is handed, and one destructive."""
    registry = ToolRegistry()
    for name, hints in (
        ("which_config", ToolAnnotations(True, False, True, False)),
        ("change_it", ToolAnnotations(False, True, False, True)),
    ):

        def seen(args: Probe, ctx: ToolContext) -> Seen:
            config = ctx.repo_config(args.repository)
            return Seen(
                repository=args.repository, environments=[e.name for e in config.environments]
            )

        registry.tool(
            name=name, title=name, input_model=Probe, output_model=Seen, annotations=hints
        )(seen)
    return registry


async def _in_memory(server, tool, arguments):
    async def accept(_ctx, params):
        return ElicitResult(action="accept", content={"confirm": True})

    async with Client(server, mode="legacy", elicitation_callback=accept) as client:
        return await client.call_tool(tool, arguments)


def test_the_apps_config_is_the_policy_whatever_repository_a_call_names(tmp_path):
    lenient = GitRepo(tmp_path / "lenient")
    lenient.commit("config", {".github/pipeline-bot.yml": _config("shop", "confirm")})
    installation = parse_repo_config(_config("shop"), source="acme/shop on main")
    policy = TrustedPolicy.from_config(lambda: installation, source="acme/shop on main")
    server = build_server(_probe_registry(), ToolContext, policy=policy)

    seen = anyio.run(_in_memory, server, "which_config", {"environment": "staging"})
    assert seen.is_error is False, _text(seen)
    assert seen.structured_content["environments"] == ["staging", "production"]

    args = {"environment": "production", "repository": str(lenient.root)}
    changed = anyio.run(_in_memory, server, "change_it", args)
    assert changed.is_error is True
    assert "environment 'production' is protected from AI assistants" in _text(changed)

    args = {"environment": "staging", "namespace": "shop"}
    aimed = anyio.run(_in_memory, server, "which_config", args)
    assert aimed.is_error is True
    assert "namespace 'shop' belongs to environment 'production'" in _text(aimed)


def test_the_app_policy_reads_the_installation_repository_at_each_call_or_refuses():
    asked: list[str] = []

    def load(repository: str) -> RepoConfig:
        asked.append(repository)
        return parse_repo_config(_config("shop"), source=f"{repository} on main")

    server = build_server(
        _probe_registry(), ToolContext, policy=installation_policy("acme/shop", load)
    )
    for _ in range(2):
        seen = anyio.run(_in_memory, server, "which_config", {"environment": "staging"})
        assert seen.is_error is False, _text(seen)
    assert asked == ["acme/shop", "acme/shop"]  # one read per call, never one per check

    server = build_server(_probe_registry(), ToolContext, policy=installation_policy(None, load))
    result = anyio.run(_in_memory, server, "which_config", {"environment": "staging"})
    assert result.is_error is True
    assert "set GITHUB_REPOSITORY (owner/name)" in _text(result)


def test_a_server_started_outside_any_repository_changes_no_cluster(tmp_path, base_repo):
    """The defaults must not stand in for the policy of whatever repository a call names."""
    outside = tmp_path / "desktop"
    outside.mkdir()
    policy = TrustedPolicy.from_repository(outside)
    server = build_server(_probe_registry(), ToolContext, policy=policy)
    args = {"environment": "staging", "repository": str(base_repo.root)}
    changed = anyio.run(_in_memory, server, "change_it", args)
    assert changed.is_error is True
    assert "started outside any repository" in _text(changed)
    read = anyio.run(_in_memory, server, "which_config", args)
    assert read.is_error is False, _text(read)
