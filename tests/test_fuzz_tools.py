"""Fuzzing the MCP tools' inputs (issue 15, deliverable 5): every registry tool called through
`ToolRegistry.call` (what the MCP server, the CLI, the Action and the App all call) with
generated arguments, from each input model's own field names and hostile values, gives its
output model or raises a PipelineBotError (ToolInputError for bad arguments); never another
exception, and never a deploy record left `running` once the call returned.

Two contexts: a real repository with a git reader and a SQLite deploy store (no cluster: the
tools that need one say so), and, marked `integration`, the Kubernetes API test server, where
the deploy tools act for real. Deterministic: derandomized, no example database."""

from __future__ import annotations

import math
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pipeline_bot.errors import PipelineBotError, ToolInputError
from pipeline_bot.integrations.git import GitSource
from pipeline_bot.integrations.store import SqlStore
from pipeline_bot.tools import ToolContext, build_registry
from pipeline_bot.tools.deploy import DeployConfig

# CI runs a short fuzz; FUZZ_EXAMPLES=500 (bench/security.py sets it) runs the long one
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "15"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.filter_too_much,
    ],
)
REGISTRY = build_registry()
TOOLS = sorted(t.name for t in REGISTRY.list())
REPO = "{repo}"  # replaced by the test repository's path
CONFIG = (
    "version: 1\n"
    "environments:\n"
    "  - {name: staging, namespace: NS, order: 1, replicas: 1, strategy: rolling}\n"
    "  - {name: production, namespace: NS, order: 2, replicas: 1, requires: [staging]}\n"
    "services:\n"
    "  - {name: shop, paths: ['src/**'], image: registry.local/shop}\n"
)

strings = st.one_of(
    st.sampled_from(
        [
            "",
            ".",
            "..",
            REPO,
            REPO + "/src",
            REPO + "/.github/pipeline-bot.yml",
            "/nonexistent/repo",
            "../../etc/passwd",
            "staging",
            "production",
            "Staging",
            "shop",
            "other-app",
            "kube-system",
            "default",
            "HEAD",
            "HEAD~1",
            "HEAD~1000",
            "main",
            "0" * 40,
            "-x",
            "--output=/tmp/pwned",
            "a" * 300,
            "v1",
            "registry.local/shop:v1",
            "registry.local/shop@sha256:" + "0" * 64,
            "UPPER:case",
            "up",
            "sum(rate(http_requests_total[1m]))",
            "2026-01-01T00:00:00Z",
            "current",
            "rolling",
            "canary",
            "blue-green",
            "server",
        ]
    ),
    st.text(max_size=30),
)
numbers = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**64),
    st.sampled_from([0, -1, 0.001, 1e300, 1e-300, math.inf, -math.inf, math.nan]),
    st.floats(),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, strings)
anything = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(strings, children, max_size=3)
    ),
    max_leaves=8,
)
deploy_config = st.dictionaries(
    st.sampled_from([*DeployConfig.model_fields, "unknown"]),
    st.one_of(scalars, st.lists(st.one_of(strings, numbers), max_size=4)),
    max_size=5,
)


def _typed(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values of the JSON Schema type a field declares (hostile ones among them)."""
    if "anyOf" in schema:
        return st.one_of([_typed(s) for s in schema["anyOf"]])
    if "enum" in schema:
        return st.one_of(st.sampled_from(schema["enum"]), strings)
    kind = schema.get("type")
    if kind == "string":
        return strings
    if kind in ("number", "integer"):
        return numbers
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        return st.lists(_typed(schema.get("items", {})), max_size=4)
    if "$ref" in schema:  # the deploy tool's config
        return deploy_config
    return anything


@st.composite
def arguments(draw: st.DrawFn, tool: str) -> dict[str, Any]:
    """Some of the tool's own fields, mostly of their declared types, sometimes anything, and
    sometimes a field the tool does not have."""
    schema = REGISTRY.get(tool).input_schema()
    properties: dict[str, Any] = schema.get("properties", {})
    args: dict[str, Any] = {}
    for name in sorted(
        set(schema.get("required", [])) | set(draw(st.sets(st.sampled_from(sorted(properties)))))
    ):
        wild = draw(st.integers(min_value=0, max_value=9)) == 0
        args[name] = draw(anything if wild else _typed(properties[name]))
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        args["unexpected"] = draw(anything)
    if "repository" in properties and draw(st.integers(min_value=0, max_value=3)):
        args.setdefault("repository", REPO)
    return args


def _fill(value: Any, repo: str) -> Any:
    if isinstance(value, str):
        return value.replace(REPO, repo)
    if isinstance(value, list):
        return [_fill(v, repo) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, repo) for k, v in value.items()}
    return value


def _call(tool: str, args: dict[str, Any], ctx: ToolContext, repo: str) -> None:
    filled = _fill(args, repo)
    result: object = None
    refused: PipelineBotError | None = None
    try:
        result = REGISTRY.call(tool, filled, ctx)
    except PipelineBotError as exc:  # ToolInputError is one: a refusal, never a traceback
        refused = exc
    if isinstance(refused, ToolInputError):
        event("refused: its input")
        assert refused.problems
        assert refused.tool == tool
    elif refused is not None:
        event(f"refused: {type(refused).__name__}")
        assert refused.message
    else:
        event("ran")
        assert isinstance(result, REGISTRY.get(tool).output_model)
    if ctx.store is not None:
        for env in ("staging", "production"):
            left = ctx.store.history(env, status="running", limit=5)
            assert not left, f"{tool} left a record running: {left[0].id} at {left[0].step}"


@pytest.fixture
def fuzz_repo(base_repo):
    base_repo.commit(
        "config and a change",
        {
            ".github/pipeline-bot.yml": CONFIG.replace("NS", "shop"),
            "src/shop/cart.py": "def total(items):\n    return sum(items) + 0\n",
        },
    )
    return base_repo


@pytest.fixture
def local_context(fuzz_repo, tmp_path):
    return ToolContext(source=GitSource(), store=SqlStore(f"sqlite:///{tmp_path / 'fuzz.db'}"))


@pytest.mark.parametrize("tool", TOOLS)
def test_any_arguments_give_the_output_or_a_pipeline_bot_error(tool, fuzz_repo, local_context):
    @FUZZ
    @given(args=arguments(tool))
    def run(args):
        _call(tool, args, local_context, str(fuzz_repo.root))

    run()


# ---------------------------------------------------------------- on the Kubernetes API test server

CLUSTER_TOOLS = [
    "deploy_application",
    "rollback_deployment",
    "promote_deployment",
    "abort_deployment",
    "get_deployment_status",
    "get_pod_events",
]


@st.composite
def cluster_arguments(draw: st.DrawFn, tool: str) -> dict[str, Any]:
    """Mostly well-formed calls, so the tools act on the cluster, with one field hostile."""
    args: dict[str, Any] = {
        "environment": draw(st.sampled_from(["staging", "production"])),
        "repository": REPO,
    }
    if tool in ("get_pod_events",):
        args["app_name"] = "shop"
    if tool == "deploy_application":
        args["image_tag"] = draw(st.sampled_from(["v1", "v2", "registry.local/shop:v3"]))
        args["strategy"] = draw(st.sampled_from(["auto", "rolling"]))
        args["config"] = {"timeout_seconds": 30}
    hostile = draw(st.sampled_from([*REGISTRY.get(tool).input_model.model_fields]))
    value = draw(st.one_of(strings, numbers, anything))
    if hostile == "config":
        config = draw(deploy_config)
        args["config"] = {**args["config"], **config} if draw(st.booleans()) else config
    else:
        args[hostile] = value
    return args


@pytest.fixture
def cluster_context(fuzz_repo, kube_api, namespace, tmp_path):
    from pipeline_bot.integrations.kubernetes import KubernetesCluster

    fuzz_repo.commit("namespace", {".github/pipeline-bot.yml": CONFIG.replace("NS", namespace)})
    kubeconfig = str(kube_api.kubeconfig(tmp_path / "kubeconfig", namespace))
    return ToolContext(
        source=GitSource(),
        cluster=lambda env: KubernetesCluster.connect(kubeconfig=kubeconfig),
        store=SqlStore(f"sqlite:///{tmp_path / 'fuzz.db'}"),
    )


@pytest.mark.integration
@pytest.mark.parametrize("tool", CLUSTER_TOOLS)
def test_deploy_tools_on_a_cluster_give_the_output_or_a_pipeline_bot_error(
    tool, fuzz_repo, cluster_context
):
    @settings(FUZZ, max_examples=max(3, EXAMPLES // 3))
    @given(args=cluster_arguments(tool))
    def run(args):
        _call(tool, args, cluster_context, str(fuzz_repo.root))

    run()
