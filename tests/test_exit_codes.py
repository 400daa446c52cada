"""The one exit-code table (issue 16, point 6): the rule that maps errors to codes, table-driven,
and docs/exit-codes.md in step with it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline_bot.errors import (
    ConfigError,
    ConfigProblem,
    DeployError,
    GitError,
    IntegrationError,
    LockedError,
    ManifestError,
    NotARepositoryError,
    PausedDeployError,
    PipelineBotError,
    ToolInputError,
    UnknownEnvironmentError,
    UnknownRefError,
)
from pipeline_bot.exit_codes import MEANING, Exit, for_error

DOC = Path(__file__).resolve().parents[1] / "docs" / "exit-codes.md"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ConfigError("x.yml", [ConfigProblem("a", "b")]), Exit.BAD_INPUT),
        (ToolInputError("bad", tool="t", problems=["p"]), Exit.BAD_INPUT),
        (UnknownEnvironmentError("moon", ["staging"]), Exit.BAD_INPUT),
        (ManifestError("bad"), Exit.BAD_INPUT),
        (GitError("bad"), Exit.BAD_INPUT),
        (NotARepositoryError("bad"), Exit.BAD_INPUT),
        (UnknownRefError("bad", ref="x"), Exit.BAD_INPUT),
        (DeployError("nothing to promote"), Exit.BAD_INPUT),
        (LockedError("production", "someone", "deploy", "12:00"), Exit.REFUSED),
        (PausedDeployError("production", "shop", "abc", "blue-green of x:2"), Exit.REFUSED),
        (IntegrationError("down", service="kubernetes"), Exit.UNAVAILABLE),
        (IntegrationError("down", service="prometheus", status=503), Exit.UNAVAILABLE),
        (IntegrationError("bad query", service="prometheus", status=400), Exit.BAD_INPUT),
        (IntegrationError("bad body", service="github", status=422), Exit.BAD_INPUT),
        (PipelineBotError("anything else"), Exit.BAD_INPUT),
    ],
)
def test_every_error_has_its_code(error, code):
    assert for_error(error) == code


def test_codes_are_the_documented_numbers():
    assert [(c.name, int(c)) for c in Exit] == [
        ("OK", 0),
        ("FAILED", 1),
        ("BAD_INPUT", 2),
        ("INCONCLUSIVE", 3),
        ("UNAVAILABLE", 4),
        ("REFUSED", 5),
    ]


def test_the_page_shows_the_table_as_the_code_has_it():
    rows = {
        int(m.group(1)): (m.group(2), m.group(3).strip())
        for m in re.finditer(r"^\| (\d) \| ([A-Z_]+) \| (.+?) \|$", DOC.read_text(), re.M)
    }
    assert rows == {int(c): (c.name, MEANING[c]) for c in Exit}
