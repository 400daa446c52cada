"""Which earlier changes went wrong, read from history: reverts, and fix-inducing commits (SZZ).

A commit went wrong when a later commit reverted it ("This reverts commit <sha>", or
`Revert "<subject>"` matched by subject where the sha is missing), when a later fix names it
(`Fixes: <sha>`), or when the lines a later fix deleted or changed were last written by it
(SZZ: the fix's lines blamed on its parent). Fix commits are recognised from their messages;
fixes so large they are refactors, whitespace-only and comment-only lines, and files that are
docs or tests are left out of the blame.

Only history reachable from the analysed head is ever read, so nothing after it can influence
its score. A commit counts as a negative only once it is old enough to have been found out
(the horizon); a positive counts as soon as it is found.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from pipeline_bot.core.classify import Kind, kind_of_path
from pipeline_bot.core.features import DAY, CommitRecord, is_fix_message

REVERTS_SHA = re.compile(r"\bthis reverts commit ([0-9a-f]{7,40})\b", re.IGNORECASE)
_REVERT_SUBJECT = re.compile(r'^Revert\s+"(?P<subject>.+)"\s*$')
_FIXES_TRAILER = re.compile(r"^\s*Fixes:\s*([0-9a-f]{8,40})\b", re.IGNORECASE | re.MULTILINE)
# fixes of form, not of behaviour: SZZ would blame the lines' authors for a typo
_COSMETIC_FIX = re.compile(
    r"\b(?:typos?|lint(?:er|ing)?|gofmt|go ?vet|format(?:ting)?|style|spelling|grammar|"
    r"whitespace|comments?|docs?|documentation|readme|changelog|flak(?:y|e|es)|ci)\b",
    re.IGNORECASE,
)
_BLAMED_KINDS = frozenset(
    {
        Kind.CODE,
        Kind.OTHER,
        Kind.MIGRATION,
        Kind.KUBERNETES,
        Kind.HELM,
        Kind.TERRAFORM,
        Kind.DOCKERFILE,
        Kind.DEPENDENCY,
    }
)
# a routine dependency update, as bots and release chores title it: SZZ would otherwise take
# Renovate's `fix(deps): update module x to v1.2` for a fix and blame the previous bump
_ROUTINE_DEP_UPDATE = re.compile(
    r"\b(?:bump|update|upgrade)(?:s|d|ed)?\b.*\b(?:to|from)\s+v?\d"
    r"|\b(?:renovate|dependabot)\b"
    r"|^\w+\(deps(?:-dev)?\)!?:\s*(?:bump|update|upgrade)"
    r"|\block ?file maintenance\b",
    re.IGNORECASE,
)
_DEPENDENCY_KINDS = frozenset({Kind.DEPENDENCY, Kind.LOCKFILE})
_COMMENT = re.compile(r"^\s*(?://|#|/\*|\*|\*/|--|;|<!--)")

MAX_FIX_FILES = 20
"""A fix touching more files than this is a refactor: its lines are not blamed."""
MAX_FIX_LINES = 1000
"""Nor one changing more lines than this."""
MAX_BLAMED_FILES = 200
"""A blamed commit touching more files than this (a mass rename or reformat) is not labelled."""
HORIZON_DAYS = 30


def reverted_targets(message: str) -> list[str]:
    """The (possibly abbreviated) shas a revert commit names."""
    return REVERTS_SHA.findall(message)


def fixes_trailers(message: str) -> list[str]:
    """Shas named by `Fixes: <sha>` trailers (the commit that introduced what this fixes)."""
    return _FIXES_TRAILER.findall(message)


def revert_subject(subject: str) -> str | None:
    """`Revert "x"` -> `x`; anything else -> None."""
    m = _REVERT_SUBJECT.match(subject.strip())
    return m.group("subject") if m else None


def is_szz_fix(record: CommitRecord) -> bool:
    """A fix whose deleted lines are worth blaming: says it fixes, is not cosmetic, not a revert,
    and small enough not to be a refactor."""
    subject = record.subject
    if revert_subject(subject) or reverted_targets(record.message):
        return False
    if not is_fix_message(record.title + "\n" + record.message) or _COSMETIC_FIX.search(
        record.title
    ):
        return False
    if is_dependency_update(record):
        return False
    changed = sum(f.added + f.deleted for f in record.files)
    blamable = [f for f in record.files if kind_of_path(f.path) in _BLAMED_KINDS]
    return bool(blamable) and len(record.files) <= MAX_FIX_FILES and changed <= MAX_FIX_LINES


def is_dependency_update(record: CommitRecord) -> bool:
    """Only manifests and lockfiles changed, and the title reads as a routine version update (a
    bot's or a chore's), not as a fix of something a dependency broke."""
    return (
        bool(record.files)
        and all(kind_of_path(f.path) in _DEPENDENCY_KINDS for f in record.files)
        and _ROUTINE_DEP_UPDATE.search(record.title) is not None
    )


def is_blamable_path(path: str) -> bool:
    return kind_of_path(path) in _BLAMED_KINDS


def blamable_line(text: str) -> bool:
    """A deleted line worth blaming: not blank, not only punctuation, not a comment."""
    stripped = text.strip()
    if len(stripped) < 2 or not any(c.isalnum() for c in stripped):
        return False
    return not _COMMENT.match(stripped)


@dataclass(frozen=True)
class DeletedLines:
    """Old-side line numbers a fix deleted or changed, per file."""

    by_file: dict[str, list[int]] = field(default_factory=dict)

    def ranges(self, path: str) -> list[tuple[int, int]]:
        return to_ranges(self.by_file.get(path, []))


def deleted_lines(patch: str) -> DeletedLines:
    """Parse `git diff -U0` output into the old-side lines worth blaming, per file."""
    out: dict[str, list[int]] = {}
    path: str | None = None
    line = 0
    for raw in patch.split("\n"):
        if raw.startswith("--- "):
            name = raw[4:]
            path = name[2:] if name.startswith("a/") else None
        elif raw.startswith("+++ "):
            continue
        elif raw.startswith("@@ "):
            m = re.match(r"@@ -(\d+)(?:,(\d+))? ", raw)
            line = int(m.group(1)) if m else 0
        elif raw.startswith("-") and path is not None:
            if is_blamable_path(path) and blamable_line(raw[1:]):
                out.setdefault(path, []).append(line)
            line += 1
    return DeletedLines(out)


def to_ranges(lines: Iterable[int]) -> list[tuple[int, int]]:
    """[3, 4, 5, 9] -> [(3, 5), (9, 9)]."""
    out: list[tuple[int, int]] = []
    for n in sorted(set(lines)):
        if out and n == out[-1][1] + 1:
            out[-1] = (out[-1][0], n)
        else:
            out.append((n, n))
    return out


# --------------------------------------------------------------------------- labelling


@dataclass
class Labels:
    """What history says went wrong, as seen from one head."""

    found_out: dict[str, list[str]] = field(default_factory=dict)
    """event commit -> the earlier commits it reverted or fixed (for the replay)."""
    reverted: set[str] = field(default_factory=set)
    fix_inducing: set[str] = field(default_factory=set)

    @property
    def positives(self) -> set[str]:
        return self.reverted | self.fix_inducing


def label_history(
    records: Sequence[CommitRecord],
    blamed: Mapping[str, Sequence[str]],
    aliases: Mapping[str, str] | None = None,
) -> Labels:
    """Reverted and fix-inducing commits among `records` (oldest first, topological order).
    `blamed[fix]` are the commits SZZ found for a fix; `aliases` map commits outside the records
    (a pull request's own commits) to the record that brought them in (its merge)."""
    by_sha = {r.sha: r for r in records}
    resolve = _Resolver(by_sha, aliases or {})
    by_title: dict[str, str] = {}
    labels = Labels()
    for r in records:
        targets = [t for t in map(resolve, reverted_targets(r.message)) if t and t != r.sha]
        if not targets:
            inner = next(filter(None, map(revert_subject, titles(r))), None)
            if inner is not None and inner in by_title:
                targets = [by_title[inner]]
        for t in dict.fromkeys(targets):
            labels.reverted.add(t)
            labels.found_out.setdefault(r.sha, []).append(t)
        fixed = [t for t in map(resolve, fixes_trailers(r.message)) if t]
        fixed += [t for t in blamed.get(r.sha, ()) if t in by_sha]
        for t in dict.fromkeys(fixed):
            if t == r.sha or len(by_sha[t].files) > MAX_BLAMED_FILES:
                continue
            labels.fix_inducing.add(t)
            labels.found_out.setdefault(r.sha, []).append(t)
        for title in titles(r):
            by_title[title] = r.sha  # the latest commit with a title is the one a revert means
    return labels


def titles(record: CommitRecord) -> list[str]:
    """A commit's subject; for a merge also the pull request's title (its message's next line)."""
    return list(dict.fromkeys([record.subject, record.title]))


def revert_target_refs(records: Iterable[CommitRecord]) -> set[str]:
    """Every sha (possibly abbreviated) a revert or a `Fixes:` trailer names."""
    refs: set[str] = set()
    for r in records:
        refs.update(reverted_targets(r.message))
        refs.update(fixes_trailers(r.message))
    return refs


def training_set(
    records: Sequence[CommitRecord], labels: Labels, *, head_time: int, horizon_days: int
) -> dict[str, int]:
    """sha -> 1 (went wrong) or 0 (old enough to have been found out, and was not)."""
    cutoff = head_time - horizon_days * DAY
    out: dict[str, int] = {}
    positives = labels.positives
    for r in records:
        if r.sha in positives:
            out[r.sha] = 1
        elif r.commit_time <= cutoff:
            out[r.sha] = 0
    return out


class _Resolver:
    """Abbreviated shas -> full shas of known records (None when unknown or ambiguous)."""

    def __init__(self, by_sha: Mapping[str, CommitRecord], aliases: Mapping[str, str]) -> None:
        self.by_sha = by_sha
        self.aliases = aliases
        self._sorted = sorted([*by_sha, *aliases])

    def __call__(self, prefix: str) -> str | None:
        prefix = prefix.lower()
        i = bisect.bisect_left(self._sorted, prefix)
        hits = [s for s in self._sorted[i : i + 2] if s.startswith(prefix)]
        if len(hits) != 1:
            return None
        sha = self.aliases.get(hits[0], hits[0])
        return sha if sha in self.by_sha else None
