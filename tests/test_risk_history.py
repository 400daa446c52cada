"""The risk model on real git histories: mining, labels, determinism, the cache."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest

from pipeline_bot.integrations.history import HistoryMiner, HistoryStore
from pipeline_bot.integrations.riskfit import labelled_history

pytestmark = pytest.mark.integration

DAY = 86_400


def _mine(repo, tmp_path, head="HEAD"):
    store = HistoryStore(tmp_path / "h.sqlite3")
    try:
        miner = HistoryMiner(repo.root, store)
        return labelled_history(miner, head, window=5000, horizon_days=30)
    finally:
        store.close()


def test_mining_labels_a_reverted_commit_and_the_commit_a_fix_blames(repo, tmp_path):
    buggy = repo.commit(
        "Add the parser", {"src/p.py": "def parse(x):\n    y = x.strip()\n    return y\n"}
    )
    retries = repo.commit("Add retries", {"src/r.py": "RETRIES = 3\n"})
    repo.commit("Add docs", {"README.md": "# P\n"})
    fix = repo.commit(
        "Fix crash on None in the parser",
        {"src/p.py": "def parse(x):\n    y = (x or '').strip()\n    return y\n"},
    )
    repo.git("revert", "--no-edit", retries)
    got = _mine(repo, tmp_path)
    assert got.dataset.labels.reverted == {retries}
    assert got.dataset.labels.fix_inducing == {buggy}
    assert got.blamed[fix] == [buggy]


def test_a_merged_pull_request_is_one_change_and_its_revert_labels_the_merge(repo, tmp_path):
    repo.commit("init", {"src/a.py": "a = 1\n"})
    repo.git("checkout", "-q", "-b", "feature")
    repo.commit("Add caching", {"src/cache.py": "CACHE = {}\n"})
    repo.commit("Tune caching", {"src/cache.py": "CACHE = {'size': 3}\n"})
    repo.git("checkout", "-q", "main")
    repo.git(
        "merge", "-q", "--no-ff", "-m", "Merge pull request #1 from x/feature\n\nCaching", "feature"
    )
    merge = repo.git("rev-parse", "HEAD")
    repo.git("revert", "--no-edit", "-m", "1", merge)
    got = _mine(repo, tmp_path)
    records = {r.sha for r in got.dataset.rows} | set(got.dataset.labels.reverted)
    assert merge in records
    assert got.dataset.labels.reverted == {merge}


def test_a_missing_object_costs_one_commit_its_line_counts_not_the_analysis(repo, tmp_path):
    repo.commit("one", {"src/a.py": "a = 1\n"})
    lost = repo.commit("two", {"src/big.py": "x = 1\n" * 50})
    repo.commit("three", {"src/a.py": "a = 2\n"})
    blob = repo.git("rev-parse", f"{lost}:src/big.py")
    (repo.root / ".git" / "objects" / blob[:2] / blob[2:]).unlink()
    got = _mine(repo, tmp_path)
    assert got.records == 3
    store = HistoryStore(tmp_path / "h.sqlite3")
    record = store.records([lost])[lost]
    store.close()
    assert [(f.path, f.added) for f in record.files] == [("src/big.py", 0)]


def test_age_is_never_negative_when_commit_dates_go_backwards(repo, cli):
    repo.commit("one", {"src/a.py": "a = 1\n"})
    repo._clock -= 400 * DAY  # the next commit claims to be a year older than its parent
    repo.commit("two", {"src/a.py": "a = 2\n"})
    data = cli("analyze", "--repo", str(repo.root), "--format", "json").json()
    assert data["metrics"]["age_days"] == 0


def _history_with_fixes(repo, commits: int) -> list[str]:
    """A year of daily commits: features, and fixes of earlier features' lines."""
    shas = []
    for i in range(commits):
        repo._clock += DAY
        if i % 9 == 8:  # a fix of the feature seven commits back
            n = i - 7
            shas.append(
                repo.commit(
                    f"Fix crash in feature {n}",
                    {f"src/f{n}.py": f"def f{n}(x):\n    return x or {n}\n"},
                )
            )
        else:
            lines = 1 + (i * 7) % 40
            body = "".join(f"    v{j} = x + {j}\n" for j in range(lines))
            shas.append(
                repo.commit(
                    f"Add feature {i}",
                    {
                        f"src/f{i}.py": f"def f{i}(x):\n    return x\n",
                        f"src/g{i}.py": f"def g(x):\n{body}",
                    },
                    author=f"Dev{i % 4} <dev{i % 4}@example.com>",
                )
            )
    return shas


def _analyze(cli, root: Path, sha: str) -> dict:
    result = cli(
        "analyze", "--repo", str(root), "--base", f"{sha}~1", "--head", sha, "--format", "json"
    )
    assert result.exit_code == 0, result.stderr
    return result.json()


def test_a_commit_scores_the_same_in_a_full_clone_and_in_a_clone_that_ends_at_it(
    repo, tmp_path, cli, monkeypatch
):
    monkeypatch.setenv("PIPELINE_BOT_RISK_REFIT_EVERY", "5")  # checkpoints about every 5 commits
    shas = _history_with_fixes(repo, 215)
    analysed = shas[205]
    repo._clock += DAY
    repo.git("revert", "--no-edit", analysed)  # found out later: only the full clone knows
    for i in range(3):
        repo._clock += DAY
        repo.commit(f"Later {i}", {"src/later.py": f"L = {i}\n"})

    full = _analyze(cli, repo.root, analysed)
    assert full["risk"]["model"]["kind"] == "history"
    assert full["risk"]["model"]["commits"] >= 100

    ends_here = tmp_path / "ends-here"
    subprocess.run(["git", "init", "-q", str(ends_here)], check=True)
    subprocess.run(
        ["git", "-C", str(ends_here), "fetch", "-q", str(repo.root), f"{analysed}:refs/heads/main"],
        check=True,
    )
    subprocess.run(["git", "-C", str(ends_here), "checkout", "-q", "main"], check=True)
    # the same cache the full clone filled (rows are keyed by sha), then a cache of its own
    same_cache = _analyze(cli, ends_here, analysed)
    monkeypatch.setenv("PIPELINE_BOT_CACHE_DIR", str(tmp_path / "fresh-cache"))
    fresh_cache = _analyze(cli, ends_here, analysed)
    # and the full clone after it analysed its newest commit (the cache then knows the revert)
    monkeypatch.setenv("PIPELINE_BOT_CACHE_DIR", str(tmp_path / "newest-first"))
    cli("analyze", "--repo", str(repo.root), "--format", "json")
    newest_first = _analyze(cli, repo.root, analysed)

    for other in (same_cache, fresh_cache, newest_first):
        assert other["risk"]["probability"] == full["risk"]["probability"]
        assert other["risk"]["score"] == full["risk"]["score"]
        assert other["risk"]["factors"] == full["risk"]["factors"]
        assert other["risk"]["model"]["newest_commit"] == full["risk"]["model"]["newest_commit"]


def test_the_fitted_model_is_cached_and_the_next_analysis_reuses_it(
    repo, cli, risk_cache, monkeypatch
):
    monkeypatch.setenv("PIPELINE_BOT_RISK_REFIT_EVERY", "3")
    _history_with_fixes(repo, 120)
    first = cli("analyze", "--repo", str(repo.root), "--format", "json")
    assert "learning the risk model" in first.stderr
    second = cli("analyze", "--repo", str(repo.root), "--format", "json")
    assert "learning the risk model" not in second.stderr
    assert first.json()["risk"] == second.json()["risk"]
    files = list((risk_cache / "risk").glob("*.sqlite3"))
    assert len(files) == 1
    with sqlite3.connect(files[0]) as db:
        assert db.execute("SELECT count(*) FROM models").fetchone()[0] == 1
        assert db.execute("SELECT count(*) FROM records").fetchone()[0] >= 119


def test_a_repository_of_the_prior_never_learns_its_own_future_from_it():
    from pipeline_bot.integrations.riskfit import load_prior

    prior = load_prior()
    first = next(r for r in prior.rows if r.repo == 0)
    without, names = prior.without([first.commit + "0" * 28])
    assert names == [prior.repositories[0]]
    assert all(r.repo != 0 for r in without.rows)
    assert len(without.rows) < len(prior.rows)
    same, none = prior.without(["f" * 40])
    assert none == []
    assert same is prior
