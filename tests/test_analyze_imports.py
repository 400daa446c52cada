"""`pipeline-bot analyze` imports what an analysis uses, nothing of the deploy side (issue 15,
point 2: the analysis within 2x of `git diff -p`). Importing the deploy engine, its gates and
Prometheus client, or the image registries' HTTP client cost a tenth of a 20,000-file analysis
each time the command ran."""

from __future__ import annotations

import json
import subprocess
import sys

_CHILD = """
import json, sys
from pipeline_bot.cli import app
try:
    app(["analyze", "--repo", sys.argv[1], "--base", "HEAD~1", "--format", "json"])
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""

NOT_FOR_AN_ANALYSIS = (
    "pipeline_bot.deploy",
    "pipeline_bot.deploy.engine",
    "pipeline_bot.deploy.gates",
    "pipeline_bot.integrations.kubernetes",
    "pipeline_bot.integrations.images",
    "pipeline_bot.tools.deploy",
    "prometheus_client",
    "httpx",
)


def _git(root, *args):
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def test_an_analysis_imports_nothing_of_the_deploy_side(tmp_path):
    _git(tmp_path, "init", "-q", "-b", "main")
    _git(tmp_path, "config", "user.email", "dev@example.invalid")
    _git(tmp_path, "config", "user.name", "dev")
    (tmp_path / "a.py").write_text("x = 1\n")
    _git(tmp_path, "add", "a.py")
    _git(tmp_path, "commit", "-qm", "base")
    (tmp_path / "a.py").write_text("x = 2\n")
    _git(tmp_path, "commit", "-qam", "change")
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        env={"PIPELINE_BOT_CACHE_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"},
    )
    assert '"risk"' in done.stdout, done.stderr[-2000:]
    modules = set(json.loads(done.stderr.strip().splitlines()[-1]))
    assert "pipeline_bot.core.analysis" in modules
    assert not modules & set(NOT_FOR_AN_ANALYSIS)
