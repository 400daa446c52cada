"""The Action's `plan` (every service in dependency order: deploy_plan), `promotion` (the plan
through the environments with their approvals: promote_plan) and `pipeline` (a workflow
dispatched and followed: execute_pipeline) commands, with their job summaries."""

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


def promotion(env: dict[str, str], workspace: Path, call: Call, fail: Fail) -> int:
    """`command: promotion`: this commit's deploy plan through the environments in promotion
    order, up to `environment` (default: the last), stopping before one that requires approval
    unless this commit and plan are approved. With `approved-by-environment: true` the job's
    GitHub environment protection rules are the approval for `environment`: it is recorded
    (approve_promotion, approved by `github-environment:<name>` and the workflow's actor) before
    the promotion. GitHub gives a container action no variable naming the job's environment, so
    that input is the workflow's word that the job runs in the protected environment of that
    name. The step fails when the promotion fails or stops waiting for an approval."""
    from pipeline_bot.core.durations import parse_duration
    from pipeline_bot.core.escape import md_cell, md_code
    from pipeline_bot.repo_config import load_repo_config

    image, sha = input_value("image", env), env.get("GITHUB_SHA", "")
    environment = input_value("environment", env) or None
    if not image or not sha:
        return fail("promotion needs the input image (the tag every service gets) and GITHUB_SHA")
    by_environment = input_value("approved-by-environment", env).lower() or "false"
    if by_environment not in ("true", "false"):
        return fail(f"approved-by-environment {by_environment!r}: use true or false")
    try:
        timeout = parse_duration(input_value("timeout", env) or "300")
    except ValueError as exc:
        return fail(f"timeout: {exc}")
    lines: list[str] = []
    if by_environment == "true":
        if environment is None:
            return fail(
                "approved-by-environment needs the input environment: the environment this "
                "job's `environment:` protects, as .github/pipeline-bot.yml names it"
            )
        target = load_repo_config(None, repo_root=workspace).environment(environment)
        if not target.requires_approval:
            lines.append(
                f"{md_code(environment)} does not require approval in the config: "
                "approved-by-environment had nothing to approve."
            )
        else:
            actor = env.get("GITHUB_ACTOR") or "unknown"
            approval = call(
                "approve_promotion",
                {
                    "environment": environment,
                    "image_tag": image,
                    "commit_sha": sha,
                    "repository": str(workspace),
                    "approved_by": f"github-environment:{environment} (@{actor})",
                },
                env,
            )
            until = f"{approval.expires_at:%Y-%m-%d %H:%M} UTC"
            print(
                f"  approved by {approval.approved_by}: plan {approval.plan_digest} of "
                f"{sha[:12]} into {environment} until {until}",
                flush=True,
            )
            lines.append(
                f"Approved by {md_cell(approval.approved_by)} (the protection rules of the job's "
                f"GitHub environment): plan {md_code(approval.plan_digest)} of `{sha[:12]}` into "
                f"{md_code(environment)} until {until}."
            )
    args = {
        "image_tag": image,
        "commit_sha": sha,
        "to": environment,
        "strategy": input_value("strategy", env) or "auto",
        "repository": str(workspace),
        "timeout_seconds": timeout,
    }
    last = environment or "the last environment"
    print(f"::group::promotion of {sha[:12]} to {last}", flush=True)
    try:
        result = call("promote_plan", args, env)
    finally:
        print("::endgroup::", flush=True)
    summary = [
        f"## pipeline-bot promotion of `{sha[:12]}` (image tag {md_code(image)}): "
        f"**{result.status}**",
        "",
        md_cell(result.message),
        "",
        *([*lines, ""] if lines else []),
        "| environment | status | plan | detail |",
        "|---|---|---|---|",
        *[
            f"| {md_cell(e.environment)} | {e.status} | "
            f"{md_code(e.plan_digest) if e.plan_digest else ''} | {md_cell(e.message)} |"
            for e in result.environments
        ],
    ]
    write_summary("\n".join(summary), env)
    set_outputs({"status": result.status}, env)
    if result.status == "failed":
        return fail(f"promotion failed: {result.message}")
    if result.status == "waiting_for_approval":
        return fail(
            f"promotion waiting for approval: {result.message} (approve it with /approve on the "
            "pull request, `pipeline-bot promotion approve`, or run this step with "
            "approved-by-environment: true in a job whose environment requires reviewers)"
        )
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
