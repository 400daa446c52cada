"""The Action's `plan` (every service in dependency order: deploy_plan) and `pipeline` (a
workflow dispatched and followed: execute_pipeline) commands, with their job summaries."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline_bot.action.runner import input_value, set_outputs, write_summary

Call = Callable[[str, dict[str, Any], dict[str, str]], Any]
Fail = Callable[[str], int]


def deploy_plan(env: dict[str, str], workspace: Path, call: Call, fail: Fail) -> int:
    """`command: plan`: the summary holds the plan as a Mermaid graph, each service coloured by
    how it ended, and a table of the services."""
    from pipeline_bot.core.durations import parse_duration
    from pipeline_bot.core.plan_render import result_markdown
    from pipeline_bot.tools.plans import plan_for

    environment, image = input_value("environment", env), input_value("image", env)
    if not environment or not image:
        return fail("plan needs the inputs environment and image (the tag every service gets)")
    try:
        timeout = parse_duration(input_value("timeout", env) or "300")
    except ValueError as exc:
        return fail(f"timeout: {exc}")
    args = {
        "environment": environment,
        "image_tag": image,
        "strategy": input_value("strategy", env) or "auto",
        "repository": str(workspace),
        "timeout_seconds": timeout,
        "dry_run": input_value("dry-run", env) or "none",
        "commit_sha": env.get("GITHUB_SHA"),
    }
    print(f"::group::deploy plan to {environment}", flush=True)
    try:
        result = call("deploy_plan", args, env)
    finally:
        print("::endgroup::", flush=True)
    from pipeline_bot.repo_config import load_repo_config

    plan = plan_for(load_repo_config(None, repo_root=workspace), environment, 4)
    write_summary(result_markdown(plan, result), env)
    set_outputs({"status": result.status}, env)
    if result.status == "failed":
        return fail(f"plan failed: {result.message}")
    return 0


def run_pipeline(env: dict[str, str], call: Call, fail: Fail) -> int:
    """`command: pipeline`: dispatch `workflow` on `ref` (default: this run's ref) with
    `workflow-inputs` (a JSON object) and follow the run; the summary lists its jobs."""
    from pipeline_bot.core.durations import parse_duration
    from pipeline_bot.core.escape import md_cell

    workflow = input_value("workflow", env)
    ref = input_value("ref", env) or env.get("GITHUB_REF_NAME", "")
    if not workflow or not ref:
        return fail("pipeline needs the input workflow (and ref, outside a branch or tag run)")
    try:
        inputs = json.loads(input_value("workflow-inputs", env) or "{}")
        timeout = parse_duration(input_value("timeout", env) or "30m")
    except ValueError as exc:
        return fail(f"workflow-inputs or timeout: {exc}")
    if not isinstance(inputs, dict):
        return fail("workflow-inputs must be a JSON object of names and values")
    args = {
        "repository": env.get("GITHUB_REPOSITORY") or None,
        "branch": ref,
        "workflow": workflow,
        "inputs": {str(k): str(v) for k, v in inputs.items()},
        "timeout_seconds": timeout,
    }
    result = call("execute_pipeline", args, env)
    run = result.run
    lines = [
        f"## pipeline-bot pipeline: {md_cell(workflow)} on {md_cell(ref)}: **{result.status}**",
        "",
        f"{md_cell(result.message)} ([run {run.id}]({run.html_url}))",
        "",
        "| job | result | took |",
        "|---|---|---|",
        *[
            f"| {md_cell(j.name)} | {j.conclusion or j.status} | "
            f"{'' if j.seconds is None else f'{j.seconds:g}s'} |"
            for j in run.jobs
        ],
    ]
    if run.note:
        lines += ["", md_cell(run.note)]
    write_summary("\n".join(lines), env)
    set_outputs({"status": result.status}, env)
    if result.status != "succeeded":
        return fail(f"pipeline {result.status}: {result.message}")
    return 0
