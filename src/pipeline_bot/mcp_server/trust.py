"""Where the MCP server's environment policy comes from: configuration it trusts, never a tool call.

`pipeline-bot mcp` reads the config of the repository it was started for once, when it starts
(`TrustedPolicy.from_repository`): an assistant that edits the file afterwards changes nothing.
The App hands in its installation repository's config, read from the default branch
(`installation_policy`; with no repository to trust, every call that needs a config is refused).

A tool call's `repository` only names the code to read. It must exist; a relative path is taken
from the server's repository; any repository is analysed under the server's policy, and the tools
that change a cluster accept only the server's own repository (a deploy of other code under
this repository's environments is never what the caller meant). Which environment and namespace a
call may reach is `core.policy.assistant_refusal`'s decision against the trusted config.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline_bot.core.policy import assistant_refusal
from pipeline_bot.errors import NotARepositoryError, PipelineBotError, ToolError, ToolInputError
from pipeline_bot.repo_config import RepoConfig, default_config, find_config_file, load_repo_config

NO_REPOSITORY = (
    "repository {given!r} does not exist on the MCP server's machine; nothing was read or changed"
)
OTHER_REPOSITORY = (
    "{tool} changes a cluster, and {path!r} is not the repository this MCP server was started "
    "for ({root}); its environments come from that repository's config. Nothing was changed. "
    "Start a server for the other repository (`pipeline-bot mcp` in it)"
)
NO_HOME = (
    "this MCP server was started outside any repository ({path}), so it has no environments to "
    "trust: start it in the repository whose environments it serves (its working directory)"
)
REFUSED = "{reason}. Nothing was changed; use `pipeline-bot {verb}` or the Action"
USES_CONFIG = {"repository", "environment"}  # arguments of the tools that read the config
# tools whose `repository` is owner/name on GitHub, not a folder
GITHUB_REPOSITORY_TOOLS = {"execute_pipeline", "list_workflow_runs", "get_workflow_run"}


@dataclass(frozen=True)
class TrustedPolicy:
    """The repository config every tool call is held to, and where it came from."""

    load: Callable[[], RepoConfig]
    source: str
    root: Path | None = None  # the local repository the server was started for, if any
    no_changes: str | None = None  # why no tool may change a cluster under this policy

    @classmethod
    def from_repository(cls, repo: Path | None = None, config: Path | None = None) -> TrustedPolicy:
        """`config`, or the config file of the repository holding `repo` (default: the working
        directory), read now and once; a repository without one has the defaults. Outside any
        repository, with no config, nothing may change a cluster: the defaults would stand in
        for the policy of whatever repository a call names."""
        start = repo if repo is not None else Path.cwd()
        root = repository_root(start)
        file = config if config is not None else find_config_file(root)
        loaded = load_repo_config(file) if file is not None else default_config()
        source = str(file) if file else f"the defaults ({root} has no .github/pipeline-bot.yml)"
        homeless = file is None and not (root / ".git").exists()
        return cls(lambda: loaded, source, root, NO_HOME.format(path=root) if homeless else None)

    @classmethod
    def from_config(
        cls, config: RepoConfig | Callable[[], RepoConfig], *, source: str
    ) -> TrustedPolicy:
        """A config the front end read itself (the App: the installation repository's default
        branch); a callable is asked at every tool call, so it can follow the default branch."""
        if isinstance(config, RepoConfig):
            return cls(lambda: config, source)
        return cls(config, source)

    @classmethod
    def refusing(cls, reason: str) -> TrustedPolicy:
        """No config can be trusted: every tool that needs one is refused with `reason`."""

        def load() -> RepoConfig:
            raise PipelineBotError(reason)

        return cls(load, reason)

    def config(self) -> RepoConfig:
        return self.load()

    def admit(
        self, tool: str, arguments: dict[str, Any], *, changes_cluster: bool
    ) -> RepoConfig | None:
        """Check a call's repository, environment and namespace against the policy, and give the
        config the call is held to (None for a tool that reads none). A relative `repository`
        becomes an absolute path in place. Raises a PipelineBotError saying why not."""
        if not USES_CONFIG & arguments.keys():
            return None
        config = self.config()  # once per call: the check and the tool see the same config
        if changes_cluster and self.no_changes:
            raise ToolError(
                REFUSED.format(reason=self.no_changes, verb=tool.split("_")[0]), tool=tool
            )
        if "repository" in arguments and tool not in GITHUB_REPOSITORY_TOOLS:
            given = arguments["repository"] or "."
            arguments["repository"] = self.repository(tool, given, changes_cluster=changes_cluster)
        environment = arguments.get("environment")
        if environment:
            namespace = arguments.get("namespace")
            reason = assistant_refusal(
                config, environment, namespace, changes_cluster=changes_cluster
            )
            if reason and changes_cluster:
                raise ToolError(REFUSED.format(reason=reason, verb=tool.split("_")[0]), tool=tool)
            if reason:
                raise ToolError(f"{reason}; nothing was read", tool=tool)
        return config

    def repository(self, tool: str, given: str, *, changes_cluster: bool) -> str:
        path = Path(given).expanduser()
        if not path.is_absolute() and self.root is not None:
            path = self.root / path
        path = path.resolve()
        if not path.exists():
            message = NO_REPOSITORY.format(given=given)
            raise ToolInputError(message, tool=tool, problems=[f"repository: {message}"])
        if changes_cluster and self.root is not None and not path.is_relative_to(self.root):
            raise ToolError(
                OTHER_REPOSITORY.format(tool=tool, path=given, root=self.root), tool=tool
            )
        return str(path)


NO_APP_REPOSITORY = (
    "the App's /mcp holds every call to one installation repository's config, and none is set: "
    "set GITHUB_REPOSITORY (owner/name) on the App's server"
)


def installation_policy(repository: str | None, load: Callable[[str], RepoConfig]) -> TrustedPolicy:
    """The App's policy: `load(repository)` gives the installation repository's config from its
    default branch (asked at every call, so it follows the branch); no repository, no config."""
    if not repository:
        return TrustedPolicy.refusing(NO_APP_REPOSITORY)
    source = f"{repository}'s .github/pipeline-bot.yml on its default branch"
    return TrustedPolicy.from_config(lambda: load(repository), source=source)


def repository_root(path: Path) -> Path:
    """The work tree holding `path` (the nearest folder with `.git`), else `path` itself."""
    if not path.is_dir():
        what = "does not exist" if not path.exists() else "is not a folder"
        raise NotARepositoryError(
            f"the MCP server's repository {str(path)!r} {what}", repo=str(path)
        )
    path = path.resolve()
    return next((p for p in (path, *path.parents) if (p / ".git").exists()), path)
