"""Path globs as in .gitignore: `**` spans folders; a pattern without `/` matches a file name."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

_WILD = re.compile(r"[*?\[]")


@lru_cache(maxsize=1024)
def glob_to_regex(pattern: str) -> str:
    """Translate one glob into a regular expression (without anchors)."""
    pattern = _normalize(pattern)
    if "/" not in pattern:
        pattern = "**/" + pattern
    pattern = pattern.removeprefix("/")
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 2 :]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1 : end].replace("\\", "\\\\")
            out.append("[^" + body[1:] + "]" if body.startswith("!") else "[" + body + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)


def _normalize(pattern: str) -> str:
    """`name/` is a folder at any depth (as in .gitignore); `a/b/` is everything under a/b."""
    pattern = pattern.strip()
    if pattern.endswith("/"):
        stem = pattern.rstrip("/")
        return f"**/{stem}/**" if "/" not in stem else f"{stem}/**"
    return pattern


class PathMatcher:
    """Matches paths against any of several globs.

    Most globs are a file name (`Dockerfile`), a folder anywhere (`**/tests/**`) or a name
    pattern (`*.tf`); those are answered with set look-ups and one short match on the file name,
    and only the rest with a regular expression over the whole path. Tens of thousands of paths
    go through these per analysis.
    """

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(_normalize(p) for p in patterns if p.strip())
        self._names: set[str] = set()
        self._folders: set[str] = set()
        name_globs: list[str] = []
        path_globs: list[str] = []
        for p in self.patterns:
            inner = p[3:-3] if p.startswith("**/") and p.endswith("/**") else None
            if "/" not in p and not _WILD.search(p):
                self._names.add(p)
            elif inner and "/" not in inner and not _WILD.search(inner):
                self._folders.add(inner)
            elif "/" not in p:
                name_globs.append(glob_to_regex(p).removeprefix("(?:.*/)?"))
            else:
                path_globs.append(glob_to_regex(p))
        self._name_re = _compile(name_globs)
        self._path_re = _compile(path_globs)

    def __call__(self, path: str) -> bool:
        folder, _, name = path.rpartition("/")
        if name in self._names:
            return True
        if self._folders and folder and not self._folders.isdisjoint(folder.split("/")):
            return True
        if self._name_re is not None and self._name_re.match(name):
            return True
        return self._path_re is not None and self._path_re.match(path) is not None

    def __bool__(self) -> bool:
        return bool(self.patterns)


def _compile(regexes: list[str]) -> re.Pattern[str] | None:
    if not regexes:
        return None
    return re.compile("^(?:" + "|".join(f"(?:{r})" for r in regexes) + ")$")


class GlobClassifier:
    """Ordered (label, globs) pairs; `classify(path)` gives the first label whose globs match.

    Built as one index over every label (names, folders, name patterns, path patterns), so a path
    costs a few look-ups and at most two regular-expression matches, however many labels there are.
    """

    def __init__(self, table: Iterable[tuple[str, Iterable[str]]]) -> None:
        self.labels: list[str] = []
        self._names: dict[str, int] = {}
        self._folders: dict[str, int] = {}
        name_alts: list[str] = []
        path_alts: list[str] = []
        for rank, (label, globs) in enumerate(table):
            self.labels.append(label)
            matcher = PathMatcher(globs)
            for name in matcher._names:
                self._names.setdefault(name, rank)
            for folder in matcher._folders:
                self._folders.setdefault(folder, rank)
            if matcher._name_re is not None:
                name_alts.append(f"(?P<r{rank}>{matcher._name_re.pattern})")
            if matcher._path_re is not None:
                path_alts.append(f"(?P<r{rank}>{matcher._path_re.pattern})")
        self._name_re = re.compile("|".join(name_alts)) if name_alts else None
        self._path_re = re.compile("|".join(path_alts)) if path_alts else None

    def classify(self, path: str) -> str | None:
        folder, _, name = path.rpartition("/")
        best = self._names.get(name, len(self.labels))
        if folder and self._folders:
            for part in folder.split("/"):
                rank = self._folders.get(part)
                if rank is not None and rank < best:
                    best = rank
        for regex, text in ((self._name_re, name), (self._path_re, path)):
            m = regex.match(text) if regex is not None else None
            if m is not None and m.lastgroup and int(m.lastgroup[1:]) < best:
                best = int(m.lastgroup[1:])
        return self.labels[best] if best < len(self.labels) else None
