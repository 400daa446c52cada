"""`pipeline-bot analyze` on real repositories: the contract users and workflows rely on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

RISKY = {
    "db/migrations/0002_add_discount.sql": "ALTER TABLE cart ADD COLUMN discount int;\n",
    "Dockerfile": "FROM python:3.12-slim\nRUN pip install gunicorn\nCOPY . /app\n",
    "k8s/deployment.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: shop\n"
    "spec:\n  replicas: 4\n",
}


def test_docs_only_change_scores_lower_than_migration_dockerfile_and_manifest(base_repo, cli):
    base_repo.commit("docs: explain the cart", {"README.md": "# Shop\n\nHow the cart works.\n"})
    docs = cli("analyze", "--repo", str(base_repo.root), "--format", "json").json()
    base_repo.commit("add discounts", RISKY)
    risky = cli("analyze", "--repo", str(base_repo.root), "--format", "json").json()

    assert docs["risk"]["score"] < risky["risk"]["score"]
    assert docs["risk"]["level"] == "low"
    assert docs["strategy"]["name"] == "none"
    assert "nothing deployable changed" in docs["strategy"]["reasons"][0]

    # the rules still find what a reviewer must see, and the migration still gets its advice
    assert {"migration", "dockerfile", "kubernetes-manifest"} <= {
        f["rule"] for f in risky["findings"]
    }
    assert risky["strategy"]["name"] != "none"
    assert any("migration" in r for r in risky["strategy"]["reasons"])
    checks = [c["metric"] for c in risky["strategy"]["parameters"]["checkpoints"]]
    assert any("database" in c for c in checks)
    for factor in risky["risk"]["factors"]:
        assert factor["reason"]


def test_the_score_is_the_models_probability_and_the_factors_add_up_to_it(base_repo, cli):
    base_repo.commit("add discounts", RISKY)
    risk = cli("analyze", "--repo", str(base_repo.root), "--format", "json").json()["risk"]
    assert risk["model"]["kind"] in ("prior", "history")
    assert risk["score"] == round(100 * risk["probability"])
    shares = sum(f["points"] for f in risk["factors"])
    # each factor is a feature's share of the distance from a typical change
    assert abs(shares - 100 * (risk["probability"] - risk["model"]["baseline"])) < 1.5
    assert all(abs(f["points"]) >= 0.05 for f in risk["factors"])


def test_fixed_rule_weights_score_when_asked_for(base_repo, cli, monkeypatch):
    monkeypatch.setenv("PIPELINE_BOT_RISK_MODEL", "rules")
    base_repo.commit("add discounts", RISKY)
    risk = cli("analyze", "--repo", str(base_repo.root), "--format", "json").json()["risk"]
    assert risk["model"]["kind"] == "rules"
    assert risk["probability"] is None
    weights = {f["rule"]: f["weight"] for f in risk["factors"]}
    assert weights["migration"] == 30
    assert risk["score"] == min(100, sum(weights.values()))


def test_json_output_has_the_documented_keys(base_repo, cli):
    base_repo.commit("add discounts", RISKY)
    data = cli("analyze", "--repo", str(base_repo.root), "--format", "json").json()

    assert isinstance(data["risk"]["score"], int)
    assert data["risk"]["level"] in ("low", "medium", "high", "critical")
    assert isinstance(data["risk"]["factors"], list)
    assert isinstance(data["strategy"]["name"], str)
    assert isinstance(data["strategy"]["reasons"], list)
    assert isinstance(data["affected_services"], list)
    assert data["stats"]["files"] == 3
    # migration +1; Dockerfile +2 -1 (FROM changed, RUN added); manifest +2 (spec, replicas)
    assert data["stats"]["additions"] == 5
    assert data["stats"]["deletions"] == 1
    migration = next(f for f in data["findings"] if f["rule"] == "migration")
    assert set(migration) == {"path", "start_line", "end_line", "severity", "rule", "message"}
    assert migration["path"] == "db/migrations/0002_add_discount.sql"
    assert (migration["start_line"], migration["end_line"]) == (1, 1)
    manifest = next(f for f in data["findings"] if f["rule"] == "kubernetes-manifest")
    assert (manifest["start_line"], manifest["end_line"]) == (5, 6)  # the added lines only


def test_fail_on_high_exits_1_for_a_high_risk_change_and_0_for_a_low_one(base_repo, cli):
    base_repo.commit("docs", {"README.md": "# Shop!\n"})
    low = cli("analyze", "--repo", str(base_repo.root), "--fail-on", "high")
    assert low.exit_code == 0, low.stderr
    # a leaked secret fails whatever the model's probability
    key = (
        "-----BEGIN RSA PRIVATE KEY-----\n"
        + "MIIEowIBAAKCAQEA"
        + "x4lfake\n-----END RSA PRIVATE KEY-----\n"
    )
    base_repo.commit("add a key", {"deploy/server.pem": key})
    high = cli("analyze", "--repo", str(base_repo.root), "--fail-on", "high")
    assert high.exit_code == 1
    assert "at or above --fail-on high" in high.stderr
    assert "Risk:" in high.stdout


def test_text_output_explains_risk_strategy_and_findings(base_repo, cli):
    base_repo.commit("add discounts", RISKY)
    out = cli("analyze", "--repo", str(base_repo.root)).stdout
    assert "Risk: " in out
    assert "chance that this change is reverted or needs a fix" in out
    assert "model: the public prior" in out
    assert "earlier commit" in out  # the factors are explained in words
    assert "Strategy for production:" in out
    assert "db/migrations/0002_add_discount.sql:1" in out


def test_markdown_output_is_a_report_with_tables(base_repo, cli):
    base_repo.commit("add discounts", RISKY)
    md = cli("analyze", "--repo", str(base_repo.root), "--format", "markdown").stdout
    assert md.startswith("## ")
    assert "### Why this risk" in md
    assert "| Points | Why |" in md
    assert "chance that this change is reverted or needs a fix" in md
    assert "### Strategy for `production`" in md
    assert "`db/migrations/0002_add_discount.sql:1`" in md


def test_not_a_repository_exits_2_with_one_line_and_no_traceback(tmp_path, cli):
    result = cli("analyze", "--repo", str(tmp_path))
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: {tmp_path} is not inside a git repository")
    assert "Traceback" not in result.stderr + result.stdout


def test_a_bare_repository_is_named_as_one_and_how_to_get_a_work_tree(base_repo, cli, tmp_path):
    """A bare clone (a server's or a mirror's) is a repository, only without a work tree."""
    bare = tmp_path / "shop.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(base_repo.root), str(bare)], check=True)
    result = cli("analyze", "--repo", str(bare))
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert f"{bare} is a bare repository" in result.stderr
    assert "git clone" in result.stderr
    assert "not inside a git repository" not in result.stderr


def test_missing_path_exits_2(tmp_path, cli):
    result = cli("analyze", "--repo", str(tmp_path / "nope"))
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


def test_unknown_ref_exits_2_and_says_how_to_fetch_it(base_repo, cli):
    result = cli("analyze", "--repo", str(base_repo.root), "--base", "no-such-branch")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "unknown ref 'no-such-branch'" in result.stderr
    assert "git fetch origin no-such-branch" in result.stderr


def test_a_ref_that_looks_like_an_option_is_refused(base_repo, cli):
    result = cli("analyze", "--repo", str(base_repo.root), "--base=--output=/tmp/x")
    assert result.exit_code == 2
    assert "is not a valid ref" in result.stderr


def test_invalid_config_exits_2_with_one_line_naming_the_field(base_repo, cli, tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("version: 1\nenvironments:\n  - name: prod\n    order: first\n")
    result = cli("analyze", "--repo", str(base_repo.root), "--config", str(bad))
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "environments[0].order" in result.stderr
    assert f"{bad}:4" in result.stderr


def test_unknown_environment_exits_2_listing_the_known_ones(base_repo, cli):
    result = cli("analyze", "--repo", str(base_repo.root), "--environment", "moon")
    assert result.exit_code == 2
    assert "unknown environment 'moon'" in result.stderr
    assert "staging, production" in result.stderr


def test_shallow_clone_says_to_fetch_more_history(base_repo, cli, tmp_path):
    base_repo.commit("second", {"src/shop/app.py": "def main():\n    return 'ok!'\n"})
    clone = tmp_path / "shallow"
    subprocess.run(
        ["git", "clone", "-q", "--depth", "1", f"file://{base_repo.root}", str(clone)], check=True
    )
    result = cli("analyze", "--repo", str(clone), "--base", "HEAD~1")
    assert result.exit_code == 2
    assert "shallow" in result.stderr
    assert "fetch-depth: 0" in result.stderr
    # with no base given, the default (merge-base with origin/main = HEAD) falls back to HEAD~1
    default = cli("analyze", "--repo", str(clone))
    assert default.exit_code == 2
    assert "is not in this clone" in default.stderr
    assert "--unshallow" in default.stderr


def test_first_commit_is_analysed_against_the_empty_tree(repo, cli):
    repo.commit("initial", {"app.py": "print('hi')\n", "README.md": "hi\n"})
    data = cli("analyze", "--repo", str(repo.root), "--format", "json").json()
    assert data["base"] == "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
    assert data["stats"]["files"] == 2
    assert data["metrics"]["history_available"] is False


def test_default_base_is_the_merge_base_with_the_default_branch(base_repo, cli):
    fork = base_repo.git("rev-parse", "HEAD")
    base_repo.git("checkout", "-q", "-b", "feature")
    base_repo.commit("feature one", {"src/shop/a.py": "A = 1\n"})
    base_repo.commit("feature two", {"src/shop/b.py": "B = 2\n"})
    base_repo.git("checkout", "-q", "main")
    base_repo.commit("main moves on", {"src/shop/c.py": "C = 3\n"})
    base_repo.git("checkout", "-q", "feature")

    data = cli("analyze", "--repo", str(base_repo.root), "--format", "json").json()
    assert data["base"] == fork
    assert [c["message"] for c in data["commits"]] == ["feature two", "feature one"]
    assert data["stats"]["files"] == 2


def test_explicit_base_and_head_select_the_range(base_repo, cli):
    first = base_repo.git("rev-parse", "HEAD")
    base_repo.commit("one", {"src/shop/a.py": "A = 1\n"})
    middle = base_repo.commit("two", {"src/shop/b.py": "B = 2\n"})
    base_repo.commit("three", {"src/shop/c.py": "C = 3\n"})
    data = cli(
        "analyze",
        "--repo",
        str(base_repo.root),
        "--base",
        first,
        "--head",
        middle,
        "--format",
        "json",
    ).json()
    assert data["head"] == middle
    assert data["stats"]["files"] == 2
    assert len(data["commits"]) == 2


def test_repo_option_accepts_a_subfolder(base_repo, cli):
    base_repo.commit("x", {"src/shop/a.py": "A = 1\n"})
    data = cli("analyze", "--repo", str(base_repo.root / "src" / "shop"), "--format", "json").json()
    assert Path(data["repository"]) == base_repo.root
    assert data["stats"]["files"] == 1


def test_version_flag(cli):
    result = cli("--version")
    assert result.exit_code == 0
    assert result.stdout.startswith("pipeline-bot ")


def test_installed_entry_point_runs_as_a_process(base_repo):
    """The console script, not just the in-process app: what the README tells users to run."""
    base_repo.commit("x", {"src/shop/a.py": "A = 1\n"})
    script = Path(sys.executable).parent / "pipeline-bot"
    proc = subprocess.run(
        [str(script), "analyze", "--repo", str(base_repo.root), "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert '"risk"' in proc.stdout


def test_an_explicit_base_that_moved_on_is_diffed_from_the_fork_point(base_repo, cli):
    """A pull request's base.sha is the base branch's tip, which may be ahead of where the branch
    forked: the change is what the branch did since then (GitHub's three-dot diff), as its
    commits are, not the base branch's newer work undone."""
    fork = base_repo.git("rev-parse", "HEAD")
    base_repo.git("checkout", "-q", "-b", "feature")
    base_repo.commit("docs: explain the cart", {"README.md": "# Shop\n\nHow the cart works.\n"})
    base_repo.git("checkout", "-q", "main")
    main_tip = base_repo.commit("add discounts", RISKY)
    base_repo.git("checkout", "-q", "feature")

    data = cli(
        "analyze", "--repo", str(base_repo.root), "--base", main_tip, "--format", "json"
    ).json()
    assert [c["message"] for c in data["commits"]] == ["docs: explain the cart"]
    assert data["base"] == fork
    assert data["stats"]["files"] == 1
    assert data["findings"] == []
    assert data["strategy"]["name"] == "none"


def test_a_base_ahead_of_head_is_an_empty_change(base_repo, cli):
    """Base and head swapped: nothing is in head that base lacks, so nothing is analysed as
    changed (not base's own work reversed)."""
    old = base_repo.git("rev-parse", "HEAD")
    new = base_repo.commit("add discounts", RISKY)
    data = cli(
        "analyze", "--repo", str(base_repo.root), "--base", new, "--head", old, "--format", "json"
    ).json()
    assert data["commits"] == []
    assert data["stats"]["files"] == 0


def test_the_empty_tree_an_analysis_reports_as_base_is_accepted_as_base(repo, cli):
    """A root commit's analysis says base is the empty tree; given back as --base (a re-run, or
    a `git diff`-style range from the empty tree), it selects the same change."""
    repo.commit("initial", {"app.py": "print('hi')\n", "README.md": "hi\n"})
    first = cli("analyze", "--repo", str(repo.root), "--format", "json").json()
    again = cli(
        "analyze", "--repo", str(repo.root), "--base", first["base"], "--format", "json"
    ).json()
    assert again["base"] == first["base"] == "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
    assert again["stats"] == first["stats"]
    assert [c["sha"] for c in again["commits"]] == [c["sha"] for c in first["commits"]]
