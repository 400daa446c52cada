"""`pipeline-bot action`: the GitHub Action's entry. The first line is printed before any SDK is
imported; everything heavy is imported inside the path that uses it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline_bot import __version__
from pipeline_bot.action.runner import (
    Annotation,
    annotate,
    change_range,
    command,
    input_value,
    mask_secrets,
    set_outputs,
    write_summary,
)

COMMANDS = (
    "analyze",
    "deploy",
    "rollback",
    "promote",
    "abort",
    "status",
    "plan",
    "promotion",
    "pipeline",
)
LEVELS = {
    "info": "notice",
    "low": "notice",
    "medium": "warning",
    "high": "error",
    "critical": "error",
}
ORDER = ("low", "medium", "high", "critical")


def main(env: Mapping[str, str] | None = None) -> int:
    env = dict(os.environ if env is None else env)
    mask_secrets(env)
    what = input_value("command", env) or "analyze"
    print(f"pipeline-bot {__version__}: {what}", flush=True)
    if what not in COMMANDS:
        return _fail(f"unknown command {what!r}; use one of {', '.join(COMMANDS)}")
    workspace = Path(env.get("GITHUB_WORKSPACE") or Path.cwd())
    if env.get("GITHUB_ACTIONS") == "true":  # the checkout belongs to another user in the container
        subprocess.run(
            ["git", "config", "--global", "--add", "safe.directory", str(workspace)],
            check=False,
            capture_output=True,
        )
    from pipeline_bot.errors import PipelineBotError

    try:
        if what == "analyze":
            return _analyze(env, workspace)
        if what in ("plan", "promotion", "pipeline"):
            from pipeline_bot.action import plans

            if what == "plan":
                return plans.deploy_plan(env, workspace, _call, _fail)
            if what == "promotion":
                return plans.promotion(env, workspace, _call, _fail)
            return plans.run_pipeline(env, _call, _fail)
        return _deploy(what, env, workspace)
    except PipelineBotError as exc:
        return _fail(exc.message)


def _notice(message: str) -> None:
    print(command("notice", message, title="pipeline-bot"), flush=True)


def _fail(message: str) -> int:
    print(command("error", message, title="pipeline-bot"), flush=True)
    return 1


# ---------------------------------------------------------------- analyze


def _analyze(env: dict[str, str], workspace: Path) -> int:
    from pipeline_bot.core.report import analysis_markdown
    from pipeline_bot.errors import UnknownRefError
    from pipeline_bot.models import Analysis

    rng = change_range(env)
    # ai: true: the same analysis, then the model's review (the registry's review_change)
    tool = "analyze_changes"
    if input_value("ai", env).lower() == "true":
        tool = "review_change"
        if not input_value("model", env) and not env.get("PIPELINE_BOT_LLM_MODEL"):
            _notice("ai: true, but no `model` input: the AI review is off")
    print(f"::group::Analysis of the {rng.how}", flush=True)
    try:
        args = _analyze_args(env, workspace, rng.base, rng.head)
        try:
            result = _call(tool, args, env)
        except UnknownRefError:
            if _fetch(workspace, [r for r in (rng.base, rng.head) if r]):
                _notice("the clone was shallow: fetched the commits the change needs")
                result = _call(tool, args, env)
            elif rng.base and input_value("github-token", env) and env.get("GITHUB_REPOSITORY"):
                _notice(
                    "the clone is shallow and the base could not be fetched: analysed with "
                    "GitHub's compare API (no history metrics)"
                )
                result = _call(tool, args, env, compare=True)
            else:
                raise
    finally:
        print("::endgroup::", flush=True)
    assert isinstance(result, Analysis)  # noqa: S101 - the registry checks the output model
    markdown = analysis_markdown(result)
    summary = _summary_file(env)
    summary.write_text(markdown, encoding="utf-8")
    write_summary(markdown, env)
    annotate(
        Annotation(
            LEVELS[f.severity],
            f.message,
            f"pipeline-bot: {f.rule}",
            f.path,
            f.start_line,
            f.end_line,
        )
        for f in result.findings
        if f.path
    )
    set_outputs(
        {
            "risk-score": str(result.risk.score),
            "risk-level": result.risk.level,
            "strategy": result.strategy.name,
            "summary-markdown": str(summary),
        },
        env,
    )
    print(
        f"risk {result.risk.level} ({result.risk.score}/100), strategy {result.strategy.name}",
        flush=True,
    )
    fail_on = input_value("fail-on", env)
    if fail_on:
        if fail_on not in ORDER:
            return _fail(f"fail-on {fail_on!r}: use one of {', '.join(ORDER)}")
        if ORDER.index(result.risk.level) >= ORDER.index(fail_on):
            return _fail(
                f"risk level {result.risk.level} ({result.risk.score}/100) is at or above "
                f"fail-on: {fail_on}"
            )
    return 0


def _investigate(env: dict[str, str], result: Any, workspace: Path) -> list[str]:
    """After an automatic rollback, with a `model` input: the likely cause, for the summary."""
    from pipeline_bot.errors import PipelineBotError
    from pipeline_bot.models import AIReview

    print("::group::AI investigation of the rollback", flush=True)
    try:
        review = _call(
            "investigate_deploy",
            {
                "app_name": result.app,
                "environment": result.environment,
                "repository": str(workspace),
            },
            env,
        )
    except PipelineBotError as exc:
        return ["", f"AI investigation not available: {exc.message}"]
    finally:
        print("::endgroup::", flush=True)
    assert isinstance(review, AIReview)  # noqa: S101 - the registry checks the output model
    found = review.investigation
    if found is None:
        return ["", f"AI investigation not available: {review.error}"]
    return [
        "",
        "### AI investigation",
        "",
        found.summary,
        "",
        f"Likely cause: {found.likely_cause} (confidence {found.confidence:.2f})",
        "",
        *[f"- evidence: {e}" for e in found.evidence],
        *[f"- next: {s}" for s in found.next_steps],
    ]


def _analyze_args(
    env: dict[str, str], workspace: Path, base: str | None, head: str
) -> dict[str, Any]:
    config = input_value("config", env)
    return {
        "repository": str(workspace),
        "base": base,
        "head": head,
        "config": str(workspace / config) if config else None,
        "environment": input_value("environment", env) or None,
    }


def _fetch(workspace: Path, refs: list[str]) -> bool:
    for ref in refs:
        done = subprocess.run(
            [
                "git",
                "-C",
                str(workspace),
                "fetch",
                "--no-tags",
                "--quiet",
                "--depth=100",
                "origin",
                ref,
            ],
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            return False
    return True


def _summary_file(env: Mapping[str, str]) -> Path:
    folder = Path(env.get("RUNNER_TEMP") or env.get("GITHUB_WORKSPACE") or ".")
    return folder / "pipeline-bot-summary.md"


# ---------------------------------------------------------------- deploy and friends


def _deploy(what: str, env: dict[str, str], workspace: Path) -> int:
    from pipeline_bot.core.escape import md_cell
    from pipeline_bot.core.report import duration
    from pipeline_bot.models import DeploymentStatus, DeployResult

    app = input_value("app", env) or None  # none: the rule every front end shares picks it
    built: str | None = None
    environment = input_value("environment", env)
    if not environment:
        return _fail(f"{what} needs the input environment")
    base: dict[str, Any] = {
        "app_name": app,
        "environment": environment,
        "repository": str(workspace),
    }
    from pipeline_bot.core.durations import parse_duration

    try:
        timeout = parse_duration(input_value("timeout", env) or "300")
    except ValueError as exc:
        return _fail(f"timeout: {exc}")
    if what == "deploy":
        image = input_value("image", env)
        if not image:
            return _fail("deploy needs the input image")
        from pipeline_bot.action.images import build_first

        built = build_first(env, workspace, image, _call)  # the `build` input, before the deploy
        config = {
            "manifests": [str(workspace / m) for m in input_value("manifests", env).split()],
            "timeout_seconds": timeout,
            "commit_sha": env.get("GITHUB_SHA"),
            "dry_run": input_value("dry-run", env) or "none",
            "gates": _gates(env),
        }
        args = {
            **base,
            "image_tag": image,
            "config": config,
            "strategy": input_value("strategy", env) or "auto",
            "namespace": input_value("namespace", env) or None,
        }
        tool = "deploy_application"
    elif what == "status":
        args, tool = base, "get_deployment_status"
    else:
        args = {**base, "timeout_seconds": timeout} if what != "abort" else base
        tool = f"{what}_deployment"
    print(f"::group::{what} {app or '(the default app)'} to {environment}", flush=True)
    try:
        result = _call(tool, args, env)
    finally:
        print("::endgroup::", flush=True)
    if isinstance(result, DeploymentStatus):
        set_outputs({"status": result.latest.status if result.latest else "none"}, env)
        write_summary(
            f"## pipeline-bot status: `{result.app}` in `{environment}`\n\n```json\n"
            f"{result.model_dump_json(indent=2)}\n```",
            env,
        )
        return 0
    assert isinstance(result, DeployResult)  # noqa: S101 - the registry checks the output model
    lines = [
        f"## pipeline-bot {what}: `{result.app}` {result.image} → `{result.environment}`: "
        f"**{result.status}**",
        "",
        result.message,
        "",
        *([built, ""] if what == "deploy" and built else []),
        "| step | status | took | detail |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {s.name} | {s.status} | {duration(int(s.seconds)) if s.seconds >= 1 else '<1s'} "
        f"| {md_cell(s.message)} |"
        for s in result.steps
    ]
    if result.rolled_back and input_value("model", env):
        lines += _investigate(env, result, workspace)
    write_summary("\n".join(lines), env)
    set_outputs(
        {
            "deployment-id": result.deploy_id,
            "status": result.status,
            "rolled-back": str(result.rolled_back).lower(),
            "strategy": result.strategy,
        },
        env,
    )
    if result.status in ("failed", "rolled_back"):
        return _fail(f"{what} {result.status}: {result.message}")
    return 0


def _gates(env: dict[str, str]) -> list[dict[str, Any]] | None:
    """The `gates` input: YAML, a list as under `gates:` in the config."""
    text = input_value("gates", env)
    if not text:
        return None
    import tempfile

    from pipeline_bot.repo_config import load_gates_file

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gates-input.yml"
        path.write_text(text, encoding="utf-8")
        return [g.model_dump() for g in load_gates_file(path)]


def _call(
    tool: str, arguments: dict[str, Any], env: dict[str, str], *, compare: bool = False
) -> Any:
    from pipeline_bot.tools import build_registry

    ctx = _context(env)
    if compare:
        from pipeline_bot.integrations.github import GitHubCompareSource

        ctx.source = GitHubCompareSource(
            input_value("github-token", env),
            env["GITHUB_REPOSITORY"],
            arguments["repository"],
            api_url=env.get("GITHUB_API_URL") or None,
        )
    return build_registry().call(tool, arguments, ctx)


def _context(env: dict[str, str]) -> Any:
    """The tool context every front end gets (wiring.tool_context), from the settings with the
    Action's inputs mapped onto them."""
    from pipeline_bot.wiring import tool_context

    def progress(message: str) -> None:
        print(f"  {message}", flush=True)

    return tool_context(
        action_settings(env),
        progress=progress,
        front_end="action",
        actor=env.get("GITHUB_ACTOR") or None,
    )


def action_settings(env: Mapping[str, str]) -> Any:
    """Settings (PIPELINE_BOT_* from the step's `env:`, as every front end reads them), with the
    Action's inputs in their place: kubeconfig, prometheus-url, github-token, model,
    openai-base-url, openai-api-key and cache-dir (in the workspace, for actions/cache)."""
    from pydantic import SecretStr

    from pipeline_bot.settings import get_settings

    workspace = Path(env.get("GITHUB_WORKSPACE") or ".")
    inputs: dict[str, Any] = {
        "kubeconfig_content": SecretStr(v) if (v := input_value("kubeconfig", env)) else None,
        "prometheus_url": input_value("prometheus-url", env) or None,
        "github_token": SecretStr(v) if (v := input_value("github-token", env)) else None,
        "llm_model": input_value("model", env) or None,
        "openai_base_url": input_value("openai-base-url", env) or None,
        "openai_api_key": SecretStr(v) if (v := input_value("openai-api-key", env)) else None,
        "registry_username": input_value("registry-username", env) or None,
        "registry_password": SecretStr(v) if (v := input_value("registry-password", env)) else None,
        "pin_digest": {"true": True, "false": False}.get(input_value("pin-digest", env).lower()),
    }
    update = {k: v for k, v in inputs.items() if v is not None}
    update["cache_dir"] = str(workspace / (input_value("cache-dir", env) or ".pipeline-bot-cache"))
    return get_settings().model_copy(update=update)


if __name__ == "__main__":
    sys.exit(main())
