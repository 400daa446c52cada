"""`pipeline-bot pipeline run | status | list`: GitHub Actions workflows from a shell (the
execute_pipeline, get_workflow_run and list_workflow_runs tools)."""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated, Any

import typer

from pipeline_bot.errors import PipelineBotError
from pipeline_bot.exit_codes import Exit, for_error

pipeline_app = typer.Typer(
    help="Run and follow GitHub Actions workflows (needs GITHUB_TOKEN).", no_args_is_help=True
)


class Format(StrEnum):
    text = "text"
    json = "json"


Repository = Annotated[
    str | None,
    typer.Option("--repository", "-R", help="owner/name. Default: $GITHUB_REPOSITORY."),
]
Output = Annotated[Format, typer.Option("--format", help="Output format.")]


def _call(tool: str, arguments: dict[str, Any]) -> Any:
    from pipeline_bot.settings import get_settings
    from pipeline_bot.tools import build_registry
    from pipeline_bot.wiring import tool_context

    def progress(message: str) -> None:
        typer.echo(f"  {message}", err=True)

    try:
        ctx = tool_context(get_settings(), progress=progress, deploys=False)
        return build_registry().call(tool, arguments, ctx)
    except PipelineBotError as exc:
        typer.echo(f"error: {' '.join(exc.message.split())}", err=True)
        raise typer.Exit(for_error(exc)) from None


def _inputs(pairs: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--input {pair!r}: expected name=value")
        out[key] = value
    return out


def _run_lines(run: Any) -> list[str]:
    from pipeline_bot.core.escape import terminal

    lines = [
        f"run {run.id} ({terminal(run.workflow or '-')}) on {terminal(run.branch or '-')} "
        f"at {run.sha[:12]}: {run.status}"
        + (f", {run.conclusion}" if run.conclusion else "")
        + (f" in {run.seconds:g}s" if run.seconds is not None else ""),
        f"  {run.html_url}",
    ]
    if run.logs_url:
        lines.append(f"  logs: {run.logs_url}")
    if run.note:
        lines.append(f"  note: {run.note}")
    for job in run.jobs:
        lines.append(f"  job {terminal(job.name)}: {job.conclusion or job.status}")
        lines += [
            f"    {s.number}. {terminal(s.name)}: {s.conclusion or s.status}" for s in job.steps
        ]
    return lines


@pipeline_app.command("run")
def run(
    workflow: Annotated[str, typer.Option(help="The workflow's file name (deploy.yml) or id.")],
    ref: Annotated[str, typer.Option("--ref", "--branch", help="Branch or tag to run on.")],
    inputs: Annotated[
        list[str] | None, typer.Option("--input", "-i", help="name=value (repeatable).")
    ] = None,
    repository: Repository = None,
    wait: Annotated[bool, typer.Option(help="Follow the run until it completes.")] = True,
    timeout: Annotated[str, typer.Option(help="How long to follow it: 90s, 30m, 1h.")] = "30m",
    poll: Annotated[str, typer.Option(help="Between looks at the run.")] = "10s",
    output: Output = Format.text,
) -> None:
    """Dispatch a workflow (workflow_dispatch) and follow its run: jobs, steps, conclusion.
    Exit 0 when it succeeds (or, with --no-wait, once it started), 1 when it fails, is
    cancelled or is still running at --timeout, 2 on bad input or a request GitHub calls
    invalid, 4 when GitHub cannot be reached or answers with another error."""
    from pipeline_bot.core.durations import parse_duration

    try:
        timeout_s, poll_s = parse_duration(timeout), parse_duration(poll)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    arguments = {
        "repository": repository,
        "branch": ref,
        "workflow": workflow,
        "inputs": _inputs(inputs),
        "wait": wait,
        "timeout_seconds": timeout_s,
        "poll_seconds": max(poll_s, 0.05),
    }
    result = _call("execute_pipeline", arguments)
    if output == Format.json:
        sys.stdout.write(result.model_dump_json(indent=2) + "\n")
    else:
        typer.echo(f"{result.status.upper()}: {result.message}")
        for line in _run_lines(result.run):
            typer.echo(line)
    if result.status not in ("succeeded", "running"):  # running: --no-wait, it started
        raise typer.Exit(Exit.FAILED)


@pipeline_app.command("status")
def status(
    run_id: Annotated[int, typer.Argument(help="The workflow run's id.")],
    repository: Repository = None,
    output: Output = Format.text,
) -> None:
    """A workflow run: status, conclusion, duration, logs URL, jobs and steps."""
    result = _call("get_workflow_run", {"repository": repository, "run_id": run_id})
    if output == Format.json:
        sys.stdout.write(result.model_dump_json(indent=2) + "\n")
        return
    for line in _run_lines(result):
        typer.echo(line)


@pipeline_app.command("list")
def list_runs(
    repository: Repository = None,
    workflow: Annotated[str | None, typer.Option(help="Only this workflow's runs.")] = None,
    branch: Annotated[str | None, typer.Option(help="Only runs on this branch.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 10,
    output: Output = Format.text,
) -> None:
    """Recent workflow runs, newest first."""
    from pipeline_bot.core.escape import terminal

    arguments = {"repository": repository, "workflow": workflow, "branch": branch, "limit": limit}
    result = _call("list_workflow_runs", arguments)
    if output == Format.json:
        sys.stdout.write(result.model_dump_json(indent=2) + "\n")
        return
    for r in result.runs:
        typer.echo(
            f"{r.id}  {r.created_at:%Y-%m-%d %H:%M}Z  {terminal(r.workflow or '-'):<20} "
            f"{terminal(r.branch or '-'):<15} {r.event:<18} {r.conclusion or r.status}"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(pipeline_app, name="pipeline")
