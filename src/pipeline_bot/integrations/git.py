"""Local git repositories through the git CLI: refs, commits, the diff (streamed) and history.

Every call passes an argument list (never a shell string) and `--end-of-options` before refs, so a
ref cannot be read as an option. Output that can contain any byte uses `-z`.
"""

from __future__ import annotations

import io
import os
import subprocess
import tempfile
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

from pipeline_bot.core.diffparse import DiffParseError, DiffStreamParser
from pipeline_bot.errors import GitError, NotARepositoryError, ShallowHistoryError, UnknownRefError
from pipeline_bot.integrations.ports import ChangeSource
from pipeline_bot.models import ChangeSet, Commit, FileChange, FileHistory, History

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
_CHUNK = 1 << 20
_CONFIG = ("-c", "core.quotePath=false", "-c", "color.ui=never", "-c", "diff.noprefix=false")
_SHALLOW_HINT = (
    "the clone is shallow: fetch more history (`git fetch --unshallow`, or `fetch-depth: 0` "
    "in actions/checkout)"
)


class GitRepository:
    """One repository on disk, read with the git CLI."""

    def __init__(self, path: str | Path, *, git: str = "git", history_commits: int = 1000) -> None:
        self.git = git
        self.history_commits = history_commits
        self.root = self._find_root(Path(path))

    # ----------------------------------------------------------------- plumbing

    def _run(self, *args: str, check: bool = True, cwd: Path | None = None) -> str:
        proc = _run([self.git, *_CONFIG, *args], cwd=cwd or self.root)
        if check and proc.returncode != 0:
            raise self._error(proc.stderr, args)
        return proc.stdout.decode("utf-8", "replace")

    def _error(self, stderr: bytes, args: Sequence[str]) -> GitError:
        text = stderr.decode("utf-8", "replace").strip()
        first = text.splitlines()[-1] if text else "no error output"
        if "dubious ownership" in text:
            return _not_trusted(self.root)
        return GitError(f"`git {args[0]}` failed in {self.root}: {first}", repo=str(self.root))

    def _find_root(self, path: Path) -> Path:
        if not path.exists():
            raise NotARepositoryError(f"{path} does not exist", repo=str(path))
        cwd = path if path.is_dir() else path.parent
        proc = _run([self.git, "rev-parse", "--show-toplevel"], cwd=cwd)
        if proc.returncode != 0:
            text = proc.stderr.decode("utf-8", "replace")
            if "dubious ownership" in text:
                raise _not_trusted(path.resolve())
            raise NotARepositoryError(
                f"{path} is not inside a git repository",
                repo=str(path),
                hint="pass --repo with the path of a git work tree",
            )
        return Path(proc.stdout.decode("utf-8", "replace").strip())

    # ----------------------------------------------------------------- refs

    def is_shallow(self) -> bool:
        return self._run("rev-parse", "--is-shallow-repository").strip() == "true"

    def _shallow_commits(self) -> set[str]:
        path = Path(self._run("rev-parse", "--git-path", "shallow").strip())
        path = path if path.is_absolute() else self.root / path
        return set(path.read_text().split()) if path.is_file() else set()

    def resolve(self, ref: str) -> str:
        """The full SHA of the commit `ref` names; a clear error when there is none."""
        if not ref or ref.startswith("-") or any(c in ref for c in "\0\n"):
            raise UnknownRefError(f"{ref!r} is not a valid ref", ref=ref, repo=str(self.root))
        out = self._run(
            "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}", check=False
        ).strip()
        if out:
            return out
        if self.is_shallow():
            raise ShallowHistoryError(
                f"unknown ref {ref!r} in {self.root}",
                ref=ref,
                repo=str(self.root),
                hint=_SHALLOW_HINT,
            )
        raise UnknownRefError(
            f"unknown ref {ref!r} in {self.root}",
            ref=ref,
            repo=str(self.root),
            hint=f"check the name, or fetch it first (`git fetch origin {ref}`)",
        )

    def default_branch(self) -> str | None:
        """origin's default branch if known, else a local or remote main/master."""
        head = self._run("symbolic-ref", "-q", "--short", "refs/remotes/origin/HEAD", check=False)
        if head.strip():
            return head.strip()
        for name in ("origin/main", "origin/master", "main", "master"):
            if self._run("rev-parse", "--verify", "--quiet", f"{name}^{{commit}}", check=False):
                return name
        return None

    def default_base(self, head_sha: str) -> str:
        """Merge-base with the default branch; else the parent of head; else the empty tree."""
        branch = self.default_branch()
        if branch:
            base = self._run(
                "merge-base", "--end-of-options", branch, head_sha, check=False
            ).strip()
            if base and base != head_sha:
                return base
        parent = self._run("rev-parse", "--verify", "--quiet", f"{head_sha}^", check=False).strip()
        if parent:
            return parent
        if head_sha in self._shallow_commits():
            raise ShallowHistoryError(
                f"the commit before {head_sha[:12]} is not in this clone",
                ref=f"{head_sha}^",
                repo=str(self.root),
                hint=_SHALLOW_HINT,
            )
        return EMPTY_TREE  # a root commit: everything in it is new

    # ----------------------------------------------------------------- the change

    def read_change(self, base: str | None, head: str = "HEAD") -> ChangeSource:
        head_sha = self.resolve(head)
        base_sha = self.resolve(base) if base else self.default_base(head_sha)
        with ThreadPoolExecutor(max_workers=2) as pool:
            commits = pool.submit(self.commits, base_sha, head_sha)
            history_out = self._start_history(pool, base_sha)
            files = self.diff(base_sha, head_sha)
            commit_list = commits.result()
            history = self._history(history_out, base_sha, files, commit_list)
        changes = ChangeSet(
            repository=str(self.root),
            base=base_sha,
            head=head_sha,
            commits=commit_list,
            files=files,
        )
        return ChangeSource(root=self.root, changes=changes, history=history)

    def commits(self, base: str, head: str) -> list[Commit]:
        """Commits reachable from head and not from base, newest first."""
        span = head if base == EMPTY_TREE else f"{base}..{head}"
        out = self._run(
            "log", "-z", "--format=%H%x1f%an%x1f%ae%x1f%aI%x1f%B", "--end-of-options", span
        )
        commits = []
        for record in filter(None, out.split("\0")):
            sha, author, email, when, message = record.lstrip("\n").split("\x1f", 4)
            commits.append(
                Commit(
                    sha=sha,
                    author=author,
                    email=email,
                    timestamp=datetime.fromisoformat(when),
                    message=message.strip(),
                )
            )
        return commits

    def diff(self, base: str, head: str) -> list[FileChange]:
        """Changed files from base to head, parsed while git streams the patch."""
        args = [
            self.git,
            *_CONFIG,
            "diff",
            "--raw",
            "-p",
            "-z",
            "-M",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            "--no-relative",
            "--src-prefix=a/",
            "--dst-prefix=b/",
            "--end-of-options",
            base,
            head,
        ]
        parser = DiffStreamParser()
        files: list[FileChange] = []
        with (
            tempfile.TemporaryFile() as err,
            subprocess.Popen(
                args,
                cwd=self.root,
                stdout=subprocess.PIPE,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=_env(),
            ) as proc,
        ):
            stdout = cast(io.BufferedReader, proc.stdout)  # PIPE with bufsize -1 makes one
            try:
                while chunk := stdout.read1(_CHUNK):
                    files += parser.feed(chunk)
                files += parser.close()
            except DiffParseError as exc:
                proc.kill()
                raise GitError(
                    f"could not read git's diff output: {exc}", repo=str(self.root)
                ) from None
            if proc.wait() != 0:
                err.seek(0)
                raise self._error(err.read(), ["diff"])
        return files

    # ----------------------------------------------------------------- history

    def _start_history(self, pool: ThreadPoolExecutor, base: str) -> Future[bytes] | None:
        if base == EMPTY_TREE or self.history_commits == 0:
            return None
        args = [
            self.git,
            *_CONFIG,
            "log",
            "-z",
            "--no-renames",
            "--name-only",
            "--format=%x1e%H%x1f%ae%x1f%at",
            f"--max-count={self.history_commits}",
            "--end-of-options",
            base,
            "--",
        ]
        return pool.submit(lambda: _run(args, cwd=self.root).stdout)

    def _history(
        self, out: Future[bytes] | None, base: str, files: list[FileChange], commits: list[Commit]
    ) -> History | None:
        if out is None:
            note = (
                "history metrics are off (PIPELINE_BOT_HISTORY_COMMITS=0)"
                if self.history_commits == 0
                else "the change starts at the first commit"
            )
            return History(available=False, note=note)
        touched = {f.path for f in files} | {f.old_path for f in files if f.old_path}
        history = parse_history(out.result(), touched)
        history.head_time = commits[0].timestamp if commits else None
        notes = []
        if history.commits_read >= self.history_commits:
            notes.append(f"the {self.history_commits} most recent commits before the change")
        if self.is_shallow():
            notes.append("shallow clone: only the fetched history")
        history.note = "; ".join(notes) or f"all {history.commits_read} earlier commits"
        return history


def parse_history(raw: bytes, touched: set[str]) -> History:
    """`git log -z --name-only --format=%x1e%H%x1f%ae%x1f%at` -> per-file and per-author counts."""
    files: dict[str, FileHistory] = {}
    authors: dict[str, int] = {}
    read = unique = 0
    for record in raw.split(b"\x1e")[1:]:
        header, _, names = record.partition(b"\0")
        _sha, email, stamp = header.decode("utf-8", "replace").split("\x1f")
        read += 1
        authors[email] = authors.get(email, 0) + 1
        when = datetime.fromtimestamp(int(stamp), tz=UTC)
        hit = False
        for name in names.lstrip(b"\n").split(b"\0"):
            path = name.decode("utf-8", "backslashreplace")
            if path in touched:
                hit = True
                fh = files.setdefault(path, FileHistory())
                fh.changes += 1
                if email not in fh.authors:
                    fh.authors.append(email)
                if fh.last_changed is None or when > fh.last_changed:
                    fh.last_changed = when
        unique += hit
    return History(
        available=True,
        commits_read=read,
        unique_commits=unique,
        files=files,
        author_commits=authors,
    )


def _not_trusted(path: Path) -> GitError:
    return GitError(
        f"git refuses to read {path}: it is owned by another user",
        repo=str(path),
        hint=f"trust it with `git config --global --add safe.directory {path}`",
    )


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(LC_ALL="C", GIT_TERMINAL_PROMPT="0", GIT_OPTIONAL_LOCKS="0", GIT_PAGER="cat")
    return env


def _run(args: Sequence[str], *, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            list(args),
            cwd=cwd,
            capture_output=True,
            stdin=subprocess.DEVNULL,
            env=_env(),
            check=False,
        )
    except FileNotFoundError:
        raise GitError(
            f"git is not installed (looked for {args[0]!r})",
            hint="install git, or set PIPELINE_BOT_GIT_BINARY",
        ) from None


class GitSource:
    """SourcePort over local repositories (and the diff excerpts an AI review shows)."""

    def __init__(self, *, git: str = "git", history_commits: int = 1000) -> None:
        self.git = git
        self.history_commits = history_commits

    def read_change(self, repository: str, base: str | None, head: str) -> ChangeSource:
        repo = GitRepository(repository, git=self.git, history_commits=self.history_commits)
        return repo.read_change(base, head)

    def excerpts(
        self, repository: str, base: str, head: str, paths: list[str], *, max_bytes: int = 3000
    ) -> dict[str, str]:
        """Each path's patch from base to head, cut at `max_bytes`, from one git call."""
        if not paths:
            return {}
        repo = GitRepository(repository, git=self.git, history_commits=0)
        args = [
            self.git,
            *_CONFIG,
            "diff",
            "-p",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            "-U3",
            "--end-of-options",
            base,
            head,
            "--",
            *[f":(literal){p}" for p in paths],
        ]
        done = _run(args, cwd=repo.root)
        if done.returncode != 0:
            raise repo._error(done.stderr, ["diff"])
        out: dict[str, str] = {}
        wanted = set(paths)
        for block in done.stdout.split(b"\ndiff --git ")[0:]:
            text = block.decode("utf-8", "replace")
            header = text.split("\n", 1)[0].removeprefix("diff --git ")
            path = next((p for p in wanted if header.endswith(f" b/{p}")), None)
            if path is not None:
                out[path] = text[:max_bytes] + ("\n[... cut]" if len(text) > max_bytes else "")
        return out
