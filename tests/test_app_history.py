"""The App's risk model reads each repository's history from a bare mirror it keeps, fetched with
a read-only installation token that never reaches a command line, a file or a log."""

from __future__ import annotations

import json
import subprocess

import pytest

from pipeline_bot.integrations.mirror import Mirrors
from pipeline_bot.integrations.riskfit import HistoryRisk
from tests.app_harness import (  # the fixtures are imported for pytest to find them
    app_fixture,  # noqa: F401
    config,
    gh_fixture,  # noqa: F401
    migration_files,
    pull_request_payload,
)
from tests.conftest import webhook_example
from tests.fakes.github_api import REPO

pytestmark = pytest.mark.integration


@pytest.fixture
def served(tmp_path, repo):
    """The test repository with a history, served at file://<server>/Codertocat/Hello-World.git."""
    for i in range(12):
        repo.commit(
            f"Add step {i}", {f"src/s{i}.py": f"S = {i}\n"}, author=f"D{i % 3} <d{i % 3}@x.org>"
        )
    base = repo.git("rev-parse", "HEAD")
    head = repo.commit("Add discounts", {"src/s1.py": "S = 100\n"}, author="D1 <d1@x.org>")
    server = tmp_path / "server"
    subprocess.run(
        ["git", "clone", "-q", "--bare", str(repo.root), str(server / f"{REPO}.git")], check=True
    )
    return server, base, head


def test_a_pull_request_is_scored_with_its_repositorys_own_history(app, gh, served, tmp_path):
    server, base, head = served
    app.services.risk = HistoryRisk(tmp_path / "cache")
    app.services.mirrors = Mirrors(tmp_path / "mirrors", server_url=f"file://{server}")
    gh.config = config("shop")
    gh.files = migration_files(1)
    payload = pull_request_payload(webhook_example("pull_request", action="opened"))
    payload["pull_request"]["head"]["sha"], payload["pull_request"]["base"]["sha"] = head, base
    app.deliver("pull_request", payload)
    app.work()
    final = gh.made("PATCH", r"/check-runs/\d+$")[-1].body
    text = json.dumps(final)
    assert "chance that this change is reverted or needs a fix" in text
    assert (tmp_path / "mirrors" / "Codertocat+Hello-World.git" / "HEAD").exists()
    # the token it fetched with asked for reading this one repository only
    token_requests = [r for r in gh.made("POST", r"/access_tokens$") if r.body.get("permissions")]
    assert token_requests
    assert token_requests[-1].body == {
        "repositories": ["Hello-World"],
        "permissions": {"contents": "read"},
    }
    config_text = (tmp_path / "mirrors" / "Codertocat+Hello-World.git" / "config").read_text()
    assert "extraheader" not in config_text.lower()


def test_the_mirror_passes_the_token_in_the_environment_and_hides_it_on_failure(tmp_path):
    mirrors = Mirrors(tmp_path / "mirrors", server_url=f"file://{tmp_path}/nowhere")
    with pytest.raises(Exception) as err:  # noqa: PT011 - the message is what is checked
        mirrors.update("owner/name", "ghs_secret_mirror_token", ["a" * 40])
    assert "ghs_secret_mirror_token" not in str(err.value)
    assert "failed" in str(err.value)


def test_a_repository_name_that_is_not_owner_slash_name_is_refused(tmp_path):
    mirrors = Mirrors(tmp_path / "mirrors")
    for bad in ("../etc", "owner/../../x", "owner", "a/b/c"):
        with pytest.raises(Exception, match="is not an owner/name"):
            mirrors.update(bad, None, [])
