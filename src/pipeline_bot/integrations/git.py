"""Local git repositories through the git CLI: refs, commits, the diff (streamed) and history.

Every call passes an argument list (never a shell string) and `--end-of-options` before refs, so a
ref cannot be read as an option. Output that can contain any byte uses `-z`.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import re
import subprocess
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import cast

from pipeline_bot.core.classify import Kind, kind_of_path
from pipeline_bot.core.diffparse import DiffParseError, DiffStreamParser
from pipeline_bot.errors import GitError, NotARepositoryError, ShallowHistoryError, UnknownRefError
from pipeline_bot.integrations.ports import ChangeSource
from pipeline_bot.models import ChangeSet, Commit, FileChange, FileStatus

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
_CHUNK = 1 << 20
_CONFIG = ("-c", "core.quotePath=false", "-c", "color.ui=never", "-c", "diff.noprefix=false")
_MAX_KIND_PROBES = 20_000  # YAML files whose head version is searched for `kind:`, at most
_KIND_PROBES_PER_CALL = 1000
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_KIND_LINE = re.compile(r"""kind"?:[ \t]*"?([A-Za-z][A-Za-z0-9]*)""")
_SHALLOW_HINT = (
    "the clone is shallow: fetch more history (`git fetch --unshallow`, or `fetch-depth: 0` "
    "in actions/checkout)"
)


class GitRepository:
    """One repository on disk, read with the git CLI."""

    def __init__(self, path: str | Path, *, git: str = "git") -> None:
        self.git = git
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
            bare = _run(
                [self.git, "rev-parse", "--is-bare-repository", "--absolute-git-dir"], cwd=cwd
            )
            flag, _, git_dir = bare.stdout.decode("utf-8", "replace").strip().partition("\n")
            if flag == "true":
                raise NotARepositoryError(
                    f"{git_dir or path} is a bare repository: it has no work tree to analyse",
                    repo=str(path),
                    hint=f"clone it and give the clone (`git clone {git_dir or path} FOLDER`)",
                )
            raise NotARepositoryError(
                f"{path} is not inside a git repository",
                repo=str(path),
                hint="give the path of a git work tree (--repo on the command line, "
                "`repository` in a tool call)",
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
        if not self._run("rev-list", "-n", "1", "--all", check=False).strip():
            raise UnknownRefError(
                f"{self.root} has no commits yet",
                ref=ref,
                repo=str(self.root),
                hint="commit a change first: pipeline-bot analyses the commits of a range",
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

    def fork_point(self, base_sha: str, head_sha: str) -> str:
        """Where head's line left base's: the change is what head did since (GitHub's
        three-dot diff), not base's later work undone. Base itself when it is an ancestor of
        head, or when they share no commit here (unrelated histories, or a shallow clone)."""
        out = self._run("merge-base", "--end-of-options", base_sha, head_sha, check=False)
        return out.strip() or base_sha

    # ----------------------------------------------------------------- the change

    def read_change(self, base: str | None, head: str = "HEAD") -> ChangeSource:
        head_sha = self.resolve(head)
        if base and base.lower() == EMPTY_TREE:  # what a root commit's analysis says its base is
            base_sha = EMPTY_TREE
        elif base:
            base_sha = self.fork_point(self.resolve(base), head_sha)
        else:
            base_sha = self.default_base(head_sha)
        with ThreadPoolExecutor(max_workers=1) as pool:
            commits = pool.submit(self.commits, base_sha, head_sha)
            files = self.diff(base_sha, head_sha)
            commit_list = commits.result()
        changes = ChangeSet(
            repository=str(self.root),
            base=base_sha,
            head=head_sha,
            commits=commit_list,
            files=files,
        )
        return ChangeSource(root=self.root, changes=changes)

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
            _widen(stdout)
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
        self._kube_kinds_from_head(head, files)
        return files

    def _kube_kinds_from_head(self, head: str, files: list[FileChange]) -> None:
        """The top-level `kind:` of YAML (and JSON) files whose patch does not show it (a
        Deployment edited far below line 2), read from their head version with `git grep`:
        what makes a file a Kubernetes manifest outside the folders that say so. Only files
        the path leaves unclassified, where the kinds decide."""
        wanted = {
            f.path: f
            for f in files
            if f.path.endswith((".yaml", ".yml", ".json"))
            and not f.signals.kube_kinds
            and f.status is not FileStatus.DELETED
            and not f.binary
            and "\n" not in f.path
            and kind_of_path(f.path) is Kind.OTHER
        }
        if not wanted or not _SHA.fullmatch(head):  # git grep reads any word before -- as a rev
            return
        found: dict[str, set[str]] = {}
        listed = list(wanted)[:_MAX_KIND_PROBES]
        for at in range(0, len(listed), _KIND_PROBES_PER_CALL):  # argument lists stay short
            paths = [f":(literal){p}" for p in listed[at : at + _KIND_PROBES_PER_CALL]]
            self._grep_kinds(head, paths, found)
        for path, names in found.items():
            if path in wanted:
                f = wanted[path]
                f.signals = f.signals.model_copy(update={"kube_kinds": sorted(names)})

    def _grep_kinds(self, head: str, paths: list[str], found: dict[str, set[str]]) -> None:
        yaml = "^kind:[[:space:]]*[A-Za-z][A-Za-z0-9]*"
        json = '^[[:space:]]*"kind"[[:space:]]*:[[:space:]]*"[A-Za-z][A-Za-z0-9]*"'
        args = ("grep", "-I", "-z", "-H", "-o", "-E", "-e", yaml, "-e", json, head, "--", *paths)
        done = _run([self.git, *_CONFIG, "-c", "submodule.recurse=false", *args], cwd=self.root)
        if done.returncode not in (0, 1):  # 1: no file matched
            raise self._error(done.stderr, args)
        for line in done.stdout.decode("utf-8", "replace").split("\n"):  # paths hold no newline
            name, _, rest = line.partition("\0")
            kind = _KIND_LINE.search(rest.rsplit("\0", 1)[-1])
            if kind and name.startswith(f"{head}:"):
                found.setdefault(name.removeprefix(f"{head}:"), set()).add(kind.group(1))


def _widen(pipe: io.BufferedReader) -> None:
    """Let git write up to _CHUNK ahead of the parser (Linux; the default pipe holds 64 KiB):
    git and the parser then work at the same time on two CPUs, instead of taking turns each
    time the small pipe fills, and each read hands the parser a larger stretch."""
    with contextlib.suppress(AttributeError, OSError):  # not Linux; over pipe-max-size
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, _CHUNK)


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

    def __init__(self, *, git: str = "git") -> None:
        self.git = git

    def read_change(self, repository: str, base: str | None, head: str) -> ChangeSource:
        return GitRepository(repository, git=self.git).read_change(base, head)

    def excerpts(
        self, repository: str, base: str, head: str, paths: list[str], *, max_bytes: int = 3000
    ) -> dict[str, str]:
        """Each path's patch from base to head, cut at `max_bytes`, from one git call."""
        if not paths:
            return {}
        repo = GitRepository(repository, git=self.git)
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
