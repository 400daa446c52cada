"""The diff parser's rewrite for speed (issue 15, point 2: the analysis within 2x of `git diff -p`)
changed nothing it reports, and fixed what the linear scan had broken.

tests/data/multi_file.patch is a real `git diff --raw -p -z -M` of one commit that changes 46
files in every way the parser meets (tests/data/make_multi_file_patch.sh builds it): modified
files with several hunks, added, deleted, renamed with edits, type changes both ways, a mode
change, binary, names with a newline, a tab, quotes and non-ASCII, every kind of secret on added
lines, removed tests, Kubernetes kinds, a generated file, no newline at the end, a patch inside a
file. multi_file.expected.json is what the parser before the rewrite (commit bf32e15) gave for
it, but for the two files named after a kind of secret, which it missed (see below), and with
the `lfs_pointer` signal added since (false for every file: none is a Git LFS pointer), and
without src/a.py's private key hit: its `-----BEGIN RSA PRIVATE KEY-----` line has no key
material after it, which a private key needs since.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline_bot.core.classify import _AUTH, is_auth_sensitive
from pipeline_bot.core.diffparse import DiffStreamParser
from pipeline_bot.models import FileChange, Hunk

DATA = Path(__file__).parent / "data"


def _parse(data: bytes, chunk: int) -> list[FileChange]:
    parser = DiffStreamParser()
    files: list[FileChange] = []
    for i in range(0, len(data), chunk):
        files += parser.feed(data[i : i + chunk])
    return files + parser.close()


@pytest.mark.parametrize("chunk", [1, 13, 4096, 1 << 16, 1 << 20])
def test_the_parse_of_a_real_multi_file_patch_is_what_it_was_before_the_rewrite(chunk):
    data = (DATA / "multi_file.patch").read_bytes()
    expected = json.loads((DATA / "multi_file.expected.json").read_text(encoding="utf-8"))
    got = [f.model_dump(mode="json") for f in _parse(data, chunk)]
    assert len(got) == len(expected) == 46
    for mine, theirs in zip(got, expected, strict=True):
        assert mine == theirs, mine["path"]


def test_models_built_without_validation_equal_validated_ones():
    """The parser builds FileChange and Hunk from values of the right types without running
    pydantic's validation: each must be the model validation makes, field for field, and
    behave like one (assignment, copies, equality, JSON)."""
    files = _parse((DATA / "multi_file.patch").read_bytes(), 1 << 16)
    for f in files:
        validated = FileChange.model_validate(f.model_dump())
        assert f == validated
        assert f.model_fields_set == validated.model_fields_set
        assert f.model_dump_json() == validated.model_dump_json()
        assert [type(h) for h in f.hunks] == [Hunk] * len(f.hunks)
        for h in f.hunks:
            assert h == Hunk.model_validate(h.model_dump())
            assert h.model_fields_set == set(Hunk.model_fields)
        assert type(f.status) is type(validated.status)
    copy = files[0].model_copy(update={"additions": 7})
    assert copy.additions == 7
    assert files[0].additions != 7
    files[0].additions = 9
    assert files[0].additions == 9
    assert "additions" in files[0].model_fields_set


def test_a_secret_in_a_file_named_after_its_kind_is_found():
    """The linear scan looked for each kind once per patch stretch and, when the first match
    was in a file's own `diff --git a/deploy/password_rotation.py` line, skipped to the next
    file: that file's added password went unreported (and a file named secrets.yaml alike)."""
    files = {f.path: f for f in _parse((DATA / "multi_file.patch").read_bytes(), 1 << 16)}
    for path in ("deploy/password_rotation.py", "deploy/secrets.yaml"):
        assert [(s.line, s.kind) for s in files[path].signals.secrets] == [(1, "assignment")]


def test_a_kind_named_in_headers_only_is_no_secret_and_hides_none():
    head = b":000000 100644 0000000 1111111 A\0%s\0"
    names = [b"a/plain.py", b"b/secret_store.py", b"c/secret.txt"]
    bodies = [b"+x = 1\n", b'+secret = "abcdefghijkl"\n', b"+y = 2\n"]
    raw = b"".join(head % n for n in names) + b"\0"
    patch = b"".join(
        b"diff --git a/%s b/%s\nnew file mode 100644\n--- /dev/null\n+++ b/%s\n@@ -0,0 +1 @@\n%s"
        % (n, n, n, body)
        for n, body in zip(names, bodies, strict=True)
    )
    for chunk in (1, 50, 1 << 16):
        files = _parse(raw + patch, chunk)
        assert [len(f.signals.secrets) for f in files] == [0, 1, 0]


@pytest.mark.parametrize(
    "path",
    [
        "src/auth/views.py",
        "Authentication_service.go",
        "lib/OAuth2.py",
        "x/\u017fecret.py",  # long s: a case variant of s for IGNORECASE, not for lower()
        "İAM/policy.json",
        "authors.txt",
        "docs/sessions-guide.md",
        "pkg/iam_roles.tf",
        "pkg/miami.py",
        "src/main.py",
        "",
    ],
)
def test_the_quick_auth_check_agrees_with_the_pattern(path):
    assert is_auth_sensitive(path) is bool(_AUTH.search(path))


def test_findings_built_without_validation_equal_validated_ones():
    from pipeline_bot.core.analysis import analyze
    from pipeline_bot.models import ChangeSet, Finding
    from pipeline_bot.repo_config import default_config

    files = _parse((DATA / "multi_file.patch").read_bytes(), 1 << 16)
    changes = ChangeSet(repository=".", base="a" * 40, head="b" * 40, files=files)
    findings = analyze(changes, default_config()).findings
    assert {f.rule for f in findings} >= {"secret-added", "tests-deleted", "auth-sensitive"}
    for f in findings:
        validated = Finding.model_validate(f.model_dump())
        assert f == validated
        assert f.model_fields_set == validated.model_fields_set
