"""Incremental parser for `git diff --raw -z -p` output: bytes in, FileChange models out.

Sans-I/O: the git adapter feeds whatever chunks it reads and gets back the files completed so far,
so a diff is never held whole in memory. Each file's patch text is scanned once, with C-speed
`bytes` operations, for the signals the analysis needs (line counts, hunks, secret-like strings,
removed tests, Kubernetes kinds, generated-file markers), then dropped.

Order matters: git prints every raw entry first, then one patch section per entry in the same
order; a type change (T) is the one exception and gets two sections, a deletion then a creation.
Paths come from the NUL-separated raw entries, so no quoted header has to be unquoted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline_bot.models import ContentSignals, FileChange, FileStatus, Hunk, SecretHit

_STATUS = {
    "A": FileStatus.ADDED,
    "M": FileStatus.MODIFIED,
    "D": FileStatus.DELETED,
    "R": FileStatus.RENAMED,
    "C": FileStatus.COPIED,
    "T": FileStatus.TYPE_CHANGED,
}
_SECTION = b"\ndiff --git "
_HUNK = re.compile(rb"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@", re.M)
_BINARY = re.compile(rb"^Binary files .* differ$", re.M)
_KIND = re.compile(rb"^[+ ]kind:[ \t]*([A-Za-z][A-Za-z0-9]*)", re.M)
_TEST_DEF = (
    rb"[ \t]*(?:(?:async[ \t]+)?def[ \t]+test_?\w*|func[ \t]+Test\w*|@Test\b"
    rb"|(?:it|test|describe)[ \t]*\(|#\[test\])"
)
_REMOVED_TEST = re.compile(rb"^-" + _TEST_DEF, re.M)
_ADDED_TEST = re.compile(rb"^\+" + _TEST_DEF, re.M)
_GENERATED = re.compile(rb"@generated|Code generated .* DO NOT EDIT|DO NOT EDIT")
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
_GENERATED_PROBE = 4096


@dataclass(frozen=True)
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
        self._pending: list[bytes] = []
        self._searched = 0  # bytes of the buffer already searched for the next section

    def feed(self, chunk: bytes) -> list[FileChange]:
        self._buf += chunk
        if not self._raw_done:
            self._parse_raw()
            if not self._raw_done:
                return []
        return self._parse_sections(final=False)

    def close(self) -> list[FileChange]:
        if not self._raw_done:
            self._parse_raw()
            if self._buf and not self._raw_done:
                raise DiffParseError("git diff output ended inside the list of changed files")
            self._raw_done = True
        out = self._parse_sections(final=True)
        if self._next != len(self._entries):
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

    def _parse_sections(self, *, final: bool) -> list[FileChange]:
        out: list[FileChange] = []
        buf = self._buf
        start = 0
        while True:
            end = buf.find(_SECTION, max(start + 1, self._searched))
            if end < 0:
                # a long section arrives in many chunks: do not search its start again
                self._searched = max(0, len(buf) - len(_SECTION))
                break
            self._take(bytes(buf[start:end]), out)
            start = end + 1
        if final:
            if start < len(buf) and buf[start:].strip():
                self._take(bytes(buf[start:]), out)
            start = len(buf)
        del buf[:start]
        self._searched = max(0, self._searched - start)
        return out

    def _take(self, section: bytes, out: list[FileChange]) -> None:
        if not section.startswith(b"diff --git "):
            raise DiffParseError(f"expected a patch header, got {section[:40]!r}")
        if self._next >= len(self._entries):
            raise DiffParseError("git printed more patches than changed files")
        entry = self._entries[self._next]
        if entry.status is FileStatus.TYPE_CHANGED and not self._pending:
            self._pending.append(section)  # the deletion half; the creation half comes next
            return
        sections = [*self._pending, section]
        self._pending = []
        self._next += 1
        out.append(build_file_change(entry, sections))


def _read_entry(buf: bytearray, pos: int) -> tuple[RawEntry | None, int]:
    head_end = buf.find(b"\0", pos)
    if head_end < 0:
        return None, pos
    fields = bytes(buf[pos + 1 : head_end]).split(b" ")
    if len(fields) != 5:
        raise DiffParseError(f"malformed raw diff entry: {bytes(buf[pos:head_end])!r}")
    old_mode, new_mode, _old_sha, _new_sha, status = (f.decode("ascii") for f in fields)
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
        paths.append(_decode_path(bytes(buf[cursor:nul])))
        cursor = nul + 1
    old_path = paths[0] if npaths == 2 else None
    entry = RawEntry(_STATUS[letter], paths[-1], old_path, old_mode, new_mode)
    return entry, cursor


def _decode_path(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


# --------------------------------------------------------------------------- one file


def build_file_change(entry: RawEntry, sections: list[bytes]) -> FileChange:
    """Everything the analysis needs from one file's patch text."""
    hunks: list[Hunk] = []
    additions = deletions = 0
    binary = False
    secrets: list[SecretHit] = []
    removed_test_lines: list[int] = []
    added_tests = 0
    kinds: list[str] = []
    generated = False
    for text in sections:
        first = text.find(b"\n@@ ")
        header = text if first < 0 else text[:first]
        binary = binary or bool(_BINARY.search(header))
        if first < 0:
            continue
        body = text[first + 1 :]
        starts = [(m.start(), _hunk(m)) for m in _HUNK.finditer(body)]
        hunks.extend(h for _, h in starts)
        added = body.count(b"\n+")
        removed = body.count(b"\n-")
        additions += added
        deletions += removed
        if added:
            secrets.extend(_secrets(body, starts))
            generated = generated or bool(_GENERATED.search(body, 0, _GENERATED_PROBE))
        if removed:
            added_tests += len(_ADDED_TEST.findall(body)) if added else 0
            removed_test_lines.extend(
                _line_at(body, starts, m.start(), old=False) for m in _REMOVED_TEST.finditer(body)
            )
        if entry.path.endswith((".yaml", ".yml")):
            kinds.extend(m.group(1).decode("ascii") for m in _KIND.finditer(body))
    return FileChange(
        path=entry.path,
        old_path=entry.old_path,
        status=entry.status,
        additions=additions,
        deletions=deletions,
        binary=binary,
        old_mode=entry.old_mode,
        new_mode=entry.new_mode,
        hunks=hunks,
        signals=ContentSignals(
            secrets=secrets,
            removed_tests=len(removed_test_lines),
            removed_test_lines=removed_test_lines,
            added_tests=added_tests,
            kube_kinds=sorted(set(kinds)),
            generated_marker=generated,
        ),
    )


def _hunk(m: re.Match[bytes]) -> Hunk:
    old_lines, new_lines = m.group(2), m.group(4)
    return Hunk(
        old_start=int(m.group(1)),
        old_lines=1 if old_lines is None else int(old_lines),
        new_start=int(m.group(3)),
        new_lines=1 if new_lines is None else int(new_lines),
    )


def _secrets(body: bytes, starts: list[tuple[int, Hunk]]) -> list[SecretHit]:
    hits: list[SecretHit] = []
    for m in _SECRET.finditer(body):
        line_start = body.rfind(b"\n", 0, m.start()) + 1
        if body[line_start : line_start + 1] != b"+":
            continue  # context or removed line: not added by this change
        kind = m.lastgroup or "secret"
        line = _line_at(body, starts, line_start, old=False)
        if not hits or hits[-1].line != line:
            hits.append(SecretHit(line=line, kind=kind))
    return hits


def _line_at(body: bytes, starts: list[tuple[int, Hunk]], pos: int, *, old: bool) -> int:
    """Line number (new file, or old file when `old`) of the patch line at offset `pos`."""
    offset, hunk = starts[0]
    for candidate in starts:
        if candidate[0] > pos:
            break
        offset, hunk = candidate
    skip = b"+" if old else b"-"
    line = hunk.old_start if old else hunk.new_start
    first = body.find(b"\n", offset) + 1
    line_start = body.rfind(b"\n", 0, pos) + 1
    for raw in body[first:line_start].split(b"\n")[:-1]:
        if raw[:1] != skip and raw[:1] != b"\\":
            line += 1
    return line
