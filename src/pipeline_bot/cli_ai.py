"""`pipeline-bot investigate`, and the investigation that follows an automatic rollback."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from pipeline_bot.errors import PipelineBotError
from pipeline_bot.exit_codes import Exit, for_error
from pipeline_bot.models import AIReview, DeployResult


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
            raise typer.Exit(for_error(exc)) from None
        if review is None:
            typer.echo(
                "error: no model is configured: set PIPELINE_BOT_LLM_MODEL (and OPENAI_BASE_URL "
                "/ OPENAI_API_KEY for your endpoint)",
                err=True,
            )
            raise typer.Exit(Exit.BAD_INPUT)
        print_investigation(review, output)
        if review.investigation is None:  # the model did not answer, or not usably
            raise typer.Exit(Exit.UNAVAILABLE)


def register_audit(app: typer.Typer) -> None:
    @app.command()
    def audit(
        limit: Annotated[int, typer.Option(help="Entries to show, newest first.")] = 50,
        tool: Annotated[str | None, typer.Option(help="Only calls of this tool.")] = None,
        actor: Annotated[str | None, typer.Option(help="Only calls by this actor.")] = None,
        output: Annotated[str, typer.Option("--format", help="text or json.")] = "text",
    ) -> None:
        """Show the audit trail: every tool call from the CLI, the Action, the App and MCP, with
        who asked, the inputs (redacted), the policy's decision, the outcome and the time it
        took (PIPELINE_BOT_AUDIT_LOG)."""
        import json

        from pipeline_bot.settings import get_settings
        from pipeline_bot.wiring import audit as audit_log

        entries = audit_log(get_settings()).entries(limit=limit, tool=tool, actor=actor)
        if output == "json":
            sys.stdout.write(json.dumps([e.model_dump(mode="json") for e in entries], indent=2))
            sys.stdout.write("\n")
            return
        if not entries:
            typer.echo("no tool calls recorded yet")
            return
        for e in entries:
            decision = "" if e.decision == "allowed" else f" [{e.decision}]"
            typer.echo(
                f"{e.at:%Y-%m-%d %H:%M:%S} {e.front_end:<6} {e.actor or '-':<16} {e.tool:<22} "
                f"{e.outcome:<7} {e.seconds:>7.2f}s {e.result}{decision}"
            )
