"""The Action's `build` input: build the image from a context folder of the workspace, label it
with the commit and repository, and push it before the deploy step deploys it (by digest)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pipeline_bot.action.runner import input_value

Call = Callable[[str, dict[str, Any], dict[str, str]], Any]


def build_first(env: dict[str, str], workspace: Path, image: str, call: Call) -> str | None:
    """With a `build` input: build and push `image` from that folder and return a line for the
    summary (the digest pushed); None without one. The context must be inside the workspace."""
    context = input_value("build", env)
    if not context:
        return None
    folder = (workspace / context).resolve()
    if not folder.is_relative_to(workspace.resolve()):
        from pipeline_bot.errors import ToolError

        raise ToolError(f"build {context!r} is outside the workspace", tool="build_image")
    print(f"::group::build {image} from {context}", flush=True)
    try:
        result = call(
            "build_image",
            {
                "context": str(folder),
                "image": image,
                "commit_sha": env.get("GITHUB_SHA") or None,
                "source": _source(env),
            },
            env,
        )
    finally:
        print("::endgroup::", flush=True)
    return f"built with {result.builder} and pushed: `{result.pinned}`"


def _source(env: Mapping[str, str]) -> str | None:
    repository = env.get("GITHUB_REPOSITORY")
    if not repository:
        return None
    server = (env.get("GITHUB_SERVER_URL") or "https://github.com").rstrip("/")
    return f"{server}/{repository}"
