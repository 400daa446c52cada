"""Mining a repository's mainline history for the risk model: commit records and SZZ, cached.

Everything is read from the commits reachable from one head, so nothing after the analysed commit
can influence its score. The mainline is the unit: a merge stands for the pull request it merged
(its diff against its first parent, its author the pull request's), a squashed or direct commit
for itself. Records are cached by sha in a SQLite file: a commit's record depends only on the
commit and its parent, so a cached row is right for every head that reaches it, in every clone.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import json
import os
import sqlite3
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO

from pipeline_bot.core.features import CommitRecord, FileStat
from pipeline_bot.core.labels import revert_target_refs, reverted_targets
from pipeline_bot.core.szz import HEADER_END, LOG_FORMAT, LineTracker, LoggedCommit, LogPatchParser
from pipeline_bot.errors import GitError

Progress = Callable[[str], None]
_CONFIG = ("-c", "core.quotePath=false", "-c", "color.ui=never", "-c", "diff.noprefix=false")
_LOG_P = (
    "log",
    "-p",
    "-U0",
    "-M",
    "--diff-merges=first-parent",
    "--no-color",
    "--no-ext-diff",
    "--no-textconv",
    "--src-prefix=a/",
    "--dst-prefix=b/",
    f"--format={LOG_FORMAT}",
)
_MAX_LT_FILES = 100
_QUIET_BELOW = 200  # reading fewer commits than this is quick: no progress line
_RECORD_VERSION = 2
_KEEP_MODELS = 20
_MAX_ALIASES = 300  # reverts of single commits of pull requests, per window


def no_progress(_: str) -> None:
    return None


class HistoryStore:
    """Mined records and fitted models in one SQLite file (safe to share between processes)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self.db = sqlite3.connect(path, timeout=30, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(
            "CREATE TABLE IF NOT EXISTS records (sha TEXT PRIMARY KEY, v INTEGER, data TEXT);"
            "CREATE TABLE IF NOT EXISTS models (key TEXT PRIMARY KEY, data TEXT, used REAL);"
        )

    def close(self) -> None:
        self.db.close()

    def records(self, shas: Sequence[str]) -> dict[str, CommitRecord]:
        out: dict[str, CommitRecord] = {}
        for chunk in _chunks(shas, 500):
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                f"SELECT data FROM records WHERE v = ? AND sha IN ({marks})",  # noqa: S608 - only ?
                (_RECORD_VERSION, *chunk),
            )
            for (data,) in rows:
                record = _record_from_json(data)
                out[record.sha] = record
        return out

    def put_records(self, records: Iterable[CommitRecord]) -> None:
        rows = [(r.sha, _RECORD_VERSION, _record_to_json(r)) for r in records]
        with self._lock, self.db:
            self.db.executemany("INSERT OR REPLACE INTO records VALUES (?, ?, ?)", rows)

    def model(self, key: str) -> str | None:
        row = self.db.execute("SELECT data FROM models WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def put_model(self, key: str, data: str, now: float) -> None:
        with self._lock, self.db:
            self.db.execute("INSERT OR REPLACE INTO models VALUES (?, ?, ?)", (key, data, now))
            self.db.execute(
                "DELETE FROM models WHERE key NOT IN "
                "(SELECT key FROM models ORDER BY used DESC LIMIT ?)",
                (_KEEP_MODELS,),
            )


@dataclass
class Mined:
    """A window of mainline history, oldest first, with what SZZ found for its fixes."""

    records: list[CommitRecord]
    blamed: dict[str, list[str]] | None  # None when the read skipped SZZ


class HistoryMiner:
    """Reads the last `size` first-parent commits reachable from a head."""

    def __init__(
        self,
        root: Path,
        store: HistoryStore,
        *,
        git: str = "git",
        progress: Progress = no_progress,
    ) -> None:
        self.root = root
        self.store = store
        self.git = git
        self.progress = progress

    def window(self, head: str, size: int) -> list[str]:
        """The `size` most recent first-parent commits reachable from head, oldest first."""
        out = self._git("rev-list", "--first-parent", f"--max-count={size}", head, "--")
        return out.split()[::-1]

    def is_shallow(self) -> bool:
        return self._git("rev-parse", "--is-shallow-repository").strip() == "true"

    def sizes_at(self, rev: str, paths: Sequence[str]) -> int:
        """Bytes of these files at `rev` (those it has)."""
        if not paths:
            return 0
        text = "\n".join(f"{rev}:{p}" for p in paths[:_MAX_LT_FILES]) + "\n"
        out = self._git("cat-file", "--batch-check=%(objectsize)", stdin=text)
        return sum(int(x) for x in out.split() if x.isdigit())

    def mine(self, head: str, size: int, *, szz: bool) -> Mined:
        """The window's records; with `szz`, one pass over all of it that also follows lines to
        blame fixes, else only the commits not cached yet are read."""
        if szz:
            records, blamed = self._pass(head, size)
            self.store.put_records(records)
            return Mined(records, blamed)
        return Mined(self.records(self.window(head, size)), None)

    def records(self, shas: Sequence[str]) -> list[CommitRecord]:
        """These commits' records, in this order: from the cache, the rest read from git."""
        have = self.store.records(shas)
        missing = [sha for sha in shas if sha not in have]
        if missing:
            if len(missing) >= _QUIET_BELOW:
                self.progress(f"reading {len(missing):,} commits of history")
            fresh = self._read(missing)
            self.store.put_records(fresh)
            have.update((r.sha, r) for r in fresh)
        return [have[sha] for sha in shas if sha in have]

    # ----------------------------------------------------------------- reading git

    def _pass(self, head: str, size: int) -> tuple[list[CommitRecord], dict[str, list[str]]]:
        """One streaming `git log -p -U0` over the window, oldest first, following line origins."""
        window = self.window(head, size)
        count = len(window)
        self.progress(f"reading the last {count:,} mainline commits and following their lines")
        tracker = LineTracker()
        records: list[CommitRecord] = []
        blamed: dict[str, list[str]] = {}
        step = max(500, count // 10)

        def take(commit: LoggedCommit) -> None:
            found = tracker.apply(commit)
            if found:
                blamed[commit.record.sha] = found
            records.append(commit.record)
            if len(records) % step == 0 and len(records) < count:
                self.progress(f"  {len(records):,} of {count:,} commits read")

        while len(records) < count:
            done = len(records)
            rev = f"{window[done - 1]}..{head}" if done else head
            args = [*_LOG_P, "--reverse", "--first-parent", f"--max-count={count - done}"]
            if self._stream([*args, rev, "--"], None, take):
                break
            if len(records) == done:  # no progress: the next commit is the unreadable one
                record = self._names_only(window[done])
                tracker.forget(f.path for f in record.files)
                records.append(record)
        return self._finish(records), blamed

    def _read(self, shas: Sequence[str]) -> list[CommitRecord]:
        """Records of these commits, without SZZ."""
        records: list[CommitRecord] = []
        todo = list(shas)
        while todo:
            done = len(records)
            stdin = "\n".join(todo) + "\n"
            ok = self._stream(
                [*_LOG_P, "--no-walk=unsorted", "--stdin"],
                stdin,
                lambda c: records.append(c.record),
            )
            if ok:
                break
            if len(records) == done:
                records.append(self._names_only(todo[0]))
            todo = todo[len(records) - done :]
        return self._finish(records)

    def _stream(
        self, args: list[str], stdin: str | None, take: Callable[[LoggedCommit], None]
    ) -> bool:
        """Run git, parsing as it streams, handing over each complete commit; False when git
        stopped early (an object missing from a partial or damaged clone)."""
        parser = LogPatchParser()
        with (
            tempfile.TemporaryFile() as err,
            subprocess.Popen(
                [self.git, *_CONFIG, *args],
                cwd=self.root,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                env=_env(),
            ) as proc,
        ):
            feeder = None
            if stdin is not None and proc.stdin is not None:
                feeder = threading.Thread(target=_write_close, args=(proc.stdin, stdin))
                feeder.start()
            if proc.stdout is not None:
                for raw in proc.stdout:
                    done = parser.feed(raw.decode("utf-8", "replace").rstrip("\n"))
                    if done is not None:
                        take(done)
            code = proc.wait()
            if feeder is not None:
                feeder.join()
            if code == 0:
                last = parser.close()
                if last is not None:
                    take(last)
                return True
            err.seek(0)
            lines = err.read().decode("utf-8", "replace").strip().splitlines()
        if not any("unable to read" in x or "missing" in x or "bad object" in x for x in lines):
            raise GitError(
                f"`git log` failed in {self.root}: {lines[-1] if lines else 'no output'}",
                repo=str(self.root),
            )
        return False

    def _names_only(self, sha: str) -> CommitRecord:
        out = self._git(
            "log",
            "-1",
            "--diff-merges=first-parent",
            "--name-only",
            "--no-renames",  # finding renames would read the very blobs that are missing
            f"--format={LOG_FORMAT}",
            sha,
            "--",
        )
        header, _, names = out.partition(HEADER_END)
        parser = LogPatchParser()
        for line in (header + HEADER_END).split("\n"):
            parser.feed(line)
        commit = parser.close()
        if commit is None:
            raise GitError(f"commit {sha[:12]} cannot be read in {self.root}", repo=str(self.root))
        files = tuple(FileStat(n, 0, 0) for n in names.split("\n") if n.strip())
        self.progress(f"commit {sha[:12]} cannot be read in full; counting its files only")
        return replace(commit.record, files=files)

    def _finish(self, records: list[CommitRecord]) -> list[CommitRecord]:
        """LT (sizes in the first parent); a merge's author is its pull request's, and a revert
        made in the pull request's own commit is seen on the merge."""
        sizes = self._sizes(records)
        merges = [r.parents[1] for r in records if r.is_merge]
        heads = self._pull_heads(merges) if merges else {}
        out = []
        for r in records:
            author, message = r.author, r.message
            if r.is_merge and r.parents[1] in heads:
                author, head_message = heads[r.parents[1]]
                if reverted_targets(head_message):
                    message = f"{message}\n\n{head_message}"[:8000]
            out.append(replace(r, size_before=sizes.get(r.sha, 0), author=author, message=message))
        return out

    def _pull_heads(self, shas: Sequence[str]) -> dict[str, tuple[str, str]]:
        out = self._git(
            "log",
            "--no-walk=unsorted",
            "--stdin",
            "--format=%x1e%H%x1f%aE%x1f%B",
            stdin="\n".join(shas) + "\n",
        )
        heads: dict[str, tuple[str, str]] = {}
        for block in out.split("\x1e")[1:]:
            sha, email, message = [*block.split("\x1f", 2), "", ""][:3]
            heads[sha.strip()] = (email.strip().lower(), message.strip())
        return heads

    def aliases(self, records: Sequence[CommitRecord]) -> dict[str, str]:
        """Commits a revert or `Fixes:` names that are not on the mainline -> the mainline
        commit (the merge) that brought each in."""
        known = sorted(r.sha for r in records)
        refs = sorted(ref for ref in revert_target_refs(records) if not _has_prefix(known, ref))
        out: dict[str, str] = {}
        for ref in refs[:_MAX_ALIASES]:
            full = self._git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
            sha = full.strip()
            if not sha:
                continue
            path = self._git(
                "rev-list",
                "--first-parent",
                "--ancestry-path",
                f"{sha}..{records[-1].sha}",
                "--",
                check=False,
            ).split()
            if path:
                out[sha] = path[-1]
        return out

    def _sizes(self, records: Sequence[CommitRecord]) -> dict[str, int]:
        """Bytes of each commit's touched files in its first parent (LT), from one cat-file."""
        queries: list[tuple[str, str]] = []
        for r in records:
            if r.parents:
                queries += [(r.sha, f"{r.parents[0]}:{f.path}") for f in r.files[:_MAX_LT_FILES]]
        if not queries:
            return {}
        text = "\n".join(q for _, q in queries) + "\n"
        out = self._git("cat-file", "--batch-check=%(objectsize)", stdin=text).splitlines()
        sizes: dict[str, int] = {}
        for (sha, _), line in zip(queries, out, strict=False):
            if line.isdigit():
                sizes[sha] = sizes.get(sha, 0) + int(line)
        return sizes

    def _git(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        try:
            proc = subprocess.run(
                [self.git, *_CONFIG, *args],
                cwd=self.root,
                input=stdin.encode() if stdin is not None else None,
                capture_output=True,
                env=_env(),
                check=False,
            )
        except FileNotFoundError:
            raise GitError(f"git is not installed (looked for {self.git!r})") from None
        if proc.returncode != 0:
            if not check:
                return ""
            err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            raise GitError(
                f"`git {args[0]}` failed in {self.root}: {err[-1] if err else 'no output'}",
                repo=str(self.root),
            )
        return proc.stdout.decode("utf-8", "replace")


def _has_prefix(sorted_shas: Sequence[str], prefix: str) -> bool:
    i = bisect.bisect_left(sorted_shas, prefix.lower())
    return i < len(sorted_shas) and sorted_shas[i].startswith(prefix.lower())


def store_path(cache_dir: Path, root: Path, git: str = "git") -> Path:
    """One SQLite file per repository (by its origin URL, else its path) under the cache dir.
    Rows are keyed by sha, so two clones sharing a file is harmless."""
    proc = subprocess.run(
        [git, "config", "--get", "remote.origin.url"],
        cwd=root,
        capture_output=True,
        check=False,
        env=_env(),
    )
    ident = proc.stdout.decode("utf-8", "replace").strip() or str(root.resolve())
    digest = hashlib.sha256(ident.encode()).hexdigest()[:16]
    return cache_dir / "risk" / f"{digest}.sqlite3"


def _write_close(pipe: IO[bytes], text: str) -> None:
    # git may stop reading early (it failed); its exit code then says why
    with contextlib.suppress(BrokenPipeError):
        pipe.write(text.encode())
    with contextlib.suppress(BrokenPipeError):
        pipe.close()


def _env() -> dict[str, str]:
    # a partial clone's missing objects are skipped here, never fetched from the network
    return {**os.environ, "LC_ALL": "C", "GIT_OPTIONAL_LOCKS": "0", "GIT_NO_LAZY_FETCH": "1"}


def _record_to_json(r: CommitRecord) -> str:
    data = asdict(r)
    data["files"] = [[f.path, f.added, f.deleted, f.binary] for f in r.files]
    return json.dumps(data, separators=(",", ":"))


def _record_from_json(text: str) -> CommitRecord:
    data = json.loads(text)
    data["parents"] = tuple(data["parents"])
    data["files"] = tuple(FileStat(p, a, d, b) for p, a, d, b in data["files"])
    return CommitRecord(**data)


def _chunks(items: Sequence[str], n: int) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]
