"""The workflows and the example workflows are valid YAML and keep the hygiene rules: minimal
permissions, actions pinned by SHA, no persisted credentials."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
FILES = sorted([*ROOT.glob(".github/workflows/*.yml"), *ROOT.glob("docs/examples/*.yml")])


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_workflow_hygiene(path):
    flow = yaml.safe_load(path.read_text())
    assert flow["permissions"] == {}, "top-level permissions: {}; jobs ask for what they need"
    for job in flow["jobs"].values():
        assert "permissions" in job
        for step in job["steps"]:
            uses = step.get("uses", "")
            if uses.startswith("actions/"):
                assert re.fullmatch(r"[\w/-]+@[0-9a-f]{40}", uses), f"not pinned by SHA: {uses}"
            if uses.startswith("actions/checkout"):
                assert step["with"]["persist-credentials"] is False


def test_action_metadata_names_every_documented_input_and_output():
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert action["runs"] == {"using": "docker", "image": "Dockerfile", "args": ["action"]}
    assert {
        "command",
        "environment",
        "app",
        "image",
        "manifests",
        "namespace",
        "strategy",
        "kubeconfig",
        "prometheus-url",
        "gates",
        "config",
        "github-token",
        "openai-api-key",
        "openai-base-url",
        "model",
        "fail-on",
        "dry-run",
        "timeout",
    } <= set(action["inputs"])
    assert {
        "risk-score",
        "risk-level",
        "strategy",
        "deployment-id",
        "status",
        "rolled-back",
        "summary-markdown",
    } <= set(action["outputs"])
