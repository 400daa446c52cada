"""Benchmark: what the Action's image costs a `uses:` step: its size, pulling it, and starting it.

Builds the image from the Dockerfile with buildah (on a Debian base made here with debootstrap,
as tests/test_image.py does, since no outside registry can be reached), pushes it to Debian's
docker-registry on 127.0.0.1, then, each run in a fresh storage (nothing cached, as on a new
runner):
  pull   `buildah pull` from the registry (loopback: no network time, only transfer, checks,
         decompression and unpacking)
  start  `buildah from` + `buildah run pipeline-bot action` to its first line (command analyze)
and prints the image's size, the medians, and the installed size of each Python distribution in
the image (which dependency costs what). Needs root, buildah, debootstrap and docker-registry.

    python bench/action_image.py [--runs 3] [--extras ""] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "localhost/pipeline-bot:bench"
SIZES = r"""
import importlib.metadata as m, os, sys
rows = []
for d in m.distributions():
    total = 0
    for f in d.files or []:
        p = f.locate()
        if os.path.isfile(p):
            total += os.path.getsize(p)
    rows.append((total, d.metadata["Name"]))
for total, name in sorted(rows, reverse=True):
    print(f"{total}\t{name}")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Buildah:
    def __init__(self, root: Path) -> None:
        self.store = ["--root", str(root / "root"), "--runroot", str(root / "run")]
        self.store += ["--storage-driver", "vfs"]

    def __call__(self, *args: str, text: bool = True) -> str:
        out = subprocess.run(
            ["buildah", *self.store, *args], capture_output=True, text=True, check=False
        )
        if out.returncode != 0:
            sys.exit(f"buildah {args[0]} failed: {out.stderr[-2000:]}")
        return out.stdout


def build(work: Path, extras: str) -> Buildah:
    b = Buildah(work / "build")
    rootfs = work / "rootfs"
    print("debootstrap a Debian base ...", flush=True)
    subprocess.run(
        ["debootstrap", "--variant=minbase", "--include=python3,python3-pip,git,ca-certificates",
         "bookworm", str(rootfs)],
        check=True, capture_output=True,
    )  # fmt: skip
    # as slim images are made: no package caches or lists, documentation or translations
    for junk in ("var/cache/apt", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
                 "usr/share/locale", "usr/share/info"):  # fmt: skip
        for path in (rootfs / junk).glob("*"):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    ctr = b("from", "scratch").strip()
    b("copy", ctr, str(rootfs), "/")
    b("commit", "-q", ctr, "localhost/pb-base:bench")
    context = work / "context"
    shutil.copytree(
        ROOT, context,
        ignore=shutil.ignore_patterns(".git", ".venv", "node_modules", "__pycache__", ".*_cache",
                                      "wheelhouse", "bench"),
    )  # fmt: skip
    print("wheels (no PyPI inside the build here) ...", flush=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(context / "wheelhouse"),
         f"{context}{extras}"],
        check=True, capture_output=True,
    )  # fmt: skip
    print("buildah bud ...", flush=True)
    b("bud", "--isolation", "chroot", "--build-arg", "BASE_IMAGE=localhost/pb-base:bench",
      "--build-arg", f"EXTRAS={extras}", "-t", IMAGE, str(context))  # fmt: skip
    return b


def registry(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    conf = work / "registry.yml"
    conf.write_text(
        "version: 0.1\nlog: {level: error}\n"
        f"storage: {{filesystem: {{rootdirectory: {work / 'registry'}}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n"
    )
    proc = subprocess.Popen(
        ["docker-registry", "serve", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"127.0.0.1:{port}"
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                sys.exit("docker-registry did not come up")
            time.sleep(0.1)


def pull_only(work: Path, image: str, run: int) -> float:
    """The alternative a step could not do with less: pulling the base image alone."""
    b = Buildah(work / f"base-{run}")
    t0 = time.perf_counter()
    b("pull", "-q", "--tls-verify=false", image)
    elapsed = time.perf_counter() - t0
    shutil.rmtree(work / f"base-{run}", ignore_errors=True)
    return elapsed


def pull_and_start(work: Path, image: str, run: int) -> tuple[float, float]:
    b = Buildah(work / f"pull-{run}")
    workspace = work / f"ws-{run}"
    subprocess.run(["git", "init", "-q", str(workspace)], check=True)
    t0 = time.perf_counter()
    b("pull", "-q", "--tls-verify=false", image)
    t1 = time.perf_counter()
    ctr = b("from", "--tls-verify=false", image).strip()
    proc = subprocess.Popen(
        ["buildah", *b.store, "run", "--isolation", "chroot", "-v", f"{workspace}:/ws",
         "-e", "INPUT_COMMAND=analyze", "-e", "GITHUB_WORKSPACE=/ws", ctr, "--",
         "pipeline-bot", "action"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    first = proc.stdout.readline()
    t2 = time.perf_counter()
    proc.wait()
    proc.stdout.close()
    b("rm", ctr)
    if not first.startswith("pipeline-bot "):
        sys.exit(f"the image's first line was {first!r}")
    shutil.rmtree(work / f"pull-{run}", ignore_errors=True)
    return t1 - t0, t2 - t1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--extras", default="", help='e.g. "[app]" for the App\'s image')
    parser.add_argument("--keep", type=Path, help="work folder to keep (default: a temporary one)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (debootstrap, chroot builds)")
    missing = [t for t in ("buildah", "debootstrap", "docker-registry") if not shutil.which(t)]
    if missing:
        sys.exit(f"missing: {', '.join(missing)} (apt-get install -y {' '.join(missing)})")
    work = args.keep or Path(tempfile.mkdtemp(prefix="pb-image-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    proc = None
    try:
        b = build(work, args.extras)
        info = json.loads(b("inspect", "--type", "image", "localhost/pipeline-bot:bench"))
        layers = info.get("OCIv1", {}).get("rootfs", {}).get("diff_ids", [])
        proc, host = registry(work)
        image = f"{host}/pipeline-bot:bench"
        b("push", "--tls-verify=false", "localhost/pipeline-bot:bench", f"docker://{image}")
        size = b("images", "--format", "{{.Size}}", "localhost/pipeline-bot:bench").strip()
        base = b("images", "--format", "{{.Size}}", "localhost/pb-base:bench").strip()
        blobs = work / "registry" / "docker" / "registry" / "v2" / "blobs"
        compressed = sum(p.stat().st_size for p in blobs.rglob("data"))
        pulls, starts = [], []
        base_ref = f"{host}/pb-base:bench"
        b("push", "--tls-verify=false", "localhost/pb-base:bench", f"docker://{base_ref}")
        base_pulls = []
        for run in range(args.runs):  # alternating, so the machine's noise falls on both
            base_pulls.append(pull_only(work, base_ref, run))
            pull, start = pull_and_start(work, image, run)
            pulls.append(pull)
            starts.append(start)
            print(
                f"run {run + 1}: pull {pull:.1f} s, start to first line {start:.2f} s; "
                f"the base alone pulls in {base_pulls[-1]:.1f} s",
                flush=True,
            )
        ctr = b("from", "localhost/pipeline-bot:bench").strip()
        sizes = b(
            "run", "--isolation", "chroot", ctr, "--", "/opt/pipeline-bot/bin/python", "-c", SIZES
        )
        b("rm", ctr)
        print()
        print(f"image {IMAGE}{args.extras}: {size} unpacked ({len(layers)} layers), "
              f"{compressed / 1e6:.0f} MB in the registry (compressed); of it the base "
              f"(Debian minbase with python3, pip and git, slimmed) {base}")  # fmt: skip
        print(f"pull (loopback registry, fresh storage)  median {statistics.median(pulls):6.1f} s")
        print(f"start to the first line                  median {statistics.median(starts):6.2f} s")
        total = statistics.median(pulls) + statistics.median(starts)
        alone = statistics.median(base_pulls)
        print(f"pull and start                           median {total:6.1f} s")
        print(f"pull of the base alone                   median {alone:6.1f} s "
              f"(the image's pull and start: {total / alone:.2f}x that)")  # fmt: skip
        print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print("\ninstalled size per Python distribution (MB), largest first:")
        for line in sizes.splitlines()[:20]:
            total, name = line.split("\t", 1)
            print(f"  {int(total) / 1e6:7.1f}  {name}")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=20)
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
