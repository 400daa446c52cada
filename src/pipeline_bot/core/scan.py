"""Linear-time scans of patch text: secret-like strings, test definitions, Kubernetes kinds.

Every scan reads its input a bounded number of times whatever its shape (one 50 MiB line or
millions of short ones), so one pull request cannot stall the analysis (issue 15):

- literals are found with `bytes.find` (C speed), and a regular expression runs only where a
  literal was found, anchored there, with possessive quantifiers: a failed attempt never
  backtracks, and an attempt's run of characters cannot contain the next attempt's start;
- patterns over lines are anchored on the newline (a literal the regex engine skips to), never
  on `^` under re.M, which is tried at every offset;
- a line holds at most one secret hit, so a search skips to the next line after a match;
- head-version line numbers come from a cursor that only moves forward: re-reading the patch
  from its hunk for every hit (and looking for the hunk from the first) made the scan quadratic.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

from pipeline_bot.models import Hunk

# ---------------------------------------------------------------------------- secrets

# What each kind matches is what the single alternation in diffparse._SECRET matches (which
# redacts text that leaves the process, so there a key's header alone is enough). A kind is
# found by `finder` in a lower-cased copy (a literal first, which the regex engine searches at
# C speed, then a bounded check), and confirmed by `pattern`, anchored there and case-sensitive,
# which only decides whether a match starts there: `{36,}` becomes `{36}` (nothing follows), and
# `sk-(?:proj-)?[...]{32,}` becomes `sk-[...]{32}` ("proj-" is in the class). The unbounded runs
# left are possessive and stop at a character that cannot start the next attempt.
# `(?i:access[_-]?|auth[_-]?)token` is found from "token" and the word before it.
_TAIL = rb"""["']?+[ \t]*+[:=][ \t]*+["'][^"'\s$<>{}]{8,}+["']"""


# A private key is its header followed by key material: the next line (an added or context line
# of the patch, or after a `\n` escape in a one-line string, or after a space) runs base64 to its
# end or to a quote or escape, or starts an encrypted key's `Proc-Type:`. A header alone is code
# that parses keys, a test's string or documentation, not a key (libgit2's and this project's
# own tests were critical findings).
_KEY_BODY = (
    rb"""(?:\\r)?+(?:\\n|\r?+\n[+ ]?+)?+[ \t"']*+"""
    rb"""(?:Proc-Type:|[A-Za-z0-9+/]{8,}+={0,2}+(?:[\r\n"'\\]|$))"""
)


class SecretKind(NamedTuple):
    kind: str
    finder: re.Pattern[bytes]  # over lower-case text; starts where `pattern` would
    pattern: re.Pattern[bytes]  # anchored where `finder` found something
    prefixes: tuple[bytes, ...] = (b"",)  # lower-case words a match starts with, before that


def _kind(kind: str, finder: bytes, pattern: bytes, *prefixes: bytes) -> SecretKind:
    return SecretKind(kind, re.compile(finder), re.compile(pattern), prefixes or (b"",))


SECRET_KINDS: tuple[SecretKind, ...] = (
    _kind("aws", rb"akia[0-9a-z]{16}", rb"\bAKIA[0-9A-Z]{16}\b"),
    _kind("aws", rb"asia[0-9a-z]{16}", rb"\bASIA[0-9A-Z]{16}\b"),
    _kind("github", rb"gh[pousr]_[a-z0-9]{36}", rb"\bgh[pousr]_[A-Za-z0-9]{36}"),
    _kind("github", rb"github_pat_[a-z0-9_]{60}", rb"\bgithub_pat_[A-Za-z0-9_]{60}"),
    _kind("private_key", rb"-----begin ", rb"-----BEGIN (?:[A-Z]++ )?PRIVATE KEY-----" + _KEY_BODY),
    _kind("slack", rb"xox[abprs]-[a-z0-9-]{10}", rb"\bxox[abprs]-[A-Za-z0-9-]{10}"),
    _kind("openai", rb"sk-[a-z0-9_-]{32}", rb"\bsk-[A-Za-z0-9_-]{32}"),
    _kind("google", rb"aiza[0-9a-z_-]{35}", rb"\bAIza[0-9A-Za-z_-]{35}"),
    _kind("assignment", rb"passw", rb"(?i:passw(?:or)?d)" + _TAIL),
    _kind("assignment", rb"secret", rb"(?i:secret)" + _TAIL),
    _kind("assignment", rb"api[_-]?key", rb"(?i:api[_-]?+key)" + _TAIL),
    _kind(
        "assignment",
        rb"token",
        rb"(?i:token)" + _TAIL,
        *(b"access_", b"access-", b"access", b"auth_", b"auth-", b"auth"),
    ),
)
SECRET_FINDERS = tuple(k.finder for k in SECRET_KINDS)


def has_secret_candidate(lower: bytes | bytearray) -> bool:
    """Whether lower-case text holds something a secret-like string could start at."""
    return any(finder.search(lower) for finder in SECRET_FINDERS)


def first_secret_per_line(
    data: bytes, lower: bytes, kinds: Iterable[int] = range(len(SECRET_KINDS))
) -> list[tuple[int, str]]:
    """(line start, kind) of the first secret-like string on each line that has one, in order.

    `lower` is data.lower(). "First" is what a leftmost search with the kinds as alternatives
    in SECRET_KINDS' order finds. Each kind is searched for from left to right once; after a
    match, from the next line. `kinds` (indexes into SECRET_KINDS) limits the search to those
    that may be there; the others are known to be absent.
    """
    hits = heapq.merge(*(_kind_hits(data, lower, order) for order in sorted(kinds)))
    out: list[tuple[int, str]] = []
    for line_start, _start, order in hits:  # in order of line, then of where on the line
        if not out or out[-1][0] != line_start:
            out.append((line_start, SECRET_KINDS[order].kind))
    return out


def _kind_hits(data: bytes, lower: bytes, order: int) -> Iterator[tuple[int, int, int]]:
    """(line start, match start, order) of the first match of a kind on each line."""
    search, match = SECRET_KINDS[order].finder.search, SECRET_KINDS[order].pattern.match
    prefixes = SECRET_KINDS[order].prefixes
    assignment = SECRET_KINDS[order].kind == "assignment"
    ends = bytes({word[-1] for word in prefixes if word})  # what a word before `at` can end in
    pos = line_start = known = 0  # known: data[:known] has been searched for newlines
    while found := search(lower, pos):
        at = found.start()
        if ends and (at == 0 or lower[at - 1] not in ends):
            pos = at + 1
            continue
        start = _start(lower, at, prefixes)
        found_at = match(data, at) if start >= 0 else None
        if found_at is None or (assignment and _placeholder(found_at.group(0))):
            pos = at + 1
            continue
        newline = data.rfind(b"\n", known, start)
        if newline >= 0:
            line_start = newline + 1
        yield line_start, start, order
        end = data.find(b"\n", at)
        if end < 0:
            return
        pos = known = line_start = end + 1


# Values of a `password = "..."` assignment that stand for one to be filled in: a template's
# `changethis`, a docs example's `your-api-key-here`. What a committed default like that deserves
# is a review comment, not a critical finding that picks the deploy strategy.
_PLACEHOLDER_WORDS = (
    b"changeme",
    b"change_me",
    b"change-me",
    b"changethis",
    b"change_this",
    b"change-this",
    b"changeit",
    b"replaceme",
    b"replace_me",
    b"replace-me",
    b"placeholder",
    b"example",
    b"dummy",
    b"redacted",
    b"notasecret",
    b"not_a_secret",
    b"not-a-secret",
    b"xxxx",
    b"****",
)
_PLACEHOLDER_VALUES = frozenset({b"password", b"passw0rd", b"secret", b"apikey", b"api_key"})


def _placeholder(assignment: bytes) -> bool:
    """Whether an assignment's quoted value (its last quoted run) is a placeholder."""
    opening = max(assignment.rfind(b'"', 0, -1), assignment.rfind(b"'", 0, -1))
    value = assignment[opening + 1 : -1].lower()
    return (
        len(set(value)) == 1
        or value in _PLACEHOLDER_VALUES
        or value.startswith(b"your")  # your-api-key-here, yourpassword
        or any(word in value for word in _PLACEHOLDER_WORDS)
    )


def _start(lower: bytes, at: int, prefixes: tuple[bytes, ...]) -> int:
    """Where a match found at `at` starts: before one of `prefixes`; -1 if none."""
    for word in prefixes:
        if not word:
            return at
        if at >= len(word) and lower.startswith(word, at - len(word)):
            return at - len(word)
    return -1


# ---------------------------------------------------------------------------- lines

# `\n` first: the engine jumps from newline to newline. A patch body starts at its first hunk
# header, so no line of interest is at offset 0.
_TEST_DEF = (
    rb"[ \t]*+(?:(?:async[ \t]++)?def[ \t]++test|func[ \t]++Test|@Test\b"
    rb"|(?:it|test|describe)[ \t]*+\(|#\[test\])"
)
REMOVED_TEST = re.compile(rb"\n-" + _TEST_DEF)
ADDED_TEST = re.compile(rb"\n\+" + _TEST_DEF)
KUBE_KIND = re.compile(rb"\n[+ ]kind:[ \t]*+([A-Za-z][A-Za-z0-9]*+)")
# a JSON manifest's "kind" is indented inside its object; nested ones (roleRef, ownerReferences)
# name Kubernetes kinds too, which still makes the file a manifest
KUBE_KIND_JSON = re.compile(rb'\n[+ ][ \t]*+"kind"[ \t]*+:[ \t]*+"([A-Za-z][A-Za-z0-9]*+)"')


class LineCursor:
    """Head-version line numbers of line starts in a patch body, asked for in increasing order.

    Each byte of the body is counted over at most once (three C-speed counts), however many
    lines are asked for; `walked` says how many bytes that was.
    """

    def __init__(self, body: bytes, hunks: Sequence[tuple[int, Hunk]]) -> None:
        self._body = body
        self._hunks = hunks
        self.walked = 0
        self._rewind()

    def _rewind(self) -> None:
        self._next = 0  # the next hunk to enter
        self._at = 0  # a line start whose head line is self._line
        self._line = self._hunks[0][1].new_start if self._hunks else 1

    def line(self, line_start: int) -> int:
        """The head line at the patch line starting at `line_start` (for a removed line: the
        line that now stands where it was)."""
        if line_start < self._at:  # asked out of order: correct, if no longer linear
            self._rewind()
        body, hunks = self._body, self._hunks
        while self._next < len(hunks) and hunks[self._next][0] <= line_start:
            offset, hunk = hunks[self._next]
            self._next += 1
            self._at = body.find(b"\n", offset) + 1
            self._line = hunk.new_start
        at = self._at
        if line_start > at:
            not_head = body.count(b"\n-", at, line_start) + body.count(b"\n\\", at, line_start)
            not_head += body[at : at + 1] in (b"-", b"\\")
            self._line += body.count(b"\n", at, line_start) - not_head
            self.walked += line_start - at
            self._at = line_start
        return self._line
