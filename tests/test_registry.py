"""The tool registry: what every front end (CLI, Action, App, MCP) calls."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from pipeline_bot.errors import ToolError, ToolInputError, UnknownToolError
from pipeline_bot.integrations.git import GitSource
from pipeline_bot.models import Analysis
from pipeline_bot.tools import ToolAnnotations, ToolContext, ToolRegistry, build_registry


def test_analyze_changes_is_registered_read_only_with_schemas():
    tool = build_registry().get("analyze_changes")
    assert tool.annotations.as_mcp() == {
        "readOnlyHint": True,
        "destructiveHint": False,
        "idempotentHint": True,
        "openWorldHint": False,
    }
    assert set(tool.input_schema()["properties"]) == {
        "repository",
        "base",
        "head",
        "config",
        "environment",
        "predict_hours",
    }
    assert {"risk", "strategy", "findings", "affected_services", "stats"} <= set(
        tool.output_schema()["properties"]
    )
    assert "risk score" in tool.description


def test_calling_analyze_changes_returns_the_analysis(base_repo):
    base_repo.commit("x", {"src/shop/x.py": "x = 1\n"})
    result = build_registry().call(
        "analyze_changes", {"repository": str(base_repo.root)}, ToolContext(source=GitSource())
    )
    assert isinstance(result, Analysis)
    assert result.stats.files == 1


def test_unknown_tool_names_the_known_ones():
    expected = (
        "unknown tool 'deploy'; known tools: abort_deployment, analyze_changes, "
        "approve_promotion, build_image, deploy_application, deploy_plan, execute_pipeline, "
        "get_deploy_plan, get_deployment_status, get_plan_status, get_pod_events, "
        "get_workflow_run, investigate_deploy, list_workflow_runs, monitor_infrastructure, "
        "promote_deployment, promote_plan, push_image, query_metrics, resolve_image, "
        "review_change, rollback_deployment"
    )
    with pytest.raises(UnknownToolError, match=expected):
        build_registry().call("deploy", {}, ToolContext())


def test_bad_arguments_name_the_field():
    with pytest.raises(ToolInputError) as err:
        build_registry().call("analyze_changes", {"head": 3, "colour": "red"}, ToolContext())
    assert err.value.problems == [
        "head: Input should be a valid string",
        "colour: Extra inputs are not permitted",
    ]


def test_a_tool_without_its_collaborator_says_which_is_missing():
    with pytest.raises(ToolError, match="needs a repository reader"):
        build_registry().call("analyze_changes", {}, ToolContext())


class _Echo(BaseModel):
    text: str


def test_decorator_registers_and_duplicate_names_are_refused():
    registry = ToolRegistry()
    notes = ToolAnnotations(read_only=True, destructive=False, idempotent=True, open_world=False)

    @registry.tool(
        name="echo", title="Echo", input_model=_Echo, output_model=_Echo, annotations=notes
    )
    def echo(args: _Echo, ctx: ToolContext) -> _Echo:
        """Say it back."""
        return args

    assert [t.name for t in registry.list()] == ["echo"]
    assert registry.get("echo").description == "Say it back."
    assert registry.call("echo", {"text": "hi"}, ToolContext()) == _Echo(text="hi")
    with pytest.raises(ValueError, match="already registered"):
        registry.tool(
            name="echo", title="Echo", input_model=_Echo, output_model=_Echo, annotations=notes
        )(echo)
