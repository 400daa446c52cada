"""`pipeline-bot serve` (the GitHub App) and `pipeline-bot app setup` (registering it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline_bot.errors import ConfigError, PipelineBotError, require_extra
from pipeline_bot.exit_codes import Exit, for_error

APP_FEATURE = "`pipeline-bot serve` (the GitHub App)"
APP_MODULES = ("fastapi", "sqlalchemy", "jwt", "cryptography")
"""What the [app] extra brings that the App imports (the Action's image leaves them out)."""

app_app = typer.Typer(help="Register and run pipeline-bot as a GitHub App.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(app_app, name="app")

    @app.command()
    def serve(
        host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    ) -> None:
        """Run the GitHub App: webhooks at /webhooks, REST API, /metrics, MCP at /mcp.

        Needs GITHUB_WEBHOOK_SECRET, GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY (or _PATH).
        """
        from pipeline_bot.settings import load_settings

        try:
            require_extra(APP_FEATURE, "app", *APP_MODULES)
            from pipeline_bot.app.server import serve as run

            run(host, port, load_settings())
        except ConfigError as exc:
            count = len(exc.problems)
            lines = [f"{p.field}: {p.message}" if p.field else p.message for p in exc.problems]
            if count == 1:
                typer.echo(f"error: {lines[0]}", err=True)
            else:
                typer.echo(f"error: the App cannot start; {count} settings to fix:", err=True)
                for line in lines:
                    typer.echo(f"  - {line}", err=True)
            raise typer.Exit(Exit.BAD_INPUT) from None
        except PipelineBotError as exc:
            typer.echo(f"error: {exc.message}", err=True)
            raise typer.Exit(for_error(exc)) from None


@app_app.command("setup")
def setup(
    webhook_url: Annotated[
        str, typer.Option(help="Public URL GitHub sends webhooks to, ending in /webhooks.")
    ],
    out: Annotated[
        Path, typer.Option(help="File to write GITHUB_APP_ID, the key path and the secret to.")
    ] = Path(".env"),
    port: Annotated[int, typer.Option(help="Local port of the setup page.")] = 3000,
    name: Annotated[str, typer.Option(help="The App's name (GitHub lets you change it).")] = (
        "pipeline-bot"
    ),
    org: Annotated[str | None, typer.Option(help="Register it for this organization.")] = None,
    github_url: Annotated[
        str, typer.Option(help="GitHub's web address (GitHub Enterprise Server: yours).")
    ] = "https://github.com",
) -> None:
    """Register the App with GitHub's manifest flow and save its credentials (mode 0600)."""
    from pipeline_bot.app.setup import run_setup
    from pipeline_bot.settings import get_settings

    def ready(url: str) -> None:
        typer.echo(f"Open {url} in a browser to register the App (waiting for GitHub)…")

    try:
        saved = run_setup(
            webhook_url=webhook_url,
            out=out,
            port=port,
            name=name,
            org=org,
            github_url=github_url,
            api_url=get_settings().github_api_url,
            ready=ready,
        )
    except PipelineBotError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(for_error(exc)) from None
    typer.echo(f"Registered App {saved['id']} ({saved.get('slug')}).")
    typer.echo(f"Credentials: {saved['env_file']} and {saved['key_file']} (mode 0600).")
    typer.echo(f"Install it: {saved['install_url']}")
    typer.echo(f"Then: set -a; . {saved['env_file']}; set +a; pipeline-bot serve")
