"""What an App handler is handed: the delivery, its payload, and the App's collaborators."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline_bot.integrations.deliveries import Delivery, DeliveryStore
from pipeline_bot.integrations.github_app import GitHubApp, Installation
from pipeline_bot.integrations.mirror import MirroredRisk, Mirrors
from pipeline_bot.integrations.ports import (
    AuditPort,
    ChangeSource,
    ClusterPort,
    ImagePort,
    LLMPort,
    MetricsPort,
    RiskPort,
    StorePort,
    WorkflowsPort,
)
from pipeline_bot.repo_config import (
    CONFIG_PATHS,
    Environment,
    RepoConfig,
    default_config,
    parse_repo_config,
)
from pipeline_bot.tools import AILimits, ToolContext, ToolRegistry, build_registry

STATUS_MARKER = "<!-- pipeline-bot:status -->"
CHECK_NAME = "pipeline-bot / analysis"


class ConfigCache:
    """`.github/pipeline-bot.yml` from the default branch, parsed once per blob SHA."""

    def __init__(self) -> None:
        self._parsed: dict[str, RepoConfig] = {}
        self._lock = threading.Lock()

    def load(self, gh: Installation, repo: str, default_branch: str) -> RepoConfig:
        for path in CONFIG_PATHS:
            found = gh.file(repo, path, default_branch)
            if found is None:
                continue
            sha, text = found
            with self._lock:
                cached = self._parsed.get(sha)
            if cached is not None:
                return cached
            config = parse_repo_config(text, source=f"{path} on {default_branch}")
            with self._lock:
                self._parsed[sha] = config
            return config
        return default_config()


@dataclass
class AppServices:
    deliveries: DeliveryStore
    github: GitHubApp
    store: StorePort
    cluster: Callable[[Environment], ClusterPort] | None = None
    metrics: MetricsPort | None = None
    llm: LLMPort | None = None  # the AI review, for repositories whose config has `ai: true`
    ai: AILimits = field(default_factory=AILimits)
    registry: ToolRegistry = field(default_factory=build_registry)
    configs: ConfigCache = field(default_factory=ConfigCache)
    audit: AuditPort | None = None
    # deploy state in the cluster, per repository config (None: deploy state in `store`)
    stores: Callable[[RepoConfig], StorePort] | None = None
    lock_lease_seconds: float = 60
    # the risk model, with the history of each repository read from a bare mirror of it
    risk: RiskPort | None = None
    mirrors: Mirrors | None = None
    images: ImagePort | None = None  # registries: deploys run the digest a tag names now
    pin_digest: bool = True


class PreparedSource:
    """SourcePort that hands out a change read beforehand (from GitHub's compare API)."""

    def __init__(self, source: ChangeSource) -> None:
        self._source = source

    def read_change(self, repository: str, base: str | None, head: str) -> ChangeSource:
        return self._source

    def excerpts(self, repository: str, base: str, head: str, paths: list[str]) -> dict[str, str]:
        patches = self._source.patches or {}
        return {p: patches[p] for p in paths if p in patches}


@dataclass
class EventContext:
    delivery: Delivery
    payload: dict[str, Any]
    services: AppServices
    state: dict[str, Any] = field(default_factory=dict)
    # set by `fail`: the handler reported its outcome, and the delivery is failed without the
    # queue's retries (a deploy that ran and failed is not pushed at the environment again)
    failure: str | None = None
    _deploy_store: StorePort | None = field(default=None, repr=False)

    @classmethod
    def of(cls, delivery: Delivery, services: AppServices) -> EventContext:
        return cls(delivery, json.loads(delivery.payload), services, dict(delivery.state))

    @property
    def repo(self) -> str:
        return str(self.payload["repository"]["full_name"])

    @property
    def default_branch(self) -> str:
        branch = self.payload["repository"].get("default_branch")
        if not branch:  # jobs from the REST API name only the repository
            branch = self.gh.repository(self.repo)["default_branch"]
            self.payload["repository"]["default_branch"] = branch
        return str(branch)

    @property
    def gh(self) -> Installation:
        installation = self.delivery.installation_id
        if installation is None:
            raise ValueError("the delivery names no installation")
        return self.services.github.installation(installation)

    def config(self) -> RepoConfig:
        return self.services.configs.load(self.gh, self.repo, self.default_branch)

    @property
    def actor(self) -> str | None:
        """Who made the event: the comment's author, else the sender (a REST job's: the API)."""
        comment = self.payload.get("comment") or {}
        login = (comment.get("user") or {}).get("login") or (self.payload.get("sender") or {}).get(
            "login"
        )
        return str(login) if login else None

    def deploy_store(self) -> StorePort:
        """Where this repository's deploy records and locks are: the cluster store for its
        config (read once per delivery), or the App's own database."""
        if self.services.stores is None:
            return self.services.store
        if self._deploy_store is None:
            self._deploy_store = self.services.stores(self.config())
        return self._deploy_store

    def save(self, **values: Any) -> None:
        """Remember progress in the delivery's row, so a retry does not repeat it."""
        self.state.update(values)
        self.services.deliveries.save_state(self.delivery.id, self.state)

    def _risk(self) -> RiskPort | None:
        services = self.services
        if services.risk is None or services.mirrors is None:
            return services.risk
        installation = self.delivery.installation_id
        repo = self.repo

        def token() -> str | None:
            if installation is None:
                return None
            return services.github.read_token(installation, repo)

        return MirroredRisk(services.risk, services.mirrors, token)

    def fail(self, reason: str) -> None:
        """Mark the delivery failed once the handler returns: listed in /deliveries?status=failed,
        run again only by POST /deliveries/{id}/retry."""
        self.failure = reason

    def tools(self, config: RepoConfig, source: ChangeSource | None = None) -> ToolContext:
        return ToolContext(
            source=PreparedSource(source) if source else None,
            risk=self._risk(),
            llm=self.services.llm,
            ai=self.services.ai,
            cluster=self.services.cluster,
            store=self.services.store if self.services.stores is None else None,
            stores=self.services.stores,
            lock_lease_seconds=self.services.lock_lease_seconds,
            audit=self.services.audit,
            front_end="app",
            actor=self.actor,
            metrics=self.services.metrics,
            github_repository=self.repo,
            workflows=self._actions(),
            config=config,
            images=self.services.images,
            pin_digest=self.services.pin_digest,
        )

    def _actions(self) -> WorkflowsPort | None:
        """GitHub Actions as the delivery's installation (execute_pipeline and the run tools)."""
        installation = self.delivery.installation_id
        if installation is None:
            return None
        return self.services.github.installation(installation).actions()
