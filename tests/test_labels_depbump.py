"""Routine dependency updates are not SZZ fixes; a human fix that only changes a manifest is."""

import pytest

from pipeline_bot.core import labels
from pipeline_bot.core.features import CommitRecord, FileStat

GO = (("go.mod", 1, 1), ("go.sum", 2, 2))


def rec(message: str, files: tuple[tuple[str, int, int], ...]) -> CommitRecord:
    return CommitRecord(
        sha="f" * 40,
        parents=("e" * 40,),
        author="ann@example.com",
        author_time=0,
        commit_time=0,
        message=message,
        files=tuple(FileStat(p, a, d) for p, a, d in files),
    )


@pytest.mark.parametrize(
    ("message", "files", "szz_fix"),
    [
        # routine updates, only manifests and lockfiles: not fixes
        ("fix(deps): update module github.com/x/y to v1.2.3", GO, False),
        ("fix(deps): update rust crate serde to 1.0.190", (("Cargo.toml", 1, 1),), False),
        ("fix(deps): update all non-major dependencies", (("package.json", 3, 3),), False),
        ("fix: bump golang.org/x/net from 0.17.0 to 0.23.0", GO, False),
        ("Fix CVE: upgrade requests to 2.32.0", (("requirements.txt", 1, 1),), False),
        ("fix(deps): lock file maintenance", (("package-lock.json", 40, 40),), False),
        ("fix: dependabot security update for lodash", (("package.json", 1, 1),), False),
        # a human fix that only touches a manifest, not titled as a routine update: still a fix
        ("fix: pin foo to 1.2 because 1.3 broke bar", GO, True),
        ("Fix build: downgrade grpc to v1.58", GO, True),
        ("fix: restore the replace directive for k8s.io/api", (("go.mod", 1, 1),), True),
        # a routine-sounding title that also changes code: still a fix
        ("fix(deps): update module x to v1.2 and adapt the caller", (*GO, ("a.go", 3, 3)), True),
        # the other rules still apply
        ("fix: handle nil config", (("a.go", 2, 1),), True),
        ("chore(deps): update module x to v1.2", GO, False),  # not a fix message at all
    ],
)
def test_dependency_updates_are_not_szz_fixes(message, files, szz_fix):
    assert labels.is_szz_fix(rec(message, files)) is szz_fix
