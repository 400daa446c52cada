"""Benchmark: what the learned risk model costs an analysis, first and later.

On one repository, in one run:
  cold      `pipeline-bot analyze` with an empty cache: mines the history window, labels it (SZZ,
            reverts), fits the model (goal: within 2 minutes on a 20,000-commit repository)
  warm      the same analysis again: the cached model and history are reused (median of --runs)
  baseline  the analysis as it was before the model (--baseline-ref, a commit of this project,
            checked out into a temporary worktree and run from its own source; it read the
            1,000 commits before the change for its history metrics) (median of --runs)
and prints warm / baseline (goal: at most 1.5).

    python bench/risk_speed.py --repo PATH [--runs 5] [--baseline-ref 8394dd6]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN = "import sys; sys.path.insert(0, sys.argv.pop(1)); from pipeline_bot.entry import main; main()"


def timed(src: Path, repo: Path, env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", RUN, str(src), "analyze", "--repo", str(repo), "--format", "json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise SystemExit(f"analyze failed: {proc.stderr.strip()}")
    return elapsed, proc.stderr


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", type=Path, required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--baseline-ref", default="8394dd6")
    args = ap.parse_args()
    commits = subprocess.run(
        ["git", "-C", str(args.repo), "rev-list", "--count", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PIPELINE_BOT_CACHE_DIR": str(Path(tmp) / "cache")}
        cold, progress = timed(ROOT / "src", args.repo, env)
        warm = [timed(ROOT / "src", args.repo, env)[0] for _ in range(args.runs)]
        worktree = Path(tmp) / "baseline"
        subprocess.run(
            [
                "git",
                "-C",
                str(ROOT),
                "worktree",
                "add",
                "-q",
                "--detach",
                str(worktree),
                args.baseline_ref,
            ],
            check=True,
        )
        try:
            base = [timed(worktree / "src", args.repo, env)[0] for _ in range(args.runs)]
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)], check=True
            )
    print(f"repository: {args.repo} ({commits} commits reachable from HEAD)")
    print("cold analysis progress:\n  " + "\n  ".join(progress.strip().splitlines()))
    print(f"cold (mine, label, fit): {cold:.1f} s   (goal: under 120 s)")
    w, b = statistics.median(warm), statistics.median(base)
    print(f"warm (cached model), median of {args.runs}: {w:.2f} s")
    print(f"before the model ({args.baseline_ref}), median of {args.runs}: {b:.2f} s")
    print(f"warm / before: {w / b:.2f}   (goal: at most 1.5)")
    load = os.getloadavg()[0]
    print(f"ran on {os.cpu_count()} cores, load average {load:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
