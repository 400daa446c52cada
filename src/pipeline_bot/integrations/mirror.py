"""Bare mirrors of repositories the App serves, so its risk model can read their history.

The App reads a change through GitHub's API, which has no history to learn from. For the risk
model it keeps one bare clone per repository under its cache folder, fetched with a short-lived
installation token (read-only, this repository only) passed in git's environment: never on a
command line, in a URL, in the mirror's config or in a log. Each analysis fetches only what is
new: the default branch and the commits the change needs.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from pipeline_bot.core.riskmodel import RiskInputs
from pipeline_bot.errors import GitError, IntegrationError
from pipeline_bot.integrations.ports import RiskPort
from pipeline_bot.models import ChangeSet

_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
FETCH_TIMEOUT = 900  # seconds: a first fetch of a large repository takes minutes


class Mirrors:
    """One bare mirror per repository, under `root`, fetched from `server_url`."""

    def __init__(self, root: Path, *, server_url: str = "https://github.com", git: str = "git"):
        self.root = root
        self.server_url = server_url.rstrip("/")
        self.git = git
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def path(self, repo: str) -> Path:
        return self.root / (repo.replace("/", "+", 1) + ".git")

    def update(self, repo: str, token: str | None, wants: Sequence[str]) -> Path:
        """Fetch the default branch and `wants` (shas) into the repository's mirror."""
        if not _REPO.match(repo) or ".." in repo:
            raise IntegrationError(f"{repo!r} is not an owner/name", service="git")
        with self._lock(repo):
            path = self.path(repo)
            if not (path / "HEAD").exists():
                path.mkdir(parents=True, exist_ok=True)
                self._git(path, None, "init", "-q", "--bare")
            url = f"{self.server_url}/{repo}.git"
            refspecs = ["+HEAD:refs/heads/default"]
            refspecs += [f"+{sha}:refs/pipeline-bot/want-{i}" for i, sha in enumerate(wants)]
            self._git(path, token, "fetch", "--quiet", "--no-tags", "--", url, *refspecs)
        return path

    def _lock(self, repo: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(repo, threading.Lock())

    def _git(self, cwd: Path, token: str | None, *args: str) -> None:
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
        if token:
            basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
            env.update(
                GIT_CONFIG_COUNT="1",
                GIT_CONFIG_KEY_0="http.extraHeader",
                GIT_CONFIG_VALUE_0=f"Authorization: basic {basic}",
            )
        try:
            proc = subprocess.run(
                [self.git, *args],
                cwd=cwd,
                env=env,
                capture_output=True,
                timeout=FETCH_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise GitError(f"`git {args[0]}` of {cwd.name} took over {FETCH_TIMEOUT} s") from None
        if proc.returncode != 0:
            lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            last = lines[-1] if lines else "no output"
            if token:
                last = last.replace(token, "***")
            raise GitError(f"`git {args[0]}` of {cwd.name} failed: {last}", repo=cwd.name)


class MirroredRisk:
    """RiskPort for changes read through GitHub's API: the history comes from a mirror."""

    def __init__(
        self,
        risk: RiskPort,
        mirrors: Mirrors,
        token: Callable[[], str | None],
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.risk = risk
        self.mirrors = mirrors
        self.token = token
        self.progress = progress

    def assess(self, root: Path | None, changes: ChangeSet) -> RiskInputs:
        if root is not None:
            return self.risk.assess(root, changes)
        wants = [sha for sha in (changes.head, changes.base) if re.fullmatch(r"[0-9a-f]{40}", sha)]
        try:
            path = self.mirrors.update(changes.repository, self.token(), wants)
        except (GitError, IntegrationError) as exc:
            if self.progress:
                self.progress(f"no history for the risk model: {exc.message}")
            return self.risk.assess(None, changes)
        return self.risk.assess(path, changes)
