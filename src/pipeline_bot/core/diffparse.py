"""Incremental parser for `git diff --raw -z -p` output: bytes in, FileChange models out.

Sans-I/O: the git adapter feeds whatever chunks it reads and gets back the files completed so far,
so a diff is never held whole in memory, and parsing overlaps git's own work. Each file's patch
text is scanned once, in place, with C-speed `bytes` operations (count, find, compiled regexes)
for what the analysis needs: line counts, hunks, secret-like strings, removed tests, Kubernetes
kinds, generated-file markers. Then the text is dropped.

Order matters: git prints every raw entry first, then one patch section per entry in the same
order; a type change (T) is the one exception and gets two sections, a deletion then a creation.
Paths come from the NUL-separated raw entries, so no quoted header has to be unquoted.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass

from pipeline_bot.core.classify import is_test_path
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
_KIND = re.compile(rb"^[+ ]kind:[ \t]*([A-Za-z][A-Za-z0-9]*)", re.M)
_TEST_DEF = (
    rb"[ \t]*(?:(?:async[ \t]+)?def[ \t]+test_?\w*|func[ \t]+Test\w*|@Test\b"
    rb"|(?:it|test|describe)[ \t]*\(|#\[test\])"
)
_REMOVED_TEST = re.compile(rb"^-" + _TEST_DEF, re.M)
_ADDED_TEST = re.compile(rb"^\+" + _TEST_DEF, re.M)
_GENERATED_MARKERS = (b"@generated", b"DO NOT EDIT")
_GENERATED_PROBE = 4096
# Each alternative names a kind of credential. The matched text is never stored or printed.
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
    data = _KEY_BLOCK.sub(b"[REDACTED]", data)
    data = _SECRET.sub(b"[REDACTED]", data)
    return data.decode("utf-8", "replace")


# Literal prefilter for _SECRET, searched in a lower-cased copy of each chunk of the diff (one
# pass per literal): the regex itself only runs on patches that contain one of these. "gh" is
# common in prose, so its hits are kept only when a GitHub token prefix follows.
_SECRET_MARKERS = (b"akia", b"asia", b"private key", b"xox", b"sk-", b"aiza", b"passw", b"secret",
                   b"api", b"token")  # fmt: skip
_GITHUB_PREFIXES = (b"ghp_", b"gho_", b"ghu_", b"ghs_", b"ghr_", b"github_pat_")
_NO_SIGNALS = ContentSignals()


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
        buf, pos = self._buf, 0
        while pos < len(buf):
            if buf[pos] == 0:  # an empty field ends the raw list; the patch follows
                pos += 1
                self._raw_done = True
                break
            if buf[pos] != ord(":"):
                raise DiffParseError(
                    f"unexpected byte in git's file list: {bytes(buf[pos : pos + 20])!r}"
                )
            entry, end = _read_entry(buf, pos)
            if entry is None:
                break
            self._entries.append(entry)
            pos = end
        del buf[:pos]

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

    def _take(self, start: int, end: int, markers: list[int], out: list[FileChange]) -> None:
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


def _read_entry(buf: bytearray, pos: int) -> tuple[RawEntry | None, int]:
    head_end = buf.find(b"\0", pos)
    if head_end < 0:
        return None, pos
    fields = buf[pos + 1 : head_end].decode("ascii", "replace").split(" ")
    if len(fields) != 5:
        raise DiffParseError(f"malformed raw diff entry: {bytes(buf[pos:head_end])!r}")
    old_mode, new_mode, _old_sha, _new_sha, status = fields
    letter = status[:1]
    if letter not in _STATUS:
        raise DiffParseError(f"unsupported change status {status!r}")
    npaths = 2 if letter in "RC" else 1
    paths: list[str] = []
    cursor = head_end + 1
    for _ in range(npaths):
        nul = buf.find(b"\0", cursor)
        if nul < 0:
            return None, pos
        paths.append(bytes(buf[cursor:nul]).decode("utf-8", "backslashreplace"))
        cursor = nul + 1
    old_path = paths[0] if npaths == 2 else None
    return RawEntry(_STATUS[letter], paths[-1], old_path, old_mode, new_mode), cursor


def _any_between(offsets: list[int], start: int, end: int) -> bool:
    i = bisect_left(offsets, start)
    return i < len(offsets) and offsets[i] < end


def marker_positions(buf: bytearray, cut: int) -> list[int]:
    """Sorted offsets in buf[:cut] of literals that may start a secret: one pass per literal over
    the whole stretch is far cheaper than searching each file's patch."""
    lower = bytes(buf[:cut]).lower()
    found: list[int] = []
    for needle in _SECRET_MARKERS:
        at = lower.find(needle, 0, cut)
        while at >= 0:
            found.append(at)
            at = lower.find(needle, at + 1, cut)
    at = lower.find(b"gh", 0, cut)
    while at >= 0:
        if lower.startswith(_GITHUB_PREFIXES, at):
            found.append(at)
        at = lower.find(b"gh", at + 2, cut)
    found.sort()
    return found


# --------------------------------------------------------------------------- one file


def scan_file(
    entry: RawEntry, buf: bytearray, start: int, end: int, markers: list[int]
) -> FileChange:
    """Everything the analysis needs from one file's patch text in buf[start:end]."""
    first = buf.find(b"\n@@ ", start, end)
    if first < 0:  # mode change, binary file, or empty file
        binary = buf.find(b"\nBinary files ", start, end) >= 0
        return _file(entry, 0, 0, binary, [], _NO_SIGNALS)
    added = buf.count(b"\n+", first, end)
    removed = buf.count(b"\n-", first, end)
    # an added or deleted file's patch is a single hunk: no need to look for more
    single = entry.status in (FileStatus.ADDED, FileStatus.DELETED)
    hunk_at = _hunks(buf, first, end, single=single)
    hunks = [h for _, h in hunk_at]
    signals = _NO_SIGNALS
    has_marker = _any_between(markers, first, end)
    yaml = entry.path.endswith((".yaml", ".yml"))
    big = added >= GENERATED_MIN_LINES
    tests = removed > 0 and is_test_path(entry.path)
    if has_marker or tests or yaml or big:
        body = bytes(buf[first + 1 : end])
        shifted = [(at - first - 1, h) for at, h in hunk_at]
        signals = _signals(
            body, shifted, secrets=has_marker and added > 0, tests=tests, yaml=yaml, big=big
        )
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
    heads: list[tuple[int, re.Match[bytes]]] = []
    at = first
    while at >= 0:
        m = _HUNK.match(buf, at + 1, end)
        if m is None:
            raise DiffParseError(f"malformed hunk header: {bytes(buf[at + 1 : at + 60])!r}")
        heads.append((at + 1, m))
        at = -1 if single else buf.find(b"\n@@ ", m.end(), end)
    out: list[tuple[int, Hunk]] = []
    for i, (offset, m) in enumerate(heads):
        stop = heads[i + 1][0] - 1 if i + 1 < len(heads) else end
        out.append((offset, _hunk(m, buf, stop, single=single)))
    return out


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
    secrets: bool,
    tests: bool,
    yaml: bool,
    big: bool,
) -> ContentSignals:
    removed = (
        [_line_at(body, hunks, m.start()) for m in _REMOVED_TEST.finditer(body)] if tests else []
    )
    kinds = sorted({m.group(1).decode("ascii") for m in _KIND.finditer(body)}) if yaml else []
    return ContentSignals(
        secrets=_secrets(body, hunks) if secrets else [],
        removed_tests=len(removed),
        removed_test_lines=removed,
        added_tests=len(_ADDED_TEST.findall(body)) if removed else 0,
        kube_kinds=kinds,
        generated_marker=big and any(m in body[:_GENERATED_PROBE] for m in _GENERATED_MARKERS),
    )


def _secrets(body: bytes, hunks: list[tuple[int, Hunk]]) -> list[SecretHit]:
    hits: list[SecretHit] = []
    for m in _SECRET.finditer(body):
        line_start = body.rfind(b"\n", 0, m.start()) + 1
        if body[line_start : line_start + 1] != b"+":
            continue  # context or removed line: not added by this change
        line = _line_at(body, hunks, line_start)
        if not hits or hits[-1].line != line:
            hits.append(SecretHit(line=line, kind=m.lastgroup or "secret"))
    return hits


def _line_at(body: bytes, hunks: list[tuple[int, Hunk]], pos: int) -> int:
    """Head-version line number of the patch line at offset `pos` (for a removed line: the line
    that now stands where it was)."""
    offset, hunk = hunks[0]
    for candidate in hunks:
        if candidate[0] > pos:
            break
        offset, hunk = candidate
    line = hunk.new_start
    first = body.find(b"\n", offset) + 1
    line_start = body.rfind(b"\n", 0, pos) + 1
    for raw in body[first:line_start].split(b"\n")[:-1]:
        if raw[:1] not in (b"-", b"\\"):
            line += 1
    return line
