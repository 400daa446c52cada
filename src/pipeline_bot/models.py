"""Pydantic models shared by every layer: the change, its analysis, and deploy requests/results."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

Severity = Literal["info", "low", "medium", "high", "critical"]
RiskLevel = Literal["low", "medium", "high", "critical"]
StrategyName = Literal["none", "rolling", "blue-green", "canary"]

SEVERITY_ORDER: dict[str, int] = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


_M = TypeVar("_M", bound=BaseModel)
_new = object.__new__
_set = object.__setattr__
# BaseModel's slots, set through their descriptors: faster than by name
_set_fields = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


def trusted(cls: type[_M], values: dict[str, Any]) -> _M:
    """`cls(**values)` without pydantic's validation, for values built by this program that are
    of their fields' types already and name every field (and no other): the diff parser's files
    and hunks, the analysis' findings, tens of thousands per large change. Validation would
    check what holds by construction, at several times the cost; tests hold the result equal to
    the validated model (tests/test_diff_parse_equivalence.py)."""
    model = _new(cls)
    _set(model, "__dict__", values)
    _set_fields(model, set(values))
    _set_extra(model, None)
    _set_private(model, None)
    return model


class DevOpsContext(_Model):
    """Where a change is headed: the project, environment and the pipeline stage it is in."""

    project_name: str
    environment: str
    branch: str | None = None
    commit_hash: str | None = None
    pipeline_stage: str = "analyze"
    resources: dict[str, str | int | float] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)


# --------------------------------------------------------------------------- the change


class Commit(_Model):
    sha: str
    author: str
    email: str
    timestamp: datetime
    message: str


class FileStatus(StrEnum):
    ADDED = "added"
    MODIFIED = "modified"
    DELETED = "deleted"
    RENAMED = "renamed"
    COPIED = "copied"
    TYPE_CHANGED = "type_changed"


class Hunk(_Model):
    """One hunk's line ranges: `old_*` in the base version, `new_*` in the head version."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    old_start: int
    old_lines: int
    new_start: int
    new_lines: int
    changed_start: int = Field(description="head-version line of the first change (no context)")
    changed_end: int = Field(description="head-version line of the last change (no context)")


class SecretHit(_Model):
    """Where a secret-like string was added. The string itself is never kept."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    line: int
    kind: str


class ContentSignals(_Model):
    """What a scan of the patch text found; the text itself is dropped after the scan."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    secrets: list[SecretHit] = Field(default_factory=list)
    removed_tests: int = 0
    added_tests: int = 0
    removed_test_lines: list[int] = Field(default_factory=list)
    kube_kinds: list[str] = Field(default_factory=list)
    generated_marker: bool = Field(
        False, description="a generated-file marker near the top (looked for from 500 added lines)"
    )
    lfs_pointer: bool = Field(
        False, description="the new version is a Git LFS pointer: the content is a binary elsewhere"
    )


class FileChange(_Model):
    path: str
    old_path: str | None = None
    status: FileStatus
    additions: int = 0
    deletions: int = 0
    binary: bool = False
    old_mode: str | None = None
    new_mode: str | None = None
    hunks: list[Hunk] = Field(default_factory=list)
    signals: ContentSignals = Field(default_factory=ContentSignals)


class ChangeSet(_Model):
    """A range of commits and the files it changes (base exclusive, head inclusive)."""

    repository: str
    base: str
    head: str
    commits: list[Commit] = Field(default_factory=list)
    files: list[FileChange] = Field(default_factory=list)


# --------------------------------------------------------------------------- the analysis


class Finding(_Model):
    """Something a reviewer should look at; becomes an annotation on `path` lines start..end."""

    path: str | None
    start_line: int | None = None
    end_line: int | None = None
    severity: Severity
    rule: str
    message: str


class RiskFactor(_Model):
    """One reason the score is what it is: it moved the score by `points` (`weight` rounded)."""

    rule: str
    weight: int
    reason: str
    paths: list[str] = Field(default_factory=list)
    count: int = 0
    points: float = Field(0.0, description="contribution to the 0-100 score, signed")
    feature: str | None = Field(None, description="the model's feature behind it, if any")
    value: float | None = Field(None, description="the change's value of that feature")


class RiskModelInfo(_Model):
    """Which model gave the score, and what it was fitted on."""

    kind: Literal["history", "prior", "rules"]
    commits: int = Field(0, description="labelled commits of this repository the fit used")
    positives: int = Field(0, description="of which were reverted or needed a fix")
    prior_commits: int = Field(0, description="labelled commits of the public prior corpus")
    fitted_at: datetime | None = None
    cross_validated_auc: float | None = Field(
        None, description="AUC on held-out newer history (prior: on held-out repositories)"
    )
    newest_commit: str | None = Field(None, description="the newest commit the fit saw")
    baseline: float | None = Field(None, description="a typical change's probability")
    history: str = Field("", description="which history the change's features were read from")
    note: str = ""


class Risk(_Model):
    score: int = Field(ge=0, le=100)
    level: RiskLevel
    factors: list[RiskFactor] = Field(default_factory=list)
    probability: float | None = Field(
        None, description="calibrated probability that the change is reverted or needs a fix"
    )
    model: RiskModelInfo | None = None


class ChangeStats(_Model):
    files: int
    additions: int
    deletions: int
    commits: int
    binary_files: int = 0
    excluded_files: int = 0


class ChangeMetrics(_Model):
    """Just-in-time defect prediction metrics (Kamei et al. 2013) for the change."""

    subsystems: int = Field(description="NS: distinct top-level directories touched")
    directories: int = Field(description="ND: distinct directories touched")
    files: int = Field(description="NF: files touched")
    entropy: float = Field(description="Entropy: spread of modified lines across files, 0-1")
    lines_added: int = Field(description="LA")
    lines_deleted: int = Field(description="LD")
    is_fix: bool = Field(description="FIX: a commit message says it fixes something")
    history_available: bool = True
    history_note: str = ""
    developers: int | None = Field(None, description="NDEV: authors who changed these files before")
    age_days: float | None = Field(None, description="AGE: mean days since the files last changed")
    prior_changes: int | None = Field(None, description="NUC: earlier commits to these files")
    author_experience: int | None = Field(
        None, description="EXP: earlier commits by the change's author"
    )
    recent_experience: float | None = Field(
        None, description="REXP: the author's earlier commits, weighted by recency"
    )
    subsystem_experience: int | None = Field(
        None, description="SEXP: the author's earlier commits in the touched subsystems"
    )
    lines_before: int | None = Field(
        None, description="LT: bytes of the touched files before the change"
    )


class CanaryStep(_Model):
    weight: int = Field(ge=1, le=100, description="percent of replicas on the new version")
    pause_seconds: int = Field(ge=0)


class Checkpoint(_Model):
    metric: str
    condition: str
    when: str


class StrategyParameters(_Model):
    replicas: int = Field(ge=1)
    steps: list[CanaryStep] = Field(default_factory=list)
    checkpoints: list[Checkpoint] = Field(default_factory=list)
    max_surge: str | None = None
    max_unavailable: str | None = None
    keep_previous_seconds: int | None = None
    manual_promotion: bool = False


class Strategy(_Model):
    name: StrategyName
    environment: str
    reasons: list[str]
    parameters: StrategyParameters


# --------------------------------------------------------------------------- AI review


class Evidence(_Model):
    file: str
    start_line: int | None = None
    end_line: int | None = None


class AIRisk(_Model):
    title: str
    severity: Literal["low", "medium", "high", "critical"]
    evidence: list[Evidence] = Field(default_factory=list)


class AIStrategyParameters(_Model):
    steps: list[int] = Field(default_factory=list, description="canary weights in percent")
    pause_seconds: int = 0


class AIStrategy(_Model):
    name: StrategyName
    parameters: AIStrategyParameters = Field(default_factory=AIStrategyParameters)
    reason: str = ""


class AIResources(_Model):
    replicas: int | None = None
    cpu: str | None = None
    memory: str | None = None


class AICheckpoint(_Model):
    metric: str
    condition: str
    when: str


class Recommendation(_Model):
    """The model's final answer (validated against this schema; strict JSON schema output)."""

    summary: str
    risk_level: RiskLevel
    risks: list[AIRisk]
    strategy: AIStrategy
    resources: AIResources
    checkpoints: list[AICheckpoint]
    confidence: float = Field(ge=0, le=1)


class Investigation(_Model):
    """The model's finding after a failed deploy or gate."""

    summary: str
    likely_cause: str
    evidence: list[str]
    next_steps: list[str]
    confidence: float = Field(ge=0, le=1)


class AIToolCall(_Model):
    name: str
    ok: bool


class AIRefusal(_Model):
    action: str
    reason: str


class AIUsage(_Model):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class AIReview(_Model):
    """The `ai` object of the analysis: what the model advised and what the policy made of it."""

    status: Literal["off", "ok", "fallback"]
    error: str | None = None
    summary: str | None = None
    risks: list[AIRisk] = Field(default_factory=list)
    strategy: AIStrategy | None = None
    resources: AIResources | None = None
    checkpoints: list[AICheckpoint] = Field(default_factory=list)
    confidence: float | None = None
    tool_calls: list[AIToolCall] = Field(default_factory=list)
    refused: list[AIRefusal] = Field(default_factory=list)
    usage: AIUsage = Field(default_factory=AIUsage)
    investigation: Investigation | None = None


class Analysis(_Model):
    """What the change is, how risky it is, and how to ship it to `strategy.environment`."""

    repository: str
    base: str
    head: str
    commits: list[Commit]
    risk: Risk
    strategy: Strategy
    findings: list[Finding]
    affected_services: list[str]
    stats: ChangeStats
    metrics: ChangeMetrics
    ai: AIReview | None = Field(None, description="with --llm: the AI review (see README)")


# --------------------------------------------------------------------------- deploys


class PipelineStage(StrEnum):
    ANALYZE = "analyze"
    BUILD = "build"
    DEPLOY = "deploy"
    VERIFY = "verify"
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    DONE = "done"


class PipelineState(_Model):
    """Where one change stands on its way to an environment."""

    deploy_id: str | None = None
    environment: str
    stage: PipelineStage
    status: Literal["pending", "running", "succeeded", "failed", "rolled_back", "paused"]
    message: str = ""
    started_at: datetime | None = None
    updated_at: datetime | None = None


class ContainerResources(_Model):
    """Requests and limits, in Kubernetes quantities ("250m", "256Mi")."""

    cpu_request: str | None = None
    cpu_limit: str | None = None
    memory_request: str | None = None
    memory_limit: str | None = None


class ReadinessProbe(_Model):
    """An HTTP GET readiness probe for rendered Deployments."""

    path: str = "/"
    port: int | None = Field(None, ge=1, le=65535, description="default: the container port")
    initial_delay_seconds: int = Field(0, ge=0)
    period_seconds: int = Field(5, ge=1)
    failure_threshold: int = Field(3, ge=1)


DNS_LABEL = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"


class DeployRequest(_Model):
    """What to ship where. Without manifests a Deployment and a Service are rendered from it."""

    app: str = Field(pattern=DNS_LABEL, description="Application name (a DNS label).")
    environment: str
    image: str = Field(min_length=1)
    image_tag: str | None = Field(
        None, description="The tag `image` was resolved from when it is pinned to a digest."
    )
    commit_sha: str | None = None
    namespace: str | None = None
    strategy: StrategyName | Literal["auto"] = "auto"
    replicas: int | None = Field(None, ge=1)
    port: int = Field(8080, ge=1, le=65535, description="Container port the Service targets.")
    resources: ContainerResources = Field(default_factory=ContainerResources)
    readiness: ReadinessProbe | None = None
    manifests: list[str] = Field(default_factory=list)
    dry_run: Literal["none", "client", "server"] = "none"
    timeout_seconds: float = Field(300, gt=0)
    auto_rollback: bool = True
    requested_by: str | None = None
    supersede: bool = Field(
        False,
        description="Abort a paused deploy of the same app in the environment first; without "
        "it, a deploy over a paused one is refused.",
    )


class DeployStep(_Model):
    """One thing the engine did, with how it ended."""

    name: str
    status: Literal["succeeded", "failed", "skipped", "paused"]
    message: str = ""
    seconds: float = 0.0
    details: list[dict[str, Any]] = Field(
        default_factory=list,
        description="gate measurements: metric, query, value, threshold, passed, reason",
    )


class DeployResult(_Model):
    deploy_id: str
    environment: str
    app: str
    namespace: str
    image: str
    strategy: StrategyName
    status: Literal["succeeded", "failed", "rolled_back", "paused", "planned"]
    message: str
    rolled_back: bool = False
    rollback_reason: str | None = None
    reasons: list[str] = Field(default_factory=list, description="why this strategy")
    steps: list[DeployStep] = Field(default_factory=list)
    objects: list[dict[str, Any]] = Field(default_factory=list)
    started_at: datetime
    finished_at: datetime | None = None
    seconds: float = 0.0


class RollingState(_Model):
    """What a rolling deploy keeps for a later rollback."""

    kind: Literal["rolling"] = "rolling"
    deployment: str
    template: dict[str, Any] = Field(description="the pod template it rolled out")
    previous_template: dict[str, Any] | None = Field(
        None, description="the pod template it replaced (None on a first deploy)"
    )


class BlueGreenState(_Model):
    """What a blue-green deploy keeps between its rollout and the switch (promote or abort), and
    after the switch for the rollback window."""

    kind: Literal["blue-green"] = "blue-green"
    color: str
    service: str
    deployment: str = Field(description="the new colour's Deployment")
    previous_deployment: str | None = Field(None, description="what served before")
    selector: dict[str, str] = Field(description="the Service's selector for the new colour")
    previous_selector: dict[str, str] | None = None
    keep_seconds: int = Field(0, description="how long the previous colour stays up")
    scale_down_at: datetime | None = None
    scaled_down: bool = False
    previous_replicas: int | None = None
    pause_expires_at: datetime | None = Field(
        None, description="an inconclusive pause is aborted after this"
    )


class CanaryState(_Model):
    """What a canary keeps between a pause and its promote or abort."""

    kind: Literal["canary"] = "canary"
    deployment: str = Field(description="the stable Deployment")
    canary: str = Field(description="the canary Deployment")
    total: int = Field(description="the stable Deployment's replicas before the canary")
    weights: list[int]
    step: int = Field(0, description="steps done")
    template: dict[str, Any] = Field(description="the new pod template, promoted to stable")
    stable_template: dict[str, Any] = Field(description="the pod template stable had")
    pause_expires_at: datetime | None = Field(
        None, description="an inconclusive pause is aborted after this"
    )


StrategyState = Annotated[RollingState | BlueGreenState | CanaryState, Field(discriminator="kind")]
_STATE_KINDS = frozenset({"rolling", "blue-green", "canary"})
_STATE_FIELDS = {
    "rolling": RollingState.model_fields,
    "blue-green": BlueGreenState.model_fields,
    "canary": CanaryState.model_fields,
}


class DeployRecord(_Model):
    """One deploy as the store keeps it. `strategy_state` is what a later promote, abort or
    rollback needs (the previous pod template, the canary's step, the colour serving traffic);
    `state` holds notes other tools attach to a record (an AI investigation)."""

    id: str
    environment: str
    app: str
    namespace: str
    image: str
    commit_sha: str | None = None
    strategy: StrategyName
    status: Literal["running", "succeeded", "failed", "rolled_back", "paused", "aborted"]
    step: str = ""
    reason: str = ""
    actor: str | None = None
    started_at: datetime
    finished_at: datetime | None = None
    strategy_state: StrategyState | None = None
    rollback_of: str | None = Field(None, description="the deploy this one rolled back")
    state: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _untyped_state(cls, data: Any) -> Any:
        """Records written before the state was typed kept it as dictionary keys in `state`:
        read those into `strategy_state` (an expiry was a Unix time then)."""
        if not isinstance(data, dict) or data.get("strategy_state") is not None:
            return data
        state = data.get("state")
        if not isinstance(state, dict) or not ({"kind", "rollback_of"} & state.keys()):
            return data
        notes = dict(state)
        data = {**data, "state": notes, "rollback_of": notes.pop("rollback_of", None)}
        kind = notes.get("kind")
        if kind in _STATE_KINDS:
            fields = _STATE_FIELDS[kind]
            typed = {k: notes.pop(k) for k in list(notes) if k in fields}
            if "expires_at" in notes:
                typed["pause_expires_at"] = notes.pop("expires_at")
            data["strategy_state"] = typed
        return data


class WorkloadStatus(_Model):
    """One Deployment as the cluster reports it."""

    name: str
    images: list[str]
    replicas: int
    updated: int
    ready: int
    available: int
    generation: int
    observed_generation: int
    revision: str | None = None
    conditions: list[str] = Field(default_factory=list)


class EnvironmentLock(_Model):
    environment: str
    owner: str
    reason: str
    acquired_at: datetime
    expires_at: datetime


class DeploymentStatus(_Model):
    """An app in an environment: what runs (from the cluster) and what was done (from the store)."""

    environment: str
    app: str
    namespace: str
    workloads: list[WorkloadStatus]
    live_color: str | None = None
    lock: EnvironmentLock | None = None
    latest: DeployRecord | None = None
    history: list[DeployRecord] = Field(default_factory=list)


class MetricSample(_Model):
    """One series' value from an instant query."""

    labels: dict[str, str] = Field(default_factory=dict)
    value: float


class MetricSeries(_Model):
    """One series from a range query."""

    labels: dict[str, str] = Field(default_factory=dict)
    points: list[tuple[datetime, float]] = Field(default_factory=list)


# --------------------------------------------------------------------------- audit


class AuditEntry(_Model):
    """One tool call, whoever made it and however it ended."""

    at: datetime
    front_end: str = Field(description="cli, action, app or mcp")
    actor: str | None = Field(None, description="who asked, as the front end knows them")
    tool: str
    inputs: dict[str, Any] = Field(default_factory=dict, description="the arguments, redacted")
    decision: str = Field("allowed", description="allowed, or refused and why")
    outcome: Literal["ok", "error", "refused"] = "ok"
    result: str = Field("", description="what came of it, in a line")
    seconds: float = 0.0
