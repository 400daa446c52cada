"""`pipeline-bot plan` and `pipeline-bot deploy --plan`: the repository's services in dependency
order, printed or deployed."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from pipeline_bot.errors import PipelineBotError
from pipeline_bot.exit_codes import Exit, for_error


class PlanFormat(StrEnum):
    text = "text"
    json = "json"
    mermaid = "mermaid"


def _call(tool: str, arguments: dict[str, Any], ctx: Any) -> Any:
    from pipeline_bot.tools import build_registry

    try:
        return build_registry().call(tool, arguments, ctx)
    except PipelineBotError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(for_error(exc)) from None


def register(app: typer.Typer) -> None:
    @app.command()
    def plan(
        environment: Annotated[
            str | None,
            typer.Option(
                "--environment", "-e", help="Environment. Default: the last in promotion order."
            ),
        ] = None,
        repo: Annotated[
            Path, typer.Option("--repo", help="Repository with .github/pipeline-bot.yml.")
        ] = Path(),
        max_parallel: Annotated[
            int, typer.Option(min=1, max=32, help="Services deployed at once.")
        ] = 4,
        output: Annotated[
            PlanFormat, typer.Option("--format", help="text, json, or a Mermaid graph.")
        ] = PlanFormat.text,
    ) -> None:
        """Print the deploy plan: the config's services in stages, each after the services it
        depends on (`services[].depends_on`); a stage's services deploy in parallel."""
        from pipeline_bot.core.plan_render import plan_mermaid, plan_text
        from pipeline_bot.settings import get_settings
        from pipeline_bot.wiring import tool_context

        arguments = {
            "environment": environment,
            "repository": str(repo),
            "max_parallel": max_parallel,
        }
        try:
            ctx = tool_context(get_settings(), deploys=False)  # the config only: no cluster
        except PipelineBotError as exc:
            typer.echo(f"error: {exc.message}", err=True)
            raise typer.Exit(for_error(exc)) from None
        result = _call("get_deploy_plan", arguments, ctx)
        if output == PlanFormat.json:
            sys.stdout.write(result.model_dump_json(indent=2) + "\n")
        elif output == PlanFormat.mermaid:
            typer.echo(plan_mermaid(result))
        else:
            typer.echo(plan_text(result))


def deploy_plan(arguments: dict[str, Any], ctx: Any, *, output: str, max_parallel: int) -> None:
    """`deploy --plan`: every service through the deploy_plan tool; exit 1 unless all of them
    succeeded (or, in a client dry run, rendered)."""
    from pipeline_bot.core.plan_render import result_text

    config = arguments["config"]
    plan_args = {
        "environment": arguments["environment"],
        "image_tag": arguments["image_tag"],
        "strategy": arguments["strategy"],
        "repository": arguments["repository"],
        "max_parallel": max_parallel,
        "timeout_seconds": config["timeout_seconds"],
        "auto_rollback": config["auto_rollback"],
        "dry_run": config["dry_run"],
        "commit_sha": config["commit_sha"],
    }
    result = _call("deploy_plan", plan_args, ctx)
    if output == "json":
        sys.stdout.write(result.model_dump_json(indent=2) + "\n")
    else:
        typer.echo(result_text(result))
    if result.status == "failed":
        raise typer.Exit(Exit.FAILED)
