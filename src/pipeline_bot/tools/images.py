"""Image tools: resolve_image (a tag's digest, read-only), build_image (build, label, push) and
push_image (push one built before)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from pipeline_bot.core.images import BuildSpec, oci_labels
from pipeline_bot.errors import ToolError
from pipeline_bot.integrations.ports import ImagePort
from pipeline_bot.tools.registry import ToolAnnotations, ToolContext, ToolRegistry

READS_REGISTRY = ToolAnnotations(
    read_only=True, destructive=False, idempotent=True, open_world=True
)
PUSHES = ToolAnnotations(read_only=False, destructive=True, idempotent=False, open_world=True)


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ResolveInput(_Input):
    image: str = Field(description="Image reference: repo:tag (or repo@digest to check it)")


class ResolvedImageOut(BaseModel):
    image: str = Field(description="The reference as given")
    registry: str
    repository: str
    tag: str | None
    digest: str
    media_type: str = Field(description="Manifest kind: an OCI index, an image manifest ...")
    pinned: str = Field(description="repo@digest, what a deploy runs")


class BuildInput(_Input):
    context: str = Field(description="Build context folder")
    image: str = Field(description="Reference to tag and push: registry/repo:tag")
    dockerfile: str | None = Field(None, description="Dockerfile. Default: the context's")
    build_args: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict, description="More image labels")
    commit_sha: str | None = Field(None, description="org.opencontainers.image.revision")
    source: str | None = Field(
        None,
        description="org.opencontainers.image.source. Default: the GitHub repository's URL "
        "when one is known",
    )
    push: bool = True


class BuildOutput(BaseModel):
    image: str
    builder: str = Field(description="docker or buildah")
    labels: dict[str, str]
    pushed: bool
    digest: str | None = None
    pinned: str | None = None


def _images(ctx: ToolContext, tool: str) -> ImagePort:
    if ctx.images is None:
        raise ToolError(f"{tool} needs a registry client, and none is configured", tool=tool)
    return ctx.images


def resolve_image(args: ResolveInput, ctx: ToolContext) -> ResolvedImageOut:
    """The digest an image tag names now at its registry (anonymous, basic or token auth), and
    the manifest's kind. A missing repository or tag is an error naming it. Reads only."""
    r = _images(ctx, "resolve_image").resolve(args.image)
    return ResolvedImageOut(
        image=r.reference,
        registry=r.registry,
        repository=r.repository,
        tag=r.tag,
        digest=r.digest,
        media_type=r.media_type,
        pinned=r.pinned,
    )


def build_image(args: BuildInput, ctx: ToolContext) -> BuildOutput:
    """Build an image from a context folder (a Docker daemon where one answers, else buildah),
    label it with the commit and repository (OCI labels), and push it to its registry."""
    port = _images(ctx, "build_image")
    context = Path(args.context)
    if not context.is_dir():
        raise ToolError(f"build context {args.context!r} is not a folder", tool="build_image")
    source = args.source or (
        f"https://github.com/{ctx.github_repository}" if ctx.github_repository else None
    )
    labels = {**oci_labels(revision=args.commit_sha, source=source), **args.labels}
    spec = BuildSpec(
        context=str(context),
        reference=args.image,
        dockerfile=args.dockerfile,
        build_args=tuple(sorted(args.build_args.items())),
        labels=tuple(sorted(labels.items())),
    )
    builder = port.build(spec, progress=ctx.progress)
    if not args.push:
        return BuildOutput(image=args.image, builder=builder, labels=labels, pushed=False)
    pushed = port.push(args.image, progress=ctx.progress)
    return BuildOutput(
        image=args.image,
        builder=builder,
        labels=labels,
        pushed=True,
        digest=pushed.digest,
        pinned=pushed.pinned,
    )


class PushInput(_Input):
    image: str = Field(description="A locally built image to push: registry/repo:tag")


def push_image(args: PushInput, ctx: ToolContext) -> ResolvedImageOut:
    """Push an image built here before (build_image with push: false) to its registry, and
    say the digest the registry now has for its tag."""
    r = _images(ctx, "push_image").push(args.image, progress=ctx.progress)
    return ResolvedImageOut(
        image=r.reference,
        registry=r.registry,
        repository=r.repository,
        tag=r.tag,
        digest=r.digest,
        media_type=r.media_type,
        pinned=r.pinned,
    )


def register(registry: ToolRegistry) -> None:
    for fn, title, input_model, output_model, hints in (
        (resolve_image, "Resolve image", ResolveInput, ResolvedImageOut, READS_REGISTRY),
        (build_image, "Build image", BuildInput, BuildOutput, PUSHES),
        (push_image, "Push image", PushInput, ResolvedImageOut, PUSHES),
    ):
        registry.tool(
            name=fn.__name__,
            title=title,
            input_model=input_model,
            output_model=output_model,
            annotations=hints,
        )(fn)  # type: ignore[arg-type]
