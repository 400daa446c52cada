"""Benchmark: `pipeline-bot analyze` on a 20,000-file, 500,000-line change vs `git diff --numstat`.

Builds a synthetic repository with `git fast-import` (deterministic content), then times, on the
same range and in the same run:
  baseline  `git diff --numstat BASE HEAD` (output discarded)
  analysis  `pipeline-bot analyze --format json` in a fresh Python process (output discarded)
and prints the median of each, their ratio (target <= 1.5), and the analysis process's peak RSS
(target < 300 MB) next to the peak RSS of the git processes it ran.

    python bench/analyze.py [--files 20000] [--lines 500000] [--runs 5] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

AUTHOR = "Bench <bench@example.invalid>"


def _blob_lines(seed: int, count: int) -> bytes:
    return b"".join(b"value_%d_%d = compute(%d, %d)\n" % (seed, i, seed, i) for i in range(count))


def build_repo(root: Path, files: int, lines: int) -> tuple[str, str]:
    """Base: `files // 10` files of 60 lines. Head: modifies each (20 lines changed) and adds the
    rest of `files` so that additions + deletions total `lines`."""
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    modified = files // 10
    added = files - modified
    per_added, extra = divmod(lines - modified * 20 - 2, added - 2)  # 2: two 1-line files below
    stream = bytearray()

    def commit(ref_mark: int, when: int, message: bytes, entries: list[tuple[str, bytes]]) -> None:
        stream.extend(b"commit refs/heads/main\nmark :%d\n" % ref_mark)
        stream.extend(
            b"author %s %d +0000\ncommitter %s %d +0000\n"
            % (AUTHOR.encode(), when, AUTHOR.encode(), when)
        )
        stream.extend(b"data %d\n%s\n" % (len(message), message))
        if ref_mark > 1:
            stream.extend(b"from :%d\n" % (ref_mark - 1))
        for path, data in entries:
            stream.extend(b"M 100644 inline %s\ndata %d\n%s\n" % (path.encode(), len(data), data))

    def path(i: int, ext: str) -> str:
        return f"pkg{i % 40:02d}/mod{i % 7}/file_{i:05d}.{ext}"

    base = [(path(i, "py"), _blob_lines(i, 60)) for i in range(modified)]
    commit(1, 1_700_000_000, b"base", base)
    head: list[tuple[str, bytes]] = []
    for i, (p, _) in enumerate(base):
        body = _blob_lines(i, 60).splitlines(keepends=True)
        body[20:30] = [b"changed_%d_%d = 1\n" % (i, j) for j in range(10)]
        head.append((p, b"".join(body)))
    for n, i in enumerate(range(modified, files - 2)):
        count = per_added + (1 if n < extra else 0)
        head.append((path(i, "py" if i % 2 else "txt"), _blob_lines(i, count)))
    head.append(("db/migrations/0042_add_index.sql", b"CREATE INDEX idx ON t (c);\n"))
    head.append(("Dockerfile", b"FROM python:3.11-slim\n"))
    commit(2, 1_700_000_600, b"big change", head)
    subprocess.run(["git", "fast-import", "--quiet"], cwd=root, input=bytes(stream), check=True)
    subprocess.run(["git", "reset", "-q", "--hard", "main"], cwd=root, check=True)
    return "main~1", "main"


def _median_seconds(cmd: list[str], runs: int, cwd: Path) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def child(repo: str, base: str, head: str) -> None:
    """Run the CLI in this process; print wall time and peak RSS of this process and its git."""
    from pipeline_bot.cli import app

    start = time.perf_counter()
    with open("/dev/null", "w") as sink:  # noqa: PTH123 - a plain sink for stdout
        saved, sys.stdout = sys.stdout, sink
        try:
            app(
                ["analyze", "--repo", repo, "--base", base, "--head", head, "--format", "json"],
                standalone_mode=False,
            )
        finally:
            sys.stdout = saved
    elapsed = time.perf_counter() - start
    print(
        json.dumps(
            {
                "seconds": elapsed,
                "self_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                "git_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--lines", type=int, default=500_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="build the repository here and keep it")
    parser.add_argument(
        "--child", nargs=3, metavar=("REPO", "BASE", "HEAD"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory(prefix="pb-bench-") as tmp:
        root = args.keep or Path(tmp) / "repo"
        if not (root / ".git").exists():
            t0 = time.perf_counter()
            base, head = build_repo(root, args.files, args.lines)
            print(f"built repository in {time.perf_counter() - t0:.1f}s: {root}")
        else:
            base, head = "main~1", "main"
        stat = subprocess.run(
            ["git", "diff", "--shortstat", base, head],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        print(f"change: {stat}")
        numstat = _median_seconds(["git", "diff", "--numstat", base, head], args.runs, root)
        runs = []
        for _ in range(args.runs):
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(root), base, head],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            runs.append(json.loads(out.strip().splitlines()[-1]))
        wall = []
        for _ in range(args.runs):
            start = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pipeline_bot",
                    "analyze",
                    "--repo",
                    str(root),
                    "--base",
                    base,
                    "--head",
                    head,
                    "--format",
                    "json",
                ],
                stdout=subprocess.DEVNULL,
                check=True,
            )
            wall.append(time.perf_counter() - start)
        analysis = statistics.median(r["seconds"] for r in runs)
        end_to_end = statistics.median(wall)
        peak = max(r["self_kib"] for r in runs) / 1024
        git_peak = max(r["git_kib"] for r in runs) / 1024
        print(f"git diff --numstat           median {numstat:.3f}s  (baseline)")
        print(
            f"analysis (in process)        median {analysis:.3f}s  ratio {analysis / numstat:.2f}"
            "  (target <= 1.5)"
        )
        print(
            f"pipeline-bot analyze (CLI)   median {end_to_end:.3f}s  ratio "
            f"{end_to_end / numstat:.2f}  (includes interpreter start and imports)"
        )
        print(
            f"peak memory: analysis process {peak:.0f} MB (target < 300), "
            f"largest git child {git_peak:.0f} MB"
        )


if __name__ == "__main__":
    main()
