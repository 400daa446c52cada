"""The git adapter and the streaming diff parser, on what real git prints."""

from __future__ import annotations

import subprocess

import pytest

from pipeline_bot.core.diffparse import DiffParseError, DiffStreamParser
from pipeline_bot.errors import NotARepositoryError, UnknownRefError
from pipeline_bot.integrations.git import EMPTY_TREE, GitRepository
from pipeline_bot.models import FileStatus

LINES = "".join(f"line {i}\n" for i in range(1, 41))


def _files(repo, base="HEAD~1", head="HEAD"):
    git = GitRepository(repo.root)
    return {f.path: f for f in git.diff(git.resolve(base), git.resolve(head))}


def test_renames_keep_the_old_path_and_count_only_changed_lines(repo):
    repo.commit("one", {"old/name.py": LINES})
    repo.commit(
        "two", {"old/name.py": None, "new/name.py": LINES.replace("line 20\n", "line twenty\n")}
    )
    f = _files(repo)["new/name.py"]
    assert f.status is FileStatus.RENAMED
    assert f.old_path == "old/name.py"
    assert (f.additions, f.deletions) == (1, 1)
    assert [(h.changed_start, h.changed_end) for h in f.hunks] == [(20, 20)]


def test_paths_with_spaces_unicode_and_newlines_come_through_exactly(repo):
    repo.commit("one", {"a.txt": "a\n"})
    names = ["dir with space/file name.py", "ünïcode/ß.py", "tab\there.py", "new\nline.py"]
    repo.commit("two", dict.fromkeys(names, "x = 1\n"))
    assert set(_files(repo)) == set(names)


def test_binary_files_are_marked_and_not_counted_as_lines(repo):
    repo.commit("one", {"img.png": b"\x89PNG\0\0data"})
    repo.commit("two", {"img.png": b"\x89PNG\0\0other"})
    f = _files(repo)["img.png"]
    assert f.binary is True
    assert (f.additions, f.deletions, f.hunks) == (0, 0, [])


def test_mode_only_and_type_changes(repo):
    repo.commit("one", {"run.sh": "echo hi\n", "link": "plain file\n"})
    (repo.root / "run.sh").chmod(0o755)
    (repo.root / "link").unlink()
    (repo.root / "link").symlink_to("run.sh")
    repo.commit("two")
    files = _files(repo)
    assert files["run.sh"].new_mode == "100755"
    assert files["run.sh"].additions == 0
    assert files["link"].status is FileStatus.TYPE_CHANGED
    assert (files["link"].additions, files["link"].deletions) == (1, 1)


def test_several_hunks_report_their_changed_lines(repo):
    repo.commit("one", {"big.py": LINES})
    changed = LINES.replace("line 5\n", "line five\n").replace("line 30\n", "")
    repo.commit("two", {"big.py": changed + "line 41\n"})
    f = _files(repo)["big.py"]
    assert (f.additions, f.deletions) == (2, 2)
    ranges = [(h.changed_start, h.changed_end) for h in f.hunks]
    assert ranges[0] == (5, 5)
    assert ranges[-1][1] == 40  # "line 41" is line 40 of the new file


def test_deleted_files_have_no_head_lines(repo):
    repo.commit("one", {"gone.py": LINES, "keep.py": "k\n"})
    repo.commit("two", {"gone.py": None})
    f = _files(repo)["gone.py"]
    assert f.status is FileStatus.DELETED
    assert (f.additions, f.deletions) == (0, 40)


def test_secret_like_strings_are_located_but_not_kept(repo):
    repo.commit("one", {"app.py": LINES})
    key = "AKIA" + "Q" * 16
    body = LINES.replace("line 12\n", f'AWS_KEY = "{key}"\n')
    body = body.replace("line 30\n", 'password = "hunter2hunter2"\n')
    repo.commit("two", {"app.py": body})
    f = _files(repo)["app.py"]
    assert [(s.line, s.kind) for s in f.signals.secrets] == [(12, "aws"), (30, "assignment")]
    assert key not in f.model_dump_json()


def test_a_secret_on_a_removed_line_is_not_reported(repo):
    repo.commit("one", {"app.py": 'token = "abcdefgh12345678"\nx = 1\n'})
    repo.commit("two", {"app.py": "x = 1\n"})
    assert _files(repo)["app.py"].signals.secrets == []


def test_parser_gives_the_same_result_whatever_the_chunk_size(repo):
    repo.commit("one", {"a.py": LINES, "b.py": LINES, "t": "x\n"})
    repo.git("mv", "b.py", "c.py")
    (repo.root / "t").unlink()
    (repo.root / "t").symlink_to("a.py")
    repo.commit(
        "two", {"a.py": LINES.replace("line 3\n", "3\n"), "d d.py": "new\n", "bin": b"\0\1\2"}
    )
    raw = subprocess.run(
        ["git", "diff", "--raw", "-p", "-z", "-M", "HEAD~1", "HEAD"],
        cwd=repo.root,
        capture_output=True,
        check=True,
    ).stdout
    results = []
    for size in (1, 7, 64, len(raw)):
        parser = DiffStreamParser()
        files = []
        for i in range(0, len(raw), size):
            files += parser.feed(raw[i : i + size])
        files += parser.close()
        results.append([f.model_dump() for f in files])
    assert results[0] == results[1] == results[2] == results[3]
    assert len(results[0]) == 5


def test_parser_rejects_truncated_output():
    parser = DiffStreamParser()
    parser.feed(b":100644 100644 abc def M\0a.py\0\0")
    with pytest.raises(DiffParseError, match="listed 1 files but printed patches for 0"):
        parser.close()


def test_empty_range_has_no_files(repo):
    sha = repo.commit("one", {"a.py": "a\n"})
    git = GitRepository(repo.root)
    assert git.diff(sha, sha) == []


def test_root_commit_diffs_against_the_empty_tree(repo):
    repo.commit("one", {"a.py": "a\nb\n"})
    git = GitRepository(repo.root)
    head = git.resolve("HEAD")
    assert git.default_base(head) == EMPTY_TREE
    assert [(f.path, f.additions) for f in git.diff(EMPTY_TREE, head)] == [("a.py", 2)]


def test_not_a_repository_and_unknown_refs_are_clear_errors(tmp_path, repo):
    with pytest.raises(NotARepositoryError, match="not inside a git repository"):
        GitRepository(tmp_path)
    repo.commit("one", {"a": "a\n"})
    with pytest.raises(UnknownRefError, match="unknown ref 'nope'"):
        GitRepository(repo.root).resolve("nope")
