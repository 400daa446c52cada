"""Table-driven tests of two pure core modules' decisions: path globs (core/globs.py) and the
rollout judgment of one observation (core/rollout.py)."""

from __future__ import annotations

import re

import pytest

from pipeline_bot.core.globs import GlobClassifier, PathMatcher, glob_to_regex
from pipeline_bot.core.rollout import assess


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("Dockerfile", "Dockerfile", True),
        ("Dockerfile", "svc/api/Dockerfile", True),  # no `/`: a file name at any depth
        ("*.tf", "infra/main.tf", True),
        ("*.tf", "infra/main.tfvars", False),
        ("src/**", "src/a/b/c.py", True),
        ("src/**", "lib/src/a.py", False),
        ("**/tests/**", "pkg/tests/test_a.py", True),
        ("tests/", "deep/tests/x.py", True),  # `name/` is a folder at any depth
        ("a/b/", "a/b/c/d.txt", True),
        ("a/b/", "x/a/b/c.txt", False),
        ("src/*.py", "src/a/b.py", False),  # `*` stays inside a folder
        ("file?.txt", "file1.txt", True),
        ("file?.txt", "file10.txt", False),
        ("[!a]*.md", "b.md", True),
        ("[!a]*.md", "a.md", False),
    ],
)
def test_globs_match_as_gitignore_does(pattern, path, matches):
    assert bool(re.fullmatch(glob_to_regex(pattern), path)) is matches
    assert PathMatcher([pattern])(path) is matches


def test_the_first_label_whose_globs_match_wins():
    classify = GlobClassifier([("docs", ["docs/**", "*.md"]), ("code", ["*.py", "*.md"])])
    assert [classify.classify(p) for p in ("docs/a.py", "README.md", "a.py", "a.go")] == [
        "docs",
        "docs",
        "code",
        None,
    ]


def _deployment(**status):
    return {"metadata": {"name": "shop"}, "spec": {"replicas": 2}, "status": status}


def _pod(image, reason=None, restarts=0):
    state = {"waiting": {"reason": reason, "message": "boom"}} if reason else {"running": {}}
    return {
        "metadata": {"name": f"shop-{reason or 'ok'}"},
        "spec": {"containers": [{"name": "app", "image": image}]},
        "status": {
            "containerStatuses": [{"name": "app", "state": state, "restartCount": restarts}]
        },
    }


DONE = {"observedGeneration": 2, "updatedReplicas": 2, "replicas": 2, "availableReplicas": 2}


@pytest.mark.parametrize(
    ("status", "pods", "phase", "reason"),
    [
        (DONE, [], "succeeded", "available"),
        ({**DONE, "observedGeneration": 1}, [], "progressing", "waiting"),
        ({**DONE, "updatedReplicas": 1}, [], "progressing", "updating"),
        ({**DONE, "replicas": 3}, [], "progressing", "terminating"),
        ({**DONE, "availableReplicas": 1}, [], "progressing", "starting"),
        (
            {
                **DONE,
                "conditions": [{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}],
            },
            [],
            "failed",
            "ProgressDeadlineExceeded",
        ),
        (DONE, [_pod("shop:2", "ImagePullBackOff")], "failed", "ImagePullBackOff"),
        # a failing pod of the old version does not count against the new one
        (DONE, [_pod("shop:1", "ImagePullBackOff")], "succeeded", "available"),
    ],
)
def test_one_observation_is_judged(status, pods, phase, reason):
    state = assess(_deployment(**status), pods, generation=2, images={"shop:2"})
    assert (state.phase, state.reason) == (phase, reason)
