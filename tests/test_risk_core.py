"""The risk model's pure decisions, table by table: labels, features, SZZ, scoring."""

from __future__ import annotations

import pytest

from pipeline_bot.core import dataset, features, labels, riskmodel, scoring, szz
from pipeline_bot.core.features import CommitRecord, FileStat, HistoryState
from pipeline_bot.core.riskmodel import ModelParams, RiskInputs
from pipeline_bot.models import Commit, FileChange, FileStatus, Finding
from pipeline_bot.repo_config import RepoConfig

DAY = 86_400


def rec(
    sha: str,
    message: str = "change",
    files: tuple[tuple[str, int, int], ...] = (("src/a.py", 1, 0),),
    *,
    parents: tuple[str, ...] = (),
    author: str = "ann@example.com",
    t: int = 0,
) -> CommitRecord:
    return CommitRecord(
        sha=sha,
        parents=parents,
        author=author,
        author_time=t,
        commit_time=t,
        message=message,
        files=tuple(FileStat(p, a, d) for p, a, d in files),
    )


# --------------------------------------------------------------------------- labels


@pytest.mark.parametrize(
    ("message", "targets"),
    [
        (
            'Revert "x"\n\nThis reverts commit 0123456789abcdef0123456789abcdef01234567.',
            ["0123456789abcdef0123456789abcdef01234567"],
        ),
        ("Revert\n\nThis reverts commit abc1234, reversing\nchanges made to def5678.", ["abc1234"]),
        ("Fix the parser", []),
        ("this reverts commit xyz", []),
    ],
)
def test_reverted_targets(message, targets):
    assert labels.reverted_targets(message) == targets


@pytest.mark.parametrize(
    ("subject", "inner"),
    [
        ('Revert "Add caching"', "Add caching"),
        ('Revert "Revert "Add caching""', 'Revert "Add caching"'),
        ("Revert the cache", None),
        ("Add caching", None),
    ],
)
def test_revert_subject(subject, inner):
    assert labels.revert_subject(subject) == inner


@pytest.mark.parametrize(
    ("message", "fix"),
    [
        ("Fix crash when the list is empty", True),
        ("fix(parser): handle tabs", True),
        ("Handle tabs\n\nFixes #123", True),
        ("Handle tabs\n\nCloses owner/repo#9", True),
        ("Add a prefix option", False),
        ("Refactor the prefix parser", False),
    ],
)
def test_fix_messages(message, fix):
    assert features.is_fix_message(message) is fix


def test_a_merges_title_is_its_pull_requests_not_its_branch_name():
    merge = rec("m", "Merge pull request #7 from x/fix-things\n\nUpdate docs", parents=("a", "b"))
    assert merge.title == "Update docs"
    assert features.is_fix_message(merge.title) is False


@pytest.mark.parametrize(
    ("message", "files", "szz_fix"),
    [
        ("Fix crash on empty input", (("src/a.py", 2, 1),), True),
        ("Fix typo in error message", (("src/a.py", 1, 1),), False),  # cosmetic
        ("Fix lint", (("src/a.py", 1, 1),), False),
        ("Fix the docs", (("docs/a.md", 1, 1),), False),  # nothing to blame but docs
        ("Fix tests", (("tests/test_a.py", 1, 1),), False),
        ("Fix everything", tuple((f"src/f{i}.py", 1, 1) for i in range(21)), False),  # a refactor
        ("Fix a huge thing", (("src/a.py", 900, 200),), False),
        ('Revert "Fix crash"', (("src/a.py", 1, 1),), False),
        ("Add an option", (("src/a.py", 1, 1),), False),
    ],
)
def test_which_fixes_are_blamed(message, files, szz_fix):
    assert labels.is_szz_fix(rec("f", message, files)) is szz_fix


@pytest.mark.parametrize(
    ("line", "blamable"),
    [
        ("    return total / count", True),
        ("", False),
        ("    ", False),
        ("}", False),
        ("  );", False),
        ("# a comment", False),
        ("// a comment", False),
        (" * javadoc", False),
        ("x", False),
        ("ok()", True),
    ],
)
def test_blamable_lines(line, blamable):
    assert labels.blamable_line(line) is blamable


def test_to_ranges():
    assert labels.to_ranges([9, 3, 4, 5, 4]) == [(3, 5), (9, 9)]
    assert labels.to_ranges([]) == []


def test_deleted_lines_keep_old_line_numbers_of_blamable_code_only():
    patch = (
        "diff --git a/src/a.py b/src/a.py\n--- a/src/a.py\n+++ b/src/a.py\n"
        "@@ -3,2 +3,1 @@\n-    x = compute()\n-    # note\n+    x = compute(1)\n"
        "@@ -10 +9,0 @@\n-    return x\n"
        "diff --git a/README.md b/README.md\n--- a/README.md\n+++ b/README.md\n"
        "@@ -1 +1 @@\n-old words\n+new words\n"
    )
    assert labels.deleted_lines(patch).by_file == {"src/a.py": [3, 10]}


def test_label_history_finds_reverts_by_sha_and_by_subject_fix_trailers_and_blames():
    records = [
        rec("a" * 40, "Add caching", t=0),
        rec("b" * 40, "Add retries", t=1),
        rec("c" * 40, "Speed up search", t=2),
        rec("d" * 40, "Tune the pool", files=(("x/" + "big", 1, 1),), t=3),
        rec("e" * 40, 'Revert "Add caching"\n\nThis reverts commit aaaaaaa.', t=4),
        rec("f" * 40, 'Revert "Add retries"', t=5),  # no sha: matched by subject
        rec("1" * 40, 'Fix search\n\nFixes: cccccccccccc ("Speed up search")', t=6),
        rec("2" * 40, "Fix pool crash", t=7),
    ]
    got = labels.label_history(records, {"2" * 40: ["d" * 40, "9" * 40]})
    assert got.reverted == {"a" * 40, "b" * 40}
    assert got.fix_inducing == {"c" * 40, "d" * 40}  # unknown shas are ignored
    assert got.found_out["e" * 40] == ["a" * 40]
    assert got.found_out["2" * 40] == ["d" * 40]


def test_a_revert_of_a_pull_requests_own_commit_labels_the_merge_that_brought_it():
    records = [
        rec(
            "a" * 40, "Merge pull request #1 from x/y\n\nAdd caching", parents=("0" * 40, "7" * 40)
        ),
        rec("b" * 40, "Revert caching\n\nThis reverts commit 7777777."),
    ]
    got = labels.label_history(records, {}, aliases={"7" * 40: "a" * 40})
    assert got.reverted == {"a" * 40}


def test_revert_of_a_merged_pull_request_is_matched_by_its_title():
    records = [
        rec(
            "a" * 40, "Merge pull request #1 from x/y\n\nAdd caching", parents=("0" * 40, "7" * 40)
        ),
        rec(
            "b" * 40,
            'Merge pull request #2 from x/revert-1\n\nRevert "Add caching"',
            parents=("a" * 40, "8" * 40),
        ),
    ]
    assert labels.label_history(records, {}).reverted == {"a" * 40}


def test_a_mass_change_is_never_labelled_fix_inducing():
    huge = tuple((f"src/f{i}.py", 1, 1) for i in range(labels.MAX_BLAMED_FILES + 1))
    records = [rec("a" * 40, "Reformat", huge), rec("b" * 40, "Fix crash")]
    assert labels.label_history(records, {"b" * 40: ["a" * 40]}).fix_inducing == set()


@pytest.mark.parametrize(
    ("age_days", "positive", "label"),
    [(40, False, 0), (10, False, None), (10, True, 1), (40, True, 1)],
)
def test_negatives_only_once_old_enough_to_have_been_found_out(age_days, positive, label):
    head_time = 100 * DAY
    r = rec("a" * 40, t=head_time - age_days * DAY)
    got = labels.Labels(reverted={r.sha} if positive else set())
    out = labels.training_set([r], got, head_time=head_time, horizon_days=30)
    assert out.get(r.sha) == label


# --------------------------------------------------------------------------- features


@pytest.mark.parametrize(
    ("message", "deps"),
    [
        ("Bump requests to 2.32", 1),
        ("chore(deps): update dependency x", 1),
        ("Update deps", 1),
        ("Upgrade the dependencies", 1),
        ("update golang.org/x/net from 0.17.0 to 0.23.0", 1),
        # words that only start with "dep" (the prior before 12-06 was mined with them matching)
        ("Deploy docs to the website", 0),
        ("Deprecate the old flag", 0),
        ("Fix the clone depth", 0),
    ],
)
def test_the_dependency_message_signal(message, deps):
    f = features.change_features(
        [FileStat("a.py", 1, 0)], [message], size_before=0, merge=False, bot=False
    )
    assert f["msg_deps"] == deps


def test_change_features_count_size_spread_kinds_and_message_signals():
    files = [
        FileStat("db/migrations/0002.sql", 3, 0),
        FileStat("src/shop/cart.py", 10, 5),
        FileStat("src/shop/util.py", 0, 2),
        FileStat("README.md", 1, 1),
    ]
    f = features.change_features(
        files, ["Bump requests to 2.32\n\nbody"], size_before=100, merge=False, bot=False
    )
    assert (f["la"], f["ld"], f["nf"], f["nd"], f["ns"], f["lt"]) == (14, 8, 4, 3, 3, 100)
    assert f["kind_migration"] == f["kind_code"] == f["kind_docs"] == 1
    assert f["kind_test"] == 0
    assert f["code_without_tests"] == 1
    assert f["msg_deps"] == 1
    assert f["fix"] == 0
    assert set(f) == set(features.NAMES)


@pytest.mark.parametrize(
    ("paths", "only"),
    [(["docs/a.md", "tests/test_a.py"], 1), (["docs/a.md", "src/a.py"], 0), ([], 0)],
)
def test_only_docs_and_tests(paths, only):
    files = [FileStat(p, 1, 0) for p in paths]
    got = features.change_features(files, ["x"], size_before=0, merge=False, bot=False)
    assert got["only_docs_tests"] == only


def test_history_features_age_is_never_negative_when_dates_go_backwards():
    state = HistoryState()
    state.add(rec("a" * 40, t=1000 * DAY))  # committed "later" than what follows it
    got = state.history_features(["src/a.py"], "bob@example.com", when=10 * DAY)
    assert got["age"] == 0
    assert (got["nuc"], got["ndev"], got["exp"]) == (1, 1, 0)


def test_replay_knows_a_problem_only_after_it_was_found_out():
    a = rec("a" * 40, "Add cache", t=0)
    b = rec("b" * 40, "Tune cache", t=1)
    fix = rec("c" * 40, "Fix cache crash", t=2)
    after = rec("d" * 40, "More cache", t=3)
    got, _ = features.replay([a, b, fix, after], {"c" * 40: ["a" * 40]})
    assert got["b" * 40]["file_problems"] == 0  # not yet known when b landed
    assert got["d" * 40]["file_problems"] == 1
    assert got["d" * 40]["author_problems"] == 1
    assert got["d" * 40]["file_fixes"] == 1


# --------------------------------------------------------------------------- SZZ by line origins


def _log(*commits: tuple[str, str, str]) -> list[szz.LoggedCommit]:
    parser = szz.LogPatchParser()
    out = []
    for sha, message, patch in commits:
        text = f"\x1e{sha}\x1f\x1fann@example.com\x1f0\x1f0\x1f{message}\x1d\n{patch}"
        for line in text.split("\n"):
            done = parser.feed(line)
            if done:
                out.append(done)
    last = parser.close()
    return [*out, last] if last else out


def _diff(path: str, *hunks: str, new: bool = False) -> str:
    head = f"diff --git a/{path} b/{path}\n"
    head += "new file mode 100644\n--- /dev/null\n" if new else f"--- a/{path}\n"
    return head + f"+++ b/{path}\n" + "".join(hunks)


def test_a_fix_blames_the_commit_that_wrote_the_lines_it_changed():
    commits = _log(
        (
            "a" * 40,
            "Add parser",
            _diff("src/p.py", "@@ -0,0 +1,3 @@\n+def p(x):\n+    y = x\n+    return y\n", new=True),
        ),
        ("b" * 40, "Add checks", _diff("src/p.py", "@@ -1,0 +2 @@\n+    check(x)\n")),
        (
            "c" * 40,
            "Fix crash in parser",
            _diff("src/p.py", "@@ -3 +3 @@\n-    y = x\n+    y = x or 0\n"),
        ),
    )
    tracker = szz.LineTracker()
    blamed = [tracker.apply(c) for c in commits]
    assert blamed == [[], [], ["a" * 40]]
    assert [c.record.files[0].added for c in commits] == [3, 1, 1]


def test_whitespace_only_changes_keep_a_lines_origin():
    commits = _log(
        ("a" * 40, "Add", _diff("src/p.py", "@@ -0,0 +1,2 @@\n+if x:\n+  go()\n", new=True)),
        ("b" * 40, "Reindent", _diff("src/p.py", "@@ -2 +2 @@\n-  go()\n+    go()\n")),
        ("c" * 40, "Fix go crash", _diff("src/p.py", "@@ -2 +2 @@\n-    go()\n+    go(1)\n")),
    )
    tracker = szz.LineTracker()
    assert [tracker.apply(c) for c in commits][-1] == ["a" * 40]


def test_renames_carry_origins_and_comments_are_not_blamed():
    rename = (
        "diff --git a/src/p.py b/src/q.py\nsimilarity index 90%\n"
        "rename from src/p.py\nrename to src/q.py\n"
    )
    commits = _log(
        ("a" * 40, "Add", _diff("src/p.py", "@@ -0,0 +1,2 @@\n+# explain\n+run()\n", new=True)),
        ("b" * 40, "Move", rename),
        (
            "c" * 40,
            "Fix run bug",
            _diff("src/q.py", "@@ -1,2 +1,2 @@\n-# explain\n-run()\n+# better\n+run(2)\n"),
        ),
    )
    tracker = szz.LineTracker()
    assert [tracker.apply(c) for c in commits][-1] == ["a" * 40]


def test_lines_from_before_the_window_are_never_blamed():
    fix = _log(("c" * 40, "Fix old bug", _diff("src/p.py", "@@ -40 +40 @@\n-  old()\n+  new()\n")))
    assert szz.LineTracker().apply(fix[0]) == []


def test_the_parser_reads_binary_files_and_messages_with_diff_like_lines():
    commits = _log(
        (
            "a" * 40,
            "Explain\n\ndiff --git a/x b/x\n--- a/x",
            _diff("logo.png", "") + "Binary files a/logo.png and b/logo.png differ\n",
        ),
    )
    assert commits[0].record.message.startswith("Explain")
    assert commits[0].diffs[0].binary


# --------------------------------------------------------------------------- scoring


def params(coef: dict[str, float], intercept: float = -2.0) -> ModelParams:
    names = list(coef)
    return ModelParams(
        kind="prior",
        features=names,
        center=[0.0] * len(names),
        scale=[1.0] * len(names),
        coef=[coef[n] for n in names],
        intercept=intercept,
    )


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("la", 0, 0.0),
        ("la", -5, 0.0),
        ("fix", 3, 1.0),
        ("entropy", 1.7, 1.0),
        ("entropy", 0.5, 0.5),
    ],
)
def test_transform(name, value, expected):
    assert riskmodel.transform(name, value) == pytest.approx(expected)


@pytest.mark.parametrize(
    "values",
    [
        {"la": 100.0, "fix": 1.0},
        {"la": 0.0, "fix": 0.0},
        {"la": 3.0, "fix": 1.0},
        {"la": 1e6, "fix": 0.0},
    ],
)
def test_contributions_add_up_to_the_distance_from_a_typical_change(values):
    p = params({"la": 0.8, "fix": -0.5})
    got = riskmodel.predict(p, values)
    total = sum(c.points for c in got.contributions)
    assert total == pytest.approx(100 * (got.probability - got.baseline))


def test_a_feature_the_change_lacks_has_no_effect():
    p = params({"la": 0.8, "exp": -1.0})
    assert riskmodel.predict(p, {"la": 10}).probability == pytest.approx(
        riskmodel.sigmoid(-2.0 + 0.8 * riskmodel.transform("la", 10))
    )


@pytest.mark.parametrize(
    ("level", "rules", "expected"),
    [
        ("low", {"secret-added"}, "critical"),
        ("high", {"secret-added"}, "critical"),
        ("low", {"migration", "dockerfile"}, "low"),
        ("medium", set(), "medium"),
    ],
)
def test_a_leaked_secret_sets_a_floor_no_probability_lowers(level, rules, expected):
    assert scoring.floor_level(level, rules) == expected


def _change(path: str = "src/a.py") -> list[FileChange]:
    return [FileChange(path=path, status=FileStatus.MODIFIED, additions=5, deletions=1)]


def _commits() -> list[Commit]:
    return [
        Commit(
            sha="a" * 40,
            author="Ann",
            email="ann@example.com",
            timestamp="2026-01-01T00:00:00Z",
            message="Tune",
        )
    ]


def test_model_risk_scores_the_probability_and_a_repositorys_own_rule_adds_its_weight():
    cfg = RepoConfig.model_validate(
        {
            "version": 1,
            "risk": {
                "rules": [
                    {"id": "payments", "paths": ["src/**"], "weight": 20, "message": "Payments"}
                ]
            },
        }
    )
    hits = {
        "payments": [
            Finding(path="src/a.py", severity="medium", rule="payments", message="Payments")
        ]
    }
    inputs = RiskInputs(params({"la": 0.5}), history=None, lines_before=None)
    risk = scoring.model_risk(_change(), _commits(), inputs, hits, cfg)
    assert risk.probability is not None
    assert risk.score == round(100 * risk.probability) + 20
    assert [f.rule for f in risk.factors if f.rule == "payments"] == ["payments"]
    assert risk.model is not None
    assert risk.model.kind == "prior"


@pytest.mark.parametrize(
    ("model", "files", "commits", "scored"),
    [
        # base and head hold the same tree: nothing to score, whichever model, commits or not
        ("prior", [], [], False),
        ("prior", [], _commits(), False),
        ("rules", [], _commits(), False),
        (None, [], [], False),
        # any file change is scored as before
        ("prior", _change(), _commits(), True),
        ("rules", _change(), _commits(), True),
    ],
)
def test_a_change_of_no_files_scores_zero_and_gives_no_factors(model, files, commits, scored):
    from pipeline_bot.core.analysis import analyze
    from pipeline_bot.models import ChangeSet

    if model is None:
        inputs = None
    else:
        found = params({"la": 0.5}, intercept=-1.0).model_copy(update={"kind": model})
        inputs = RiskInputs(found, history=None, lines_before=None)
    change = ChangeSet(repository="/r", base="b" * 40, head="c" * 40, commits=commits, files=files)
    risk = analyze(change, RepoConfig(version=1), risk=inputs).risk
    if scored:
        assert risk.score > 0
        assert risk.factors
    else:
        assert (risk.score, risk.level, risk.factors) == (0, "low", [])
        if risk.model is not None:
            assert "nothing to score" in risk.model.note


def test_history_features_missing_from_the_change_are_left_out_not_zero():
    inputs = RiskInputs(params({"la": 0.5, "exp": -1.0}), history=None, lines_before=None)
    vector = scoring.change_vector(_change(), _commits(), inputs)
    assert "exp" not in vector
    assert "lt" not in vector
    with_history = RiskInputs(inputs.params, history={"exp": 3.0}, lines_before=10)
    assert scoring.change_vector(_change(), _commits(), with_history)["exp"] == 3.0


# --------------------------------------------------------------------------- dataset


@pytest.mark.parametrize(("size", "warm"), [(0, 0), (100, 20), (5000, 1000), (20000, 1000)])
def test_warmup(size, warm):
    assert dataset.warmup(size) == warm


def test_build_labels_rows_as_seen_from_the_newest_commit():
    records = [rec(f"{i:040x}", "Add thing", t=i * DAY) for i in range(100)]
    records.append(rec("f" * 40, f"Revert\n\nThis reverts commit {records[50].sha}.", t=100 * DAY))
    data = dataset.build(records, {}, horizon_days=30)
    by_sha = {r.sha: r for r in data.rows}
    assert by_sha[records[50].sha].label == 1
    assert by_sha[records[30].sha].label == 0
    assert records[90].sha not in by_sha  # too recent to count as fine
    assert records[5].sha not in by_sha  # history warm-up


# --------------------------------------------------------------------------- file kinds


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("terraform/main.go", "code"),  # a folder name does not make Go code Terraform
        ("infra/main.tf", "terraform"),
        ("infra/prod.tfvars", "terraform"),
        ("pkg/k8s/client.go", "code"),
        ("k8s/deployment.yaml", "kubernetes-manifest"),
        ("k8s/README.md", "docs"),
        ("helm/pkg/action/install.go", "code"),
        ("charts/shop/templates/deploy.yaml", "helm-chart"),
        ("charts/shop/Chart.yaml", "helm-chart"),
        ("db/migrations/0002_add.sql", "migration"),
        ("src/shop/cart.py", "code"),
    ],
)
def test_file_kinds_come_from_the_file_not_its_folder(path, kind):
    from pipeline_bot.core.classify import kind_of_path

    assert kind_of_path(path).value == kind


@pytest.mark.parametrize(
    ("explicit", "services", "deployments", "expected"),
    [
        ("api", ["shop"], ["web"], "api"),
        (None, [], ["web"], "web"),
        (None, ["shop"], ["web"], "web"),  # the manifests given say which Deployment
        (None, ["shop"], [], "shop"),
        (None, [], [], "repo"),
        (None, ["a", "b"], [], "several services (a, b)"),
        (None, [], ["b", "a"], "several Deployments (a, b)"),
    ],
)
def test_the_default_app_rule_every_front_end_shares(explicit, services, deployments, expected):
    from pipeline_bot.core.manifests import AppChoiceError, default_app

    try:
        got = default_app(explicit, services, deployments, "repo")
    except AppChoiceError as exc:
        got = str(exc)
    assert expected in got


# --------------------------------------------------------------------------- AUC


@pytest.mark.parametrize(
    ("labels", "scores", "expected"),
    [
        ([0, 1], [0.1, 0.9], 1.0),  # the positive above the negative
        ([1, 0], [0.1, 0.9], 0.0),  # below it
        ([0, 1], [0.5, 0.5], 0.5),  # a tie counts half
        ([0, 0, 1, 1], [1, 2, 3, 4], 1.0),
        ([0, 1, 0, 1], [1, 2, 3, 4], 0.75),  # 3 of 4 pairs ordered
        ([1, 0, 1, 0], [3, 3, 3, 1], 0.75),  # (1 + 0.5 + 1 + 0.5) / 4 with a three-way tie
        ([0, 0, 0, 1], [-5.0, 0.0, 2.5, 2.5], 5 / 6),  # ties across a label only
    ],
)
def test_auc_ranks_positives_above_negatives_ties_half(labels, scores, expected):
    assert riskmodel.auc(labels, scores) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("labels", "scores", "error"),
    [
        ([1, 1], [0.2, 0.3], "one positive and one negative"),
        ([0, 0], [0.2, 0.3], "one positive and one negative"),
        ([0, 1], [0.2], "2 labels but 1 scores"),
    ],
)
def test_auc_refuses_what_has_no_area(labels, scores, error):
    with pytest.raises(ValueError, match=error):
        riskmodel.auc(labels, scores)
