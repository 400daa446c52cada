"""One rooted exception tree; every error carries data and a message meant for a user.

Tree::

    PipelineBotError                 message: str (one line, safe to show a user)
    ├── ConfigError                  .source, .problems: list[ConfigProblem]
    ├── UnknownEnvironmentError      .environment, .known
    ├── ManifestError                .source, .object, .field
    ├── DeployError                  .environment, .app
    │   └── LockedError              .holder, .reason, .expires_at
    ├── GitError                     .repo, .hint
    │   ├── NotARepositoryError
    │   ├── UnknownRefError          .ref
    │   └── ShallowHistoryError      .ref
    ├── ToolError                    .tool
    │   ├── UnknownToolError
    │   └── ToolInputError           .problems: list[str]
    ├── ImageError                   .reference (no such repository or tag, a malformed name)
    └── IntegrationError             .service (github, kubernetes, prometheus, llm ...), .status

Front ends (CLI, Action, App, MCP server) are the only places that catch `PipelineBotError`
as a whole; they turn it into an exit code, an HTTP status or an MCP tool error. Messages never
contain secrets: callers build them from names, paths and refs, never from tokens or file content.
"""

from __future__ import annotations

from dataclasses import dataclass


class PipelineBotError(Exception):
    """Root of every error pipeline-bot raises on purpose."""

    def __init__(self, message: str) -> None:
        from pipeline_bot.redaction import redact  # a registered secret never rides an error

        message = redact(message)
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class ConfigProblem:
    """One problem in a configuration file: where it is and what was expected."""

    field: str
    message: str
    line: int | None = None

    def render(self, source: str) -> str:
        where = f"{source}:{self.line}" if self.line else source
        return f"{where}: {self.field or '(top level)'}: {self.message}"


class ConfigError(PipelineBotError):
    """A configuration file (or value) that cannot be used, with every problem found."""

    def __init__(self, source: str, problems: list[ConfigProblem]) -> None:
        self.source = source
        self.problems = problems
        count = len(problems)
        first = problems[0].render(source) if problems else source
        more = f" (and {count - 1} more problem{'s' if count > 2 else ''})" if count > 1 else ""
        super().__init__(f"invalid configuration: {first}{more}")


class MissingExtraError(PipelineBotError):
    """A feature whose packages this installation left out (an optional extra, such as the
    GitHub App's `[app]`: the Action's image carries only what the Action runs)."""

    def __init__(self, feature: str, extra: str, missing: list[str]) -> None:
        self.feature = feature
        self.extra = extra
        self.missing = missing
        super().__init__(
            f"{feature} needs the [{extra}] extra, which this installation lacks (missing: "
            f"{', '.join(missing)}); install it with: pip install 'pipeline-bot[{extra}]'"
        )


def require_extra(feature: str, extra: str, *modules: str) -> None:
    """Raise MissingExtraError unless every module can be imported (checked without importing)."""
    from importlib.util import find_spec

    missing = []
    for name in modules:
        try:
            found = find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    if missing:
        raise MissingExtraError(feature, extra, missing)


class UnknownEnvironmentError(PipelineBotError):
    """A command named an environment the repository configuration does not define."""

    def __init__(self, environment: str, known: list[str]) -> None:
        self.environment = environment
        self.known = known
        names = ", ".join(known) or "none configured"
        super().__init__(f"unknown environment {environment!r}; known environments: {names}")


class ManifestError(PipelineBotError):
    """A manifest that cannot be applied; nothing was applied."""

    def __init__(self, message: str, *, source: str = "", obj: str = "", field: str = "") -> None:
        self.source, self.object, self.field = source, obj, field
        where = ": ".join(p for p in (source, obj, field) if p)
        super().__init__(f"{where}: {message}" if where else message)


class DeployError(PipelineBotError):
    """A deploy, promote, abort or rollback could not be carried out."""

    def __init__(self, message: str, *, environment: str = "", app: str = "") -> None:
        self.environment, self.app = environment, app
        super().__init__(message)


class LockedError(DeployError):
    """Another deploy holds the environment's lock."""

    def __init__(self, environment: str, holder: str, reason: str, expires_at: str) -> None:
        self.holder, self.reason, self.expires_at = holder, reason, expires_at
        super().__init__(
            f"environment {environment!r} is locked by {holder} ({reason}) until {expires_at}",
            environment=environment,
        )


class PausedDeployError(DeployError):
    """A paused deploy (a canary or blue-green waiting for promotion) is in the way."""

    def __init__(self, environment: str, app: str, paused_id: str, what: str) -> None:
        self.paused_id = paused_id
        super().__init__(
            f"{app} in {environment} has a paused deploy {paused_id} ({what}) waiting for "
            f"promotion; promote it (`pipeline-bot promote -e {environment} --app {app}`), "
            f"abort it (`pipeline-bot abort -e {environment} --app {app}`), or deploy with "
            "--supersede (`supersede: true` in a tool call) to abort it and deploy this one",
            environment=environment,
            app=app,
        )


class GitError(PipelineBotError):
    """git could not give us what we asked for; `hint` says what the user can do."""

    def __init__(self, message: str, *, repo: str = "", hint: str = "") -> None:
        self.repo = repo
        self.hint = hint
        super().__init__(f"{message}; {hint}" if hint else message)


class NotARepositoryError(GitError):
    """The path is not inside a git work tree."""


class UnknownRefError(GitError):
    """A ref, branch or SHA does not resolve to a commit in the repository."""

    def __init__(self, message: str, *, ref: str, repo: str = "", hint: str = "") -> None:
        self.ref = ref
        super().__init__(message, repo=repo, hint=hint)


class ShallowHistoryError(UnknownRefError):
    """The commit needed is missing because the clone is shallow."""


class ToolError(PipelineBotError):
    """A registry tool failed or was called wrongly."""

    def __init__(self, message: str, *, tool: str) -> None:
        self.tool = tool
        super().__init__(message)


class UnknownToolError(ToolError):
    """No tool of that name is registered."""


class ToolInputError(ToolError):
    """The arguments do not match the tool's input schema."""

    def __init__(self, message: str, *, tool: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(message, tool=tool)


class ImageError(PipelineBotError):
    """An image reference that names nothing: a malformed name, or a repository or tag the
    registry does not have (bad input: exit 2)."""

    def __init__(self, message: str, *, reference: str) -> None:
        self.reference = reference
        super().__init__(message)


class IntegrationError(PipelineBotError):
    """An outside service (GitHub, Kubernetes, Prometheus, an LLM) failed."""

    def __init__(self, message: str, *, service: str, status: int | None = None) -> None:
        self.service = service
        self.status = status  # the HTTP status the service answered with, when it answered
        super().__init__(message)


class KubeconfigError(IntegrationError):
    """No usable Kubernetes configuration: a setting to fix, not a cluster that is down."""
