"""Benchmark: `pipeline-bot analyze` on a 20,000-file, 500,000-line change vs `git diff`.

Builds a synthetic repository with `git fast-import` (deterministic content), then times, on the
same range and in the same run:
  baselines  `git diff --numstat BASE HEAD`, and `git diff -p BASE HEAD`: the patch the analysis
             must read (output discarded)
  diff read  the git adapter's `diff()` in process: git's `--raw -p -z` output parsed and
             scanned while git writes it (hunks, secrets, tests, kinds): goal within 2x of
             `git diff -p` (issue 15; 4.5x before)
  analysis   `pipeline-bot analyze --format json` in a fresh Python process (output discarded);
             beyond the diff read it runs the rules, the history and the risk model
and prints the median of each, the ratios, the analysis process's peak RSS (target < 300 MB)
next to the peak RSS of the git processes it ran, the CPU seconds of the analysis (its Python
process, and its git processes apart) and of `git diff -p`, and the load the machine ran under
(with two CPUs, git and the parser share them with whatever else runs: under load the wall
times stretch, the CPU seconds much less). --profile also splits the parse
of the same patch, read from memory, into what costs what.

    python bench/analyze.py [--files 20000] [--lines 500000] [--runs 5] [--keep DIR] [--profile]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
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


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _median_seconds(cmd: list[str], runs: int, cwd: Path) -> tuple[float, float]:
    """Median wall and CPU seconds of a command."""
    times, cpu = [], []
    for _ in range(runs):
        start, used = time.perf_counter(), _children_cpu()
        subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
        cpu.append(_children_cpu() - used)
    return statistics.median(times), statistics.median(cpu)


def child(repo: str, base: str, head: str) -> None:
    """Read the diff, then run the CLI in this process; print wall times and peak RSS of this
    process and its git."""
    from pipeline_bot.cli import app
    from pipeline_bot.integrations.git import GitRepository

    git = GitRepository(repo)
    base_sha, head_sha = git.resolve(base), git.resolve(head)
    start, cpu = time.perf_counter(), time.process_time()
    git.diff(base_sha, head_sha)
    diff_seconds, diff_cpu = time.perf_counter() - start, time.process_time() - cpu
    start, cpu, git_cpu = time.perf_counter(), time.process_time(), _children_cpu()
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
    cpu, git_cpu = time.process_time() - cpu, _children_cpu() - git_cpu
    print(
        json.dumps(
            {
                "seconds": elapsed,
                "cpu": cpu,
                "git_cpu": git_cpu,
                "diff_seconds": diff_seconds,
                "diff_cpu": diff_cpu,
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
    parser.add_argument("--profile", action="store_true", help="split the parse's costs")
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
        load = os.getloadavg()
        numstat, _ = _median_seconds(["git", "diff", "--numstat", base, head], args.runs, root)
        patch, patch_cpu = _median_seconds(["git", "diff", "-p", base, head], args.runs, root)
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
        diff_read = statistics.median(r["diff_seconds"] for r in runs)
        diff_cpu = statistics.median(r["diff_cpu"] for r in runs)
        end_to_end = statistics.median(wall)
        cpu = statistics.median(r["cpu"] for r in runs)
        git_cpu = statistics.median(r["git_cpu"] for r in runs)
        peak = max(r["self_kib"] for r in runs) / 1024
        git_peak = max(r["git_kib"] for r in runs) / 1024
        print(f"git diff --numstat           median {numstat:.3f}s  (baseline)")
        print(f"git diff -p                  median {patch:.3f}s  (baseline: the patch to read)")
        print(
            f"diff read (git + parse)      median {diff_read:.3f}s  ratio {diff_read / patch:.2f}"
            f" to git diff -p  (goal <= 2; parser CPU {diff_cpu:.3f}s)"
        )
        print(
            f"analysis (in process)        median {analysis:.3f}s  ratio {analysis / numstat:.2f}"
            f"  (target <= 1.5); {analysis / patch:.2f} to git diff -p"
        )
        print(
            f"pipeline-bot analyze (CLI)   median {end_to_end:.3f}s  ratio "
            f"{end_to_end / numstat:.2f}  (includes interpreter start and imports)"
        )
        print(
            f"CPU seconds (what load does not change): analysis {cpu:.3f} in Python + "
            f"{git_cpu:.3f} in its git processes (on another CPU: git streams while Python "
            f"parses); git diff -p {patch_cpu:.3f}; Python's {cpu / patch_cpu:.2f}x git diff -p's"
        )
        print(
            f"peak memory: analysis process {peak:.0f} MB (target < 300), "
            f"largest git child {git_peak:.0f} MB"
        )
        after = os.getloadavg()
        print(
            f"load (1, 5, 15 min) before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
            f"after {after[0]:.2f} {after[1]:.2f} {after[2]:.2f}; {os.cpu_count()} CPUs"
        )
        if args.profile:
            profile(root, base, head, args.runs)


def profile(root: Path, base: str, head: str, runs: int) -> None:
    """CPU seconds of the parse of the same patch read from memory, and of its parts."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from pipeline_bot.core import diffparse
    from pipeline_bot.models import FileChange, Hunk, trusted

    args = ["git", "diff", "--raw", "-p", "-z", "-M", "--src-prefix=a/", "--dst-prefix=b/"]
    data = subprocess.run([*args, base, head], cwd=root, capture_output=True, check=True).stdout
    chunk = 1 << 16  # what a pipe hands the adapter per read

    def parse() -> list[FileChange]:
        parser = diffparse.DiffStreamParser()
        files = []
        for i in range(0, len(data), chunk):
            files += parser.feed(data[i : i + chunk])
        return files + parser.close()

    def cpu(work: Callable[[], object]) -> float:
        times = []
        for _ in range(runs):
            start = time.process_time()
            work()
            times.append(time.process_time() - start)
        return min(times)  # the least disturbed run

    files = parse()
    total = cpu(parse)
    stretches = [bytearray(data[i : i + chunk]) for i in range(0, len(data), chunk)]
    prefilter = cpu(lambda: [diffparse.marker_positions(b, len(b)) for b in stretches])
    file_args = [dict(f) for f in files]
    hunk_args = [dict(h) for f in files for h in f.hunks]
    models = cpu(
        lambda: (
            [trusted(Hunk, dict(a)) for a in hunk_args],
            [trusted(FileChange, dict(a)) for a in file_args],
        )
    )
    passes = cpu(lambda: [data.count(b"\n+"), data.count(b"\n-"), data.count(b"\n@@ ")])
    print(f"parse of the same patch from memory ({len(data) / 1e6:.1f} MB), CPU seconds:")
    print(f"  whole parse                                  {total:.3f}")
    print(f"  secret candidates (one pass per kind)        {prefilter:.3f}")
    print(f"  FileChange/Hunk models (built unvalidated)   {models:.3f}")
    print(f"  line counts and hunk search (3 bytes passes) {passes:.3f}")
    rest = total - prefilter - models - passes
    print(f"  the rest: raw entries, sections, hunk headers {rest:.3f}  (per file, in Python)")


if __name__ == "__main__":
    main()
