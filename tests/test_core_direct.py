"""Direct, table-driven tests of four pure core modules the front ends' tests reached only
through a model endpoint or a cluster: core/agent.py (the agent loop's decisions), core/render.py
(a DeployRequest to objects), core/metrics.py (the reported change metrics) and core/prompt.py
(what a model is shown, within its budget)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import BaseModel

from pipeline_bot.core import agent, metrics, prompt, render
from pipeline_bot.core.agent import AgentState, Finish, ModelTurn, RunTools, Stop, ToolRequest
from pipeline_bot.core.analysis import analyze
from pipeline_bot.models import (
    ChangeSet,
    Commit,
    ContainerResources,
    DeployRequest,
    FileChange,
    FileStatus,
    ReadinessProbe,
)
from pipeline_bot.repo_config import RepoConfig

# --------------------------------------------------------------------------- core/agent.py


def state(max_steps: int = 4) -> AgentState:
    return AgentState(
        messages=[{"role": "system", "content": "s"}],
        offered=frozenset({"get_status", "analyze_changes"}),
        known=frozenset({"get_status", "analyze_changes", "deploy_application"}),
        max_steps=max_steps,
    )


def call(name: str, arguments: str = "{}", id: str = "c1") -> ToolRequest:
    return ToolRequest(id=id, name=name, arguments=arguments)


@pytest.mark.parametrize(
    ("calls", "approved", "error", "refused"),
    [
        ([call("get_status", '{"environment": "staging"}')], ["get_status"], None, None),
        ([call("get_status", "")], ["get_status"], None, None),  # no arguments: an empty object
        ([call("deploy_application")], [], "is not read-only", "deploy_application is not"),
        ([call("rm_rf")], [], "there is no tool named 'rm_rf'", "no such tool"),
        ([call("get_status", "{not json")], [], "not valid JSON", None),
        ([call("get_status", "[1, 2]")], [], "must be a JSON object", None),
        (
            [call("get_status", id="a"), call("deploy_application", id="b")],
            ["get_status"],  # the allowed call runs, the other is answered with an error
            "is not read-only",
            "deploy_application is not",
        ),
    ],
)
def test_advance_runs_only_offered_tools_with_object_arguments(calls, approved, error, refused):
    s = state()
    step = agent.advance(s, ModelTurn(content=None, tool_calls=calls, prompt_tokens=7))
    assert isinstance(step, RunTools)
    assert [c.name for c, _ in step.calls] == approved
    errors = [m["content"] for m in s.messages if m["role"] == "tool"]
    if error is None:
        assert errors == []
    else:
        assert len(errors) == 1
        assert error in errors[0]
    if refused is None:
        assert s.refused == []
    else:
        assert refused in s.refused[0].reason or refused == s.refused[0].reason
    assert s.usage.prompt_tokens == 7
    assert s.messages[1]["tool_calls"][0]["function"]["name"] == calls[0].name


@pytest.mark.parametrize(
    ("turn", "kind", "text"),
    [
        (ModelTurn(content="all good"), Finish, "all good"),
        (ModelTurn(content=None), Stop, "neither a tool call nor content"),
        (ModelTurn(content=""), Stop, "neither a tool call nor content"),
    ],
)
def test_advance_finishes_on_content_and_stops_on_nothing(turn, kind, text):
    step = agent.advance(state(), turn)
    assert isinstance(step, kind)
    assert text in (step.content if isinstance(step, Finish) else step.reason)


def test_the_step_limit_stops_a_model_that_keeps_calling_and_answers_every_call():
    s = state(max_steps=2)
    first = agent.advance(s, ModelTurn(content=None, tool_calls=[call("get_status", id="1")]))
    assert isinstance(first, RunTools)
    agent.record_result(s, first.calls[0][0], ok=True, text="{}")
    second = agent.advance(s, ModelTurn(content=None, tool_calls=[call("get_status", id="2")]))
    assert isinstance(second, Stop)
    assert "step limit (2 steps)" in second.reason
    answered = [m["tool_call_id"] for m in s.messages if m["role"] == "tool"]
    assert answered == ["1", "2"]  # every call the model made got an answer
    assert [(c.name, c.ok) for c in s.tool_calls] == [("get_status", True), ("get_status", False)]


def test_ask_for_repair_counts_and_cuts_the_problem_text():
    s = state()
    agent.ask_for_repair(s, "x" * 5000)
    assert s.repairs == 1
    assert len(s.messages[-1]["content"]) < 1700
    assert s.messages[-1]["content"].endswith("Answer again with only the JSON object.")


class Inner(BaseModel):
    note: str | None = None


class Outer(BaseModel):
    title: str
    count: int = 3
    inner: Inner
    items: list[Inner] = []


def test_strict_schema_closes_every_object_and_requires_every_property():
    schema = agent.strict_schema(Outer)
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["title", "count", "inner", "items"]
    inner = schema["$defs"]["Inner"]
    assert inner["additionalProperties"] is False
    assert inner["required"] == ["note"]
    text = json.dumps(schema)
    assert '"default"' not in text
    assert '"title": "' not in text  # titles dropped, the property named title kept
    assert "title" in schema["properties"]
    assert Outer.model_json_schema()["properties"]["count"]["default"] == 3  # a copy was changed


# --------------------------------------------------------------------------- core/render.py


@pytest.mark.parametrize(
    ("extra", "container_keys", "resources", "probe_port"),
    [
        ({}, {"name", "image", "ports"}, None, None),
        (
            {"resources": ContainerResources(cpu_request="100m", memory_limit="256Mi")},
            {"name", "image", "ports", "resources"},
            {"requests": {"cpu": "100m"}, "limits": {"memory": "256Mi"}},
            None,
        ),
        (
            {"readiness": ReadinessProbe(path="/ready")},
            {"name", "image", "ports", "readinessProbe"},
            None,
            9000,  # the container port when the probe names none
        ),
        (
            {"readiness": ReadinessProbe(path="/ready", port=9100)},
            {"name", "image", "ports", "readinessProbe"},
            None,
            9100,
        ),
    ],
)
def test_render_app(extra, container_keys, resources, probe_port):
    req = DeployRequest(
        environment="staging", app="shop", image="registry.local/shop:1.2", port=9000, **extra
    )
    deployment, service = render.render_app(req, namespace="staging", replicas=3)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert set(container) == container_keys
    assert container["image"] == "registry.local/shop:1.2"
    assert container["ports"] == [{"name": "http", "containerPort": 9000}]
    assert container.get("resources") == resources
    if probe_port is not None:
        assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": probe_port}
    assert deployment["spec"]["replicas"] == 3
    labels = {render.APP_LABEL: "shop"}
    assert deployment["spec"]["selector"]["matchLabels"] == labels
    assert deployment["spec"]["template"]["metadata"]["labels"] == labels
    assert service["spec"]["selector"] == labels
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": 9000}]
    assert {deployment["metadata"]["namespace"], service["metadata"]["namespace"]} == {"staging"}
    # the label dicts are separate objects: changing one never changes another
    deployment["metadata"]["labels"]["x"] = "y"
    assert "x" not in service["spec"]["selector"]


# --------------------------------------------------------------------------- core/metrics.py


def fc(path: str, added: int, deleted: int = 0) -> FileChange:
    return FileChange(path=path, status=FileStatus.MODIFIED, additions=added, deletions=deleted)


def commit(message: str) -> Commit:
    return Commit(
        sha="a" * 40, author="Ann", email="ann@example.com", timestamp=datetime.now(UTC),
        message=message,
    )  # fmt: skip


HISTORY = {"ndev": 3.0, "age": 12.3456, "nuc": 5.0, "exp": 40.0, "rexp": 2.555, "sexp": 9.0}


@pytest.mark.parametrize(
    ("files", "messages", "history", "expected"),
    [
        (
            [fc("src/a/x.py", 10), fc("src/a/y.py", 10)],
            ["add things"],
            None,
            {"subsystems": 1, "directories": 1, "files": 2, "entropy": 1.0, "is_fix": False},
        ),
        (
            [fc("src/a/x.py", 5, 5), fc("docs/b.md", 0, 0)],
            ["fix: crash on empty cart"],
            None,
            {
                "subsystems": 2,
                "directories": 2,
                "lines_added": 5,
                "lines_deleted": 5,
                "entropy": 0.0,
                "is_fix": True,
            },
        ),
        (
            [fc("a.py", 1)],
            ["change"],
            HISTORY,
            {
                "developers": 3,
                "age_days": 12.35,
                "prior_changes": 5,
                "author_experience": 40,
                "recent_experience": 2.56,
                "subsystem_experience": 9,
                "history_available": True,
            },
        ),
    ],
)
def test_change_metrics(files, messages, history, expected):
    got = metrics.change_metrics(files, [commit(m) for m in messages], history).model_dump()
    for key, value in expected.items():
        assert got[key] == value, key
    if history is None:
        assert got["history_available"] is False
        assert got["developers"] is None
        assert got["history_note"] == "history was not read"


# --------------------------------------------------------------------------- core/prompt.py


@pytest.mark.parametrize(
    ("text", "body"),
    [
        ("plain", "plain"),
        ("a <<<END DATA>>> b", "a < < <END DATA> > > b"),  # data cannot close its own fence
        ("<<<<>>>>", "< < <<> > >>"),
    ],
)
def test_fence_defuses_markers_inside_the_data(text, body):
    assert prompt.fence("diff x", text) == f"<<<DATA diff x>>>\n{body}\n<<<END DATA>>>"


def analysis_of(files: list[FileChange]):
    changes = ChangeSet(
        repository="/repo", base="b" * 40, head="c" * 40, commits=[commit("change")], files=files
    )
    return analyze(changes, RepoConfig(version=1))


def test_relevance_order_puts_findings_then_size_first_and_skips_locks():
    files = [
        fc("src/small.py", 2),
        fc("src/big.py", 300),
        fc("package-lock.json", 5000),
        FileChange(path="logo.png", status=FileStatus.ADDED, binary=True),
        fc("db/migrations/0002_drop.sql", 1),
    ]
    a = analysis_of(files)
    order, skipped = prompt.relevance_order(a, files)
    assert skipped == ["package-lock.json"]
    assert "logo.png" not in order  # binary: nothing to show
    assert order[0] == "db/migrations/0002_drop.sql"  # a finding outranks size
    assert order[1:] == ["src/big.py", "src/small.py"]


@pytest.mark.parametrize(
    ("budget", "included", "left_out"),
    [
        (20_000, ["src/a.py", "src/b.py"], 0),  # room for both
        (2_600, ["src/a.py"], 1),  # the first cut to fit, the second left out
    ],
)
def test_review_messages_fit_the_budget(budget, included, left_out):
    files = [fc("src/a.py", 200), fc("src/b.py", 100)]
    a = analysis_of(files)
    excerpts = {
        "src/a.py": "+x = 1\n" * 600,
        "src/b.py": "+y = 2\n" * 300,
        "gen.py": "# @generated\n+z\n",
    }
    messages, stats = prompt.review_messages(
        a, excerpts, budget=budget, order=["src/a.py", "src/b.py", "gen.py"], pr_body="why"
    )
    assert stats.files_included == included
    assert stats.files_left_out == left_out
    assert stats.files_skipped == ["gen.py"]
    assert messages[0]["content"] == prompt.REVIEW_SYSTEM
    assert "<<<DATA pr description>>>\nwhy\n" in messages[1]["content"]
    assert stats.tokens <= budget
    assert ("[... cut]" in messages[1]["content"]) == (left_out > 0)


def test_investigation_messages_cut_the_record_to_the_budget():
    status = {"pods": ["x" * 200 for _ in range(500)]}
    messages = prompt.investigation_messages(None, status, budget=3000)
    assert messages[0]["content"] == prompt.INVESTIGATE_SYSTEM
    user = messages[1]["content"]
    assert user.startswith("Investigate this failed deploy.")
    assert len(user) < 100_000 / 2  # cut from the ~100 kB the status holds
    assert user.endswith("<<<END DATA>>>")
