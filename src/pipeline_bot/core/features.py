"""Change features for the risk model: what a commit is, and what history knew when it landed.

A commit is described by its size and spread (Kamei et al. 2013: NS, ND, NF, Entropy, LA, LD, LT),
its purpose (FIX and other message signals), the kinds of file it touches, and its history:
NDEV, AGE, NUC, EXP, REXP, SEXP, and the past record of the author and the files (earlier commits
known to have been reverted or to have needed a fix by the time this one landed).

History is replayed oldest first in topological order, so every feature of a commit is computed
from what came before it in the graph, never from commit dates (which are not ordered) and never
from anything that came after.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline_bot.core.classify import Kind, is_auth_sensitive, kind_of_path

DAY = 86_400


@dataclass(frozen=True)
class FileStat:
    """One file's line counts in a commit (against its first parent)."""

    path: str
    added: int
    deleted: int
    binary: bool = False


@dataclass(frozen=True)
class CommitRecord:
    """What mining keeps of one commit: enough to compute its features and its labels."""

    sha: str
    parents: tuple[str, ...]
    author: str  # e-mail, lower case
    author_time: int  # seconds since the epoch
    commit_time: int
    message: str
    files: tuple[FileStat, ...]
    size_before: int = 0  # bytes of the touched files in the first parent (LT)

    @property
    def subject(self) -> str:
        return self.message.strip().split("\n", 1)[0].strip()

    @property
    def is_merge(self) -> bool:
        return len(self.parents) > 1

    @property
    def title(self) -> str:
        """What the change says it does: the subject, or for a merge its pull request's title
        (the first line after `Merge pull request ...`)."""
        if self.is_merge:
            rest = [x.strip() for x in self.message.strip().split("\n")[1:] if x.strip()]
            if rest:
                return rest[0]
        return self.subject


@dataclass(frozen=True)
class Feature:
    name: str
    transform: str  # "log" (log1p of a count or size), "bool", "unit" (already 0-1)
    describe: str  # a sentence with {v} for the value, for explanations
    title: str = ""  # the Kamei et al. name, where there is one
    absent: str = ""  # for a yes/no feature: the sentence when the change does not have it


FEATURES: tuple[Feature, ...] = (
    Feature("la", "log", "{v:,.0f} line{s} added", "LA"),
    Feature("ld", "log", "{v:,.0f} line{s} deleted", "LD"),
    Feature("la_code", "log", "{v:,.0f} line{s} of code added"),
    Feature("ld_code", "log", "{v:,.0f} line{s} of code deleted"),
    Feature("lt", "log", "the touched files held {v:,.0f} bytes before the change", "LT"),
    Feature("nf", "log", "{v:,.0f} file{s} touched", "NF"),
    Feature("nd", "log", "{v:,.0f} director{ies} touched", "ND"),
    Feature("ns", "log", "{v:,.0f} top-level director{ies} touched", "NS"),
    Feature(
        "entropy", "unit", "changed lines spread over the files with entropy {v:.2f}", "Entropy"
    ),
    Feature(
        "fix",
        "bool",
        "the message says it fixes something",
        "FIX",
        absent="the message does not say it fixes something",
    ),
    Feature("ndev", "log", "{v:,.0f} {people} changed these files before", "NDEV"),
    Feature("age", "log", "the files last changed {v:,.1f} days before (mean)", "AGE"),
    Feature("nuc", "log", "{v:,.0f} earlier commit{s} changed these files", "NUC"),
    Feature("exp", "log", "the author made {v:,.0f} earlier commit{s} here", "EXP"),
    Feature(
        "rexp",
        "log",
        "the author's recent experience is {v:,.1f} (commits, weighted by age)",
        "REXP",
    ),
    Feature(
        "sexp", "log", "the author made {v:,.0f} earlier commit{s} in these directories", "SEXP"
    ),
    Feature("file_fixes", "log", "{v:,.0f} earlier fix{es} touched these files"),
    Feature(
        "file_problems",
        "log",
        "{v:,.0f} earlier change{s} to these files {were} reverted or needed a fix",
    ),
    Feature(
        "author_problems",
        "log",
        "{v:,.0f} of the author's earlier changes {were} reverted or needed a fix",
    ),
    Feature("kind_migration", "bool", "a database migration ships", absent="no database migration"),
    Feature("kind_terraform", "bool", "Terraform files change", absent="no Terraform files"),
    Feature(
        "kind_kubernetes", "bool", "Kubernetes manifests change", absent="no Kubernetes manifests"
    ),
    Feature("kind_helm", "bool", "a Helm chart changes", absent="no Helm chart"),
    Feature(
        "kind_dockerfile",
        "bool",
        "the container build changes",
        absent="the container build is unchanged",
    ),
    Feature("kind_ci", "bool", "CI/CD workflows change", absent="CI/CD workflows are unchanged"),
    Feature(
        "kind_dependency",
        "bool",
        "dependency manifests change",
        absent="dependency manifests are unchanged",
    ),
    Feature("kind_lockfile", "bool", "a lockfile changes", absent="no lockfile changes"),
    Feature("kind_code", "bool", "code changes", absent="no code changes"),
    Feature("kind_test", "bool", "tests change", absent="no test changes"),
    Feature("kind_docs", "bool", "documentation changes", absent="no documentation changes"),
    Feature(
        "kind_auth",
        "bool",
        "authentication or security-sensitive code changes",
        absent="no authentication or security-sensitive code",
    ),
    Feature(
        "code_without_tests",
        "bool",
        "code changes with no test changed",
        absent="no code changes without tests",
    ),
    Feature(
        "only_docs_tests",
        "bool",
        "only documentation, tests or CI change",
        absent="deployable files change",
    ),
    Feature("msg_revert", "bool", "it is a revert", absent="not a revert"),
    Feature(
        "msg_wip", "bool", "it is marked work in progress", absent="not marked work in progress"
    ),
    Feature(
        "msg_feature",
        "bool",
        "the message adds or enables a feature",
        absent="the message does not add a feature",
    ),
    Feature(
        "msg_refactor",
        "bool",
        "the message says it refactors or cleans up",
        absent="the message does not say it refactors",
    ),
    Feature(
        "msg_deps",
        "bool",
        "the message bumps or upgrades a dependency",
        absent="the message does not bump a dependency",
    ),
    Feature(
        "msg_perf",
        "bool",
        "the message is about performance",
        absent="the message is not about performance",
    ),
    Feature(
        "msg_config",
        "bool",
        "the message changes a default, option or flag",
        absent="the message does not change a default, option or flag",
    ),
    Feature("msg_length", "log", "the message is {v:,.0f} characters long"),
    Feature("merge", "bool", "it is a merge", absent="a single commit"),
    Feature("bot", "bool", "a bot made it", absent="a person made it"),
)
NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
BY_NAME: dict[str, Feature] = {f.name: f for f in FEATURES}

FIX_WORDS = re.compile(
    r"\b(?:fix(?:e[sd]|ing)?|bug(?:s|fix(?:es)?)?|hot-?fix|defect|regression|crash(?:es|ed)?|"
    r"panics?|segfault|broken|repair(?:s|ed)?|leak(?:s|ed|ing)?|deadlock|race condition)\b",
    re.IGNORECASE,
)
_MSG = {
    "msg_revert": re.compile(r"^revert\b|\bthis reverts commit\b", re.I),
    "msg_wip": re.compile(r"^(?:wip\b|fixup!|squash!|amend!)|\bWIP\b|\bdo not merge\b", re.I),
    "msg_feature": re.compile(
        r"^(?:feat|feature)\b|\b(?:add(?:s|ed)?|implement(?:s|ed)?|introduce[sd]?|support|"
        r"enable[sd]?|new)\b",
        re.I,
    ),
    "msg_refactor": re.compile(
        r"\b(?:refactor\w*|clean ?up|cleanups?|rename[sd]?|mov(?:e|es|ed) |simplif\w+|"
        r"tidy|restructur\w+|reorgani[sz]\w+)\b",
        re.I,
    ),
    "msg_deps": re.compile(
        r"\b(?:bump(?:s|ed)?|upgrade[sd]?|dependabot|renovate|deps?\b|dependenc(?:y|ies)|"
        r"update .+ (?:from|to) v?\d)",
        re.I,
    ),
    "msg_perf": re.compile(
        r"\b(?:perf|performance|optimi[sz]\w*|speed ?up|faster|latency)\b", re.I
    ),
    "msg_config": re.compile(
        r"\b(?:default|defaults|option|options|flag|flags|config\w*|setting|settings|"
        r"disable[sd]?|switch(?:es|ed)? to)\b",
        re.I,
    ),
}
_BOT = re.compile(r"\[bot\]|dependabot|renovate|greenkeeper|snyk-bot|github-actions", re.I)
_KIND_FEATURES = {
    Kind.MIGRATION: "kind_migration",
    Kind.TERRAFORM: "kind_terraform",
    Kind.KUBERNETES: "kind_kubernetes",
    Kind.HELM: "kind_helm",
    Kind.DOCKERFILE: "kind_dockerfile",
    Kind.CI: "kind_ci",
    Kind.DEPENDENCY: "kind_dependency",
    Kind.LOCKFILE: "kind_lockfile",
    Kind.CODE: "kind_code",
    Kind.TEST: "kind_test",
    Kind.DOCS: "kind_docs",
}
_QUIET_KINDS = frozenset({Kind.DOCS, Kind.TEST, Kind.CI, Kind.REPO_META})


_ISSUE_FIX = re.compile(
    r"\b(?:fix(?:e[sd])?|close[sd]?|resolve[sd]?)\s*:?\s+(?:#\d+|[\w.-]+/[\w.-]+#\d+|"
    r"https?://\S+/issues/\d+|[A-Z][A-Z0-9]+-\d+)",
    re.IGNORECASE,
)


def is_fix_message(message: str) -> bool:
    """A fix says so in its title, or closes an issue with a keyword anywhere in its message.
    (A squashed body lists every commit of the pull request, so its words alone say little.)"""
    title = message.strip().split("\n", 1)[0]
    return bool(FIX_WORDS.search(title) or _ISSUE_FIX.search(message))


def subsystem(path: str) -> str:
    return path.split("/", 1)[0] if "/" in path else "."


def directory(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else "."


def entropy(lines_per_file: Sequence[int]) -> float:
    """Shannon entropy of modified lines over files, normalised to 0-1 by log2(files)."""
    total = sum(lines_per_file)
    if total == 0 or len(lines_per_file) < 2:
        return 0.0
    h = -sum(n / total * math.log2(n / total) for n in lines_per_file if n)
    return h / math.log2(len(lines_per_file))


def change_features(
    files: Sequence[FileStat], messages: Sequence[str], *, size_before: int, merge: bool, bot: bool
) -> dict[str, float]:
    """The features a change has by itself: size, spread, file kinds, message signals."""
    kinds = {f.path: kind_of_path(f.path) for f in files}
    out: dict[str, float] = dict.fromkeys(NAMES, 0.0)
    code = [f for f in files if kinds[f.path] is Kind.CODE]
    out.update(
        la=sum(f.added for f in files),
        ld=sum(f.deleted for f in files),
        la_code=sum(f.added for f in code),
        ld_code=sum(f.deleted for f in code),
        lt=size_before,
        nf=len(files),
        nd=len({directory(f.path) for f in files}),
        ns=len({subsystem(f.path) for f in files}),
        entropy=entropy([f.added + f.deleted for f in files]),
        fix=float(any(is_fix_message(m) for m in messages)),
        merge=float(merge),
        bot=float(bot),
        msg_length=max((len(m) for m in messages), default=0),
    )
    for kind in kinds.values():
        name = _KIND_FEATURES.get(kind)
        if name:
            out[name] = 1.0
    out["kind_auth"] = float(
        any(is_auth_sensitive(p) for p, k in kinds.items() if k not in (Kind.DOCS, Kind.TEST))
    )
    out["code_without_tests"] = float(out["kind_code"] == 1.0 and out["kind_test"] == 0.0)
    out["only_docs_tests"] = float(bool(kinds) and all(k in _QUIET_KINDS for k in kinds.values()))
    subjects = [m.strip().split("\n", 1)[0] for m in messages]  # titles, one per commit
    for name, pattern in _MSG.items():
        out[name] = float(any(pattern.search(s) for s in subjects))
    return out


def is_bot(author: str) -> bool:
    return bool(_BOT.search(author))


# --------------------------------------------------------------------------- history replay


@dataclass
class _FileState:
    changes: int = 0
    authors: set[str] = field(default_factory=set)
    last_time: int | None = None
    fixes: int = 0
    problems: int = 0


@dataclass
class _AuthorState:
    times: list[int] = field(default_factory=list)
    subsystems: dict[str, int] = field(default_factory=dict)
    problems: int = 0


@dataclass
class HistoryState:
    """What the history up to some point says about files and authors."""

    files: dict[str, _FileState] = field(default_factory=dict)
    authors: dict[str, _AuthorState] = field(default_factory=dict)
    commits: int = 0

    def history_features(self, paths: Iterable[str], author: str, when: int) -> dict[str, float]:
        """NDEV, AGE, NUC, EXP, REXP, SEXP and the past record, for a change at time `when`."""
        paths = list(dict.fromkeys(paths))
        known = [self.files[p] for p in paths if p in self.files]
        ages = [max(0, when - fs.last_time) / DAY for fs in known if fs.last_time is not None]
        a = self.authors.get(author)
        subs = {subsystem(p) for p in paths}
        return {
            "ndev": len(set().union(*(fs.authors for fs in known))) if known else 0,
            "age": sum(ages) / len(ages) if ages else 0.0,
            "nuc": sum(fs.changes for fs in known),
            "exp": len(a.times) if a else 0,
            "rexp": sum(1 / (1 + max(0, when - t) / (365 * DAY)) for t in a.times) if a else 0.0,
            "sexp": sum(a.subsystems.get(s, 0) for s in subs) if a else 0,
            "file_fixes": sum(fs.fixes for fs in known),
            "file_problems": sum(fs.problems for fs in known),
            "author_problems": a.problems if a else 0,
        }

    def add(self, record: CommitRecord) -> None:
        """Take a commit into the history (after its features were computed)."""
        self.commits += 1
        fix = is_fix_message(record.title + "\n" + record.message)
        a = self.authors.setdefault(record.author, _AuthorState())
        a.times.append(record.author_time)
        for s in {subsystem(f.path) for f in record.files}:
            a.subsystems[s] = a.subsystems.get(s, 0) + 1
        for f in record.files:
            fs = self.files.setdefault(f.path, _FileState())
            fs.changes += 1
            fs.authors.add(record.author)
            # the topologically latest change counts as the last, whatever its date says
            fs.last_time = record.author_time
            fs.fixes += fix

    def add_problem(self, record: CommitRecord) -> None:
        """An earlier commit has just been found out (reverted, or blamed by a fix)."""
        self.authors.setdefault(record.author, _AuthorState()).problems += 1
        for f in record.files:
            self.files.setdefault(f.path, _FileState()).problems += 1

    def to_data(self) -> dict[str, object]:
        """Plain data (for a cache), read back by `from_data`."""
        return {
            "commits": self.commits,
            "files": {
                p: [fs.changes, sorted(fs.authors), fs.last_time, fs.fixes, fs.problems]
                for p, fs in self.files.items()
            },
            "authors": {
                a: [st.times, st.subsystems, st.problems] for a, st in self.authors.items()
            },
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> HistoryState:
        state = cls(commits=int(data["commits"]))
        for p, (changes, authors, last, fixes, problems) in data["files"].items():
            state.files[p] = _FileState(changes, set(authors), last, fixes, problems)
        for a, (times, subsystems, problems) in data["authors"].items():
            state.authors[a] = _AuthorState(list(times), dict(subsystems), problems)
        return state


def replay(
    records: Sequence[CommitRecord],
    found_out: Mapping[str, Sequence[str]],
    *,
    skip: int = 0,
) -> tuple[dict[str, dict[str, float]], HistoryState]:
    """Features of every record (given oldest first, in topological order) from the history
    before it; `found_out[sha]` names the earlier commits that `sha` reverted or fixed. The
    first `skip` records only build up history. Returns the features and the final state."""
    state = HistoryState()
    by_sha = {r.sha: r for r in records}
    found: set[str] = set()
    out: dict[str, dict[str, float]] = {}
    for i, r in enumerate(records):
        if i >= skip:
            feats = change_features(
                r.files,
                [r.title + "\n" + r.message],
                size_before=r.size_before,
                merge=r.is_merge,
                bot=is_bot(r.author),
            )
            feats.update(state.history_features((f.path for f in r.files), r.author, r.author_time))
            out[r.sha] = feats
        state.add(r)
        for target in found_out.get(r.sha, ()):
            earlier = by_sha.get(target)
            if earlier is not None and target not in found:
                found.add(target)
                state.add_problem(earlier)
    return out, state
