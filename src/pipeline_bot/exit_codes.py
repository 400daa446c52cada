"""The exit codes of every `pipeline-bot` command: one table (docs/exit-codes.md shows it), and
the rule that maps an error to its code, so that no command picks its own.

A script can tell apart: the command did what was asked (0); it ran and the outcome is bad (1);
it could not start with what it was given (2); the evidence did not decide (3); something it
needs could not be reached or did not answer (4); the policy or a lock refused it (5).
"""

from __future__ import annotations

from enum import IntEnum

from pipeline_bot.errors import (
    ConfigError,
    DeployError,
    GitError,
    IntegrationError,
    KubeconfigError,
    LockedError,
    ManifestError,
    MissingExtraError,
    PausedDeployError,
    PipelineBotError,
    ToolInputError,
    UnknownEnvironmentError,
)


class Exit(IntEnum):
    OK = 0
    FAILED = 1
    BAD_INPUT = 2
    INCONCLUSIVE = 3
    UNAVAILABLE = 4
    REFUSED = 5


MEANING: dict[Exit, str] = {
    Exit.OK: "done as asked: analysed below --fail-on, deployed, promoted, aborted, rolled back, "
    "gates passed, an investigation found",
    Exit.FAILED: "it ran and the outcome is bad: risk at or over --fail-on, a deploy that failed "
    "or was rolled back automatically, gates that failed",
    Exit.BAD_INPUT: "it could not start: a bad option, config, setting, environment, ref, "
    "repository or query",
    Exit.INCONCLUSIVE: "the evidence did not decide: gates without data",
    Exit.UNAVAILABLE: "something it needs could not be reached or did not answer: the cluster, "
    "Prometheus, GitHub, the model's endpoint",
    Exit.REFUSED: "the policy or a lock refused it: another deploy holds the environment, a "
    "paused deploy is in the way",
}

# most specific first: LockedError is a DeployError, ToolInputError a ToolError
_BY_ERROR: tuple[tuple[type[PipelineBotError], Exit], ...] = (
    (LockedError, Exit.REFUSED),
    (PausedDeployError, Exit.REFUSED),
    (KubeconfigError, Exit.BAD_INPUT),
    (IntegrationError, Exit.UNAVAILABLE),
    (ConfigError, Exit.BAD_INPUT),
    (ToolInputError, Exit.BAD_INPUT),
    (UnknownEnvironmentError, Exit.BAD_INPUT),
    (ManifestError, Exit.BAD_INPUT),
    (MissingExtraError, Exit.BAD_INPUT),  # an installation without the feature's extra
    (GitError, Exit.BAD_INPUT),
    (DeployError, Exit.BAD_INPUT),  # nothing to promote, no earlier version: nothing was done
)


def for_error(exc: BaseException) -> Exit:
    """The exit code of a command that stopped on `exc`."""
    if isinstance(exc, IntegrationError) and exc.status in (400, 422):
        return Exit.BAD_INPUT  # the service answered: what we sent it was wrong (a bad query)
    for kind, code in _BY_ERROR:
        if isinstance(exc, kind):
            return code
    return Exit.BAD_INPUT
