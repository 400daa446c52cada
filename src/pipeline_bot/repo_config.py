"""Schema of `.github/pipeline-bot.yml`: environments, services, risk rules and gates.

`load_repo_config()` reads the file (or gives the defaults when there is none) and reports every
problem with its field path, its line, and what was expected. `config_json_schema()` is the JSON
Schema that editors use to complete and check the file.
"""

from __future__ import annotations

import re
import reprlib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline_bot.core.plan import DependencyProblem, dependency_problems
from pipeline_bot.errors import ConfigError, ConfigProblem, UnknownEnvironmentError
from pipeline_bot.models import Severity, StrategyName

CONFIG_PATHS = (".github/pipeline-bot.yml", ".github/pipeline-bot.yaml")
Permission = Literal["read", "triage", "write", "maintain", "admin"]
_NAME = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")
_NAME_HELP = (
    "lowercase letters, digits, '.', '_' or '-', starting and ending with a letter or digit"
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(f"{value!r} is not a valid name: use {_NAME_HELP}")
    return value


class Environment(_Strict):
    """A place the change can be deployed to."""

    name: str = Field(description="Name used in commands, e.g. `/deploy staging`.")
    namespace: str | None = Field(None, description="Kubernetes namespace; defaults to the name.")
    kube_context: str | None = Field(None, description="kubeconfig context to deploy with.")
    order: int = Field(0, ge=0, description="Promotion order: lower environments deploy first.")
    auto_deploy: list[str] = Field(
        default_factory=list, description="Branches whose pushes deploy here without a command."
    )
    required_permission: Permission = Field(
        "write", description="Least repository permission a user needs to deploy here."
    )
    allowed_users: list[str] = Field(
        default_factory=list,
        description="When set (with or without allowed_teams), only these logins may change "
        "this environment from a comment; they still need required_permission.",
    )
    allowed_teams: list[str] = Field(
        default_factory=list,
        description="Teams (`org/team-slug`) whose members may change this environment.",
    )
    allow_forks: bool = Field(
        False, description="Let commands on pull requests from forks deploy here."
    )
    requires: list[str] = Field(
        default_factory=list,
        description="Environments the same commit must have deployed to successfully first, "
        "e.g. [staging] for production.",
    )
    requires_approval: bool = Field(
        False,
        description="A promotion (`pipeline-bot promotion run`) stops before this environment "
        "until a person approves the exact commit and plan (`pipeline-bot promotion approve`), "
        "and the App's `/deploy` into it needs that approval too.",
    )
    prevent_self_approval: bool = Field(
        False,
        description="Refuse an approval (`/approve`, the check run's Approve button) from the "
        "pull request's author or anyone who authored or committed one of its commits, as "
        "GitHub's 'Prevent self-review' does for environments.",
    )
    approval_expires: str = Field(
        "24h",
        min_length=1,
        pattern=r"^(\d+h)?(\d+m)?(\d+s)?$",
        description="How long an approval holds: 30m, 24h, 1h30m.",
    )
    production: bool | None = Field(
        None, description="Treat as production; defaults to true for 'production' or 'prod'."
    )
    strategy: StrategyName | Literal["auto"] = Field(
        "auto", description="Force a strategy, or `auto` to fit it to the change's risk."
    )
    replicas: int = Field(2, ge=1, description="Replicas the strategy plans for.")
    assistants: Literal["confirm", "deny"] = Field(
        "confirm",
        description="AI assistants (MCP) may change this environment once the user confirms "
        "(confirm), or never (deny).",
    )
    plan_failure: Literal["keep", "roll_back"] = Field(
        "keep",
        description="When a service of a deploy plan fails (it is rolled back and the services "
        "depending on it are skipped): keep what the plan's other services deployed (keep), or "
        "roll every service the plan deployed back to what ran before (roll_back).",
    )
    on_inconclusive: Literal["pause", "fail"] = Field(
        "pause", description="When gates cannot decide: pause for promote/abort, or roll back."
    )
    inconclusive_timeout: str = Field(
        "1h",
        pattern=r"^\d+(\.\d+)?(ms|s|m|h)$",
        description="A pause longer than this is aborted by the next operation on the app.",
    )

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return _check_name(value)

    @property
    def is_production(self) -> bool:
        if self.production is not None:
            return self.production
        return self.name in ("production", "prod")


class Service(_Strict):
    """Something deployable, and the paths whose changes affect it."""

    name: str
    paths: list[str] = Field(min_length=1, description="Globs (`**` spans directories).")
    manifests: list[str] = Field(default_factory=list, description="Manifest files or globs.")
    image: str | None = Field(None, description="Image repository, e.g. ghcr.io/acme/api.")
    depends_on: list[str] = Field(default_factory=list, description="Services deployed first.")

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return _check_name(value)


class RiskRule(_Strict):
    """A repository's own risk rule: changes under `paths` add `weight` to the score."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", description="Rule id shown in findings.")
    paths: list[str] = Field(min_length=1)
    weight: int = Field(ge=0, le=100)
    message: str = Field(min_length=1)
    severity: Severity = "medium"


class RiskConfig(_Strict):
    rules: list[RiskRule] = Field(default_factory=list)
    ignore: list[str] = Field(
        default_factory=list, description="Paths left out of the analysis entirely."
    )
    generated: list[str] = Field(
        default_factory=list, description="Generated paths: left out of the analysis."
    )
    disable: list[str] = Field(
        default_factory=list, description="Built-in rule ids to turn off, e.g. untested-code."
    )
    fail_on: Literal["low", "medium", "high", "critical", "never"] = Field(
        "critical",
        description="Risk level at which the App's analysis check run concludes `failure` "
        "(below it: `success`); `never` keeps it green.",
    )


_DURATION = r"^\d+(\.\d+)?(ms|s|m|h)$"


class Threshold(_Strict):
    """Where a measured value must lie: at least `min`, at most `max` (either or both)."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> Threshold:
        if self.min is None and self.max is None:
            raise ValueError("give min, max, or both")
        return self


class StableComparison(_Strict):
    """The canary against the stable version: how far its value may move, relative to stable's."""

    max_increase: float | None = Field(None, ge=0, description="0.1: at most 10 % above stable")
    max_decrease: float | None = Field(None, ge=0, description="0.1: at most 10 % below stable")


class MetricGate(_Strict):
    """One PromQL measurement a canary must pass (field names as in Argo Rollouts' analysis).

    `query` may use {{app}}, {{namespace}}, {{canary}} and {{stable}} (Deployment names),
    {{canary_pods}} and {{stable_pods}} (regexes for their pods: `pod=~"{{canary_pods}}"`) and
    {{interval}}.
    """

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    query: str = Field(min_length=1)
    success_condition: Threshold
    interval: str = Field(
        "1m", pattern=_DURATION, description="Between measurements; also {{interval}}."
    )
    count: int = Field(3, ge=1, description="Measurements per check.")
    failure_limit: int = Field(0, ge=0, description="Failed measurements tolerated.")
    consecutive_error_limit: int = Field(
        4, ge=0, description="Query errors in a row tolerated before the gate fails."
    )
    initial_delay: str = Field("0s", pattern=_DURATION, description="Wait before the first.")
    no_data: Literal["fail", "inconclusive", "pass"] = Field(
        "inconclusive", description="What an empty result counts as."
    )
    compare_to_stable: StableComparison | None = None


class RepoConfig(_Strict):
    """The whole `.github/pipeline-bot.yml`."""

    version: Literal[1] = Field(description="Schema version; must be 1.")
    environments: list[Environment] = Field(default_factory=list)
    services: list[Service] = Field(default_factory=list)
    risk: RiskConfig = Field(default_factory=RiskConfig)
    ai: bool = Field(
        False,
        description="Add an AI review to the App's check run (the App's server needs "
        "PIPELINE_BOT_LLM_MODEL); it can only add caution.",
    )
    gates: list[MetricGate] = Field(
        default_factory=list,
        description="Metric gates checked after every canary step and before a blue-green "
        "switch. Empty: the defaults (success rate >= 99 %, p99 latency <= 500 ms) when a "
        "Prometheus URL is configured.",
    )

    @model_validator(mode="after")
    def _references(self) -> RepoConfig:
        _unique("environments", [e.name for e in self.environments])
        _unique("gates", [g.name for g in self.gates])
        names = [s.name for s in self.services]
        _unique("services", names)
        problems = dependency_problems([(s.name, s.depends_on) for s in self.services])
        if problems:  # each with its place, so the loader can name its line
            raise DependencyProblem(problems)
        envs = [e.name for e in self.environments]
        for env in self.environments:
            for required in env.requires:
                if required not in envs or required == env.name:
                    raise ValueError(
                        f"environment {env.name!r} requires unknown environment {required!r}"
                        f" (known: {', '.join(n for n in envs if n != env.name)})"
                    )
        return self

    def environment(self, name: str | None) -> Environment:
        """The named environment, or the last in promotion order when `name` is None."""
        envs = self.environments or default_config().environments
        if name is None:
            return max(envs, key=lambda e: e.order)
        for env in envs:
            if env.name == name:
                return env
        raise UnknownEnvironmentError(name, [e.name for e in envs])


def _unique(kind: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{kind}: name {name!r} is used twice")
        seen.add(name)


def default_config() -> RepoConfig:
    """The configuration used when a repository has no `.github/pipeline-bot.yml`."""
    return RepoConfig(
        version=1,
        environments=[
            Environment(name="staging", order=1, required_permission="write"),
            Environment(name="production", order=2, required_permission="maintain"),
        ],
    )


def config_json_schema() -> dict[str, Any]:
    schema = RepoConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "pipeline-bot repository configuration (.github/pipeline-bot.yml)"
    return schema


# --------------------------------------------------------------------------- loading


MAX_CONFIG_BYTES = 256 * 1024
"""A configuration is a few kilobytes; a larger file is refused before it is parsed."""
MAX_DEPTH = 32
"""Nesting deeper than this is refused (the schema needs fewer than ten levels)."""


def find_config_file(repo_root: Path) -> Path | None:
    for name in CONFIG_PATHS:
        candidate = repo_root / name
        if candidate.is_file():
            _inside(candidate, repo_root)
            return candidate
    return None


def _inside(path: Path, root: Path) -> None:
    """A repository's config is one of its own files: a symlink out of it is refused (its
    target is never read, so nothing of it can show up in an error)."""
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        raise ConfigError(
            str(path), [ConfigProblem("", "is a symlink to a file outside the repository")]
        ) from None


def load_repo_config(path: Path | None, *, repo_root: Path | None = None) -> RepoConfig:
    """Read `path` (or the repository's config file); no file at all means the defaults."""
    if path is None:
        path = find_config_file(repo_root) if repo_root else None
        if path is None:
            return default_config()
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(
                str(path),
                [ConfigProblem("", f"is {size:,} bytes; a config may have {MAX_CONFIG_BYTES:,}")],
            )
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), [ConfigProblem("", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not valid UTF-8"
        raise ConfigError(str(path), [ConfigProblem("", f"cannot read: {reason}")]) from None
    return parse_repo_config(text, source=str(path))


def parse_repo_config(text: str, *, source: str = "<config>") -> RepoConfig:
    """Validate YAML text; raises ConfigError listing every problem with its line."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(
            source,
            [ConfigProblem("", f"is {len(text):,} bytes; a config may have {MAX_CONFIG_BYTES:,}")],
        )
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        _check_depth(node, source)
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError(source, [ConfigProblem("", f"YAML syntax: {problem}", line)]) from None
    except RecursionError:
        raise ConfigError(
            source, [ConfigProblem("", f"nested deeper than {MAX_DEPTH} levels")]
        ) from None
    finally:
        loader.dispose()
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, [ConfigProblem("", "expected a mapping at the top level", 1)])
    try:
        return RepoConfig.model_validate(data)
    except ValidationError as exc:
        located = [
            (_user_loc(loc), message)
            for err in exc.errors(include_url=False)
            for loc, message in _located(err)
        ]
        problems = [
            ConfigProblem(_field_path(loc), message, _line_of(node, loc))
            for loc, message in _merged(located)
        ]
        raise ConfigError(source, problems) from None


# libyaml's parser where PyYAML has it (many times faster), the pure-Python one otherwise
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _check_depth(root: yaml.Node | None, source: str) -> None:
    """Refuse deep nesting, and aliases that expand to more values than a config of the largest
    size can hold (a billion laughs), before anything walks it recursively."""
    todo: list[tuple[Any, int]] = [(root, 1)] if root is not None else []
    visits = 0
    while todo:
        node, depth = todo.pop()
        visits += 1
        if visits > MAX_CONFIG_BYTES:  # an alias is walked again wherever it is used
            raise ConfigError(
                source,
                [ConfigProblem("", f"expands to more than {MAX_CONFIG_BYTES:,} values (aliases)")],
            )
        if depth > MAX_DEPTH:
            line = node.start_mark.line + 1
            raise ConfigError(
                source, [ConfigProblem("", f"nested deeper than {MAX_DEPTH} levels", line)]
            )
        if isinstance(node, yaml.MappingNode):
            todo += [(v, depth + 1) for _, v in node.value]
        elif isinstance(node, yaml.SequenceNode):
            todo += [(v, depth + 1) for v in node.value]


def _located(err: Any) -> list[tuple[tuple[int | str, ...], str]]:
    """An error's place and message; a dependency problem knows its own place in the file."""
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, DependencyProblem):
        return [(tuple(err["loc"]) + loc, message) for loc, message in cause.problems]
    return [(tuple(err["loc"]), _explain(err))]


_UNION_TAG = re.compile(r"[\[\]()'\"]|^(str|int|float|bool|none|list|dict)$")


def _user_loc(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """The place as the file has it: without pydantic's union branch tags (`literal['auto']`,
    `function-after[...]`, `str`), which name no key a user wrote."""
    return tuple(p for p in loc if isinstance(p, int) or not _UNION_TAG.search(p))


def _merged(
    located: list[tuple[tuple[int | str, ...], str]],
) -> list[tuple[tuple[int | str, ...], str]]:
    """One problem per place: a value that matches no branch of a union gets one message (the
    allowed values of every branch together), not one per branch."""
    by_place: dict[tuple[int | str, ...], list[str]] = {}
    for loc, message in located:
        if message not in by_place.setdefault(loc, []):
            by_place[loc].append(message)
    out = []
    for loc, messages in by_place.items():
        if len(messages) > 1 and all(m.startswith("Input should be") for m in messages):
            allowed: list[str] = []
            got = ""
            for m in messages:
                head, _, tail = m.partition(", got ")
                got = got or tail
                allowed += [v for v in re.findall(r"'[^']*'", head) if v not in allowed]
            message = f"Input should be one of {', '.join(allowed)}" + (
                f", got {got}" if got else ""
            )
            out.append((loc, message))
        else:
            out.append((loc, "; or ".join(messages)))
    return out


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _explain(err: Any) -> str:
    kind = err["type"]
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown field (check its spelling against `pipeline-bot config schema`)"
    message = str(err["msg"]).removeprefix("Value error, ")
    if kind == "literal_error" and "input" in err:
        got = reprlib.repr(err["input"])  # an aliased value can be huge: say it briefly
        return f"{message}, got {got if len(got) <= 80 else got[:77] + '...'}"
    return message


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        child = _child(node, part)
        if child is None:
            break
        node = child
        line = child.start_mark.line + 1
    return line


def _child(node: yaml.Node | None, part: int | str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if getattr(key, "value", None) == part:
                return value  # type: ignore[no-any-return]
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        return node.value[part]  # type: ignore[no-any-return]
    return None


def load_gates_file(path: Path) -> list[MetricGate]:
    """A YAML file holding only a list of gates (the config's `gates:`), e.g. from a CI input."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [ConfigProblem("", f"cannot read: {exc.strerror}")]) from None
    try:
        config = parse_repo_config(f"version: 1\ngates:\n{_indent(text)}", source=str(path))
    except ConfigError as exc:  # point at the file's own lines (two were added above them)
        raise ConfigError(
            str(path),
            [
                ConfigProblem(p.field, p.message, p.line - 2 if p.line and p.line > 2 else p.line)
                for p in exc.problems
            ],
        ) from None
    return config.gates


def _indent(text: str) -> str:
    return "".join(f"  {line}\n" for line in text.splitlines()) or "  []\n"
