"""The diff scan is linear in its input (issue 15): hostile patches finish far within a deadline,
and the work counted at 1x and 4x the size grows 4x, not 16x.

Before the fix, each of the deadline cases ran for minutes (a 24 MiB line of private-key headers,
2 MiB of lines that each hold a secret, a removed test definition, or a hunk of their own):
every hit searched back to the start of its line and re-read the patch from its hunk's start.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from pipeline_bot.core import diffparse, scan
from pipeline_bot.core.diffparse import DiffStreamParser

MIB = 1 << 20
KEY = '"MIIEvQIBADANBgkq"'  # key material after a header, quoted as in a one-line string

# Run in a child, so a regression fails on the deadline instead of hanging the suite.
_CHILD = textwrap.dedent(
    """
    import sys
    from pipeline_bot.core.diffparse import DiffStreamParser, redact

    shape, unit, size = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3])
    path = b"tests/test_x.py"
    if shape == "one-line":
        body = b"@@ -0,0 +1 @@\\n+" + unit * (size // len(unit)) + b"\\n"
        status, expect = b"A", 1
    elif shape == "hunks":  # a hunk per line: line numbers used to re-walk every hunk
        hunk = b"@@ -%d +%d @@\\n-x\\n+" + unit + b"\\n"
        count = size // len(hunk)
        body = b"".join(hunk % (i * 3 + 1, i * 3 + 1) for i in range(count))
        status, expect = b"M", count
    else:
        line = unit + b"\\n"
        count = size // len(line)
        body = b"@@ -1,%d +0,0 @@\\n" % count + line * count
        status, expect = (b"D", 0) if unit.startswith(b"-") else (b"A", count)
        if status == b"A":
            body = body.replace(b"@@ -1,%d +0,0" % count, b"@@ -0,0 +1,%d" % count)
    raw = b":100644 100644 1111111 2222222 " + status + b"\\0" + path + b"\\0\\0"
    data = raw + b"diff --git a/%s b/%s\\n--- a/%s\\n+++ b/%s\\n" % ((path,) * 4) + body
    parser = DiffStreamParser()
    files = []
    for i in range(0, len(data), 1 << 16):
        files += parser.feed(data[i : i + (1 << 16)])
    files += parser.close()
    signals = files[0].signals
    found = len(signals.secrets) if status != b"D" else signals.removed_tests
    if len(sys.argv) > 4:  # placeholders only: every attempt fails, and still in linear time
        expect = count = int(sys.argv[4])
    assert found == (expect or count), (found, expect, count)
    redact(data[: 4 << 20].decode())
    print(found)
    """
)


@pytest.mark.parametrize(
    ("shape", "unit", "size", "hits"),
    [
        ("one-line", "-----BEGIN PRIVATE KEY-----", 24 * MIB, 0),  # headers without a key: none
        ("one-line", "-----BEGIN PRIVATE KEY-----" + KEY + " ", 24 * MIB, None),
        ("one-line", "secret='abcdefgh' ", 24 * MIB, None),
        ("one-line", "secret='xxxxxxxx' ", 24 * MIB, 0),  # placeholders: no hit at all
        ("lines", "+-----BEGIN PRIVATE KEY-----", 2 * MIB, 0),
        ("lines", "+-----BEGIN PRIVATE KEY-----\n+" + KEY, 2 * MIB, None),
        ("lines", "+password='abcdefghij'", 2 * MIB, None),
        ("lines", "+password='changethis'", 2 * MIB, 0),
        ("lines", "-def test_removed():", 2 * MIB, None),
        ("hunks", "api_key = 'abcdefghij'", 2 * MIB, None),
    ],
)
def test_hostile_patches_are_scanned_far_within_a_generous_deadline(shape, unit, size, hits):
    extra = [] if hits is None else [str(hits)]
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, shape, unit, str(size), *extra],
        capture_output=True,
        text=True,
        timeout=60,  # the fixed scan takes about a second; before the fix, minutes
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout) > 0 if hits is None else int(done.stdout) == hits


# ---------------------------------------------------------------------------- counted work


class _Meter:
    """Work the scan does beyond its passes of `bytes.find`: anchored pattern attempts, the
    bytes each successful attempt spans, and the bytes the line cursors count over."""

    def __init__(self) -> None:
        self.work = 0


class _CountingPattern:
    def __init__(self, pattern, meter: _Meter) -> None:
        self._pattern = pattern
        self._meter = meter

    def match(self, data, pos):
        found = self._pattern.match(data, pos)
        self._meter.work += 1 + (found.end() - pos if found else 0)
        return found


@pytest.fixture
def meter(monkeypatch):
    counted = _Meter()
    kinds = tuple(
        k._replace(pattern=_CountingPattern(k.pattern, counted)) for k in scan.SECRET_KINDS
    )
    monkeypatch.setattr(scan, "SECRET_KINDS", kinds)

    class CountingCursor(scan.LineCursor):
        def line(self, line_start: int) -> int:
            before = self.walked
            number = super().line(line_start)
            counted.work += self.walked - before
            return number

    monkeypatch.setattr(diffparse, "LineCursor", CountingCursor)
    return counted


def _hostile(shape: str, size: int) -> bytes:
    path = b"tests/test_x.py"
    if shape == "one line of keys":
        status, body = b"A", b"@@ -0,0 +1 @@\n+" + b"-----BEGIN PRIVATE KEY-----" * (size // 27)
    elif shape == "one line of near misses":
        unit = b"token api_key AKIAXYZ sk-short ghp_x password= "
        status, body = b"A", b"@@ -0,0 +1 @@\n+" + unit * (size // len(unit))
    elif shape == "lines of secrets":
        n = size // 25
        status, body = b"A", b"@@ -0,0 +1,%d @@\n" % n + b"+secret = 'abcdefghij'\n" * n
    elif shape == "a hunk per secret":
        hunk = b"@@ -%d +%d @@\n-x\n+AIza" + b"d" * 35 + b"\n"
        status, body = b"M", b"".join(hunk % (i * 3 + 1, i * 3 + 1) for i in range(size // 60))
    else:  # removed test definitions between kept lines
        n = size // 28
        lines = b"-def test_gone():\n context\n" * n
        status, body = b"M", b"@@ -1,%d +1,%d @@\n" % (2 * n, n) + lines
    raw = b":100644 100644 1111111 2222222 " + status + b"\0" + path + b"\0\0"
    return raw + b"diff --git a/%s b/%s\n--- a/%s\n+++ b/%s\n" % ((path,) * 4) + body + b"\n"


def _counted_work(meter: _Meter, data: bytes) -> int:
    meter.work = 0
    parser = DiffStreamParser()
    for i in range(0, len(data), 1 << 16):
        parser.feed(data[i : i + (1 << 16)])
    parser.close()
    return meter.work


@pytest.mark.parametrize(
    "shape",
    [
        "one line of keys",
        "one line of near misses",
        "lines of secrets",
        "a hunk per secret",
        "lines of removed tests",
    ],
)
def test_the_counted_work_grows_linearly_with_the_input(meter, shape):
    small, large = (_counted_work(meter, _hostile(shape, size)) for size in (MIB // 4, MIB))
    assert 0 < small <= 3 * MIB // 4  # at most about three operations per input byte
    assert large <= 4.2 * small  # 4x the input: 4x the work (quadratic would be 16x)
