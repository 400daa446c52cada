"""`pipeline-bot image build | push | resolve`: container images from a shell (the build_image,
push_image and resolve_image tools)."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from pipeline_bot.errors import PipelineBotError
from pipeline_bot.exit_codes import for_error

image_app = typer.Typer(
    help="Build, push and resolve container images (buildah, or a Docker daemon where one "
    "answers; registry logins from $DOCKER_CONFIG or PIPELINE_BOT_REGISTRY_*).",
    no_args_is_help=True,
)


class Format(StrEnum):
    text = "text"
    json = "json"


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


def _pairs(option: str, pairs: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{option} {pair!r}: expected name=value")
        out[key] = value
    return out


def _print(result: Any, output: Format, text: str) -> None:
    if output is Format.json:
        typer.echo(json.dumps(result.model_dump(mode="json"), indent=2))
    else:
        typer.echo(text)


@image_app.command()
def build(
    context: Annotated[Path, typer.Argument(help="Build context folder.")],
    image: Annotated[str, typer.Option("--image", "-t", help="registry/repo:tag to build.")],
    file: Annotated[
        str | None, typer.Option("--file", "-f", help="Dockerfile. Default: the context's.")
    ] = None,
    build_arg: Annotated[
        list[str] | None, typer.Option("--build-arg", help="NAME=VALUE (repeatable).")
    ] = None,
    label: Annotated[
        list[str] | None, typer.Option("--label", help="NAME=VALUE (repeatable).")
    ] = None,
    commit: Annotated[
        str | None, typer.Option(help="Commit SHA for org.opencontainers.image.revision.")
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(help="Repository URL for org.opencontainers.image.source."),
    ] = None,
    push: Annotated[bool, typer.Option("--push/--no-push", help="Push after building.")] = True,
    output: Output = Format.text,
) -> None:
    """Build an image with OCI labels and push it; prints the digest pushed."""
    result = _call(
        "build_image",
        {
            "context": str(context),
            "image": image,
            "dockerfile": file,
            "build_args": _pairs("--build-arg", build_arg),
            "labels": _pairs("--label", label),
            "commit_sha": commit,
            "source": source,
            "push": push,
        },
    )
    done = f"pushed {result.pinned}" if result.pushed else f"built {result.image} (not pushed)"
    _print(result, output, f"{done} ({result.builder})")


@image_app.command("push")
def push_cmd(
    image: Annotated[str, typer.Argument(help="registry/repo:tag built here before.")],
    output: Output = Format.text,
) -> None:
    """Push an image built before (`image build --no-push`); prints its digest."""
    result = _call("push_image", {"image": image})
    _print(result, output, f"pushed {result.pinned}")


@image_app.command()
def resolve(
    image: Annotated[str, typer.Argument(help="repo:tag (or repo@digest to check it).")],
    output: Output = Format.text,
) -> None:
    """Print the digest a tag names now at its registry (exit 2 when the repository or tag
    does not exist, 4 when the registry cannot be reached or refuses the pull)."""
    result = _call("resolve_image", {"image": image})
    _print(result, output, f"{result.pinned}  ({result.media_type})")


def register(app: typer.Typer) -> None:
    app.add_typer(image_app, name="image")
