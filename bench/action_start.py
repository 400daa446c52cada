"""Benchmark: how soon `pipeline-bot action` (command analyze) prints its first line.

Measures, in the same run, process start to the first line of stdout for
  baseline  `python -c "print('x')"`
  action    `pipeline-bot action` with INPUT_COMMAND=analyze
and prints the medians (target: the action's first line within 0.6 s of process start) and, when
a built image is named with --image (buildah or docker), its size.

    python bench/action_start.py [--runs 15] [--image localhost/pipeline-bot:dev]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def first_line_seconds(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if not line.startswith("::add-mask::"):
            break
    elapsed = time.perf_counter() - start
    proc.kill()
    proc.wait()
    proc.stdout.close()
    return elapsed


def image_size(image: str) -> str:
    for tool in ("buildah", "docker", "podman"):
        if shutil.which(tool):
            out = subprocess.run(
                [tool, "images", "--format", "{{.Size}}", image],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
            if out:
                return f"{out} ({tool})"
    return "unknown (no buildah, docker or podman found the image)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--image")
    args = parser.parse_args()
    script = str(Path(sys.executable).parent / "pipeline-bot")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["git", "init", "-q", tmp], check=True)
        env = {**os.environ, "INPUT_COMMAND": "analyze", "GITHUB_WORKSPACE": tmp}
        base = [
            first_line_seconds([sys.executable, "-c", "print('x')"], env) for _ in range(args.runs)
        ]
        action = [first_line_seconds([script, "action"], env) for _ in range(args.runs)]
    b, a = statistics.median(base), statistics.median(action)
    print(f"python -c print          median {b * 1000:6.1f} ms")
    print(
        f"pipeline-bot action      median {a * 1000:6.1f} ms to the first line "
        f"({a / b:.1f}x; target < 600 ms)"
    )
    if args.image:
        print(f"image {args.image}: {image_size(args.image)}")


if __name__ == "__main__":
    main()
