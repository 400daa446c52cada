"""Shared fixtures: real git repositories built in a temporary folder, and the CLI runner."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pipeline_bot.cli import app
from pipeline_bot.settings import get_settings


class GitRepo:
    """A real repository that tests write commits into."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")
        self._clock = 1_700_000_000

    def git(self, *args: str, author: str = "Dev <dev@example.com>") -> str:
        name, email = author[:-1].split(" <")
        self._clock = getattr(self, "_clock", 1_700_000_000) + 60
        stamp = f"{self._clock} +0000"
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": name,
            "GIT_AUTHOR_EMAIL": email,
            "GIT_AUTHOR_DATE": stamp,
            "GIT_COMMITTER_NAME": name,
            "GIT_COMMITTER_EMAIL": email,
            "GIT_COMMITTER_DATE": stamp,
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(self.root.parent),
        }
        proc = subprocess.run(
            ["git", *args], cwd=self.root, env=env, capture_output=True, check=False
        )
        assert proc.returncode == 0, proc.stderr.decode()
        return proc.stdout.decode().strip()

    def write(self, files: dict[str, str | bytes | None]) -> None:
        for path, content in files.items():
            target = self.root / path
            if content is None:
                target.unlink()
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)

    def commit(
        self,
        message: str,
        files: dict[str, str | bytes | None] | None = None,
        author: str = "Dev <dev@example.com>",
    ) -> str:
        self.write(files or {})
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message, author=author)
        return self.git("rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    """An empty repository on branch main."""
    return GitRepo(tmp_path / "repo")


@pytest.fixture
def base_repo(repo: GitRepo) -> GitRepo:
    """A repository with a small application already committed."""
    repo.commit(
        "initial import",
        {
            "README.md": "# Shop\n",
            "src/shop/app.py": "def main():\n    return 'ok'\n",
            "src/shop/cart.py": "def total(items):\n    return sum(items)\n",
            "tests/test_cart.py": "from shop.cart import total\n\n\ndef test_total():\n"
            "    assert total([1, 2]) == 3\n\n\ndef test_empty():\n"
            "    assert total([]) == 0\n",
            "Dockerfile": "FROM python:3.11-slim\nCOPY . /app\n",
            "k8s/deployment.yaml": (
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: shop\n"
            ),
            "db/migrations/0001_init.sql": "CREATE TABLE cart (id int);\n",
        },
    )
    return repo


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Run `pipeline-bot ARGS...` in-process; returns exit code, stdout and stderr apart."""
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "200")
    get_settings.cache_clear()
    runner = CliRunner()

    def run(*args: str) -> Result:
        out = runner.invoke(app, list(args), catch_exceptions=False)
        return Result(out.exit_code, out.stdout, out.stderr)

    yield run
    get_settings.cache_clear()
