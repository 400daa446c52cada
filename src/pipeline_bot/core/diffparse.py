"""Incremental parser for `git diff --raw -z -p` output: bytes in, FileChange models out.

Sans-I/O: the git adapter feeds whatever chunks it reads and gets back the files completed so far,
so a diff is never held whole in memory, and parsing overlaps git's own work. Each file's patch
text is scanned once, in place, with C-speed `bytes` operations (count, find, compiled regexes)
for what the analysis needs: line counts, hunks, secret-like strings, removed tests, Kubernetes
kinds, generated-file markers. Then the text is dropped. Every scan is linear in its input
(core/scan.py says how): one hostile line or file cannot stall the analysis.

Order matters: git prints every raw entry first, then one patch section per entry in the same
order; a type change (T) is the one exception and gets two sections, a deletion then a creation.
Paths come from the NUL-separated raw entries, so no quoted header has to be unquoted.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass

from pipeline_bot.core.classify import is_test_path
from pipeline_bot.core.scan import (
    ADDED_TEST,
    KUBE_KIND,
    REMOVED_TEST,
    SECRET_FINDERS,
    LineCursor,
    first_secret_per_line,
    has_secret_candidate,
)
from pipeline_bot.core.weights import GENERATED_MIN_LINES
from pipeline_bot.models import ContentSignals, FileChange, FileStatus, Hunk, SecretHit

_STATUS = {
    "A": FileStatus.ADDED,
    "M": FileStatus.MODIFIED,
    "D": FileStatus.DELETED,
    "R": FileStatus.RENAMED,
    "C": FileStatus.COPIED,
    "T": FileStatus.TYPE_CHANGED,
}
STATUS_BY_LETTER = _STATUS  # for other sources of patches (GitHub's compare API)
_SECTION = b"\ndiff --git "
_HUNK = re.compile(rb"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@", re.M)
_GENERATED_MARKERS = (b"@generated", b"DO NOT EDIT")
_GENERATED_PROBE = 4096
# Each alternative names a kind of credential. The matched text is never stored or printed.
# The analysis finds the same strings with core.scan.SECRET_KINDS (one anchored pattern per kind,
# much faster); redact() keeps this alternation, which is linear too, for its exact spans.
_SECRET = re.compile(
    rb"(?P<aws>\b(?:AKIA|ASIA)[0-9A-Z]{16}\b)"
    rb"|(?P<github>\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{60,}))"
    rb"|(?P<private_key>-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----)"
    rb"|(?P<slack>\bxox[abprs]-[A-Za-z0-9-]{10,})"
    rb"|(?P<openai>\bsk-(?:proj-)?[A-Za-z0-9_-]{32,})"
    rb"|(?P<google>\bAIza[0-9A-Za-z_-]{35})"
    rb"|(?P<assignment>(?i:password|passwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token)"
    rb"[\"']?[ \t]*[:=][ \t]*[\"'][^\"'\s$<>{}]{8,}[\"'])"
)
_KEY_BLOCK = re.compile(
    rb"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----.*?(?:-----END (?:[A-Z]+ )?PRIVATE KEY-----|\Z)",
    re.S,
)


def redact(text: str) -> str:
    """`text` with every secret-like string (the analysis' own rules; a private key's whole
    block) replaced by [REDACTED], for text that leaves the process (an LLM prompt)."""
    data = text.encode("utf-8", "replace")
    if not has_secret_candidate(data.lower()):
        return data.decode("utf-8", "replace")
    data = _KEY_BLOCK.sub(b"[REDACTED]", data)
    data = _SECRET.sub(b"[REDACTED]", data)
    return data.decode("utf-8", "replace")


_FIRST_HUNK = b"\n@@ "
Markers = list[tuple[int, int]]
_NO_SIGNALS = ContentSignals()
_NO_KINDS: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class RawEntry:
    status: FileStatus
    path: str
    old_path: str | None
    old_mode: str
    new_mode: str


class DiffParseError(ValueError):
    """git printed something this parser does not understand."""


class DiffStreamParser:
    """Feed chunks of `git diff --raw -z -p` output; collect completed FileChange models."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._raw_done = False
        self._entries: list[RawEntry] = []
        self._next = 0
        self._removed_half: FileChange | None = (
            None  # a type change's deletion, awaiting its creation
        )
        self._searched = 0  # bytes of the buffer already searched for a section start
        self._raw_seen = 0  # bytes of the buffer already searched for the end of a raw field

    def feed(self, chunk: bytes) -> list[FileChange]:
        self._buf += chunk
        if not self._raw_done:
            self._parse_raw()
            if not self._raw_done:
                return []
        cut = self._buf.rfind(_SECTION, self._searched)
        if cut < 0:
            self._searched = max(0, len(self._buf) - len(_SECTION))
            return []
        return self._sections(cut)

    def close(self) -> list[FileChange]:
        if not self._raw_done:
            self._parse_raw()
            if self._buf and not self._raw_done:
                raise DiffParseError("git diff output ended inside the list of changed files")
            self._raw_done = True
        out = self._sections(len(self._buf)) if self._buf.strip() else []
        if self._next != len(self._entries) or self._removed_half is not None:
            raise DiffParseError(
                f"git diff listed {len(self._entries)} files but printed patches for {self._next}"
            )
        return out

    # ----------------------------------------------------------------- raw entries

    def _parse_raw(self) -> None:
        """Take the complete entries at the start of the buffer (all fields split at once: the
        list has a line per changed file, tens of thousands in a large change)."""
        buf = self._buf
        last = buf.rfind(b"\0", self._raw_seen)
        self._raw_seen = len(buf)
        if last < 0:  # nothing completed since the last look (a long path arriving in pieces)
            return
        fields = bytes(memoryview(buf)[: last + 1]).split(b"\0")[:-1]
        i = pos = 0
        while i < len(fields):
            head = fields[i]
            if not head:  # an empty field ends the raw list; the patch follows
                pos += 1
                self._raw_done = True
                break
            if head[:1] != b":":
                raise DiffParseError(f"unexpected byte in git's file list: {head[:20]!r}")
            entry, used = _read_entry(head, fields, i)
            if entry is None:
                break
            self._entries.append(entry)
            pos += sum(len(f) + 1 for f in fields[i : i + used])
            i += used
        del buf[:pos]
        self._raw_seen -= pos

    # ----------------------------------------------------------------- patch sections

    def _sections(self, cut: int) -> list[FileChange]:
        """Parse every complete section in buf[:cut], then drop them from the buffer."""
        buf = self._buf
        markers = marker_positions(buf, cut)
        out: list[FileChange] = []
        pos = 0
        while pos < cut:
            if not buf.startswith(b"diff --git ", pos):
                raise DiffParseError(f"expected a patch header, got {bytes(buf[pos : pos + 40])!r}")
            nxt = buf.find(_SECTION, pos + 1, cut + 1)
            end = cut if nxt < 0 else nxt
            self._take(pos, end, markers, out)
            pos = end + 1
        del buf[: min(cut + 1, len(buf))]
        self._searched = 0
        return out

    def _take(self, start: int, end: int, markers: Markers, out: list[FileChange]) -> None:
        if self._next >= len(self._entries):
            raise DiffParseError("git printed more patches than changed files")
        entry = self._entries[self._next]
        change = scan_file(entry, self._buf, start, end, markers)
        if entry.status is FileStatus.TYPE_CHANGED and self._removed_half is None:
            self._removed_half = change
            return
        self._next += 1
        if self._removed_half is not None:  # the creation half: head lines come from it
            gone, self._removed_half = self._removed_half, None
            change = change.model_copy(
                update={
                    "deletions": gone.deletions + change.deletions,
                    "binary": gone.binary or change.binary,
                }
            )
        out.append(change)


def _read_entry(head: bytes, fields: list[bytes], i: int) -> tuple[RawEntry | None, int]:
    """The entry whose header is fields[i], and how many fields it spans (None: not all here)."""
    parts = head[1:].decode("ascii", "replace").split(" ")
    if len(parts) != 5:
        raise DiffParseError(f"malformed raw diff entry: {head!r}")
    old_mode, new_mode, _old_sha, _new_sha, status = parts
    letter = status[:1]
    if letter not in _STATUS:
        raise DiffParseError(f"unsupported change status {status!r}")
    npaths = 2 if letter in "RC" else 1
    if i + npaths >= len(fields):
        return None, 0
    paths = [f.decode("utf-8", "backslashreplace") for f in fields[i + 1 : i + 1 + npaths]]
    old_path = paths[0] if npaths == 2 else None
    return RawEntry(_STATUS[letter], paths[-1], old_path, old_mode, new_mode), 1 + npaths


def _kinds_between(markers: Markers, start: int, end: int) -> frozenset[int]:
    i = bisect_left(markers, (start, -1))
    if i == len(markers) or markers[i][0] >= end:
        return _NO_KINDS
    kinds: set[int] = set()
    while i < len(markers) and markers[i][0] < end:
        kinds.add(markers[i][1])
        i += 1
    return frozenset(kinds)


def marker_positions(buf: bytearray, cut: int) -> Markers:
    """Sorted (offset, kind) in buf[:cut] where a secret-like string of that kind (an index into
    SECRET_KINDS) may start, in the patch text (from a section's first hunk header): for each
    kind, the first in each section (`diff --git` to the next) that has one. Which kinds a
    file's patch may hold is all scan_file asks: one pass per kind over the whole stretch is
    far cheaper than searching each file's patch, the scan of a patch then looks for those
    kinds only, and keeping every offset took memory in proportion to a hostile input."""
    lower = buf.lower()  # past `cut` is at most the section being read: no need to copy twice
    found: Markers = []
    for kind, finder in enumerate(SECRET_FINDERS):
        at = lower.find(_FIRST_HUNK, 0, cut)
        while at >= 0:
            hit = finder.search(lower, at, cut)
            if hit is None:
                break
            at = hit.start()
            found.append((at, kind))
            at = lower.find(_SECTION, at, cut)  # on to the next section's patch text
            if at >= 0:
                at = lower.find(_FIRST_HUNK, at, cut)
    found.sort()
    return found


# --------------------------------------------------------------------------- one file


def scan_file(
    entry: RawEntry, buf: bytearray, start: int, end: int, markers: Markers
) -> FileChange:
    """Everything the analysis needs from one file's patch text in buf[start:end]."""
    first = buf.find(b"\n@@ ", start, end)
    if first < 0:  # mode change, binary file, or empty file
        binary = buf.find(b"\nBinary files ", start, end) >= 0
        return _file(entry, 0, 0, binary, [], _NO_SIGNALS)
    # an added file's patch has no removed line, a deleted file's no added one
    added = 0 if entry.status is FileStatus.DELETED else buf.count(b"\n+", first, end)
    removed = 0 if entry.status is FileStatus.ADDED else buf.count(b"\n-", first, end)
    # an added or deleted file's patch is a single hunk: no need to look for more
    single = entry.status in (FileStatus.ADDED, FileStatus.DELETED)
    hunk_at = _hunks(buf, first, end, single=single)
    hunks = [h for _, h in hunk_at]
    signals = _NO_SIGNALS
    kinds = _kinds_between(markers, first, end) if added and markers else _NO_KINDS
    yaml = entry.path.endswith((".yaml", ".yml"))
    big = added >= GENERATED_MIN_LINES
    tests = removed > 0 and is_test_path(entry.path)
    if kinds or tests or yaml or big:
        body = bytes(memoryview(buf)[first + 1 : end])
        shifted = [(at - first - 1, h) for at, h in hunk_at]
        signals = _signals(body, shifted, secrets=kinds, tests=tests, yaml=yaml, big=big)
    return _file(entry, added, removed, False, hunks, signals)


def _file(
    entry: RawEntry,
    added: int,
    removed: int,
    binary: bool,
    hunks: list[Hunk],
    signals: ContentSignals,
) -> FileChange:
    return FileChange(
        path=entry.path,
        old_path=entry.old_path,
        status=entry.status,
        additions=added,
        deletions=removed,
        binary=binary,
        old_mode=entry.old_mode,
        new_mode=entry.new_mode,
        hunks=hunks,
        signals=signals,
    )


def _hunks(buf: bytearray, first: int, end: int, *, single: bool) -> list[tuple[int, Hunk]]:
    """(offset, Hunk) for each hunk in buf[first:end]; `first` is the newline before the first.

    An added or deleted file's patch is a single hunk of changes, so only modified files are
    searched for more hunks and for where, inside each, the changes start and end.
    """
    if single:
        return [(first + 1, _hunk(_hunk_header(buf, first, end), buf, end, single=True))]
    heads: list[tuple[int, re.Match[bytes]]] = []
    at = first
    while at >= 0:
        m = _hunk_header(buf, at, end)
        heads.append((at + 1, m))
        at = buf.find(b"\n@@ ", m.end(), end)
    out: list[tuple[int, Hunk]] = []
    for i, (offset, m) in enumerate(heads):
        stop = heads[i + 1][0] - 1 if i + 1 < len(heads) else end
        out.append((offset, _hunk(m, buf, stop, single=single)))
    return out


def _hunk_header(buf: bytearray, at: int, end: int) -> re.Match[bytes]:
    """The hunk header after the newline at `at`."""
    m = _HUNK.match(buf, at + 1, end)
    if m is None:
        raise DiffParseError(f"malformed hunk header: {bytes(buf[at + 1 : at + 60])!r}")
    return m


def _hunk(m: re.Match[bytes], buf: bytearray, stop: int, *, single: bool) -> Hunk:
    old_start, old_lines, new_start, new_lines = m.groups()
    new = int(new_start or 0)
    count = 1 if new_lines is None else int(new_lines)
    first, last = new, new + max(count, 1) - 1
    if not single:
        body = m.end()  # the header line's end; its changes start after the next newline
        change = [p for p in (buf.find(b"\n+", body, stop), buf.find(b"\n-", body, stop)) if p >= 0]
        if change:
            first = new + buf.count(b"\n", body, min(change))
            tail = max(buf.rfind(b"\n+", body, stop), buf.rfind(b"\n-", body, stop))
            trailing = buf.count(b"\n ", tail + 1, stop)  # context lines after the last change
            last = max(first, new + count - 1 - trailing)
    return Hunk(
        old_start=int(old_start or 0),
        old_lines=1 if old_lines is None else int(old_lines),
        new_start=new,
        new_lines=count,
        changed_start=max(first, 1),
        changed_end=max(last, first, 1),
    )


def _signals(
    body: bytes,
    hunks: list[tuple[int, Hunk]],
    *,
    secrets: frozenset[int],
    tests: bool,
    yaml: bool,
    big: bool,
) -> ContentSignals:
    removed: list[int] = []
    if tests:
        lines = LineCursor(body, hunks)
        removed = [lines.line(m.start() + 1) for m in REMOVED_TEST.finditer(body)]
    kinds = sorted({m.group(1).decode("ascii") for m in KUBE_KIND.finditer(body)}) if yaml else []
    return ContentSignals(
        secrets=_secrets(body, hunks, secrets) if secrets else [],
        removed_tests=len(removed),
        removed_test_lines=removed,
        added_tests=len(ADDED_TEST.findall(body)) if removed else 0,
        kube_kinds=kinds,
        generated_marker=big and any(m in body[:_GENERATED_PROBE] for m in _GENERATED_MARKERS),
    )


def _secrets(body: bytes, hunks: list[tuple[int, Hunk]], kinds: frozenset[int]) -> list[SecretHit]:
    """One hit per added line that holds a secret-like string of `kinds`: the first there."""
    lines = LineCursor(body, hunks)
    return [
        SecretHit(line=lines.line(start), kind=kind)
        for start, kind in first_secret_per_line(body, body.lower(), kinds)
        if body[start : start + 1] == b"+"  # not a context or removed line
    ]
