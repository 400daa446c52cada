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
from bisect import bisect_left, bisect_right
from typing import NamedTuple

from pipeline_bot.core.classify import is_test_code
from pipeline_bot.core.scan import (
    ADDED_TEST,
    KUBE_KIND,
    KUBE_KIND_JSON,
    REMOVED_TEST,
    SECRET_FINDERS,
    LineCursor,
    first_secret_per_line,
    has_secret_candidate,
)
from pipeline_bot.core.weights import GENERATED_MIN_LINES
from pipeline_bot.models import ContentSignals, FileChange, FileStatus, Hunk, SecretHit, trusted

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
Section = tuple[int, int, int]  # (start, the newline before its first hunk header or -1, end)
_NO_SIGNALS = ContentSignals()
_NO_KINDS: frozenset[int] = frozenset()
_STATUS_BYTES = {letter.encode(): status for letter, status in _STATUS.items()}
_ADDED, _DELETED = FileStatus.ADDED, FileStatus.DELETED
_SINGLE_HUNK = (_ADDED, _DELETED)
_YAML = (".yaml", ".yml")
# the first line of a Git LFS pointer (three lines: version, oid, size)
_LFS_POINTER = b"version https://git-lfs.github.com/spec/v1\n"
_JSON_LOCKS = ("-lock.json", "shrinkwrap.json", ".lock.json")


class RawEntry(NamedTuple):
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
        fields = bytes(memoryview(buf)[: last + 1]).split(b"\0")
        count = len(fields) - 1  # the last is what follows the last NUL: nothing
        entries = self._entries
        i = 0
        while i < count:
            head = fields[i]
            if not head:  # an empty field ends the raw list; the patch follows
                i += 1
                self._raw_done = True
                break
            if head[:1] != b":":
                raise DiffParseError(f"unexpected byte in git's file list: {head[:20]!r}")
            parts = head.split(b" ")
            if len(parts) != 5:
                raise DiffParseError(f"malformed raw diff entry: {head!r}")
            status = _STATUS_BYTES.get(parts[4][:1])
            if status is None:
                raise DiffParseError(
                    f"unsupported change status {parts[4].decode('ascii', 'replace')!r}"
                )
            two = status is FileStatus.RENAMED or status is FileStatus.COPIED
            if i + 1 + two >= count:  # its paths are not all here yet
                break
            entries.append(
                RawEntry(
                    status,
                    fields[i + 1 + two].decode("utf-8", "backslashreplace"),
                    fields[i + 1].decode("utf-8", "backslashreplace") if two else None,
                    parts[0][1:].decode("ascii", "replace"),
                    parts[1].decode("ascii", "replace"),
                )
            )
            i += 2 + two
        pos = sum(map(len, fields[:i])) + i  # each field and its NUL
        del buf[:pos]
        self._raw_seen -= pos

    # ----------------------------------------------------------------- patch sections

    def _sections(self, cut: int) -> list[FileChange]:
        """Parse every complete section in buf[:cut], then drop them from the buffer."""
        buf = self._buf
        if cut > 0 and not buf.startswith(b"diff --git "):
            raise DiffParseError(f"expected a patch header, got {bytes(buf[:40])!r}")
        sections = section_bounds(buf, cut)
        markers = marker_positions(buf, cut, sections)
        entries = self._entries
        out: list[FileChange] = []
        for start, first, end in sections:
            if self._next >= len(entries):
                raise DiffParseError("git printed more patches than changed files")
            entry = entries[self._next]
            change = _scan(entry, buf, start, first, end, markers)
            if entry.status is FileStatus.TYPE_CHANGED:
                whole = self._type_change(change)
                if whole is None:
                    continue
                change = whole
            self._next += 1
            out.append(change)
        del buf[: min(cut + 1, len(buf))]
        self._searched = 0
        return out

    def _type_change(self, change: FileChange) -> FileChange | None:
        """A type change is printed as a deletion then a creation: None for the first half; the
        whole change (head lines from the creation) for the second."""
        if self._removed_half is None:
            self._removed_half = change
            return None
        gone, self._removed_half = self._removed_half, None
        return change.model_copy(
            update={
                "deletions": gone.deletions + change.deletions,
                "binary": gone.binary or change.binary,
            }
        )


def section_bounds(buf: bytearray, cut: int) -> list[Section]:
    """(start, newline before the first hunk header or -1, end) of each section in buf[:cut];
    buf[:cut] starts with a section header and holds whole sections."""
    find = buf.find
    out: list[Section] = []
    pos = 0
    while pos < cut:
        nxt = find(_SECTION, pos + 1, cut + 1)
        end = cut if nxt < 0 else nxt
        out.append((pos, find(_FIRST_HUNK, pos, end), end))
        pos = end + 1
    return out


def marker_positions(buf: bytearray, cut: int, sections: list[Section] | None = None) -> Markers:
    """Sorted (offset, kind) in buf[:cut] where a secret-like string of that kind (an index into
    SECRET_KINDS) may start in a section's patch text (from its first hunk header on): for each
    kind, the first in each section that has one. Which kinds a file's patch may hold is all
    scan_file asks: one pass per kind over the whole stretch is far cheaper than searching each
    file's patch, the scan of a patch then looks for those kinds only, and keeping every offset
    took memory in proportion to a hostile input.

    A candidate in a section's header (its paths: `a/api_key.py`) is skipped, and the search
    goes on in that section's patch text, so a file named after a kind is searched like any."""
    if sections is None:
        sections = section_bounds(buf, cut)
    bodies = [(first, end) for _, first, end in sections if first >= 0]
    if not bodies:
        return []
    firsts = [first for first, _ in bodies]
    lower = buf.lower()  # past `cut` is at most the section being read: no need to copy twice
    found: Markers = []
    for kind, finder in enumerate(SECRET_FINDERS):
        search = finder.search
        i = 0
        while i < len(bodies):
            hit = search(lower, bodies[i][0], cut)
            if hit is None:
                break
            at = hit.start()
            j = bisect_right(firsts, at) - 1  # the last patch text starting at or before it
            if at < bodies[j][1]:
                found.append((at, kind))
            i = j + 1  # in a header: that section's text is searched next; else the next one
    found.sort()
    return found


def _kinds_between(markers: Markers, start: int, end: int) -> frozenset[int]:
    i = bisect_left(markers, (start, -1))
    if i == len(markers) or markers[i][0] >= end:
        return _NO_KINDS
    kinds: set[int] = set()
    while i < len(markers) and markers[i][0] < end:
        kinds.add(markers[i][1])
        i += 1
    return frozenset(kinds)


# --------------------------------------------------------------------------- one file


def scan_file(
    entry: RawEntry, buf: bytearray, start: int, end: int, markers: Markers
) -> FileChange:
    """Everything the analysis needs from one file's patch text in buf[start:end]."""
    return _scan(entry, buf, start, buf.find(_FIRST_HUNK, start, end), end, markers)


def _scan(
    entry: RawEntry, buf: bytearray, start: int, first: int, end: int, markers: Markers
) -> FileChange:
    """scan_file, given where the first hunk header starts (the newline before it; -1: none)."""
    status = entry.status
    if first < 0:  # mode change, binary file, or empty file
        binary = buf.find(b"\nBinary files ", start, end) >= 0
        return _file(entry, 0, 0, binary, [], _NO_SIGNALS)
    # an added file's patch has no removed line, a deleted file's no added one
    added = 0 if status is _DELETED else buf.count(b"\n+", first, end)
    removed = 0 if status is _ADDED else buf.count(b"\n-", first, end)
    if status in _SINGLE_HUNK:  # an added or deleted file's patch is a single hunk of changes
        hunk_at = [(first + 1, _hunk(_hunk_header(buf, first, end)))]
    else:
        hunk_at = _hunks(buf, first, end)
    hunks = [h for _, h in hunk_at]
    signals = _NO_SIGNALS
    kinds = _kinds_between(markers, first, end) if added and markers else _NO_KINDS
    path = entry.path
    manifest = KUBE_KIND if path.endswith(_YAML) else None
    if path.endswith(".json") and not path.endswith(_JSON_LOCKS):  # lockfiles: megabytes, no kind
        manifest = KUBE_KIND_JSON
    big = added >= GENERATED_MIN_LINES
    tests = removed > 0 and is_test_code(path)
    if kinds or tests or manifest or big:
        body = bytes(memoryview(buf)[first + 1 : end])
        shifted = [(at - first - 1, h) for at, h in hunk_at]
        signals = _signals(body, shifted, secrets=kinds, tests=tests, manifest=manifest, big=big)
    if 0 < added <= 3 and _lfs_pointer(buf, first, end):
        signals = signals.model_copy(update={"lfs_pointer": True})
    return _file(entry, added, removed, False, hunks, signals)


def _file(
    entry: RawEntry,
    added: int,
    removed: int,
    binary: bool,
    hunks: list[Hunk],
    signals: ContentSignals,
) -> FileChange:
    return trusted(
        FileChange,
        {
            "path": entry.path,
            "old_path": entry.old_path,
            "status": entry.status,
            "additions": added,
            "deletions": removed,
            "binary": binary,
            "old_mode": entry.old_mode,
            "new_mode": entry.new_mode,
            "hunks": hunks,
            "signals": signals,
        },
    )


def _hunks(buf: bytearray, first: int, end: int) -> list[tuple[int, Hunk]]:
    """(offset, Hunk) for each hunk of a modified file's patch in buf[first:end] (`first` is the
    newline before the first), with where, inside each, the changes start and end."""
    find, rfind, count = buf.find, buf.rfind, buf.count
    out: list[tuple[int, Hunk]] = []
    m = _hunk_header(buf, first, end)
    while True:
        body = m.end()  # the header line's end; its changes start after the next newline
        nxt = find(_FIRST_HUNK, body, end)
        stop = end if nxt < 0 else nxt
        old_start, old_lines, new_start, new_lines = m.groups()
        new = int(new_start)
        lines = 1 if new_lines is None else int(new_lines)
        first_change, last_change = new, new + max(lines, 1) - 1
        plus, minus = find(b"\n+", body, stop), find(b"\n-", body, stop)
        if plus >= 0 or minus >= 0:
            at = minus if plus < 0 else plus if minus < 0 else min(plus, minus)
            first_change = new + count(b"\n", body, at)
            tail = max(rfind(b"\n+", body, stop), rfind(b"\n-", body, stop))
            trailing = count(b"\n ", tail + 1, stop)  # context lines after the last change
            last_change = max(first_change, new + lines - 1 - trailing)
        out.append(
            (
                m.start(),
                trusted(
                    Hunk,
                    {
                        "old_start": int(old_start),
                        "old_lines": 1 if old_lines is None else int(old_lines),
                        "new_start": new,
                        "new_lines": lines,
                        "changed_start": max(first_change, 1),
                        "changed_end": max(last_change, first_change, 1),
                    },
                ),
            )
        )
        if nxt < 0:
            return out
        m = _hunk_header(buf, nxt, end)


def _hunk_header(buf: bytearray, at: int, end: int) -> re.Match[bytes]:
    """The hunk header after the newline at `at`."""
    m = _HUNK.match(buf, at + 1, end)
    if m is None:
        raise DiffParseError(f"malformed hunk header: {bytes(buf[at + 1 : at + 60])!r}")
    return m


def _hunk(m: re.Match[bytes]) -> Hunk:
    """The single hunk of an added or deleted file: all of it is changes."""
    old_start, old_lines, new_start, new_lines = m.groups()
    new = int(new_start)
    lines = 1 if new_lines is None else int(new_lines)
    last = new + max(lines, 1) - 1
    return trusted(
        Hunk,
        {
            "old_start": int(old_start),
            "old_lines": 1 if old_lines is None else int(old_lines),
            "new_start": new,
            "new_lines": lines,
            "changed_start": max(new, 1),
            "changed_end": max(last, new, 1),
        },
    )


def _lfs_pointer(buf: bytearray | bytes, first: int, end: int) -> bool:
    """Whether the new version is a Git LFS pointer: its version line added (a new pointer) or
    kept as context (another object's oid and size)."""
    at = buf.find(_LFS_POINTER, first, end)
    if at < 2 or buf[at - 2 : at] not in (b"\n+", b"\n "):
        return False
    return buf.find(b"\n+oid sha256:", at, end) >= 0


def _signals(
    body: bytes,
    hunks: list[tuple[int, Hunk]],
    *,
    secrets: frozenset[int],
    tests: bool,
    manifest: re.Pattern[bytes] | None,
    big: bool,
) -> ContentSignals:
    removed: list[int] = []
    if tests:
        lines = LineCursor(body, hunks)
        removed = [lines.line(m.start() + 1) for m in REMOVED_TEST.finditer(body)]
    found = manifest.finditer(body) if manifest else ()
    kinds = sorted({m.group(1).decode("ascii") for m in found})
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
