"""Fuzzing the repository config loader (issue 15, deliverable 5): any text given to
`parse_repo_config` is a RepoConfig or a ConfigError whose problems each name a field or the top
level, never another exception, and always quickly. Three generators: any text; YAML documents
built from the schema's own words with hostile values (types, anchors and aliases, tags, odd
keys); and valid configs with one part replaced. Deterministic: derandomized, no database."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pipeline_bot.errors import ConfigError
from pipeline_bot.repo_config import RepoConfig, parse_repo_config

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SECONDS = 5.0  # any config the loader accepts or refuses, in well under this

KEYS = [
    "version",
    "environments",
    "services",
    "risk",
    "gates",
    "ai",
    "name",
    "namespace",
    "order",
    "required_permission",
    "allowed_users",
    "allowed_teams",
    "allow_forks",
    "requires",
    "strategy",
    "replicas",
    "paths",
    "depends_on",
    "manifests",
    "image",
    "rules",
    "id",
    "weight",
    "message",
    "severity",
    "query",
    "success_condition",
    "min",
    "max",
    "interval",
    "count",
    "no_data",
    "compare_to_stable",
    "inconclusive_timeout",
    "<<",
    "",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["staging", "production", "write", "admin", "canary", "1h", "x" * 70, ""]),
    st.text(max_size=20),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), children, max_size=5
        ),
    ),
    max_leaves=30,
)


def _load(text: str) -> RepoConfig | None:
    started = time.monotonic()
    try:
        return parse_repo_config(text, source=".github/pipeline-bot.yml")
    except ConfigError as exc:
        error = exc
    finally:
        assert time.monotonic() - started < SECONDS, f"{len(text)} bytes took too long"
    assert error.problems, error
    assert str(error).startswith("invalid configuration: .github/pipeline-bot.yml")
    assert len(str(error)) < 2000
    for problem in error.problems:
        assert problem.message
        assert problem.line is None or problem.line >= 1
    return None


VALID = {
    "version": 1,
    "environments": [
        {"name": "staging", "order": 1, "auto_deploy": ["main"]},
        {
            "name": "production",
            "order": 2,
            "required_permission": "maintain",
            "requires": ["staging"],
            "allowed_teams": ["acme/ops"],
        },
    ],
    "services": [
        {"name": "api", "paths": ["api/**"]},
        {"name": "web", "paths": ["web/**"], "depends_on": ["api"]},
    ],
    "risk": {"rules": [{"id": "db", "paths": ["db/**"], "weight": 30, "message": "schema"}]},
    "gates": [{"name": "errors", "query": "up", "success_condition": {"min": 0.99}}],
}


@st.composite
def mutated(draw: st.DrawFn) -> object:
    """The valid config with one value somewhere in it replaced (or one key added)."""
    data = copy.deepcopy(VALID)
    containers: list[Any] = []

    def collect(node: object) -> None:
        if isinstance(node, dict):
            containers.append(node)
            for child in node.values():
                collect(child)
        elif isinstance(node, list):
            containers.append(node)
            for child in node:
                collect(child)

    collect(data)
    target = draw(st.sampled_from(containers))
    if isinstance(target, dict):
        target[draw(st.sampled_from([*target, *KEYS]))] = draw(values)
    elif target:
        target[draw(st.integers(min_value=0, max_value=len(target) - 1))] = draw(values)
    return data


@FUZZ
@given(st.text(max_size=400))
@example("version: 1\n? [a, b]\n: c\n")
@example("version: !!python/object:os.system 1\n")
@example("version: 1\nenvironments: &e [*e]\n")
@example("version: 1\n1: 2\n")
@example("{version: 1, version: 1}")
@example("--- 1\n--- 2\n")
@example("version: 1\ngates:\n- {name: g, query: q, success_condition: {}}\n")
@example("\t")
@example("version: 1\n\x00")
def test_any_text_is_a_config_or_a_config_error(text):
    _load(text)


@FUZZ
@given(values)
def test_any_yaml_document_is_a_config_or_a_config_error(data):
    _load(yaml.safe_dump(data, allow_unicode=True))


@FUZZ
@given(mutated())
def test_a_valid_config_with_one_part_replaced_is_a_config_or_a_config_error(data):
    _load(yaml.safe_dump(data, allow_unicode=True))


@settings(FUZZ, max_examples=50)  # each may walk a quarter million aliased values
@given(
    anchored=values,
    fanout=st.integers(min_value=1, max_value=12),
    levels=st.integers(min_value=1, max_value=12),
    where=st.sampled_from(["version", "extra", "environments", "risk", "gates"]),
)
def test_aliases_of_aliases_are_refused_or_loaded_quickly(anchored, fanout, levels, where):
    first = yaml.safe_dump({"a0": anchored}, default_flow_style=True).strip()[1:-1]
    lines = ["version: 1" if where != "version" else "", first.replace("a0:", "a0: &a0", 1)]
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * fanout) + "]")
    lines.append(f"{where}: *a{levels}")
    _load("\n".join(line for line in lines if line))


def test_a_billion_laughs_config_is_refused_at_once():
    # found by the fuzzer: 521 bytes of nested aliases kept the depth check walking 10^9 nodes
    lines = ["version: 1", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    started = time.monotonic()
    with pytest.raises(ConfigError, match="expands to more than 262,144 values"):
        parse_repo_config("\n".join(lines), source="c.yml")
    assert time.monotonic() - started < SECONDS


def test_a_literal_error_on_an_aliased_value_does_not_expand_it():
    # found by the fuzzer: `version: *a4` put all 10^5 aliased values into the error line
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 5)]
    lines.append("version: *a4")
    with pytest.raises(ConfigError, match=r"version: Input should be 1, got \[\[") as caught:
        parse_repo_config("\n".join(lines), source="c.yml")
    assert len(str(caught.value)) < 300
