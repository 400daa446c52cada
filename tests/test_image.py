"""The Action's image: built with buildah from the Dockerfile on a Debian base made here with
debootstrap (no registry can be reached), then `pipeline-bot action` run inside it once."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        message = (
            f"{', '.join(missing)} missing: `apt-get install -y buildah debootstrap` "
            "(scripts/test does)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


BASE = ("bookworm", "python3,python3-pip,git,ca-certificates")


def debian_base(rootfs: Path) -> None:
    """Debian's minbase with `BASE`'s packages in `rootfs`: made by debootstrap once per machine
    and kept as a tar in the cache (the Debian mirror's downloads and the install are most of
    the image's build time), keyed by the suite and the packages; `PIPELINE_BOT_FRESH_BASE=1`
    makes it anew."""
    suite, packages = BASE
    key = hashlib.sha256(f"{suite} {packages}".encode()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pipeline-bot"
    tar = cache / "debootstrap" / f"{suite}-minbase-{key}.tar"
    rootfs.mkdir(parents=True, exist_ok=True)
    if tar.exists() and os.environ.get("PIPELINE_BOT_FRESH_BASE") != "1":
        subprocess.run(["tar", "-C", str(rootfs), "-xf", str(tar)], check=True)
        return
    subprocess.run(
        ["debootstrap", "--variant=minbase", f"--include={packages}", suite, str(rootfs)],
        check=True,
        capture_output=True,
    )
    tar.parent.mkdir(parents=True, exist_ok=True)
    partial = tar.with_suffix(f".{os.getpid()}.part")
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(partial), "."], check=True)
    partial.rename(tar)  # whole or not at all


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("debootstrap and a chroot build need root (this project's CI runs as root)")
    _need("buildah", "debootstrap")
    work = tmp_path_factory.mktemp("image")
    store = [
        "--root",
        str(work / "root"),
        "--runroot",
        str(work / "runroot"),
        "--storage-driver",
        "vfs",
    ]

    def buildah(*args: str, **kw) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["buildah", *store, *args], capture_output=True, text=True, check=True, **kw
        )

    debian_base(work / "rootfs")
    ctr = buildah("from", "scratch").stdout.strip()
    buildah("copy", ctr, str(work / "rootfs"), "/")
    buildah("commit", "-q", ctr, "localhost/pb-base:test")
    context = work / "context"
    shutil.copytree(
        ROOT,
        context,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "node_modules", "__pycache__", ".*_cache", "wheelhouse"
        ),
    )
    # the build cannot reach PyPI here: hand it the wheels, as the Dockerfile allows
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--wheel-dir",
            str(context / "wheelhouse"),
            str(context),
        ],
        check=True,
        capture_output=True,
    )
    buildah(
        "bud",
        "--isolation",
        "chroot",
        "--build-arg",
        "BASE_IMAGE=localhost/pb-base:test",
        "-t",
        "localhost/pipeline-bot:test",
        str(context),
    )
    return buildah


def test_the_action_runs_inside_its_image(image, base_repo, tmp_path):
    base_repo.commit("add a migration", {"db/migrations/0002.sql": "ALTER TABLE t ADD c int;\n"})
    ctr = image("from", "localhost/pipeline-bot:test").stdout.strip()
    try:
        run = image(
            "run",
            "--isolation",
            "chroot",
            "-v",
            f"{base_repo.root}:/github/workspace",
            "-e",
            "INPUT_COMMAND=analyze",
            "-e",
            "GITHUB_WORKSPACE=/github/workspace",
            "-e",
            "GITHUB_ACTIONS=true",
            ctr,
            "--",
            "pipeline-bot",
            "action",
        )
    finally:
        image("rm", ctr)
    assert run.stdout.splitlines()[0] == "pipeline-bot 0.1.0: analyze"
    assert "::error title=pipeline-bot%3A migration,file=db/migrations/0002.sql" in run.stdout
