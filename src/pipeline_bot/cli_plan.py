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
    app.add_typer(promotion_app, name="promotion")

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


def plan_status(status: Any, output: str) -> None:
    """`status --plan`: each service's stage, status and deploy, and the plan as a graph."""
    from pipeline_bot.core.plan_render import plan_mermaid

    if output == "json":
        sys.stdout.write(status.model_dump_json(indent=2) + "\n")
        return
    typer.echo(f"deploy plan in {status.environment}: {status.plan_id or 'no plan has run here'}")
    for o in status.services:
        deploy = f" [{o.deploy_id}]" if o.deploy_id else ""
        why = f": {o.message}" if o.message else ""
        typer.echo(f"  stage {o.stage + 1} {o.name:<20} {o.status}{deploy}{why}")
    typer.echo("as a Mermaid graph:")
    typer.echo(plan_mermaid(status.plan, {o.name: o.status for o in status.services}))


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


promotion_app = typer.Typer(
    help="Take a commit's deploy plan through the environments, with approvals.",
    no_args_is_help=True,
)
Repo = Annotated[Path, typer.Option("--repo", help="Repository with .github/pipeline-bot.yml.")]
Image = Annotated[str, typer.Option("--image", help="The tag every service's image gets.")]
CommitSha = Annotated[str, typer.Option("--commit", help="The commit being promoted (its SHA).")]


@promotion_app.command("run")
def promotion_run(
    image: Image,
    commit: CommitSha,
    to: Annotated[
        str | None, typer.Option(help="Last environment. Default: the last in promotion order.")
    ] = None,
    strategy: Annotated[str, typer.Option(help="auto, rolling, blue-green or canary.")] = "auto",
    repo: Repo = Path(),
    timeout: Annotated[str, typer.Option(help="Each service's rollout timeout.")] = "5m",
    kubeconfig: Annotated[str | None, typer.Option(help="kubeconfig file.")] = None,
    output: Annotated[PlanFormat, typer.Option("--format", help="text or json.")] = PlanFormat.text,
) -> None:
    """Deploy the plan to each environment in promotion order, each after the one before it
    succeeded; stop before an environment that requires approval until someone runs `promotion
    approve` for this commit and plan. Exit 0: done, 1: a plan failed, 5: waiting for
    approval."""
    from pipeline_bot.cli_deploy import parse_duration, tool_context

    arguments = {
        "image_tag": image,
        "commit_sha": commit,
        "to": to,
        "strategy": strategy,
        "repository": str(repo),
        "timeout_seconds": parse_duration(timeout),
    }
    result = _call("promote_plan", arguments, tool_context(kubeconfig, None))
    if output == PlanFormat.json:
        sys.stdout.write(result.model_dump_json(indent=2) + "\n")
    else:
        typer.echo(f"{result.status.upper()}: {result.message}")
        for step in result.environments:
            digest = f" plan {step.plan_digest}" if step.plan_digest else ""
            typer.echo(f"  {step.environment}: {step.status}{digest} {step.message}".rstrip())
    if result.status == "failed":
        raise typer.Exit(Exit.FAILED)
    if result.status == "waiting_for_approval":
        raise typer.Exit(Exit.REFUSED)


@promotion_app.command("approve")
def promotion_approve(
    environment: Annotated[str, typer.Option("--environment", "-e", help="Environment.")],
    image: Image,
    commit: CommitSha,
    repo: Repo = Path(),
    kubeconfig: Annotated[str | None, typer.Option(help="kubeconfig file.")] = None,
) -> None:
    """Approve this commit's plan into an environment that requires approval (until the
    environment's approval_expires)."""
    from pipeline_bot.cli_deploy import tool_context

    arguments = {
        "environment": environment,
        "image_tag": image,
        "commit_sha": commit,
        "repository": str(repo),
    }
    approval = _call("approve_promotion", arguments, tool_context(kubeconfig, None))
    typer.echo(
        f"approved plan {approval.plan_digest} of {approval.commit_sha[:12]} into "
        f"{approval.environment} for {approval.approved_by} until "
        f"{approval.expires_at:%Y-%m-%d %H:%M}Z"
    )
