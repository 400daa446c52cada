"""SZZ without one `git blame` per fix: line origins followed through one pass over the history.

`git log --reverse --first-parent -p -U0` streams every mainline change oldest first. For each
file a piece table holds which commit wrote each line (runs of lines, so a file's length before
the window need not be known: lines from before the window have no origin). A fix's deleted or
changed lines are blamed on the commits that wrote them, as `git blame -w <fix>^` would: a line
whose only change was whitespace keeps its origin, and blank, punctuation-only and comment lines
are never blamed. Renames carry their lines' origins along.

This module is pure: the caller feeds it git's output and reads records and blames back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from pipeline_bot.core.features import CommitRecord, FileStat
from pipeline_bot.core.labels import blamable_line, is_blamable_path, is_szz_fix

HEADER = "\x1e"
HEADER_END = "\x1d"
LOG_FORMAT = "%x1e%H%x1f%P%x1f%aE%x1f%at%x1f%ct%x1f%B%x1d"
"""The `--format` the parser expects: one header per commit, then its patch."""

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_BIG = 1 << 40  # the unknown rest of a file: longer than any file
_WS = re.compile(r"\s+")
MAX_TRACKED_HUNK = 5000
"""Hunks larger than this (generated or vendored files) are applied without text matching."""


@dataclass
class Hunk:
    old_start: int
    old_count: int
    new_count: int
    deleted: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)


@dataclass
class FileDiff:
    path: str
    old_path: str | None = None  # set when renamed
    status: str = "M"  # A, D, M, R
    binary: bool = False
    hunks: list[Hunk] = field(default_factory=list)

    @property
    def added(self) -> int:
        return sum(len(h.added) for h in self.hunks)

    @property
    def deleted(self) -> int:
        return sum(len(h.deleted) for h in self.hunks)


@dataclass
class LoggedCommit:
    record: CommitRecord
    diffs: list[FileDiff]


class LogPatchParser:
    """Feed it `git log -p -U0 --format=LOG_FORMAT` output line by line; complete commits come
    back as they end."""

    def __init__(self) -> None:
        self._header: list[str] | None = None
        self._meta: list[str] | None = None
        self._diffs: list[FileDiff] = []
        self._file: FileDiff | None = None
        self._hunk: Hunk | None = None

    def feed(self, line: str) -> LoggedCommit | None:
        """One line (without its newline); returns the previous commit when a new one starts."""
        if self._header is not None:
            self._read_header(line)
            return None
        if line.startswith(HEADER):
            done = self._finish()
            self._header = []
            self._read_header(line[1:])
            return done
        if self._meta is not None:
            self._read_patch(line)
        return None

    def close(self) -> LoggedCommit | None:
        return self._finish()

    @property
    def current_sha(self) -> str | None:
        """The commit whose patch is being read (the one to blame when git stops)."""
        return self._meta[0].strip() if self._meta else None

    def _read_header(self, line: str) -> None:
        if self._header is None:
            return
        if HEADER_END in line:
            self._header.append(line.split(HEADER_END, 1)[0])
            self._meta = "\n".join(self._header).split("\x1f")
            self._header = None
        else:
            self._header.append(line)

    def _read_patch(self, line: str) -> None:
        if line.startswith("diff --git "):
            self._file = FileDiff(path=_diff_git_path(line))
            self._diffs.append(self._file)
            self._hunk = None
            return
        f = self._file
        if f is None:
            return
        if self._hunk is not None and line[:1] in ("-", "+") and not _is_file_header(line, f):
            (self._hunk.deleted if line[0] == "-" else self._hunk.added).append(line[1:])
        elif line.startswith("@@ "):
            m = _HUNK.match(line)
            if m:
                old_count = 1 if m.group(2) is None else int(m.group(2))
                new_count = 1 if m.group(4) is None else int(m.group(4))
                self._hunk = Hunk(int(m.group(1)), old_count, new_count)
                f.hunks.append(self._hunk)
        elif line.startswith("rename from "):
            f.old_path, f.status = _unquote(line[12:]), "R"
        elif line.startswith("rename to "):
            f.path = _unquote(line[10:])
        elif line.startswith("new file mode"):
            f.status = "A"
        elif line.startswith("deleted file mode"):
            f.status = "D"
        elif line.startswith("Binary files ") or line == "GIT binary patch":
            f.binary = True
        elif line.startswith("+++ ") and line != "+++ /dev/null":
            f.path = _strip_prefix(line[4:], "b/")

    def _finish(self) -> LoggedCommit | None:
        meta, diffs = self._meta, self._diffs
        self._meta, self._diffs, self._file, self._hunk = None, [], None, None
        if meta is None or len(meta) < 6:
            return None
        sha, parents, author, at, ct = (m.strip() for m in meta[:5])
        files = tuple(FileStat(d.path, d.added, d.deleted, d.binary) for d in diffs)
        record = CommitRecord(
            sha=sha,
            parents=tuple(parents.split()),
            author=author.lower(),
            author_time=int(at),
            commit_time=int(ct),
            message="\x1f".join(meta[5:]).strip()[:4000],
            files=files,
        )
        return LoggedCommit(record, diffs)


def _is_file_header(line: str, f: FileDiff) -> bool:
    # `--- a/x` / `+++ b/x` only come before the first hunk; inside a hunk they are content
    return not f.hunks and line.startswith(("--- ", "+++ "))


def _diff_git_path(line: str) -> str:
    rest = line[len("diff --git ") :]
    if rest.startswith('"'):
        parts = re.findall(r'"(?:[^"\\]|\\.)*"|\S+', rest)
        return _strip_prefix(parts[-1], "b/") if parts else rest
    half = (len(rest) - 1) // 2  # `a/<p> b/<p>`: the same path twice when not renamed
    return _strip_prefix(rest[half + 1 :], "b/")


def _strip_prefix(name: str, prefix: str) -> str:
    name = _unquote(name.rstrip("\t"))
    return name[len(prefix) :] if name.startswith(prefix) else name


def _unquote(name: str) -> str:
    if not (name.startswith('"') and name.endswith('"')):
        return name
    body = name[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape")
    return body.encode("latin-1", "replace").decode("utf-8", "replace")


# --------------------------------------------------------------------------- line origins


class _Run:
    """`length` consecutive lines written by `origin` (None: before the pass began)."""

    __slots__ = ("length", "origin")

    def __init__(self, length: int, origin: str | None) -> None:
        self.length = length
        self.origin = origin


class LineTracker:
    """Which commit wrote each line of each file, as far back as the pass has seen."""

    def __init__(self) -> None:
        self.files: dict[str, list[_Run]] = {}

    def forget(self, paths: Iterable[str]) -> None:
        """Lines of these files are unknown again (a commit changed them unseen)."""
        for path in paths:
            self.files.pop(path, None)

    def apply(self, commit: LoggedCommit) -> list[str]:
        """Take one commit's patch into the origins; for a fix, the commits its deleted or
        changed lines came from."""
        record = commit.record
        fix = is_szz_fix(record)
        blamed: dict[str, None] = {}
        for d in commit.diffs:
            if d.old_path is not None:
                moved = self.files.pop(d.old_path, [])
                self.files[d.path] = moved or [_Run(_BIG, None)]
            if d.status == "D" or d.binary or not is_blamable_path(d.path):
                self.files.pop(d.path, None)
                continue
            if d.status == "A":
                self.files[d.path] = [_Run(_BIG, None)]
            runs = self.files.setdefault(d.path, [_Run(_BIG, None)])
            new_runs, removed = _apply(runs, d.hunks, record.sha)
            self.files[d.path] = new_runs
            if fix:
                for h, origins in zip(d.hunks, removed, strict=True):
                    for text, origin in zip(h.deleted, origins, strict=False):
                        if origin is not None and blamable_line(text):
                            blamed[origin] = None
        blamed.pop(record.sha, None)
        return list(blamed)


def _apply(
    runs: list[_Run], hunks: list[Hunk], sha: str
) -> tuple[list[_Run], list[list[str | None]]]:
    """One sweep over a file's runs applying its hunks (in old-file order); returns the new runs
    and, per hunk, the origins of the lines it removed."""
    out: list[_Run] = []
    removed_all: list[list[str | None]] = []
    src = iter(runs)
    cur: _Run | None = next(src, None)
    left = cur.length if cur else 0  # lines of `cur` not yet consumed
    pos = 0  # old-file lines consumed so far

    def emit(length: int, origin: str | None) -> None:
        if length <= 0:
            return
        if out and out[-1].origin == origin:
            out[-1].length += length
        else:
            out.append(_Run(length, origin))

    def take(n: int, keep: bool) -> list[str | None]:
        nonlocal cur, left, pos
        got: list[str | None] = []
        while n > 0 and cur is not None:
            k = min(n, left)
            if keep:
                emit(k, cur.origin)
            else:
                got.extend([cur.origin] * k)
            n -= k
            left -= k
            pos += k
            if left == 0:
                cur = next(src, None)
                left = cur.length if cur else 0
        return got

    for h in hunks:
        start = h.old_start - 1 if h.old_count else h.old_start
        take(max(0, start - pos), keep=True)
        removed = take(h.old_count, keep=False)
        removed_all.append(removed)
        for origin in _new_origins(h, removed, sha):
            emit(1, origin)
    if cur is not None:
        emit(left, cur.origin)
        for rest in src:
            emit(rest.length, rest.origin)
    return out, removed_all


def _new_origins(h: Hunk, removed: list[str | None], sha: str) -> list[str | None]:
    """Origins of the hunk's new lines: a line equal to a removed one but for whitespace keeps
    the removed line's origin (as `git blame -w` would); the rest are the commit's own."""
    if not h.deleted or len(h.added) > MAX_TRACKED_HUNK or len(h.added) != h.new_count:
        return [sha] * h.new_count
    pool: dict[str, list[str | None]] = {}
    for text, origin in zip(h.deleted, removed, strict=False):
        pool.setdefault(_WS.sub("", text), []).append(origin)
    out: list[str | None] = []
    for text in h.added:
        same = pool.get(_WS.sub("", text))
        out.append(same.pop(0) if same else sha)
    return out
