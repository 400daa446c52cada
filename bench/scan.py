"""Benchmark: the diff scan on 50 MiB inputs (one line or many, hostile or ordinary) vs `grep -c`.

Each input is generated (deterministic) and written as the patch git prints for an added file
holding it, so the scan reads what `pipeline-bot analyze` reads and grep reads the same bytes:
  scan  DiffStreamParser fed 64 KiB chunks, as the git adapter reads its pipe: hunks, line
        counts, secret-like strings with their lines, test definitions (in memory, in process)
  grep  `LC_ALL=C grep -c -i -E '<the literals every secret contains>' FILE` (lines that hold
        one: the cheapest scan that could find the same secrets)
and prints MB/s (10^6 bytes) for each, the ratio of their times, what the scan found, and the
load the machine ran under. Before issue 15's fix the first input did not finish in 300 s.

    python bench/scan.py [--mib 50] [--runs 3] [--only SUBSTRING]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from pipeline_bot.core.diffparse import DiffStreamParser

GREP_PATTERN = (
    "akia|asia|gh[pousr]_|github_pat_|-----begin |xox[abprs]-|sk-|aiza|passw|secret|api|token"
)
CHUNK = 1 << 16


def _one_line(unit: bytes) -> Callable[[int], bytes]:
    return lambda size: unit * (size // len(unit)) + b"\n"


def _lines(make: Callable[[int], bytes]) -> Callable[[int], bytes]:
    def build(size: int) -> bytes:
        out, total, i = [], 0, 0
        while total < size:
            line = make(i) + b"\n"
            out.append(line)
            total += len(line)
            i += 1
        return b"".join(out)

    return build


def _code_line(i: int) -> bytes:
    """Source-like text; one line in 50 names a token or an API, as real code does."""
    if i % 50 == 0:
        return b"    token = client.api.fetch_token(scope=%d)  # refresh" % i
    if i % 7 == 0:
        return b"def handler_%d(request, retries=3):" % i
    return b"    value_%d = compute(items[%d], factor=%d) + offset" % (i, i % 97, i % 13)


INPUTS: dict[str, Callable[[int], bytes]] = {
    "one line, hostile: private-key headers": _one_line(b"-----BEGIN PRIVATE KEY-----"),
    "one line, hostile: near misses": _one_line(b"token api_key AKIAXYZ sk-short password= "),
    "one line, ordinary: minified JavaScript": _one_line(
        b"function f(a){return a.map(function(b){return b*2+c.length})};var d=f([1,2,3]);"
    ),
    "lines, hostile: private-key headers": _lines(lambda i: b"-----BEGIN PRIVATE KEY-----"),
    "lines, hostile: assignments": _lines(lambda i: b"password = 'abcdefghij%d'" % i),
    "lines, ordinary: source code": _lines(_code_line),
}


def as_patch(content: bytes, path: bytes = b"src/generated.py") -> bytes:
    """`git diff --raw -p -z` output for one added file holding `content`."""
    lines = content.count(b"\n")
    body = b"+" + content[:-1].replace(b"\n", b"\n+") + b"\n"
    return (
        b":000000 100644 0000000 1111111 A\0%s\0\0" % path
        + b"diff --git a/%s b/%s\nnew file mode 100644\nindex 0000000..1111111\n" % (path, path)
        + b"--- /dev/null\n+++ b/%s\n@@ -0,0 +1,%d @@\n" % (path, lines)
        + body
    )


def scan(data: bytes) -> tuple[float, str]:
    parser = DiffStreamParser()
    files = []
    start = time.perf_counter()
    for i in range(0, len(data), CHUNK):
        files += parser.feed(data[i : i + CHUNK])
    files += parser.close()
    seconds = time.perf_counter() - start
    (f,) = files
    return seconds, f"{f.additions} lines, {len(f.signals.secrets)} with a secret"


def grep(path: Path) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(
        ["grep", "-c", "-i", "-E", GREP_PATTERN, str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "LC_ALL": "C"},
        check=False,
    )
    seconds = time.perf_counter() - start
    assert done.returncode in (0, 1), done.stderr
    return seconds, f"{done.stdout.strip()} lines"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="", help="run the inputs whose name has this")
    args = parser.parse_args()
    grep_version = subprocess.run(["grep", "-V"], capture_output=True, text=True, check=True)
    print(
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{grep_version.stdout.splitlines()[0]}, {os.cpu_count()} CPUs, "
        f"load before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(f"{'input':42} {'MB':>5} {'scan MB/s':>10} {'grep MB/s':>10} {'scan/grep':>9}  found")
    with tempfile.TemporaryDirectory(prefix="pb-scan-") as tmp:
        for name, make in INPUTS.items():
            if args.only not in name:
                continue
            data = as_patch(make(args.mib << 20))
            path = Path(tmp) / "input.diff"
            path.write_bytes(data)
            scans = [scan(data) for _ in range(args.runs)]
            greps = [grep(path) for _ in range(args.runs)]
            s = statistics.median(t for t, _ in scans)
            g = statistics.median(t for t, _ in greps)
            mb = len(data) / 1e6
            print(
                f"{name:42} {mb:5.0f} {mb / s:10.1f} {mb / g:10.1f} {s / g:8.1f}x"
                f"  {scans[0][1]}; grep: {greps[0][1]}",
                flush=True,
            )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"load after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
        f"peak memory of this process {peak:.0f} MB"
    )


if __name__ == "__main__":
    main()
