"""`pipeline-bot investigate`, and the investigation that follows an automatic rollback."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from pipeline_bot.errors import PipelineBotError
from pipeline_bot.models import AIReview, DeployResult

EXIT_BAD_INPUT = 2


def run_investigation(ctx: Any, environment: str, app: str, repo: Path) -> AIReview | None:
    """The investigation (the registry's investigate_deploy), or None when no model is
    configured."""
    from pipeline_bot.tools import build_registry

    if ctx.llm is None:
        return None
    typer.echo("Investigating…", err=True)
    review = build_registry().call(
        "investigate_deploy",
        {"app_name": app, "environment": environment, "repository": str(repo)},
        ctx,
    )
    assert isinstance(review, AIReview)  # noqa: S101 - the registry checks the output model
    return review


def print_investigation(review: AIReview, output: str) -> None:
    if output == "json":
        sys.stdout.write(review.model_dump_json(indent=2) + "\n")
        return
    found = review.investigation
    if found is None:
        typer.echo(f"Investigation not available: {review.error}")
        return
    typer.echo(f"Investigation: {found.summary}")
    typer.echo(f"  likely cause: {found.likely_cause} (confidence {found.confidence:.2f})")
    for item in found.evidence:
        typer.echo(f"  evidence: {item}")
    for item in found.next_steps:
        typer.echo(f"  next: {item}")


def after_rollback(ctx: Any, result: DeployResult, repo: Path, output: str) -> None:
    """After an automatic rollback, with a model configured: say why it likely failed."""
    if not result.rolled_back or output == "json":
        return
    try:
        review = run_investigation(ctx, result.environment, result.app, repo)
    except PipelineBotError as exc:
        typer.echo(f"Investigation not available: {exc.message}", err=True)
        return
    if review is not None:
        print_investigation(review, "text")


def register(app: typer.Typer) -> None:
    @app.command()
    def investigate(
        environment: Annotated[str, typer.Option("--environment", "-e", help="Environment.")],
        app_name: Annotated[
            str | None, typer.Option("--app", help="App. Default: the repository's one service.")
        ] = None,
        repo: Annotated[Path, typer.Option(help="Repository with the config.")] = Path(),
        kubeconfig: Annotated[str | None, typer.Option(help="kubeconfig file.")] = None,
        context: Annotated[str | None, typer.Option(help="kubeconfig context.")] = None,
        prometheus_url: Annotated[str | None, typer.Option(help="Prometheus to query.")] = None,
        output: Annotated[str, typer.Option("--format", help="text or json.")] = "text",
    ) -> None:
        """Ask the model why the latest deploy or gate failed; it reads the deploy record,
        status, metrics and infrastructure with read-only tools, and the finding is kept in
        the deploy record. Needs PIPELINE_BOT_LLM_MODEL."""
        from pipeline_bot.cli_deploy import _app, tool_context

        ctx = tool_context(kubeconfig, context, prometheus_url)
        try:
            review = run_investigation(ctx, environment, _app(app_name, repo), repo)
        except PipelineBotError as exc:
            typer.echo(f"error: {exc.message}", err=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        if review is None:
            typer.echo(
                "error: no model is configured: set PIPELINE_BOT_LLM_MODEL (and OPENAI_BASE_URL "
                "/ OPENAI_API_KEY for your endpoint)",
                err=True,
            )
            raise typer.Exit(EXIT_BAD_INPUT)
        print_investigation(review, output)
