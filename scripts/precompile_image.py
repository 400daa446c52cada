"""Compile the bytecode of the modules the Action runs, and only those (the Dockerfile's build
stage calls it inside the image's virtualenv).

Measured (README, "The Action's image"): without bytecode a run spends about 1.2 s compiling
what `analyze` imports and as much again for a deploy's Kubernetes client; bytecode for every
installed module would add about 150 MB to the image, most of it for modules the Action never
imports (the asyncio twin of the Kubernetes client, GitHub's schemas of every API version,
numpy's tests). So this imports what the Action's commands import, runs one analysis on a
throwaway repository (which imports the lazily loaded rest: git, the risk model, its fit),
and compiles exactly the modules then loaded, with unchecked-hash validation (no timestamps to
go stale when the files are copied into the final stage).

    python scripts/precompile_image.py
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import py_compile
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

ACTION_MODULES = (
    "pipeline_bot.entry",
    "pipeline_bot.redaction",
    "pipeline_bot.action.main",
    "pipeline_bot.action.runner",
    "pipeline_bot.action.images",
    "pipeline_bot.action.plans",
    "pipeline_bot.cli",
    "pipeline_bot.tools",
    "pipeline_bot.wiring",
    "pipeline_bot.deploy.engine",
    "pipeline_bot.deploy.run",
    "pipeline_bot.deploy.cluster_store",
    "pipeline_bot.integrations.images",
    "pipeline_bot.integrations.kubernetes",
    "pipeline_bot.integrations.prometheus",
    "pipeline_bot.integrations.github",
    "pipeline_bot.integrations.riskfit",
    "kubernetes.client",
    "kubernetes.config",
    "kubernetes.watch",
    "githubkit",
    "prometheus_api_client",
    "numpy",
)


def analyse_a_throwaway_repository() -> None:
    from pipeline_bot.cli import app

    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "GIT_AUTHOR_NAME": "build", "GIT_AUTHOR_EMAIL": "build@localhost"}
        env |= {"GIT_COMMITTER_NAME": "build", "GIT_COMMITTER_EMAIL": "build@localhost"}
        run = {"cwd": folder, "env": env, "check": True, "capture_output": True}
        subprocess.run(["git", "init", "-q"], **run)  # type: ignore[call-overload]
        for n in range(2):
            Path(folder, f"app{n}.py").write_text(f"VALUE = {n}\n")
            subprocess.run(["git", "add", "."], **run)  # type: ignore[call-overload]
            subprocess.run(["git", "commit", "-q", "-m", f"change {n}"], **run)  # type: ignore[call-overload]
        for form in ("text", "json", "markdown"):
            with contextlib.redirect_stdout(io.StringIO()):
                app(["analyze", "--repo", folder, "--format", form], standalone_mode=False)


def main() -> int:
    for name in ACTION_MODULES:
        importlib.import_module(name)
    analyse_a_throwaway_repository()
    roots = {Path(sysconfig.get_paths()[k]).resolve() for k in ("purelib", "platlib")}
    compiled = 0
    for module in list(sys.modules.values()):
        source = getattr(module, "__file__", None)
        if not source or not source.endswith(".py"):
            continue
        path = Path(source).resolve()
        if not any(root in path.parents for root in roots):
            continue
        py_compile.compile(
            str(path),
            doraise=True,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
        compiled += 1
    print(f"precompiled {compiled} modules the Action imports", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
